//! Drift (`[drift]`): the alignment probe measured on every model of the study, the compared
//! ones included (s_l, the harmful answers' mean projection on each layer's unit direction,
//! and the margin ln P(harmful) - ln P(refusal)), beside the drift fine-tuning runs recorded as
//! they trained (`[drift] logs`: each run's `drift.json`, written by `erosion train --monitor`).

use crate::analysis::{Analysis, Finished};
use crate::context::StudyContext;
use anyhow::{Context, Result};
use erosion_causal::drift::{read_points, DriftPoint};
use erosion_report::figures::lines::{line_chart_svg, LineChart, LineSeries};
use erosion_report::figures::ModelColors;
use erosion_report::format::fmt_ci_fixed;
use erosion_report::html::{Figure, Section, Table, Verdict};
use serde::Serialize;

/// The drift's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct DriftResults {
    /// How the directions were made.
    pub directions: String,
    /// One point per model, in study order.
    pub models: Vec<DriftPoint>,
    /// Recorded runs: (model, its points in training order).
    pub runs: Vec<(String, Vec<DriftPoint>)>,
}

pub struct DriftAnalysis;

impl Analysis for DriftAnalysis {
    const KEY: &'static str = "drift";
    const TITLE: &'static str = "Drift along the alignment direction";
    type Results = DriftResults;

    fn run(ctx: &StudyContext) -> Result<Finished<DriftResults>> {
        let names = ctx.models.iter().chain(&ctx.compared).map(|m| &m.name);
        let models = names
            .map(|n| ctx.probe_point(n))
            .collect::<Result<Vec<_>>>()?;
        let mut runs = Vec::new();
        for (model, dir) in &ctx.spec.drift.logs {
            let points = read_points(&ctx.base_dir.join(dir))
                .with_context(|| format!("[drift] logs of `{model}`"))?;
            runs.push((model.clone(), points));
        }
        let results = DriftResults {
            directions: ctx.probe()?.dirs.origin.clone(),
            models,
            runs,
        };
        let section = section(&results, &ctx.colors())?;
        Ok(Finished { results, section })
    }
}

/// A line chart with the 95% band label, each model's line in its colour.
pub(crate) fn chart(
    colors: &ModelColors,
    (title, x, y): (&str, &str, &str),
    mut series: Vec<LineSeries>,
) -> Result<String> {
    colors.paint(&mut series);
    line_chart_svg(&LineChart {
        title: title.into(),
        x_label: x.into(),
        y_label: y.into(),
        series,
        band_label: Some("95% bootstrap CI".into()),
    })
}

/// The residual-stream indices of blocks where every point has a score.
pub(crate) fn scored_blocks(points: &[&DriftPoint]) -> Vec<usize> {
    let n = points.first().map_or(0, |p| p.scores.len());
    (1..n)
        .filter(|&l| points.iter().all(|p| p.scores[l].is_some()))
        .collect()
}

/// s_l across layers, one line per point.
pub(crate) fn across_layers(points: &[&DriftPoint], layers: &[usize]) -> Vec<LineSeries> {
    points
        .iter()
        .map(|p| {
            let (x, y) = layers
                .iter()
                .map(|&l| (l as f64, p.scores[l].unwrap_or(f64::NAN)))
                .unzip();
            LineSeries::new(&p.label, x, y)
        })
        .collect()
}

fn section(r: &DriftResults, colors: &ModelColors) -> Result<Section> {
    let points: Vec<&DriftPoint> = r.models.iter().collect();
    let layers = scored_blocks(&points);
    let margins: Vec<String> = r
        .models
        .iter()
        .map(|p| format!("{} {}", p.label, fmt_ci_fixed(&p.margin, 1)))
        .collect();
    let mut s = Section::new(
        DriftAnalysis::TITLE,
        "Fine-tuning that erodes alignment moves the representations along the alignment direction: the harmful answers' projection s_l falls towards the base model's and the harmful-vs-refusal margin rises.",
        &format!("Margin ln P(harmful) - ln P(refusal): {}.", margins.join("; ")),
        "The study compared finished checkpoints only and called for monitoring representational drift during fine-tuning.",
        Verdict::NotRun,
    );
    let mut headers = vec!["model".to_string(), "margin (95% CI)".into()];
    headers.extend(layers.iter().map(|l| format!("s_{l}")));
    s.tables.push(Table {
        caption: "The probe on each model: margin and s_l per block".into(),
        headers,
        rows: r
            .models
            .iter()
            .map(|p| {
                let mut row = vec![p.label.clone(), fmt_ci_fixed(&p.margin, 2)];
                row.extend(
                    layers
                        .iter()
                        .map(|&l| format!("{:.3}", p.scores[l].unwrap_or(f64::NAN))),
                );
                row
            })
            .collect(),
    });
    s.figures.push(Figure {
        caption: "s_l across layers on each model: an eroded model's curve leaves the instruct model's towards the base's.".into(),
        svg: chart(colors, ("Projection on the alignment direction", "layer", "s_l"), across_layers(&points, &layers))?,
        file: None,
    });
    s.figures.extend(run_figures(&r.runs, &layers, colors)?);
    s.notes.push(format!("Directions: {}.", r.directions));
    s.notes.push("Verdict not run: drift is a measurement, not a finding of the study. The margin is a log joint probability over whole answers: fine-tuning on one kind of text lowers that of every other long answer, refusals and harmful ones alike, so compare it across fine-tunes rather than with the instruct model.".into());
    Ok(s)
}

/// The recorded runs over their training steps: the margin with its band, and s_l at the
/// middle scored block.
fn run_figures(
    runs: &[(String, Vec<DriftPoint>)],
    layers: &[usize],
    colors: &ModelColors,
) -> Result<Vec<Figure>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let steps = |points: &[DriftPoint]| -> Vec<f64> {
        points.iter().map(|p| p.step.unwrap_or(0) as f64).collect()
    };
    let margin = runs
        .iter()
        .map(|(name, points)| {
            let mut line = LineSeries::new(
                name,
                steps(points),
                points.iter().map(|p| p.margin.estimate).collect(),
            );
            line.lower = Some(points.iter().map(|p| p.margin.lower).collect());
            line.upper = Some(points.iter().map(|p| p.margin.upper).collect());
            line
        })
        .collect();
    let mut figures = vec![Figure {
        caption: "Drift during fine-tuning: the harmful-vs-refusal margin on the probe at each recorded step (step 0 is the model the run started from).".into(),
        svg: chart(colors, ("Margin during fine-tuning", "training step", "ln P(harmful) - ln P(refusal)"), margin)?,
        file: None,
    }];
    if let Some(&mid) = layers.get(layers.len() / 2) {
        let proj = runs
            .iter()
            .map(|(name, points)| {
                let y = points
                    .iter()
                    .map(|p| p.scores.get(mid).copied().flatten().unwrap_or(f64::NAN))
                    .collect();
                LineSeries::new(name, steps(points), y)
            })
            .collect();
        figures.push(Figure {
            caption: format!("Drift during fine-tuning: s_{mid}, the probe's mean projection on layer {mid}'s unit alignment direction."),
            svg: chart(colors, (&format!("s_{mid} during fine-tuning"), "training step", "s_l"), proj)?,
            file: None,
        });
    }
    Ok(figures)
}
