//! Analysis 4's report section, drawn from its typed results: per dataset a table of its
//! directions and the explained-variance chart, per pair the heatmaps, tests and sentences.

use super::comparisons;
use super::notes::notes;
use super::results::{DatasetResults, DirectionsResults, Stability};
use crate::context::StudyContext;
use anyhow::Result;
use erosion_report::figures::{line_chart_svg, LineChart, LineSeries};
use erosion_report::format::{fmt_ci_sig4, fmt_sig4};
use erosion_report::html::{Figure, Section, Table};

pub(crate) const TITLE: &str = "One direction governs alignment across domains";
const FINDING: &str = "The principal directions of what alignment changed (instruct - base residuals, one row per \
example, column-centred, top right singular vectors) are shared across domains: a direction of the insecure-code \
residuals nearly coincides with one of the toxic residuals.";
const REPORTED: &str = "Giordani 2025: residuals h_L(instruct) - h_L(base) at the last token of the final layer, \
column-centred, SVD per dataset (insecure code; toxic), k x k cosine heatmap of the top right singular vectors: \
0.90 between insecure component 1 and toxic component 0 (Qwen2.5-Coder-32B, d = 5120). The study gives no chance \
baseline for this cosine.";

/// The section of `r`; writes its figures under `figures/`.
pub(crate) fn section(ctx: &StudyContext, r: &DirectionsResults) -> Result<Section> {
    let mut section = Section::new(TITLE, FINDING, "", REPORTED, r.verdict);
    for (name, d) in r.datasets.iter() {
        if let Stability::Failed { error } = &d.stability {
            section.notes.push(format!(
                "`{name}`: bootstrap stability could not be computed: {error}."
            ));
        }
        section.tables.push(dataset_table(r, name, d));
        section.files.extend(d.files.iter().cloned());
    }
    section.figures.push(explained_variance_figure(ctx, r)?);

    let mut sentences = Vec::new();
    for (pi, p) in r.pairs.iter().enumerate() {
        section.figures.extend(comparisons::heatmaps(ctx, r, p)?);
        section.tests.extend(comparisons::tests(r, p));
        sentences.extend(comparisons::sentences(r, p, pi == 0));
        section.files.extend(p.files.iter().cloned());
    }
    if r.pairs.is_empty() {
        sentences.push(format!(
            "Only one dataset (`{}`): its directions are reported, but there is no second domain to compare them with.",
            r.options.datasets[0]
        ));
    } else {
        section.tables.insert(0, comparisons::pair_table(r));
    }
    section.result = sentences.join(" ");
    section.notes.splice(0..0, notes(ctx, r));
    Ok(section)
}

/// Per component: singular value, explained variance ratio, stability and how its sign was fixed.
fn dataset_table(r: &DirectionsResults, name: &str, d: &DatasetResults) -> Table {
    let rows = (0..r.options.k)
        .map(|c| {
            let (same, best) = match &d.stability {
                Stability::Computed(st) => {
                    let s = &st[c];
                    (
                        fmt_ci_sig4(&(s.mean_abs_cos, s.lower, s.upper)),
                        fmt_ci_sig4(&(s.mean_best_abs_cos, s.best_lower, s.best_upper)),
                    )
                }
                Stability::Failed { .. } => ("n/a".into(), "n/a".into()),
            };
            vec![
                c.to_string(),
                fmt_sig4(d.singular_values[c]),
                fmt_sig4(d.explained_variance_ratio[c]),
                same,
                best,
                if d.sign_fallback[c] {
                    "largest component"
                } else {
                    "mean residual"
                }
                .into(),
            ]
        })
        .collect();
    Table {
        caption: format!(
            "Directions of `{name}` ({} x {} residual matrix; stability: |cos| with the direction re-estimated on {} bootstrap resamples, {:.0}% CI)",
            d.rows,
            r.dim,
            r.options.bootstrap,
            r.options.level * 100.0
        ),
        headers: ["component", "singular value", "explained variance ratio", "stability, same index", "stability, best match", "sign fixed by"]
            .map(String::from)
            .to_vec(),
        rows,
    }
}

/// Each dataset's explained variance ratio per component, one line per dataset.
fn explained_variance_figure(ctx: &StudyContext, r: &DirectionsResults) -> Result<Figure> {
    let series = r
        .datasets
        .iter()
        .map(|(name, d)| {
            LineSeries::new(
                name,
                (0..r.options.k).map(|c| c as f64).collect(),
                d.explained_variance_ratio.clone(),
            )
        })
        .collect();
    let chart = LineChart {
        title: "Explained variance of the top directions".into(),
        x_label: "component".into(),
        y_label: "share of the centred residuals' variance".into(),
        series,
        band_label: None,
    };
    ctx.save_figure(
        "directions_explained_variance",
        "Share of each dataset's centred residual variance along each of its top directions.",
        line_chart_svg(&chart)?,
    )
}
