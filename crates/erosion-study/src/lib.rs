//! `erosion-study`: one study from one TOML file. Models and datasets in; every analysis run
//! through erosion-forward and erosion-analysis; results.json, `.npy` arrays, SVG figures and a
//! self-contained report.html out (erosion-report).
//!
//! From Rust, a study is a [`StudySpec`] opened into a [`context::StudyContext`]; each analysis
//! ([`analysis::Analysis`]) runs on it and hands back typed numbers. Analysis 3's s_l curves
//! (the mean projection of each model's response windows on the alignment direction v_l):
//!
//! ```no_run
//! use erosion_study::analysis::Analysis;
//! use erosion_study::context::StudyContext;
//! use erosion_study::layers::LayersAnalysis;
//! use erosion_study::StudySpec;
//! use std::path::Path;
//!
//! # fn main() -> anyhow::Result<()> {
//! let spec = StudySpec::from_file(Path::new("studies/organism.toml"))?;
//! let ctx = StudyContext::open(spec, Path::new("studies"), std::env::args().collect())?;
//! let layers = LayersAnalysis::run(&ctx)?.results;
//! for (dataset, numbers) in layers.datasets.iter() {
//!     for (model, s) in numbers.scores.iter() {
//!         // s[l]: None where layer l has no usable direction.
//!         println!("{dataset} {model}: s_l = {s:?}");
//!     }
//! }
//! println!("verdict: {:?}", layers.verdict);
//! # Ok(())
//! # }
//! ```
//!
//! `run::run_study` runs every analysis the spec names and writes results.json and the report.

pub mod analysis;
pub mod behaviour;
#[cfg(test)]
mod beyond_tests;
pub mod by_name;
pub mod causal;
pub mod context;
pub mod directions;
pub mod drift;
pub mod evaluation;
#[cfg(test)]
mod fixture;
pub mod gradients;
pub mod judges;
pub mod keys;
pub mod layers;
pub mod pass;
mod probe;
pub mod protection;
pub mod run;
pub mod section;
pub mod shard;
pub mod spec;

pub use spec::{Preset, StudySpec};
