//! Results files, figures and the report of an `erosion` study.
//!
//! This crate knows nothing of models: it takes plain data (vectors, matrices, labels,
//! strings) and writes
//! - `results.json` with the [`provenance::Provenance`] of every number ([`results`]),
//! - `.npy` arrays that numpy loads ([`npy`]),
//! - SVG figures ([`figures`]),
//! - a self-contained `report.html` ([`html`]).
//!
//! Every file is written atomically ([`atomic`]): a reader sees the old file or the new
//! one, never half of one.

pub mod atomic;
pub mod figures;
pub mod html;
pub mod npy;
pub mod provenance;
pub mod results;

pub use atomic::{write_atomic, write_bytes_atomic};
