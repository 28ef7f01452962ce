//! Gemma 2 (`model_type: "gemma2"`): four RMS norms per block (pre- and post-attention,
//! pre- and post-MLP), each scaling by `1 + w` in f32; embeddings scaled by `sqrt(hidden_size)`;
//! a GeGLU MLP (`gelu_pytorch_tanh`); attention scores scaled by `query_pre_attn_scalar^-1/2`
//! and soft-capped (`attn_logit_softcapping`), logits soft-capped (`final_logit_softcapping`);
//! every other layer attends within `sliding_window` (layers 0, 2, 4, ...), the others globally.

use super::{AttentionBias, Family, NormGain, Norms, SlidingWindow};

pub static GEMMA2: Family = Family {
    model_type: "gemma2",
    hf_class: "Gemma2ForCausalLM",
    attention_bias: AttentionBias::FromConfig,
    sliding_window: SlidingWindow::Interleaved { period: 2 },
    norms: Norms::Sandwich,
    norm_gain: NormGain::OnePlusWeight,
    qk_norm: false,
    scale_embeddings: true,
    // transformers' Gemma2Config defaults for the fields that change the computation.
    config_defaults: &[
        ("head_dim", "256"),
        ("hidden_activation", "\"gelu_pytorch_tanh\""),
        ("query_pre_attn_scalar", "256"),
        ("attn_logit_softcapping", "50.0"),
        ("final_logit_softcapping", "30.0"),
        ("sliding_window", "4096"),
        ("tie_word_embeddings", "true"),
    ],
    gguf: None,
    harmless_extras: &[
        // Tied checkpoints sometimes carry the (ignored) output head too.
        "lm_head.weight",
    ],
};
