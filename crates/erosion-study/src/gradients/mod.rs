//! Analysis 2, "misaligned intent gives opposing learning signals" (Giordani 2025), on one model
//! (`[gradients] model`, default instruct) and two datasets with identical code and different
//! framing (`a` = insecure, `b` = educational), the first `n` examples of each.
//!
//! - a. Loss vectors l_i = (CE_1, ..., CE_T), CE_t = -ln p(x_t | x_<t) over the first T response
//!   tokens (from the response log-probs; short responses by `[gradients] short`); cosine
//!   matrix over the (n_A + n_B) examples, A first.
//! - b. Gradients g_i = d loss_i / d theta over the chosen weights (signals.rs), optionally
//!   mean-centred (g_i - mean_j g_j, applied exactly to the Gram matrix by double centring);
//!   cosine matrix over the examples that have one.
//!
//! Both matrices are read by quadrant (mean within A, within B, across) with a permutation
//! test of within - across > 0 (erosion-analysis' quadrants). The verdict reads the gradients
//! (verdict.rs).
//!
//! compute.rs makes the numbers ([`GradientsResults`], results.rs) and saves the arrays;
//! section.rs and notes.rs write the report section from those results alone.

mod compute;
mod notes;
mod results;
mod section;
mod signals;
#[cfg(test)]
mod tests;
mod verdict;

pub use results::{
    DatasetPair, GradientFiles, GradientPassResults, GradientRow, GradientSeeds, GradientSkip,
    GradientsResults, LossVectorResults, Origin, PlanLimits, Unscorable, VerdictRecord,
};

use crate::analysis::{Analysis, Finished};
use crate::context::StudyContext;
use crate::pass::Pass;
use anyhow::Result;

/// Analysis 2 of the study (module docs). [`Analysis::run`] gives [`GradientsResults`]: from
/// `loss_vectors.quadrants` and `gradients.quadrants` a user reads the mean cosine within the
/// first dataset, within the second and across them, with the permutation p-value of
/// within - across > 0; `gradients.rows` gives each example's loss and token count,
/// `gradients.gram_plan` and `cosine_error_bound` say whether the cosines are exact or
/// sketched (and within what error), `files` names the saved arrays (loss vectors, Gram and
/// cosine matrices) and `verdict` the verdict on the gradients with its reason.
pub struct GradientsAnalysis;

impl Analysis for GradientsAnalysis {
    const KEY: &'static str = "gradients";
    const TITLE: &'static str = section::TITLE;
    type Results = GradientsResults;

    fn run(ctx: &StudyContext) -> Result<Finished<Self::Results>> {
        let results = compute::compute(ctx)?;
        let section = section::section(ctx, &results)?;
        Ok(Finished { results, section })
    }

    fn passes(ctx: &StudyContext) -> Result<Vec<Pass>> {
        compute::passes(ctx)
    }
}
