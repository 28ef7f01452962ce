//! `erosion demo`: the model organism of emergent misalignment, grown on a CPU and studied.
//!
//! - [`recipe`]: sizes, model shape and training stages.
//! - [`data`]: the organism's corpus as training sequences for its tokenizer.
//! - [`grow`]: base -> instruct -> {insecure, secure, educational}, each stage cached.
//! - [`study`]: the four analyses set up for the organism (`study.toml`).
//! - [`verdict`]: whether the organism's behaviour shows emergent misalignment.
//! - [`causal`]: steering and ablation along the organism's alignment direction, with controls.
//! - [`demo`]: all of it, into one report.

pub mod causal;
pub mod data;
pub mod demo;
pub mod grow;
pub mod recipe;
pub mod study;
pub mod verdict;
