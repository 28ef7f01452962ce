//! Analysis 3's statistics on one dataset, from the per-example projections: bootstrap CIs
//! of s_l, paired CIs of r_l, and each fine-tuned model's early-vs-deep test.

use super::passes::Pass1;
use super::relative::{thirds, Paired};
use super::results::ErosionTest;
use super::LEVEL;
use anyhow::{bail, Context, Result};
use erosion_analysis::stats::ConfidenceInterval;
use erosion_report::html::Verdict;

/// What analysis 3 measured on one dataset, before it becomes [`DatasetLayers`].
pub(super) struct DatasetStats {
    pub name: String,
    pub n_examples: usize,
    pub seed: u64,
    /// Per model (study order): examples recorded and examples the short-response policy left out.
    pub recorded: Vec<usize>,
    pub skipped: Vec<Vec<usize>>,
    /// Per layer: |v_l| (0 where unusable) and whether v_l is usable.
    pub norms: Vec<f64>,
    pub usable: Vec<bool>,
    /// `[model][layer]` s_l^m (NaN where unusable) and its CI.
    pub scores: Vec<Vec<f64>>,
    pub score_ci: Vec<Vec<Option<ConfidenceInterval>>>,
    /// Per fine-tuned model: `[layer]` CI of r_l (None where unusable or undefined).
    pub relative: Vec<Vec<Option<ConfidenceInterval>>>,
    /// Per fine-tuned model: the early-vs-deep test, or why there is none.
    pub tests: Vec<std::result::Result<ErosionTest, String>>,
    pub verdict: Verdict,
    /// Unit directions per layer (None where unusable), for cross-dataset cosines.
    pub units: Vec<Option<Vec<f64>>>,
}

/// Confidence intervals and the early-vs-deep tests of one dataset.
pub(super) fn statistics(
    name: &str,
    st: Pass1,
    models: &[String],
    proj: &[Vec<Vec<f64>>],
    n_resamples: usize,
    seed: u64,
) -> Result<DatasetStats> {
    let score_ci = score_intervals(name, &st, models, proj, n_resamples, seed)?;
    let n_rows = st.usable.len();
    let block_layers: Vec<usize> = (1..n_rows).filter(|&l| st.usable[l]).collect();
    let mut relative_cis = Vec::new();
    let mut tests = Vec::new();
    for (k, m) in models.iter().enumerate().skip(2) {
        let (rel, test) = relative_of(
            [&proj[0], &proj[1], &proj[k]],
            &st.usable,
            &block_layers,
            m,
            k == 2,
            n_resamples,
            seed,
        );
        relative_cis.push(rel);
        tests.push(test);
    }
    let verdict = match tests.first() {
        Some(Ok(t)) => t.verdict,
        _ => Verdict::NotRun,
    };
    Ok(DatasetStats {
        name: name.to_string(),
        n_examples: st.n_examples,
        seed,
        recorded: st.recorded,
        skipped: st.skipped,
        norms: st
            .norms
            .iter()
            .zip(&st.usable)
            .map(|(&n, &u)| if u { n } else { 0.0 })
            .collect(),
        usable: st.usable,
        scores: st.scores,
        score_ci,
        relative: relative_cis,
        tests,
        verdict,
        units: st.units,
    })
}

/// `[model][layer]` bootstrap CI of s_l from the replayed projections (None where unusable),
/// each checked against the streamed s_l.
fn score_intervals(
    name: &str,
    st: &Pass1,
    models: &[String],
    proj: &[Vec<Vec<f64>>],
    n_resamples: usize,
    seed: u64,
) -> Result<Vec<Vec<Option<ConfidenceInterval>>>> {
    let mut score_ci = Vec::with_capacity(models.len());
    for (mi, m) in models.iter().enumerate() {
        let mut row = Vec::with_capacity(st.usable.len());
        for (l, p) in proj[mi].iter().enumerate() {
            if !st.usable[l] {
                row.push(None);
                continue;
            }
            let xs: Vec<f64> = p.iter().copied().filter(|x| x.is_finite()).collect();
            let ci = erosion_analysis::layers::score_ci(&xs, n_resamples, LEVEL, seed)
                .with_context(|| format!("CI of s_{l} for model `{m}` on `{name}`"))?;
            // The mean of the replayed projections must be the streamed s_l (same windows).
            let s = st.scores[mi][l];
            if (ci.estimate - s).abs() > 1e-6 * s.abs().max(st.norms[l]) {
                bail!("model `{m}` layer {l} on `{name}`: replayed projections average {} but the streamed means give {s}", ci.estimate);
            }
            row.push(Some(ci));
        }
        score_ci.push(row);
    }
    Ok(score_ci)
}

/// Per-layer CIs of r_l and the early-vs-deep test of one fine-tuned model, from the
/// projections of base, instruct and the model.
fn relative_of(
    [base, instruct, model]: [&[Vec<f64>]; 3],
    usable: &[bool],
    block_layers: &[usize],
    name: &str,
    under_test: bool,
    n_resamples: usize,
    seed: u64,
) -> (
    Vec<Option<ConfidenceInterval>>,
    std::result::Result<ErosionTest, String>,
) {
    let all: Vec<usize> = (0..usable.len()).filter(|&l| usable[l]).collect();
    let paired = match Paired::new(base, instruct, model, &all) {
        Ok(p) => p,
        Err(e) => return (vec![None; usable.len()], Err(format!("{e:#}"))),
    };
    let rel = (0..usable.len())
        .map(|l| {
            if usable[l] {
                paired.ci(&[l], n_resamples, LEVEL, seed).ok()
            } else {
                None
            }
        })
        .collect();
    let test = match thirds(block_layers) {
        None => Err(format!(
            "{} usable block layer(s): early and deep layers need at least two",
            block_layers.len()
        )),
        Some((early, deep)) => ErosionTest::run(
            name,
            under_test,
            &paired,
            early,
            deep,
            n_resamples,
            LEVEL,
            seed,
        )
        .map_err(|e| format!("{e:#}")),
    };
    (rel, test)
}
