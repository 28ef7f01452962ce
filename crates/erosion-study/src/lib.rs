//! `erosion-study`: one study from one TOML file. Models and datasets in; every analysis run
//! through erosion-forward and erosion-analysis; results.json, `.npy` arrays, SVG figures and a
//! self-contained report.html out (erosion-report).

pub mod analysis;
pub mod behaviour;
pub mod context;
pub mod directions;
#[cfg(test)]
mod fixture;
pub mod gradients;
pub mod keys;
pub mod layers;
pub mod run;
pub mod section;
pub mod spec;

pub use spec::{Preset, StudySpec};
