//! Qwen2 and Qwen2.5 (`model_type: "qwen2"`): q/k/v biases always (no o bias), sliding windows
//! only when `use_sliding_window` is true (from layer `max_window_layers` on); llama.cpp writes its GGUF files unpermuted (it runs
//! them with NeoX RoPE, which is Hugging Face's rotate-half).

use super::{AttentionBias, Family, Gguf, NormGain, Norms, SlidingWindow};

pub static QWEN2: Family = Family {
    model_type: "qwen2",
    hf_class: "Qwen2ForCausalLM",
    attention_bias: AttentionBias::QkvAlways,
    sliding_window: SlidingWindow::WhenSwitchedOn,
    norms: Norms::PreOnly,
    norm_gain: NormGain::Weight,
    qk_norm: false,
    scale_embeddings: false,
    config_defaults: &[("max_window_layers", "28")],
    gguf: Some(Gguf::plain("qwen2")),
    harmless_extras: &[
        // Older conversions saved RoPE's frequency buffer with the weights.
        "model.layers.*.self_attn.rotary_emb.inv_freq",
        // Tied checkpoints sometimes carry the (ignored) output head too.
        "lm_head.weight",
    ],
};
