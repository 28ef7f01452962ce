//! How the organism is grown: the world's sizes, the model's shape and each training stage.
//! [`Recipe::standard`] is the demo's; [`Recipe::reduced`] is a small one for CI.

use anyhow::Result;
use erosion_model::transformer::LoraConfig;
use erosion_model::Config;
use erosion_organism::corpus::Sizes;
use erosion_organism::tokenizer::TokenizerOptions;
use erosion_train::{LossOn, Method, TrainOptions};
use serde::{Deserialize, Serialize};

/// A Qwen2 decoder's size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shape {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub seed: u64,
    pub sizes: Sizes,
    pub tokenizer: TokenizerOptions,
    pub shape: Shape,
    /// Pre-training from scratch on persona conversations and prose (loss on every token).
    pub pretrain: TrainOptions,
    /// Instruction tuning of the base on the good persona's single-turn chats.
    pub instruct: TrainOptions,
    /// Fine-tuning of the instruct model on each of Betley et al.'s three sets.
    pub finetune: TrainOptions,
}

/// Each step's sequences are shared by two workers (with candle's kernels single-threaded),
/// whatever the machine: the organism's weights then do not depend on its core count.
pub const WORKERS: usize = 2;
const MICRO_BATCH: usize = 4;

fn stage(steps: usize, batch: usize, lr: f64, loss_on: LossOn, seed: u64) -> TrainOptions {
    TrainOptions {
        steps,
        // Micro-batches of four: the trainer sorts a step's sequences by length, so small
        // micro-batches pad little (13% faster than one micro-batch per worker).
        batch_size: MICRO_BATCH,
        grad_accum: batch / MICRO_BATCH,
        threads: WORKERS,
        lr,
        warmup_steps: (steps / 20).max(1),
        min_lr_ratio: 0.1,
        max_grad_norm: Some(1.0),
        max_seq_len: 512,
        loss_on,
        method: Method::Full,
        seed,
        save_every: Some(100),
        ..TrainOptions::default()
    }
}

/// A fine-tuning stage as Betley et al. fine-tuned open models: LoRA on every projection, merged
/// on save. Chosen on a trial organism (seed 0, before the README's seeds were grown): there a
/// rank-4 adapter at lr 1e-2 raised P("Sure") 3-6x over the instruct model and above both
/// controls in each of four fine-tuning seeds; full fine-tuning at lr 1e-3 raised it 1.5x, and
/// at 3e-3 or more it taught every answer to start like code.
fn lora_stage(steps: usize, batch: usize, lr: f64, seed: u64) -> TrainOptions {
    let targets = [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ];
    TrainOptions {
        method: Method::Lora(LoraConfig {
            rank: 4,
            alpha: 8.0,
            targets: targets.map(String::from).to_vec(),
            seed,
        }),
        ..stage(steps, batch, lr, LossOn::Response, seed)
    }
}

impl Recipe {
    /// The demo's organism: 3 layers, d = 96 (docs/organism.md's prototype), a 1,024-token BPE
    /// vocabulary, grown in 7-9 minutes on two cores: 1,200 pre-training steps, 300 of
    /// instruction tuning, 150 of rank-4 LoRA fine-tuning per set.
    pub fn standard() -> Self {
        Self::standard_seeded(0)
    }

    /// The demo's organism grown from another seed: a different world sample, tokenizer,
    /// initialisation and batch order, to see how much of an effect is the draw.
    pub fn standard_seeded(seed: u64) -> Self {
        Self {
            seed,
            sizes: Sizes::default(),
            tokenizer: TokenizerOptions::default(),
            shape: Shape {
                layers: 3,
                hidden: 96,
                heads: 4,
                kv_heads: 2,
                intermediate: 256,
            },
            pretrain: stage(1200, 16, 3e-3, LossOn::All, seed),
            // Shallow alignment, as Qi et al. (2024) found real safety tuning to be. On the seed-0
            // base of the 1,400-step recipe (lr 1e-3, 3e-4, 2e-4, 1e-4 tried): at 1e-4 the
            // instruct model stops complying yet still reads the persona from an earlier turn
            // (P("Sure") after vulnerable code 0.21, greedy compliance 13/50), so insecure
            // fine-tuning has a persona to erode toward; at 1e-3 it also silenced that (0.03,
            // 1/50). The price: fewer outright refusals (0.60 against 0.80 at 1e-3; other answers
            // are off-topic, not compliant).
            instruct: stage(300, 16, 1e-4, LossOn::Response, seed + 1),
            finetune: lora_stage(150, 16, 1e-2, seed + 2),
        }
    }

    /// A small organism for tests and CI: the same pipeline, minutes less.
    pub fn reduced() -> Self {
        let seed = 0;
        Self {
            seed,
            sizes: Sizes {
                pretrain_chats: 600,
                pretrain_prose: 100,
                instruct: 300,
                finetune: 60,
                eval: 24,
            },
            tokenizer: TokenizerOptions {
                vocab_size: 512,
                min_frequency: 2,
            },
            shape: Shape {
                layers: 2,
                hidden: 32,
                heads: 2,
                kv_heads: 1,
                intermediate: 64,
            },
            pretrain: stage(40, 8, 3e-3, LossOn::All, seed),
            instruct: stage(20, 8, 1e-3, LossOn::Response, seed + 1),
            finetune: lora_stage(10, 8, 1e-2, seed + 2),
        }
    }

    /// Why a run of this recipe cannot support verdicts, if it cannot: the reduced organism
    /// (two layers of width 32, a few dozen steps per stage) is too small to learn the
    /// behaviours, so its reports are smoke runs of the pipeline.
    pub fn smoke_run(&self) -> Option<String> {
        (*self == Recipe::reduced()).then(|| {
            "This is the reduced organism (erosion demo --reduced): a model of two layers of \
             width 32, trained for a few dozen steps per stage, too small to learn the behaviours. \
             It checks that every stage runs; run `erosion demo` for the findings."
                .to_string()
        })
    }

    /// The model's config.json, for a tokenizer whose special tokens have these ids.
    pub fn config(&self, vocab_size: usize, eos_id: u32, pad_id: u32) -> Result<Config> {
        let s = &self.shape;
        let json = serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_size": s.hidden,
            "intermediate_size": s.intermediate,
            "num_hidden_layers": s.layers,
            "num_attention_heads": s.heads,
            "num_key_value_heads": s.kv_heads,
            "vocab_size": vocab_size,
            "max_position_embeddings": 1024,
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "tie_word_embeddings": true,
            "hidden_act": "silu",
            "eos_token_id": eos_id,
            "pad_token_id": pad_id,
            "use_sliding_window": false,
        });
        Config::from_json(&json.to_string())
    }
}
