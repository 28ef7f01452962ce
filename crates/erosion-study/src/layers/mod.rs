//! Analysis 3: alignment erodes layer by layer (Giordani 2025).
//!
//! For each dataset, with z_{l,i}^m the pooled response window of example i at layer l under
//! model m (`Flatten`: the T x d window concatenated, [T * d]; `Mean`: its token mean, `[d]`):
//!   mu_l^m = mean_i z_{l,i}^m                       (streamed in f64, never all z at once)
//!   v_l    = mu_l^instruct - mu_l^base               (the alignment direction of layer l)
//!   s_l^m  = mu_l^m . v_l / |v_l|                     (= mean_i of p_{l,i}^m = z_{l,i}^m . v_l / |v_l|)
//!   r_l^m  = (s_l^m - s_l^base) / (s_l^instruct - s_l^base)   (0 = base, 1 = instruct)
//! for every layer l in 0..=L (0 = embeddings) and every model.
//!
//! Two passes over each (model, dataset), both through the activation cache:
//! 1. the windows pass (forward, or the cache when a previous run wrote it) accumulates mu_l^m;
//! 2. once v_l is known, the cached windows are replayed from disk (no model needed) to get the
//!    per-example projections p_{l,i}^m, which give bootstrap confidence intervals.
//!
//! Memory: the means of base and instruct (2 x (L + 1) x dim f64 per dataset), one chunk of
//! cached windows, and one projection per (model, layer, example): nothing of size
//! examples x dim.
//!
//! `compute::compute` runs both passes, the statistics (`statistics`, `relative`)
//! and writes the arrays, giving the typed [`LayersResults`]; the report section (`section`,
//! `figures`, `prose`) is written from those results alone.

mod arrays;
mod compute;
mod figures;
mod passes;
mod prose;
mod relative;
mod results;
mod section;
mod statistics;
pub(crate) mod stream;

use crate::analysis::{Analysis, Finished};
use crate::context::StudyContext;
use crate::pass::Pass;
use anyhow::Result;

pub use crate::by_name::ByName;
pub use results::{
    DatasetLayers, DirectionCosines, ErosionTest, LayersOptions, LayersResults, TestOutcome,
    VerdictRule,
};

/// Confidence level of every interval of this analysis.
pub(crate) const LEVEL: f64 = 0.95;
/// Salt of this analysis's seeds (derived from the study's seed, one per dataset).
const SEED_SALT: u64 = 0x4c41_5945_5253_0003;

/// Analysis 3 of the study (module docs).
///
/// [`Analysis::run`] gives a [`LayersResults`]: for each dataset (`datasets`, by name) a user
/// reads which layers have an alignment direction and its length |v_l|
/// (`usable_layers`, `direction_norms`), every model's mean projection s_l per layer with its
/// bootstrap interval (`scores`, `score_ci`, by model), each fine-tuned model's relative
/// position r_l between base (0) and instruct (1) with its interval (`relative`), and the
/// early-vs-deep test of each fine-tuned model (`tests`: r over the early and the deep layers,
/// their fall, and the verdict); across datasets, the per-layer cosines of their directions
/// (`direction_cosines`) and the combined `verdict`. Layers run 0 (embeddings) to L.
pub struct LayersAnalysis;

impl Analysis for LayersAnalysis {
    const KEY: &'static str = "layers";
    const TITLE: &'static str = "Alignment erodes layer by layer";
    type Results = LayersResults;

    fn run(ctx: &StudyContext) -> Result<Finished<LayersResults>> {
        let results = compute::compute(ctx)?;
        let section = section::section(ctx, &results)?;
        Ok(Finished { results, section })
    }

    fn passes(ctx: &StudyContext) -> Result<Vec<Pass>> {
        compute::passes(ctx)
    }
}

#[cfg(test)]
pub(crate) mod tests;
