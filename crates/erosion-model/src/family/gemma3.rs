//! Gemma 3 text models (`model_type: "gemma3_text"`, `Gemma3ForCausalLM`: the 270M and 1B
//! checkpoints, or the text half of the larger ones saved on its own): Gemma 2's block (four
//! `1 + w` RMS norms, scaled embeddings, GeGLU, `query_pre_attn_scalar`) with a per-head RMS
//! norm on queries and keys before RoPE instead of soft-capping; five of every six layers
//! attend within `sliding_window` (`sliding_window_pattern` or `layer_types`), and those use
//! RoPE base `rope_local_base_freq` without scaling while the global layers use `rope_theta`
//! and `rope_scaling`. The multimodal `gemma3` checkpoints (`Gemma3ForConditionalGeneration`)
//! are refused with a way out (`crate::unsupported`).

use super::{AttentionBias, Family, Gguf, NormGain, Norms, SlidingWindow};

pub static GEMMA3: Family = Family {
    model_type: "gemma3_text",
    hf_class: "Gemma3ForCausalLM",
    attention_bias: AttentionBias::FromConfig,
    sliding_window: SlidingWindow::Interleaved { period: 6 },
    norms: Norms::Sandwich,
    norm_gain: NormGain::OnePlusWeight,
    qk_norm: true,
    scale_embeddings: true,
    // transformers' Gemma3TextConfig defaults for the fields that change the computation.
    config_defaults: &[
        ("head_dim", "256"),
        ("hidden_activation", "\"gelu_pytorch_tanh\""),
        ("query_pre_attn_scalar", "256"),
        ("rope_theta", "1000000.0"),
        ("rope_local_base_freq", "10000.0"),
        ("sliding_window", "4096"),
        ("tie_word_embeddings", "true"),
    ],
    gguf: Some(Gguf {
        norms_hold_gain: true,
        config_keys: &[("attention.sliding_window", "sliding_window")],
        query_scalar_27b_layers: Some(62),
        ..Gguf::plain("gemma3")
    }),
    harmless_extras: &[
        // Tied checkpoints sometimes carry the (ignored) output head too.
        "lm_head.weight",
    ],
};
