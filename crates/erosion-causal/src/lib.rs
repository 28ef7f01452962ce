//! `erosion-causal`: are the directions the analyses find causal?
//!
//! - [`directions`]: the alignment direction `v_l = mean(instruct) - mean(base)` per layer,
//!   computed by streaming (f64 sums), and its random control of the same norms.
//! - [`experiment`]: one causal test on one model: add `scale * v_l` or ablate `v_l` at chosen
//!   layers, beside the same action along the random control, measured by refusal and
//!   compliance rates (`erosion-eval`, steered decoding), the log-prob margin
//!   `ln P(harmful) - ln P(refusal)` and the KL cost on benign text (`erosion_forward::kl`).
//! - [`drift`]: s_l and the margin of a fixed probe set across checkpoints or training steps;
//!   [`drift_series`]: a whole drift run over checkpoints, and the probe watching training.
//! - [`steer`]: a whole steering run (`erosion steer`): directions, test, files.
//! - [`em_conditions`]: Soligo et al.'s conditions (ablation at every layer, at chosen layers,
//!   of another fine-tune's direction, each beside a random control, and a coherence-gated
//!   steering sweep) measured by Betley et al.'s EM rate; [`em_paired`]: the paired change
//!   against the unsteered model; [`em_sweep`]: the coherence-gated sweep; [`em_html`]: its
//!   report section; [`em_steer`]: a whole `erosion steer --questions` run.
//! - [`data`]: messages files rendered into the paired sequences the tests measure.
//! - [`export`]: directions as safetensors, `.npy` and llama.cpp control vectors (GGUF).
//! - [`html`]: the report section, with its verdict rule; [`output`]: the files of a run.

pub mod data;
pub mod directions;
pub mod drift;
pub mod drift_series;
pub mod drift_shards;
pub mod em_conditions;
pub mod em_html;
pub mod em_paired;
pub mod em_steer;
pub mod em_sweep;
pub mod experiment;
pub mod export;
pub mod html;
pub mod output;
pub mod steer;

pub use directions::LayerDirections;
pub use experiment::{run_test, Action, CausalData, CausalOptions, CausalResult, CausalTest};
