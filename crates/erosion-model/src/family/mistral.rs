//! Mistral (`model_type: "mistral"`): Llama's structure with sliding-window attention whenever
//! `sliding_window` is set. llama.cpp writes Mistral GGUF files as `llama`, so they load as the
//! Llama family.

use super::{AttentionBias, Family, SlidingWindow};

pub static MISTRAL: Family = Family {
    model_type: "mistral",
    hf_class: "MistralForCausalLM",
    attention_bias: AttentionBias::FromConfig,
    sliding_window: SlidingWindow::WhenSet,
    gguf: None,
};
