//! Analysis 4's outputs: `.npy` arrays, heatmaps, tables, tests, notes, verdict and results.

use super::verdict::{ALPHA, LARGE_COS};
use super::{DatasetDirections, PairComparison, LEVEL};
use crate::context::StudyContext;
use crate::layers::stream::file_stem;
use crate::section::SectionOutput;
use crate::spec::{LayerIndexing, TokenChoice};
use anyhow::Result;
use erosion_analysis::matrix::Matrix;
use erosion_report::figures::{
    annotated_matrix_svg, line_chart_svg, AnnotatedMatrix, ColorScale, LineChart, LineSeries,
};
use erosion_report::format::{fmt_ci_sig4, fmt_sig4};
use erosion_report::html::{Section, StatTest, Table, Verdict};
use serde_json::json;

const TITLE: &str = "4. One direction governs alignment across domains";
const FINDING: &str = "The principal directions of what alignment changed (instruct - base residuals, one row per \
example, column-centred, top right singular vectors) are shared across domains: a direction of the insecure-code \
residuals nearly coincides with one of the toxic residuals.";
const REPORTED: &str = "Giordani 2025: residuals h_L(instruct) - h_L(base) at the last token of the final layer, \
column-centred, SVD per dataset (insecure code; toxic), k x k cosine heatmap of the top right singular vectors: \
0.90 between insecure component 1 and toxic component 0 (Qwen2.5-Coder-32B, d = 5120). The study gives no chance \
baseline for this cosine.";

/// (max |cos|, row, col) of a cosine matrix.
pub(crate) fn max_cell(m: &Matrix) -> (f64, usize, usize) {
    let mut best = (f64::NEG_INFINITY, 0, 0);
    for i in 0..m.rows {
        for j in 0..m.cols {
            if m.get(i, j).abs() > best.0 {
                best = (m.get(i, j).abs(), i, j);
            }
        }
    }
    best
}

fn rows_of(m: &Matrix) -> Vec<Vec<f64>> {
    m.to_rows()
}

