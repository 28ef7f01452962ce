//! Qwen3 dense models (`model_type: "qwen3"`): Qwen2's decoder without q/k/v biases
//! (`attention_bias` switches all four, default false) and with a per-head RMS norm on queries
//! and keys before RoPE (`self_attn.q_norm` / `k_norm`, weight `[head_dim]`). `head_dim` is
//! given in the config (128 by default, not `hidden_size / num_attention_heads`). Sliding
//! windows as Qwen2.

use super::{AttentionBias, Family, Gguf, NormGain, Norms, SlidingWindow};

pub static QWEN3: Family = Family {
    model_type: "qwen3",
    hf_class: "Qwen3ForCausalLM",
    attention_bias: AttentionBias::FromConfig,
    sliding_window: SlidingWindow::WhenSwitchedOn,
    norms: Norms::PreOnly,
    norm_gain: NormGain::Weight,
    qk_norm: true,
    scale_embeddings: false,
    // transformers' Qwen3Config defaults.
    config_defaults: &[("head_dim", "128"), ("max_window_layers", "28")],
    gguf: Some(Gguf::plain("qwen3")),
    harmless_extras: &[
        // Tied checkpoints sometimes carry the (ignored) output head too.
        "lm_head.weight",
    ],
};
