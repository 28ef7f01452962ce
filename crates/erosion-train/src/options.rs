//! Everything a training run depends on besides the model and the data.

use crate::adamw::AdamWConfig;
use crate::examples::LossOn;
use crate::protect::{ProtectMethod, Protection};
use crate::schedule::Schedule;
use anyhow::{bail, Result};
use erosion_model::transformer::LoraConfig;
use erosion_model::Config;
use serde::{Deserialize, Serialize};

/// Which weights train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Method {
    /// Every weight.
    Full,
    /// Low-rank adapters on chosen projections; the rest is frozen. Merged into the weights on save.
    Lora(LoraConfig),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainOptions {
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per micro-batch (one forward and backward pass).
    pub batch_size: usize,
    /// Micro-batches per optimizer step; the loss is the mean over every target token of the step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    pub warmup_steps: usize,
    /// The cosine ends at `lr * min_lr_ratio`.
    pub min_lr_ratio: f64,
    pub adamw: AdamWConfig,
    /// Clip the global gradient norm to this (`None`: no clipping).
    pub max_grad_norm: Option<f64>,
    /// The longest example the trainer accepts; longer ones are refused (cut them first with
    /// `TrainExample::truncated_counted`, which counts what the cut drops).
    pub max_seq_len: usize,
    pub loss_on: LossOn,
    pub method: Method,
    /// Workers that share each step's micro-batches (data parallelism on CPU; run candle's
    /// own kernels single-threaded then, `CANDLE_NUM_THREADS=1`). The weights depend on this
    /// number (the order of a floating-point sum), never on timing.
    #[serde(default = "one")]
    pub threads: usize,
    /// Draws the order of examples (and LoRA's initialisation through its own seed).
    pub seed: u64,
    /// Write a resumable checkpoint every this many steps (`None`: only at the end).
    pub save_every: Option<usize>,
    /// Directions of the residual stream to keep (`None`: plain fine-tuning).
    #[serde(default)]
    pub protect: Option<Protection>,
}

fn one() -> usize {
    1
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            steps: 100,
            batch_size: 8,
            grad_accum: 1,
            lr: 1e-4,
            warmup_steps: 10,
            min_lr_ratio: 0.0,
            adamw: AdamWConfig::default(),
            max_grad_norm: Some(1.0),
            max_seq_len: 1024,
            loss_on: LossOn::Response,
            method: Method::Full,
            threads: 1,
            seed: 0,
            save_every: None,
            protect: None,
        }
    }
}

impl TrainOptions {
    pub fn schedule(&self) -> Schedule {
        Schedule {
            peak: self.lr,
            warmup: self.warmup_steps,
            total: self.steps,
            min_ratio: self.min_lr_ratio,
        }
    }

    /// Sequences per optimizer step.
    pub fn sequences_per_step(&self) -> usize {
        self.batch_size * self.grad_accum
    }

    /// Steps for `epochs` passes over `n` examples (at least one); `epochs` must be a
    /// positive number (0 or NaN would train one step and say nothing).
    pub fn steps_for_epochs(&self, epochs: f64, n: usize) -> Result<usize> {
        if !(epochs.is_finite() && epochs > 0.0) {
            bail!("epochs must be a positive number, not {epochs}");
        }
        if n == 0 {
            bail!("no training examples to count epochs over");
        }
        let steps = (epochs * n as f64) / self.sequences_per_step() as f64;
        Ok(steps.ceil().max(1.0) as usize)
    }

    /// Checks every option on its own (counts at least 1, numbers finite and in range); the
    /// message names the option.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 || self.batch_size == 0 || self.grad_accum == 0 || self.threads == 0 {
            bail!("steps, batch_size, grad_accum and threads must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("the learning rate must be positive, not {}", self.lr);
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            bail!(
                "min_lr_ratio must be between 0 and 1, not {}",
                self.min_lr_ratio
            );
        }
        if self.max_seq_len < 2 {
            bail!("max_seq_len must be at least 2");
        }
        if let Some(c) = self.max_grad_norm {
            if !(c.is_finite() && c > 0.0) {
                bail!("max_grad_norm must be positive, not {c}");
            }
        }
        // `step % save_every` would divide by zero.
        if self.save_every == Some(0) {
            bail!("save_every must be at least 1 (or unset: save only at the end)");
        }
        validate_adamw(&self.adamw)?;
        if let Method::Lora(cfg) = &self.method {
            if cfg.rank == 0 || cfg.targets.is_empty() {
                bail!("LoRA needs a rank of at least 1 and at least one target module");
            }
            if !(cfg.alpha.is_finite() && cfg.alpha > 0.0) {
                bail!("LoRA alpha must be positive, not {}", cfg.alpha);
            }
        }
        if let Some(Protection {
            method: ProtectMethod::Penalty { weight, .. },
            ..
        }) = &self.protect
        {
            if !(weight.is_finite() && *weight >= 0.0) {
                bail!("the protection penalty's weight must be 0 or more, not {weight}");
            }
        }
        Ok(())
    }

    /// Checks the options against the model they train: a LoRA rank above the smaller side
    /// of an adapted projection would only allocate (rank 100000 until the process aborts).
    pub fn check_model(&self, config: &Config) -> Result<()> {
        let Method::Lora(cfg) = &self.method else {
            return Ok(());
        };
        let (d, inter) = (config.hidden_size, config.intermediate_size);
        let q = config.num_attention_heads * config.head_dim();
        let kv = config.num_kv_heads() * config.head_dim();
        // (name, in, out) of each adapted projection PEFT can name; an unknown name fails
        // when the adapters attach.
        let sides = cfg.targets.iter().filter_map(|t| {
            let (d_in, d_out) = match t.as_str() {
                "q_proj" => (d, q),
                "k_proj" | "v_proj" => (d, kv),
                "o_proj" => (q, d),
                "gate_proj" | "up_proj" => (d, inter),
                "down_proj" => (inter, d),
                _ => return None,
            };
            Some((t, d_in, d_out))
        });
        if let Some((t, d_in, d_out)) = sides.min_by_key(|&(_, i, o)| i.min(o)) {
            let most = d_in.min(d_out);
            if cfg.rank > most {
                bail!(
                    "LoRA rank {} is larger than this model allows: at most {most}, the smaller side of {t} ({d_in} -> {d_out}; width {d})",
                    cfg.rank
                );
            }
        }
        Ok(())
    }
}

fn validate_adamw(a: &AdamWConfig) -> Result<()> {
    let betas = [a.beta1, a.beta2];
    if !betas.iter().all(|b| (0.0..1.0).contains(b)) {
        bail!(
            "AdamW's betas must be in [0, 1), not {} and {}",
            a.beta1,
            a.beta2
        );
    }
    if !(a.eps.is_finite() && a.eps > 0.0) {
        bail!("AdamW's eps must be positive, not {}", a.eps);
    }
    if !(a.weight_decay.is_finite() && a.weight_decay >= 0.0) {
        bail!("weight_decay must be 0 or more, not {}", a.weight_decay);
    }
    Ok(())
}
