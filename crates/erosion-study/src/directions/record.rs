//! Analysis 4's typed results from what was computed: the `.npy` arrays written under
//! `arrays/` (results.json names them) and the numbers and options for results.json.

use super::compute::{max_cell, DatasetDirections, PairComparison};
use super::results::{
    ByName, DatasetResults, DirectionsOptions, DirectionsResults, MaxCell, PairResults,
    SkippedExamples, Stability, VerdictRule,
};
use super::verdict::{ALPHA, LARGE_COS};
use super::LEVEL;
use crate::context::StudyContext;
use crate::layers::stream::file_stem;
use anyhow::Result;
use erosion_analysis::directions::{CosineMode, SignConvention};
use erosion_report::html::Verdict;

/// The results of the datasets `found` and their `pairs`, with the options of the run.
pub(crate) fn results(
    ctx: &StudyContext,
    layer: usize,
    dim: usize,
    found: &[DatasetDirections],
    pairs: &[PairComparison],
) -> Result<DirectionsResults> {
    let spec = &ctx.spec.directions;
    let mut datasets = ByName::default();
    for d in found {
        datasets.insert(d.name.clone(), dataset_results(ctx, d, spec.k, dim)?);
    }
    let pairs = pairs
        .iter()
        .map(|p| pair_results(ctx, found, p, spec.k))
        .collect::<Result<Vec<_>>>()?;
    let options = DirectionsOptions {
        datasets: found.iter().map(|d| d.name.clone()).collect(),
        layer: spec.layer,
        layer_index: layer,
        indexing: spec.indexing,
        token: spec.token,
        window: spec.window,
        k: spec.k,
        baseline_samples: spec.baseline_samples,
        bootstrap: spec.bootstrap,
        level: LEVEL,
        study_seed: ctx.spec.seed,
        sign_convention: SignConvention::MeanProjectionPositive,
        cosine_mode_of_the_verdict: CosineMode::Absolute,
    };
    Ok(DirectionsResults {
        options,
        dim,
        verdict_rule: verdict_rule(),
        datasets,
        verdict: pairs.first().map_or(Verdict::NotRun, |p| p.verdict),
        pairs,
    })
}

fn verdict_rule() -> VerdictRule {
    VerdictRule {
        statistic: "largest |cos| of the k x k matrix, first pair of datasets".into(),
        above_chance: format!("observed > null 95th percentile and p < {ALPHA}"),
        large_cos: LARGE_COS,
        reproduced: "above chance and large".into(),
        partly: "above chance, not large".into(),
        not_reproduced: "not above chance".into(),
    }
}

/// One dataset's numbers; writes its directions, spectrum, column mean, row indices, residuals
/// (when small enough) and stability as `directions_<dataset>_*.npy`.
fn dataset_results(
    ctx: &StudyContext,
    d: &DatasetDirections,
    k: usize,
    dim: usize,
) -> Result<DatasetResults> {
    let stem = format!("directions_{}", file_stem(&d.name));
    let dir = &d.directions;
    let save = |what: &str, shape: &[usize], data: &[f64]| {
        ctx.save_npy(&format!("{stem}_{what}"), shape, data)
    };
    let mut files = vec![
        save("vectors", &[k, dim], &dir.vectors.data)?,
        save("singular_values", &[k], &dir.singular_values)?,
        save("explained_variance", &[k], &dir.explained_variance)?,
        save(
            "explained_variance_ratio",
            &[k],
            &dir.explained_variance_ratio,
        )?,
        save("column_mean", &[dim], &dir.column_mean)?,
        ctx.save_npy(
            &format!("{stem}_rows"),
            &[d.rows.len()],
            &d.rows.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        )?,
    ];
    if let Some(r) = &d.residuals {
        let f32s: Vec<f32> = r.data.iter().map(|&x| x as f32).collect();
        files.push(ctx.save_npy(&format!("{stem}_residuals"), &[r.rows, r.cols], &f32s)?);
    }
    let stability = match &d.stability {
        Ok(st) => {
            // Per component: same-index mean, CI, then best-match mean, CI. // [k, 6]
            let flat: Vec<f64> = st
                .iter()
                .flat_map(|s| {
                    [
                        s.mean_abs_cos,
                        s.lower,
                        s.upper,
                        s.mean_best_abs_cos,
                        s.best_lower,
                        s.best_upper,
                    ]
                })
                .collect();
            files.push(save("stability", &[k, 6], &flat)?);
            Stability::Computed(st.clone())
        }
        Err(e) => Stability::Failed { error: e.clone() },
    };
    Ok(DatasetResults {
        examples: d.n_examples,
        rows: d.rows.len(),
        skipped_examples: SkippedExamples {
            base: d.skipped[0].clone(),
            instruct: d.skipped[1].clone(),
        },
        seed: d.seed,
        method: dir.method,
        sign_convention: dir.sign_convention,
        sign_fallback: dir.sign_fallback.clone(),
        singular_values: dir.singular_values.clone(),
        explained_variance: dir.explained_variance.clone(),
        explained_variance_ratio: dir.explained_variance_ratio.clone(),
        total_variance: dir.total_variance,
        stability,
        files,
    })
}

/// One pair's numbers; writes its cosines and entry p-values as
/// `directions_<a>_vs_<b>_*.npy`.
fn pair_results(
    ctx: &StudyContext,
    found: &[DatasetDirections],
    p: &PairComparison,
    k: usize,
) -> Result<PairResults> {
    let (a, b) = (&found[p.a].name, &found[p.b].name);
    let stem = format!("directions_{}_vs_{}", file_stem(a), file_stem(b));
    let save = |what: &str, data: &[f64]| ctx.save_npy(&format!("{stem}_{what}"), &[k, k], data);
    let files = vec![
        save("cosines_abs", &p.abs.data)?,
        save("cosines_signed", &p.signed.data)?,
        save("entry_p_values", &p.baseline.entry_p_values.data)?,
    ];
    let (value, row, col) = max_cell(&p.abs);
    Ok(PairResults {
        a: a.clone(),
        b: b.clone(),
        cosines_abs: p.abs.to_rows(),
        cosines_signed: p.signed.to_rows(),
        max_abs_cos: MaxCell { value, row, col },
        study_cell_1_0: (k >= 2).then(|| p.abs.get(1, 0)),
        baseline: p.baseline.clone(),
        verdict: p.verdict,
        files,
    })
}
