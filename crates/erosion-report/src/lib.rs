//! Results files, figures and the report of an `erosion` study.
//!
//! This crate knows nothing of models: it takes plain data (vectors, matrices, labels,
//! strings) and writes
//! - `results.json` with the [`provenance::Provenance`] of every number ([`results`]),
//! - `.npy` arrays that numpy loads ([`npy`]),
//! - SVG figures ([`figures`]),
//! - a self-contained `report.html` ([`html`]).
//!
//! Every file is written atomically ([`erosion_model::atomic`]): a reader sees the old file
//! or the new one, never half of one.

pub mod figures;
pub mod format;
pub mod html;
/// `.npy` arrays (the format lives with the model crate, whose activation dumps write it too).
pub use erosion_model::npy;
pub mod provenance;
pub mod results;
