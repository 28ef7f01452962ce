//! `erosion demo`: the model organism of emergent misalignment, grown on a CPU and studied.
//!
//! - [`recipe`]: sizes, model shape and training stages.
//! - [`data`]: the organism's corpus as training sequences for its tokenizer.
//! - [`grow`]: base -> instruct -> {insecure, secure, educational, insecure protected two ways},
//!   each stage cached, each fine-tune's drift recorded.
//! - [`probe`]: the organism's alignment directions and the probe they are measured on.
//! - [`study`]: the study of the organism (`study.toml`): the behavioural evaluation judged by
//!   the organism's rules, the causal tests, drift, the protected fine-tunes and the four
//!   analyses, every one of them an analysis of erosion-study.
//! - [`demo`]: all of it, into one report.

pub mod data;
pub mod demo;
pub mod grow;
pub mod probe;
pub mod recipe;
pub mod study;
