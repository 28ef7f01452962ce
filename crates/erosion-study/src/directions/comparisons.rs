//! Analysis 4's report of each pair of datasets: |cos| and signed-cosine heatmaps, the
//! random-subspace tests, the comparison table and the sentences of the result.

use super::results::{DirectionsResults, PairResults, Stability};
use crate::context::StudyContext;
use crate::layers::stream::file_stem;
use anyhow::Result;
use erosion_analysis::directions::DirectionStability;
use erosion_report::figures::{annotated_matrix_svg, AnnotatedMatrix, ColorScale};
use erosion_report::format::{fmt_ci_sig4, fmt_sig4};
use erosion_report::html::{Figure, StatTest, Table, Verdict};

/// The |cos| heatmap, then the signed one, of pair `p`; writes them under `figures/`.
pub(crate) fn heatmaps(
    ctx: &StudyContext,
    r: &DirectionsResults,
    p: &PairResults,
) -> Result<Vec<Figure>> {
    let (k, dim) = (r.options.k, r.dim);
    let labels: Vec<String> = (0..k).map(|c| c.to_string()).collect();
    let mut figures = Vec::with_capacity(2);
    for (signed, values) in [(false, &p.cosines_abs), (true, &p.cosines_signed)] {
        let fig = AnnotatedMatrix {
            title: format!(
                "{} directions: {} vs {}",
                if signed {
                    "Signed cosines of the"
                } else {
                    "|cos| between the"
                },
                p.a,
                p.b
            ),
            row_labels: labels.clone(),
            col_labels: labels.clone(),
            row_title: format!("{}: component", p.a),
            col_title: format!("{}: component", p.b),
            values: values.clone(),
            scale: if signed {
                ColorScale::Diverging { limit: Some(1.0) }
            } else {
                ColorScale::Sequential {
                    min: Some(0.0),
                    max: Some(1.0),
                }
            },
            decimals: 2,
            colorbar_label: if signed { "cos" } else { "|cos|" }.into(),
            note: Some(if signed {
                "signs fixed so that each direction points along its mean residual (toward instruct)".into()
            } else {
                format!("chance: 95th percentile of the largest |cos| between random {k}-dim subspaces of R^{dim} = {}", fmt_sig4(p.baseline.max_abs_cos.null_p95))
            }),
        };
        let kind = if signed { "signed" } else { "abs" };
        figures.push(ctx.save_figure(
            &format!(
                "directions_{}_vs_{}_{kind}",
                file_stem(&p.a),
                file_stem(&p.b)
            ),
            &format!(
                "{} between the top-{k} directions of `{}` (rows) and `{}` (columns).",
                if signed { "Signed cosine" } else { "|cos|" },
                p.a,
                p.b
            ),
            annotated_matrix_svg(&fig)?,
        )?);
    }
    Ok(figures)
}

