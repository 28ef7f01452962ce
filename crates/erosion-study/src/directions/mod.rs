//! Analysis 4: one direction governs alignment across domains (Giordani 2025).
//!
//! For each dataset d, the residual matrix R^(d) [n, dim] has one row per example:
//!   R_i = z_i^instruct - z_i^base,   z = the hidden state(s) at layer `layer` of
//!   - `last`: the last token of the sequence (the study's code), dim = d;
//!   - `window-mean`: the mean over the first T response tokens, dim = d;
//!   - `window-flatten`: those T tokens concatenated, dim = T * d.
//!
//! R is column-centred (A = R - 1 m^T) and its top-k right singular vectors are the principal
//! directions of what alignment changed in that domain (erosion_analysis::directions; the thin
//! SVD or, when 2n <= dim, the Gram route). Sign convention: each direction points along the
//! mean residual m (v . m > 0, "toward instruct"); the headline comparison uses |cos|, which
//! needs none.
//!
//! Between two datasets: the k x k matrix of |cos| (and of signed cosines), its largest entry
//! against random k-dimensional subspaces of R^dim, and each direction's stability under
//! bootstrap resampling of examples.
//!
//! `compute` runs the passes and statistics into [`DirectionsResults`] (writing the `.npy`
//! arrays they name); `section` draws the report from those results alone.

mod comparisons;
mod compute;
mod notes;
mod record;
mod residuals;
mod results;
mod section;
mod verdict;

pub use results::{
    ByName, DatasetResults, DirectionsOptions, DirectionsResults, MaxCell, PairResults,
    SkippedExamples, Stability, VerdictRule,
};

use crate::analysis::{Analysis, Finished};
use crate::context::StudyContext;
use crate::pass::Pass;
use anyhow::Result;

/// Confidence level of the stability intervals.
pub(crate) const LEVEL: f64 = 0.95;
const SEED_SALT: u64 = 0x4449_5245_4354_0004;
/// Residual matrices up to this many values are written to the output folder.
const MAX_WRITTEN_RESIDUALS: usize = 1 << 24;

/// Analysis 4 of the study (module docs): whether the principal directions of what alignment
/// changed (instruct - base residuals) in one domain coincide with those of another.
///
/// [`Analysis::run`] hands back [`DirectionsResults`]. A user reads, per dataset
/// (`results.datasets.get("toxic")`), the singular values and explained variance ratio of its
/// top-k directions and each direction's bootstrap stability (or why it failed); per pair of
/// datasets (`results.pairs`), the k x k |cos| and signed-cosine matrices, the largest |cos| and
/// its cell, the random-subspace baseline it is compared with (null 95th percentile, p-value,
/// top canonical cosine) and the pair's verdict; `results.verdict` is the first pair's. The
/// direction vectors themselves are in the `.npy` files each entry's `files` names.
pub struct DirectionsAnalysis;

impl Analysis for DirectionsAnalysis {
    const KEY: &'static str = "directions";
    const TITLE: &'static str = section::TITLE;
    type Results = DirectionsResults;

    fn run(ctx: &StudyContext) -> Result<Finished<DirectionsResults>> {
        let results = compute::compute(ctx)?;
        let section = section::section(ctx, &results)?;
        Ok(Finished { results, section })
    }

    fn passes(ctx: &StudyContext) -> Result<Vec<Pass>> {
        compute::passes(ctx)
    }
}

#[cfg(test)]
mod tests;