pub(super) fn section(
    ctx: &StudyContext,
    layer: usize,
    dim: usize,
    found: &[DatasetDirections],
    pairs: &[PairComparison],
) -> Result<SectionOutput> {
    let spec = &ctx.spec.directions;
    let k = spec.k;
    let verdict = pairs.first().map_or(Verdict::NotRun, |p| p.verdict);
    let mut section = Section::new(TITLE, FINDING, "", REPORTED, verdict);
    let labels: Vec<String> = (0..k).map(|c| c.to_string()).collect();
    let mut datasets_json = serde_json::Map::new();
    let mut sentences = Vec::new();

    // Per dataset: the directions and their stability.
    let mut ev_series = Vec::new();
    for d in found {
        let stem = format!("directions_{}", file_stem(&d.name));
        let dir = &d.directions;
        let mut files = vec![
            ctx.save_npy(&format!("{stem}_vectors"), &[k, dim], &dir.vectors.data)?,
            ctx.save_npy(
                &format!("{stem}_singular_values"),
                &[k],
                &dir.singular_values,
            )?,
            ctx.save_npy(
                &format!("{stem}_explained_variance"),
                &[k],
                &dir.explained_variance,
            )?,
            ctx.save_npy(
                &format!("{stem}_explained_variance_ratio"),
                &[k],
                &dir.explained_variance_ratio,
            )?,
            ctx.save_npy(&format!("{stem}_column_mean"), &[dim], &dir.column_mean)?,
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
        let mut rows = Vec::new();
        match &d.stability {
            Ok(st) => {
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
                files.push(ctx.save_npy(&format!("{stem}_stability"), &[k, 6], &flat)?);
                for (c, s) in st.iter().enumerate() {
                    rows.push(vec![
                        c.to_string(),
                        fmt_sig4(dir.singular_values[c]),
                        fmt_sig4(dir.explained_variance_ratio[c]),
                        fmt_ci_sig4(&(s.mean_abs_cos, s.lower, s.upper)),
                        fmt_ci_sig4(&(s.mean_best_abs_cos, s.best_lower, s.best_upper)),
                        if dir.sign_fallback[c] {
                            "largest component"
                        } else {
                            "mean residual"
                        }
                        .into(),
                    ]);
                }
            }
            Err(e) => {
                section.notes.push(format!(
                    "`{}`: bootstrap stability could not be computed: {e}.",
                    d.name
                ));
                for c in 0..k {
                    rows.push(vec![
                        c.to_string(),
                        fmt_sig4(dir.singular_values[c]),
                        fmt_sig4(dir.explained_variance_ratio[c]),
                        "n/a".into(),
                        "n/a".into(),
                        if dir.sign_fallback[c] {
                            "largest component"
                        } else {
                            "mean residual"
                        }
                        .into(),
                    ]);
                }
            }
        }
        section.tables.push(Table {
            caption: format!(
                "Directions of `{}` ({} x {dim} residual matrix; stability: |cos| with the direction re-estimated on {} bootstrap resamples, {:.0}% CI)",
                d.name,
                d.rows.len(),
                spec.bootstrap,
                LEVEL * 100.0
            ),
            headers: ["component", "singular value", "explained variance ratio", "stability, same index", "stability, best match", "sign fixed by"]
                .map(String::from)
                .to_vec(),
            rows,
        });
        ev_series.push(LineSeries::new(
            &d.name,
            (0..k).map(|c| c as f64).collect(),
            dir.explained_variance_ratio.clone(),
        ));
        let skipped = [("base", &d.skipped[0]), ("instruct", &d.skipped[1])];
        datasets_json.insert(
            d.name.clone(),
            json!({
                "examples": d.n_examples,
                "rows": d.rows.len(),
                "skipped_examples": { "base": skipped[0].1, "instruct": skipped[1].1 },
                "seed": d.seed,
                "method": dir.method,
                "sign_convention": dir.sign_convention,
                "sign_fallback": dir.sign_fallback,
                "singular_values": dir.singular_values,
                "explained_variance": dir.explained_variance,
                "explained_variance_ratio": dir.explained_variance_ratio,
                "total_variance": dir.total_variance,
                "stability": match &d.stability { Ok(s) => json!(s), Err(e) => json!({ "error": e }) },
                "files": files,
            }),
        );
        section.files.extend(files);
    }
    let chart = LineChart {
        title: "Explained variance of the top directions".into(),
        x_label: "component".into(),
        y_label: "share of the centred residuals' variance".into(),
        series: ev_series,
        band_label: None,
    };
    section.figures.push(ctx.save_figure(
        "directions_explained_variance",
        "Share of each dataset's centred residual variance along each of its top directions.",
        line_chart_svg(&chart)?,
    )?);

    // Per pair: heatmaps, the baseline, the verdict.
    let mut pairs_json = Vec::new();
    let mut pair_rows = Vec::new();
    for (pi, p) in pairs.iter().enumerate() {
        let (a, b) = (&found[p.a], &found[p.b]);
        let stem = format!(
            "directions_{}_vs_{}",
            file_stem(&a.name),
            file_stem(&b.name)
        );
        let base = &p.baseline;
        let files = vec![
            ctx.save_npy(&format!("{stem}_cosines_abs"), &[k, k], &p.abs.data)?,
            ctx.save_npy(&format!("{stem}_cosines_signed"), &[k, k], &p.signed.data)?,
            ctx.save_npy(
                &format!("{stem}_entry_p_values"),
                &[k, k],
                &base.entry_p_values.data,
            )?,
        ];
        for (signed, m) in [(false, &p.abs), (true, &p.signed)] {
            let fig = AnnotatedMatrix {
                title: format!(
                    "{} directions: {} vs {}",
                    if signed {
                        "Signed cosines of the"
                    } else {
                        "|cos| between the"
                    },
                    a.name,
                    b.name
                ),
                row_labels: labels.clone(),
                col_labels: labels.clone(),
                row_title: format!("{}: component", a.name),
                col_title: format!("{}: component", b.name),
                values: rows_of(m),
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
                    format!("chance: 95th percentile of the largest |cos| between random {k}-dim subspaces of R^{dim} = {}", fmt_sig4(base.max_abs_cos.null_p95))
                }),
            };
            let kind = if signed { "signed" } else { "abs" };
            section.figures.push(ctx.save_figure(
                &format!(
                    "directions_{}_vs_{}_{kind}",
                    file_stem(&a.name),
                    file_stem(&b.name)
                ),
                &format!(
                    "{} between the top-{k} directions of `{}` (rows) and `{}` (columns).",
                    if signed { "Signed cosine" } else { "|cos|" },
                    a.name,
                    b.name
                ),
                annotated_matrix_svg(&fig)?,
            )?);
        }
        let (mx, i, j) = max_cell(&p.abs);
        let study_cell = (k >= 2).then(|| p.abs.get(1, 0));
        pair_rows.push(vec![
            a.name.clone(),
            b.name.clone(),
            format!("{} ({i}, {j})", fmt_sig4(mx)),
            study_cell.map_or("n/a".into(), fmt_sig4),
            fmt_sig4(base.max_abs_cos.null_p95),
            fmt_sig4(base.max_abs_cos.p_value),
            format!(
                "{} (p = {})",
                fmt_sig4(base.top_canonical_cos.observed),
                fmt_sig4(base.top_canonical_cos.p_value)
            ),
            p.verdict.label().into(),
        ]);
        let detail = format!(
            "null: a uniformly random {k}-dimensional subspace of R^{dim} against the first dataset's directions ({} draws, seed {}); \
             null mean {}, 95th percentile {}; one-sided Monte Carlo p with the +1 correction",
            base.n_samples,
            base.seed,
            fmt_sig4(base.max_abs_cos.null_mean),
            fmt_sig4(base.max_abs_cos.null_p95)
        );
        section.tests.push(StatTest {
            name: format!(
                "random-subspace baseline: largest |cos|, `{}` vs `{}`",
                a.name, b.name
            ),
            statistic_name: "max |cos|".into(),
            statistic: mx,
            p_value: Some(base.max_abs_cos.p_value),
            ci: None,
            detail: detail.clone(),
        });
        section.tests.push(StatTest {
            name: format!("random-subspace baseline: top canonical cosine, `{}` vs `{}`", a.name, b.name),
            statistic_name: "largest singular value of the cosine matrix".into(),
            statistic: base.top_canonical_cos.observed,
            p_value: Some(base.top_canonical_cos.p_value),
            ci: None,
            detail: format!(
                "basis-free: the cosine of the smallest principal angle between the two {k}-dim subspaces; null 95th percentile {}",
                fmt_sig4(base.top_canonical_cos.null_p95)
            ),
        });
        let primary = if pi == 0 {
            " (the comparison the verdict reads)"
        } else {
            ""
        };
        sentences.push(format!(
            "`{}` vs `{}`{primary}: the largest |cos| between their top-{k} directions is {} (component {i} of `{}`, {j} of `{}`); random {k}-dimensional subspaces of R^{dim} \
             reach {} at their 95th percentile (p = {}){}. {}",
            a.name,
            b.name,
            fmt_sig4(mx),
            a.name,
            b.name,
            fmt_sig4(base.max_abs_cos.null_p95),
            fmt_sig4(base.max_abs_cos.p_value),
            study_cell.map_or(String::new(), |c| format!("; cell (1, 0), the study's pair when the first dataset is insecure code and the second toxic, is {}", fmt_sig4(c))),
            match p.verdict {
                Verdict::Reproduced => "Above chance and large.",
                Verdict::Partly => "Above chance, but small.",
                _ => "Not above chance.",
            }
        ));
        // How reproducible the two directions of the brightest cell are.
        let stable = |d: &DatasetDirections, c: usize| match &d.stability {
            Ok(st) => fmt_ci_sig4(&(st[c].mean_best_abs_cos, st[c].best_lower, st[c].best_upper)),
            Err(_) => "n/a".into(),
        };
        sentences.push(format!(
            "Under bootstrap resampling of examples, component {i} of `{}` is recovered with |cos| {} and component {j} of `{}` with {} (best match, mean [CI]).",
            a.name,
            stable(a, i),
            b.name,
            stable(b, j)
        ));
        pairs_json.push(json!({
            "a": a.name,
            "b": b.name,
            "cosines_abs": rows_of(&p.abs),
            "cosines_signed": rows_of(&p.signed),
            "max_abs_cos": { "value": mx, "row": i, "col": j },
            "study_cell_1_0": study_cell,
            "baseline": base,
            "verdict": p.verdict,
            "files": files,
        }));
        section.files.extend(files);
    }
    if !pair_rows.is_empty() {
        section.tables.insert(
            0,
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
                rows: pair_rows,
            },
        );
    } else {
        sentences.push(format!(
            "Only one dataset (`{}`): its directions are reported, but there is no second domain to compare them with.",
            found[0].name
        ));
    }
    section.result = sentences.join(" ");
    section.notes.splice(0..0, notes(ctx, layer, dim, found));

    let results = json!({
        "options": {
            "datasets": found.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
            "layer": spec.layer,
            "layer_index": layer,
            "indexing": spec.indexing,
            "token": spec.token,
            "window": spec.window,
            "k": k,
            "baseline_samples": spec.baseline_samples,
            "bootstrap": spec.bootstrap,
            "level": LEVEL,
            "study_seed": ctx.spec.seed,
            "sign_convention": "mean_projection_positive",
            "cosine_mode_of_the_verdict": "absolute",
        },
        "dim": dim,
        "verdict_rule": {
            "statistic": "largest |cos| of the k x k matrix, first pair of datasets",
            "above_chance": format!("observed > null 95th percentile and p < {ALPHA}"),
            "large_cos": LARGE_COS,
            "reproduced": "above chance and large",
            "partly": "above chance, not large",
            "not_reproduced": "not above chance",
        },
        "datasets": datasets_json,
        "pairs": pairs_json,
        "verdict": verdict,
    });
    Ok(SectionOutput {
        key: "directions",
        results,
        section,
    })
}

