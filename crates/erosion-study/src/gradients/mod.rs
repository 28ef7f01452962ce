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
//! test of within - across > 0 (erosion-analysis' quadrants). The verdict reads the gradients.

mod report;
mod signals;
#[cfg(test)]
mod tests;

use crate::behaviour::shared::dataset_logprobs;
use crate::context::StudyContext;
use crate::keys::sequences_fingerprint;
use crate::section::SectionOutput;
use anyhow::{bail, Context, Result};
use erosion_analysis::cosine::{cosine_from_gram, cosine_matrix, double_centre};
use erosion_analysis::loss_vectors::{two_group_loss_vectors, TwoGroupLossVectors};
use erosion_analysis::matrix::Matrix;
use erosion_analysis::quadrants::{quadrant_summary, QuadrantSummary};
use erosion_analysis::sketch::GramPlan;
use erosion_data::Sequence;
use erosion_model::seed;
use erosion_report::html::Verdict;
use serde_json::json;
use signals::{gradient_gram, loss_spec, GradientGram};

/// Significance level of the permutation tests in the verdict.
pub(crate) const ALPHA: f64 = 0.05;
const SALT_LOSS_PERM: u64 = 0x2A_0001;
const SALT_GRAD_PERM: u64 = 0x2B_0001;
const SALT_SKETCH: u64 = 0x2B_0002;

/// Everything analysis 2 computed, handed to report.rs.
pub(crate) struct Computed {
    /// Dataset indices of the examples used, per group (scorable, among the first n).
    pub used: [Vec<usize>; 2],
    /// Unscorable examples among the first n, per group: (index, why).
    pub unscorable: [Vec<(usize, String)>; 2],
    pub loss: TwoGroupLossVectors,
    pub loss_cosine: Matrix,
    pub loss_quadrants: QuadrantSummary,
    pub grad: GradientGram,
    /// Gradient rows per group (rows of A come first).
    pub grad_n: [usize; 2],
    pub grad_cosine: Matrix,
    pub grad_quadrants: QuadrantSummary,
    /// Cosine error bound of the sketch (0 for the exact Gram).
    pub margin: f64,
    pub seeds: serde_json::Value,
}

/// Analysis 2 of the study, as the study runs it (module docs).
pub struct GradientsAnalysis;

impl crate::analysis::Analysis for GradientsAnalysis {
    const KEY: &'static str = "gradients";
    const TITLE: &'static str = "2. Misaligned intent gives opposing learning signals";
    type Results = serde_json::Value;

    fn run(ctx: &StudyContext) -> Result<crate::analysis::Finished<Self::Results>> {
        let out = run(ctx)?;
        Ok(crate::analysis::Finished {
            results: out.results,
            section: out.section,
        })
    }
}

fn run(ctx: &StudyContext) -> Result<SectionOutput> {
    let c = compute(ctx)?;
    report::build(ctx, &c)
}

fn compute(ctx: &StudyContext) -> Result<Computed> {
    let g = &ctx.spec.gradients;
    let seed = ctx.spec.seed;
    let (seed_loss, seed_grad, seed_sketch) = (
        seed::mix(seed, SALT_LOSS_PERM),
        seed::mix(seed, SALT_GRAD_PERM),
        seed::mix(seed, SALT_SKETCH),
    );
    let model = ctx.transformer(&g.model)?;
    let mut used: [Vec<usize>; 2] = Default::default();
    let mut unscorable: [Vec<(usize, String)>; 2] = Default::default();
    let mut logprobs: [Vec<Vec<f64>>; 2] = Default::default();
    let mut seqs: Vec<Sequence> = Vec::new();
    for (k, d) in [&g.a, &g.b].into_iter().enumerate() {
        let all = ctx.sequences(&g.model, d)?;
        let n = g.n.unwrap_or(all.len()).min(all.len());
        let lp = dataset_logprobs(ctx, &g.model, &model, d, Some(n))?;
        unscorable[k] = lp.skipped;
        for (i, r) in lp.examples.into_iter().enumerate() {
            if let Some(r) = r {
                used[k].push(i);
                logprobs[k].push(r.logprobs.iter().map(|&v| v as f64).collect());
                seqs.push(all[i].clone());
            }
        }
        if used[k].len() < 2 {
            bail!("[gradients] dataset `{d}`: {} scorable examples among the first {n}; the quadrant reading needs at least 2 per dataset", used[k].len());
        }
    }

    // a. Loss vectors.
    let loss = two_group_loss_vectors(&logprobs[0], &logprobs[1], g.window, g.short)
        .context("[gradients] loss vectors")?;
    check_groups("loss vectors", loss.n_a, loss.n_b)?;
    let loss_cosine =
        cosine_matrix(&loss.loss.vectors, false).context("the loss vectors' cosine matrix")?;
    let loss_quadrants = quadrant_summary(&loss_cosine, loss.n_a, g.permutations, seed_loss)?;

    // b. Gradients, over the same examples (the short-response policy applies alike).
    let spec_loss = loss_spec(g, loss.loss.window);
    let key = json!({
        "pass": "gradients",
        "version": 1,
        "model": ctx.model_identity(&g.model)?,
        "datasets": [ctx.dataset_identity(&g.a)?, ctx.dataset_identity(&g.b)?],
        "examples": used,
        "sequences": sequences_fingerprint(&seqs),
        "params": g.params,
        "loss": spec_loss,
    });
    let grad = gradient_gram(
        ctx,
        &model,
        &seqs,
        g,
        spec_loss,
        key,
        g.memory_budget_mb << 20,
        seed_sketch,
    )?;
    let n_a_used = used[0].len();
    let grad_a = grad
        .run
        .rows
        .iter()
        .filter(|r| r.example < n_a_used)
        .count();
    let grad_n = [grad_a, grad.run.rows.len() - grad_a];
    check_groups("gradients", grad_n[0], grad_n[1])?;
    let gram = if g.centre {
        double_centre(&grad.gram)?
    } else {
        grad.gram.clone()
    };
    let grad_cosine = cosine_from_gram(&gram).context("the gradients' cosine matrix")?;
    let grad_quadrants = quadrant_summary(&grad_cosine, grad_n[0], g.permutations, seed_grad)?;
    let margin = match &grad.plan {
        GramPlan::Exact { .. } => 0.0,
        GramPlan::Sketch { bound } => bound.cosine_error,
    };
    Ok(Computed {
        used,
        unscorable,
        loss,
        loss_cosine,
        loss_quadrants,
        grad,
        grad_n,
        grad_cosine,
        grad_quadrants,
        margin,
        seeds: json!({"study": seed, "loss_vector_permutations": seed_loss, "gradient_permutations": seed_grad, "sketch": seed_sketch}),
    })
}

