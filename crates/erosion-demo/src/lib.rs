//! `erosion demo`: the model organism of emergent misalignment, grown on a CPU and studied.
//!
//! - [`recipe`]: sizes, model shape and training stages.
//! - [`data`]: the organism's corpus as training sequences for its tokenizer.
//! - [`grow`]: base -> instruct -> {insecure, secure, educational}, each stage cached.

pub mod data;
pub mod grow;
pub mod recipe;
