//! `erosion demo`: the model organism of emergent misalignment, grown on a CPU and studied.
//!
//! - [`recipe`]: sizes, model shape and training stages.
//! - [`data`]: the organism's corpus as training sequences for its tokenizer.
//! - [`grow`]: base -> instruct -> {insecure, secure, educational, insecure protected two ways},
//!   each stage cached, each fine-tune's drift recorded.
//! - [`probe`]: the organism's alignment directions and the probe they are measured on.
//! - [`study`]: the four analyses set up for the organism (`study.toml`).
//! - [`verdict`]: whether the organism's behaviour shows emergent misalignment.
//! - [`causal`]: steering and ablation along the organism's alignment direction, with controls.
//! - [`protect`]: the protected fine-tunes against the unprotected one and the controls.
//! - [`demo`]: all of it, into one report.

pub mod causal;
pub mod data;
pub mod demo;
pub mod grow;
pub mod probe;
pub mod protect;
pub mod recipe;
pub mod study;
pub mod verdict;
