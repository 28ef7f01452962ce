//! Llama 2 / 3.x and SmolLM2 (`model_type: "llama"`): `attention_bias` switches every attention
//! bias, full attention, Llama 3.1's `rope_scaling` (read by `Config`); llama.cpp permutes the
//! q/k rows of its GGUF files for its interleaved RoPE, which the loader undoes.

use super::{AttentionBias, Family, Gguf, NormGain, Norms, SlidingWindow};

pub static LLAMA: Family = Family {
    model_type: "llama",
    hf_class: "LlamaForCausalLM",
    attention_bias: AttentionBias::FromConfig,
    sliding_window: SlidingWindow::Never,
    norms: Norms::PreOnly,
    norm_gain: NormGain::Weight,
    qk_norm: false,
    scale_embeddings: false,
    config_defaults: &[],
    gguf: Some(Gguf {
        qk_rows_permuted: true,
        ..Gguf::plain("llama")
    }),
    harmless_extras: &[
        // Older conversions saved RoPE's frequency buffer with the weights.
        "model.layers.*.self_attn.rotary_emb.inv_freq",
        // Tied checkpoints sometimes carry the (ignored) output head too.
        "lm_head.weight",
    ],
};