/// One row per pair: the brightest cell, the study's cell, chance, p and the verdict.
pub(crate) fn pair_table(r: &DirectionsResults) -> Table {
    let rows = r
        .pairs
        .iter()
        .map(|p| {
            let (base, m) = (&p.baseline, &p.max_abs_cos);
            vec![
                p.a.clone(),
                p.b.clone(),
                format!("{} ({}, {})", fmt_sig4(m.value), m.row, m.col),
                p.study_cell_1_0.map_or("n/a".into(), fmt_sig4),
                fmt_sig4(base.max_abs_cos.null_p95),
                fmt_sig4(base.max_abs_cos.p_value),
                format!(
                    "{} (p = {})",
                    fmt_sig4(base.top_canonical_cos.observed),
                    fmt_sig4(base.top_canonical_cos.p_value)
                ),
                p.verdict.label().into(),
            ]
        })
        .collect();
    Table {
        caption: "Cross-dataset comparison of the top directions".into(),
        headers: [
            "A",
            "B",
            "max |cos| (cell)",
            "|cos| cell (1, 0)",
            "chance 95th pct",
            "p",
            "top canonical cos",
            "verdict",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// The random-subspace tests of pair `p`: the largest |cos|, then the top canonical cosine.
pub(crate) fn tests(r: &DirectionsResults, p: &PairResults) -> [StatTest; 2] {
    let (k, dim, base) = (r.options.k, r.dim, &p.baseline);
    let detail = format!(
        "null: a uniformly random {k}-dimensional subspace of R^{dim} against the first dataset's directions ({} draws, seed {}); \
         null mean {}, 95th percentile {}; one-sided Monte Carlo p with the +1 correction",
        base.n_samples,
        base.seed,
        fmt_sig4(base.max_abs_cos.null_mean),
        fmt_sig4(base.max_abs_cos.null_p95)
    );
    [
        StatTest {
            name: format!(
                "random-subspace baseline: largest |cos|, `{}` vs `{}`",
                p.a, p.b
            ),
            statistic_name: "max |cos|".into(),
            statistic: p.max_abs_cos.value,
            p_value: Some(base.max_abs_cos.p_value),
            ci: None,
            detail,
        },
        StatTest {
            name: format!("random-subspace baseline: top canonical cosine, `{}` vs `{}`", p.a, p.b),
            statistic_name: "largest singular value of the cosine matrix".into(),
            statistic: base.top_canonical_cos.observed,
            p_value: Some(base.top_canonical_cos.p_value),
            ci: None,
            detail: format!(
                "basis-free: the cosine of the smallest principal angle between the two {k}-dim subspaces; null 95th percentile {}",
                fmt_sig4(base.top_canonical_cos.null_p95)
            ),
        },
    ]
}

/// What pair `p` shows (`primary`: the pair the verdict reads), then how reproducible the two
/// directions of its brightest cell are.
pub(crate) fn sentences(r: &DirectionsResults, p: &PairResults, primary: bool) -> [String; 2] {
    let (k, dim, base) = (r.options.k, r.dim, &p.baseline);
    let (mx, i, j) = (p.max_abs_cos.value, p.max_abs_cos.row, p.max_abs_cos.col);
    let primary = if primary {
        " (the comparison the verdict reads)"
    } else {
        ""
    };
    let shows = format!(
        "`{}` vs `{}`{primary}: the largest |cos| between their top-{k} directions is {} (component {i} of `{}`, {j} of `{}`); random {k}-dimensional subspaces of R^{dim} \
         reach {} at their 95th percentile (p = {}){}. {}",
        p.a,
        p.b,
        fmt_sig4(mx),
        p.a,
        p.b,
        fmt_sig4(base.max_abs_cos.null_p95),
        fmt_sig4(base.max_abs_cos.p_value),
        p.study_cell_1_0.map_or(String::new(), |c| format!("; cell (1, 0), the study's pair when the first dataset is insecure code and the second toxic, is {}", fmt_sig4(c))),
        match p.verdict {
            Verdict::Reproduced => "Above chance and large.",
            Verdict::Partly => "Above chance, but small.",
            _ => "Not above chance.",
        }
    );
    let stable = |name: &str, c: usize| match r.datasets.get(name).map(|d| &d.stability) {
        Some(Stability::Computed(st)) => best_match(st, c),
        _ => "n/a".into(),
    };
    let stability = format!(
        "Under bootstrap resampling of examples, component {i} of `{}` is recovered with |cos| {} and component {j} of `{}` with {} (best match, mean [CI]).",
        p.a,
        stable(&p.a, i),
        p.b,
        stable(&p.b, j)
    );
    [shows, stability]
}

/// "mean [lower, upper]" of component `c`'s best-match stability.
fn best_match(st: &[DirectionStability], c: usize) -> String {
    fmt_ci_sig4(&(st[c].mean_best_abs_cos, st[c].best_lower, st[c].best_upper))
}
