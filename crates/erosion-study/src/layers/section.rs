//! Analysis 3's report section, written from its typed results: figures, per-layer tables,
//! the early-vs-deep tests, notes and the result in words.

use super::arrays::COSINES;
use super::figures::{cosines_figure, pair_label, relative_figure, scores_figure};
use super::prose::{layer_list, notes, FINDING, REPORTED};
use super::results::{DatasetLayers, DirectionCosines, ErosionTest, LayersResults, TestOutcome};
use super::LayersAnalysis;
use crate::analysis::Analysis;
use crate::context::StudyContext;
use anyhow::Result;
use erosion_report::format::{fmt_ci_sig4, fmt_sig4};
use erosion_report::html::{Interval, Section, StatTest, Table};

/// The section of `res`; draws its figures under `figures/`.
pub(super) fn section(ctx: &StudyContext, res: &LayersResults) -> Result<Section> {
    let title = LayersAnalysis::TITLE;
    let mut section = Section::new(title, FINDING, "", REPORTED, res.verdict);
    let mut sentences = Vec::new();
    let mut test_rows = Vec::new();
    let has_finetuned = res.models.len() > 2;
    for (name, d) in res.datasets.iter() {
        section.figures.push(scores_figure(ctx, res, name, d)?);
        if has_finetuned {
            section.figures.push(relative_figure(ctx, res, name, d)?);
        }
        section.tables.push(layer_table(res, name, d));
        for t in &d.tests {
            match t {
                TestOutcome::Ran(t) => {
                    test_rows.push(test_row(name, t));
                    section.tests.push(stat_test(name, t));
                    sentences.push(test_sentence(name, t));
                }
                TestOutcome::NotRun { model, error } => sentences.push(format!(
                    "On `{name}`, no early-vs-deep test for `{model}`: {error}."
                )),
            }
        }
        section.notes.extend(dataset_notes(res, name, d));
        section.files.extend(d.files.iter().cloned());
    }
    if !res.direction_cosines.is_empty() {
        section
            .tables
            .push(cosines_table(res.n_layers, &res.direction_cosines));
        section
            .figures
            .push(cosines_figure(ctx, res.n_layers, &res.direction_cosines)?);
        section.files.push(format!("arrays/{COSINES}.npy"));
    }
    if !test_rows.is_empty() {
        section.tables.insert(0, tests_table(test_rows));
    }
    if !has_finetuned {
        sentences.push("The study names no fine-tuned model, so there is nothing to place between base and instruct.".into());
    }
    section.result = sentences.join(" ");
    section.notes.splice(0..0, notes(ctx, res));
    Ok(section)
}

/// |v_l|, s_l of every model and r_l of every fine-tuned model, with CIs, per layer.
fn layer_table(res: &LayersResults, name: &str, d: &DatasetLayers) -> Table {
    let mut headers = vec!["layer".to_string(), "|v_l|".to_string()];
    headers.extend(res.models.iter().map(|m| format!("s_l {m} [CI]")));
    headers.extend(res.models[2..].iter().map(|m| format!("r_l {m} [CI]")));
    let rows = (0..res.n_layers)
        .map(|l| {
            let mut row = vec![l.to_string(), fmt_sig4(d.direction_norms[l])];
            row.extend(
                d.score_ci
                    .values()
                    .chain(d.relative.values())
                    .map(|c| c[l].as_ref().map_or("n/a".into(), fmt_ci_sig4)),
            );
            row
        })
        .collect();
    Table {
        caption: format!("Scores per layer on `{name}`"),
        headers,
        rows,
    }
}

/// "under test" or "control".
fn role(t: &ErosionTest) -> &'static str {
    if t.under_test {
        "under test"
    } else {
        "control"
    }
}

/// A row of the early-vs-deep table.
fn test_row(dataset: &str, t: &ErosionTest) -> Vec<String> {
    vec![
        dataset.to_string(),
        format!("{} ({})", t.model, role(t)),
        layer_list(&t.early_layers),
        fmt_ci_sig4(&t.early),
        layer_list(&t.deep_layers),
        fmt_ci_sig4(&t.deep),
        fmt_ci_sig4(&t.drop),
        t.verdict.label().to_string(),
    ]
}

fn stat_test(dataset: &str, t: &ErosionTest) -> StatTest {
    StatTest {
        name: format!(
            "paired bootstrap: fall of `{}` from early to deep layers on `{dataset}`",
            t.model
        ),
        statistic_name: "r(early) - r(deep)".into(),
        statistic: t.drop.estimate,
        p_value: None,
        ci: Some(Interval {
            lo: t.drop.lower,
            hi: t.drop.upper,
            level: t.drop.level,
        }),
        detail: format!(
            "{}; r(early layers {}) = {}, r(deep layers {}) = {}; {} paired examples, {} resamples, seed {}; directions v_l held fixed",
            role(t), layer_list(&t.early_layers), fmt_ci_sig4(&t.early), layer_list(&t.deep_layers), fmt_ci_sig4(&t.deep),
            t.n_paired, t.drop.n_resamples, t.drop.seed
        ),
    }
}

fn test_sentence(dataset: &str, t: &ErosionTest) -> String {
    format!(
        "On `{dataset}`, `{}` ({}) sits at r = {} of the way from base to instruct in early layers {} and r = {} in deep layers {}: a fall of {} ({}).",
        t.model, role(t), fmt_ci_sig4(&t.early), layer_list(&t.early_layers), fmt_ci_sig4(&t.deep), layer_list(&t.deep_layers),
        fmt_ci_sig4(&t.drop), t.verdict.label()
    )
}

fn tests_table(rows: Vec<Vec<String>>) -> Table {
    Table {
        caption:
            "Relative position r (0 = base, 1 = instruct) in early and deep layers, with 95% CIs"
                .into(),
        headers: [
            "dataset",
            "model",
            "early layers",
            "r early",
            "deep layers",
            "r deep",
            "fall r early - r deep",
            "verdict",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// Layers without a direction, and examples the short-response policy left out.
fn dataset_notes(res: &LayersResults, name: &str, d: &DatasetLayers) -> Vec<String> {
    let mut notes = Vec::new();
    let unusable: Vec<usize> = (0..res.n_layers).filter(|&l| !d.usable_layers[l]).collect();
    if !unusable.is_empty() {
        notes.push(format!(
            "`{name}`: layers {} have no alignment direction (base and instruct means coincide, |v_l| ~ 0; e.g. a shared embedding table): s_l and r_l are undefined there.",
            layer_list(&unusable)
        ));
    }
    let skipped: Vec<String> = d
        .skipped_examples
        .iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(m, s)| format!("{m}: {}", s.len()))
        .collect();
    if !skipped.is_empty() {
        notes.push(format!(
            "`{name}`: examples left out by the short-response policy ({}).",
            skipped.join(", ")
        ));
    }
    notes
}

/// One column per pair of datasets, one row per layer.
fn cosines_table(n_layers: usize, pairs: &[DirectionCosines]) -> Table {
    let headers = std::iter::once("layer".to_string())
        .chain(pairs.iter().map(pair_label))
        .collect();
    let rows = (0..n_layers)
        .map(|l| {
            std::iter::once(l.to_string())
                .chain(
                    pairs
                        .iter()
                        .map(|p| fmt_sig4(p.cosine[l].unwrap_or(f64::NAN))),
                )
                .collect()
        })
        .collect();
    Table {
        caption: "Cosine between the alignment directions v_l of two datasets, per layer".into(),
        headers,
        rows,
    }
}