fn notes(ctx: &StudyContext, layer: usize, dim: usize, found: &[DatasetDirections]) -> Vec<String> {
    let spec = &ctx.spec.directions;
    let n_layers = ctx.models[0].checkpoint.config.num_hidden_layers;
    let token = match spec.token {
        TokenChoice::Last => "the last token of the sequence (the study's code)".to_string(),
        TokenChoice::WindowMean => format!(
            "the mean over the first T = {} response tokens (a shorter response: the mean of the tokens there are)",
            spec.window
        ),
        TokenChoice::WindowFlatten => format!(
            "the first T = {} response tokens concatenated (a shorter response is left out, so every row has T x d values)",
            spec.window
        ),
    };
    let indexing = match spec.indexing {
        LayerIndexing::ResidualStream => "residual stream (the last layer is before the final norm)",
        LayerIndexing::HfHiddenStates => "Hugging Face hidden_states (the last layer is after the final norm, as in the study's code)",
    };
    let written = if found.iter().all(|d| d.residuals.is_some()) {
        "The residual matrices are written as residuals.npy (f32).".to_string()
    } else {
        format!("Residual matrices above {} values are not written (they can be rebuilt from the activation cache).", super::MAX_WRITTEN_RESIDUALS)
    };
    vec![
        format!(
            "Rows: h_l(instruct) - h_l(base) at layer {layer} of 0..={n_layers} (the spec's {}; 0 = embeddings; {indexing}), at {token}; {dim} values per row.",
            spec.layer
        ),
        format!(
            "Directions: the residual matrix is column-centred and its top k = {} right singular vectors are kept (thin SVD with faer, or the Gram route when 2n <= dim); \
             a dataset needs at least k + 1 usable examples. {written}",
            spec.k
        ),
        "Sign convention: each direction is flipped so that it points along the dataset's mean residual (v . m > 0: toward instruct); when v . m is ~0 the largest \
         component is made positive (listed per component). The verdict and the baseline use |cos|, which does not depend on signs; the signed heatmap is shown beside it."
            .into(),
        format!(
            "Chance baseline: the largest |cos| between the first dataset's k directions and a uniformly random k-dimensional subspace of R^{dim} ({} Monte Carlo draws), and \
             the same for the top canonical cosine. Real activations are anisotropic (they concentrate in few directions), so isotropic random subspaces are a lenient null: \
             a cosine above it says the two domains share more than chance in R^{dim}, not that the direction is specific to alignment.",
            spec.baseline_samples
        ),
        format!(
            "Stability: examples are resampled with replacement {} times, the directions recomputed, and |cos| with the original taken for the same component and for the best \
             match among the k (components of close singular values may swap order). Small datasets can fail here (a resample repeats examples and can have rank < k).",
            spec.bootstrap
        ),
        format!(
            "Verdict rule (first pair of datasets): Reproduced if the largest |cos| exceeds the random-subspace 95th percentile with p < {ALPHA} and is at least {LARGE_COS}; \
             Partly if above chance but below {LARGE_COS}; Not reproduced if not above chance. Later pairs are reported beside it."
        ),
        format!(
            "Datasets: {} ({}).",
            found.iter().map(|d| format!("`{}`", d.name)).collect::<Vec<_>>().join(", "),
            if spec.datasets.is_some() { "as the study file names them" } else { "by default the first two misaligned datasets, else the first two" }
        ),
    ]
}