fn check_groups(what: &str, n_a: usize, n_b: usize) -> Result<()> {
    if n_a < 2 || n_b < 2 {
        bail!("[gradients] {what}: {n_a} and {n_b} examples kept per dataset; the quadrant reading needs at least 2 in each (check `short` and `n`)");
    }
    Ok(())
}

/// The verdict rule of analysis 2, on the gradient cosines (the study: across-dataset cosines
/// are negative, the two framings push the weights in opposite directions):
/// - **Reproduced**: within - across > 0 with permutation p < [`ALPHA`], and the mean across
///   cosine below 0 by more than `margin` (the sketch's guaranteed cosine error; 0 when exact);
/// - **Partly**: within - across > 0 with p < ALPHA, but the across mean is not below -margin;
/// - **NotReproduced**: otherwise.
pub(crate) fn gradient_verdict(q: &QuadrantSummary, margin: f64) -> (Verdict, String) {
    let significant = q.within_minus_across > 0.0 && q.p_value < ALPHA;
    let sums = format!(
        "mean cosine within A {:.4}, within B {:.4}, across {:.4}; within \u{2212} across {:.4}, permutation p = {:.4}",
        q.mean_within_a, q.mean_within_b, q.mean_across, q.within_minus_across, q.p_value
    );
    let bound = if margin > 0.0 {
        format!(" (sketch error bound {margin:.3})")
    } else {
        String::new()
    };
    if significant && q.mean_across + margin < 0.0 {
        (
            Verdict::Reproduced,
            format!("{sums}: across < within (p < {ALPHA}) and the across mean is negative{bound}"),
        )
    } else if significant {
        (
            Verdict::Partly,
            format!(
                "{sums}: across < within (p < {ALPHA}) but the across mean is not negative{bound}"
            ),
        )
    } else {
        (
            Verdict::NotReproduced,
            format!("{sums}: across is not significantly below within at {ALPHA}"),
        )
    }
}

#[cfg(test)]
mod verdict_tests {
    use super::*;
    use erosion_analysis::stats::Alternative;

    fn q(within: f64, across: f64, p: f64) -> QuadrantSummary {
        QuadrantSummary {
            n_a: 3,
            n_b: 3,
            mean_within_a: within,
            mean_within_b: within,
            mean_across: across,
            within_minus_across: within - across,
            p_value: p,
            alternative: Alternative::Greater,
            n_permutations: 99,
            seed: 0,
            null_mean: 0.0,
            null_sd: 0.1,
            null_p95: 0.2,
        }
    }

    #[test]
    fn verdict_rule() {
        assert_eq!(
            gradient_verdict(&q(0.3, -0.2, 0.01), 0.0).0,
            Verdict::Reproduced
        );
        // Across below within but positive: partly.
        assert_eq!(gradient_verdict(&q(0.5, 0.1, 0.01), 0.0).0, Verdict::Partly);
        // Negative, but not beyond the sketch's error bound: partly.
        assert_eq!(
            gradient_verdict(&q(0.3, -0.05, 0.01), 0.1).0,
            Verdict::Partly
        );
        assert_eq!(
            gradient_verdict(&q(0.3, -0.15, 0.01), 0.1).0,
            Verdict::Reproduced
        );
        // Not significant: not reproduced, whatever the sign.
        assert_eq!(
            gradient_verdict(&q(0.3, -0.2, 0.2), 0.0).0,
            Verdict::NotReproduced
        );
        // Across above within: not reproduced.
        assert_eq!(
            gradient_verdict(&q(-0.1, 0.2, 0.01), 0.0).0,
            Verdict::NotReproduced
        );
        let (_, why) = gradient_verdict(&q(0.3, -0.2, 0.01), 0.0);
        assert!(why.contains("-0.2000") && why.contains("0.5000"), "{why}");
    }

    #[test]
    fn planted_opposing_signals_are_read_as_reproduced() {
        // Group A's vectors point along +e1, group B's along -e1, each with a small distinct
        // second component: within cosines ~ +1, across ~ -1.
        let rows: Vec<Vec<f64>> = (0..12)
            .map(|i| {
                let s = if i < 6 { 1.0 } else { -1.0 };
                vec![s, 0.02 * i as f64, 0.05]
            })
            .collect();
        let m = cosine_matrix(&Matrix::from_rows(&rows).unwrap(), false).unwrap();
        let summary = quadrant_summary(&m, 6, 199, 5).unwrap();
        assert!(summary.mean_across < -0.9 && summary.mean_within_a > 0.9);
        assert_eq!(gradient_verdict(&summary, 0.0).0, Verdict::Reproduced);
        assert!(check_groups("x", 1, 4).is_err() && check_groups("x", 2, 2).is_ok());
    }
}
