//! Mistral (`model_type: "mistral"`): Llama's structure with sliding-window attention whenever
//! `sliding_window` is set. llama.cpp writes Mistral GGUF files as `llama`, so they load as the
//! Llama family.

use super::{AttentionBias, Family, NormGain, Norms, SlidingWindow};

pub static MISTRAL: Family = Family {
    model_type: "mistral",
    hf_class: "MistralForCausalLM",
    attention_bias: AttentionBias::FromConfig,
    sliding_window: SlidingWindow::WhenSet,
    norms: Norms::PreOnly,
    norm_gain: NormGain::Weight,
    qk_norm: false,
    scale_embeddings: false,
    config_defaults: &[],
    gguf: None,
    harmless_extras: &[
        // Older conversions saved RoPE's frequency buffer with the weights.
        "model.layers.*.self_attn.rotary_emb.inv_freq",
        // Tied checkpoints sometimes carry the (ignored) output head too.
        "lm_head.weight",
    ],
};
