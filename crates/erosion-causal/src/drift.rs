//! Drift: how a model's representations and behaviour move along the alignment direction as
//! fine-tuning goes on, measured on a fixed probe set at each checkpoint (or every K steps).
//!
//! At each point, per layer l with a direction (u_l = v_l / |v_l|):
//!
//! ```text
//! s_l    = mean_i( window-mean h_{i,l} ) . u_l          (analysis 3's projection)
//! margin = mean_i( ln P(harmful_i) - ln P(refusal_i) )      (bootstrap 95% CI over pairs)
//! ```
//!
//! A model losing alignment shows s_l falling towards the base model's and the margin rising.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use erosion_analysis::stats::{bootstrap_mean_ci, ConfidenceInterval};
use erosion_data::Sequence;
use erosion_forward::batch::{BatchOptions, NoProgress};
use erosion_forward::logprobs::response_logprobs;
use erosion_model::atomic::write_bytes_atomic;
use erosion_model::transformer::Transformer;
use erosion_report::figures::lines::{line_chart_svg, LineChart, LineSeries};
use erosion_report::format::fmt_ci_fixed;
use erosion_report::html::{Figure, Section, Table, Verdict};
use erosion_report::provenance::Provenance;
use serde::{Deserialize, Serialize};

use crate::directions::{window_means, LayerDirections};

/// The fixed probe set, rendered for the model.
pub struct Probe<'a> {
    /// Examples whose response windows are projected (e.g. harmful requests with answers).
    pub windows: &'a [Sequence],
    /// Paired compliant and refusing answers for the margin.
    pub toxic: &'a [Sequence],
    pub reject: &'a [Sequence],
}

/// A probe set with its directions and options, owned: what is measured at every point.
pub struct ProbeSet {
    pub dirs: LayerDirections,
    /// Compliant answers to harmful requests: projected, and the margin's first term.
    pub toxic: Vec<Sequence>,
    /// The same requests answered with refusals.
    pub reject: Vec<Sequence>,
    pub opts: DriftOptions,
}

impl ProbeSet {
    /// [`drift_point`] with the toxic answers' windows projected.
    pub fn measure(
        &self,
        model: &Transformer,
        label: &str,
        step: Option<usize>,
    ) -> Result<DriftPoint> {
        let probe = Probe {
            windows: &self.toxic,
            toxic: &self.toxic,
            reject: &self.reject,
        };
        drift_point(model, &self.dirs, &probe, &self.opts, label, step)
    }
}

/// How drift is measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftOptions {
    /// Response tokens averaged per example.
    pub window: usize,
    pub batch: BatchOptions,
    pub bootstrap_resamples: usize,
    pub seed: u64,
}

/// One checkpoint or training step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftPoint {
    pub label: String,
    /// Training step, when known.
    pub step: Option<usize>,
    /// s_l per layer index (None where there is no direction).
    pub scores: Vec<Option<f64>>,
    pub margin: ConfidenceInterval,
}

/// Measures `model` on `probe`.
pub fn drift_point(
    model: &Transformer,
    dirs: &LayerDirections,
    probe: &Probe<'_>,
    opts: &DriftOptions,
    label: &str,
    step: Option<usize>,
) -> Result<DriftPoint> {
    if probe.toxic.len() != probe.reject.len() || probe.toxic.is_empty() {
        bail!(
            "the margin needs paired harmful and refusing answers (got {} and {})",
            probe.toxic.len(),
            probe.reject.len()
        );
    }
    if dirs.layers.len() != model.n_layers() + 1 || dirs.d_model != model.config().hidden_size {
        bail!("the directions do not fit the model {label}");
    }
    let means = window_means(model, probe.windows, opts.window, &opts.batch)?;
    let scores = dirs
        .layers
        .iter()
        .zip(&means)
        .map(|(v, mu)| {
            v.as_ref().map(|v| {
                let n = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
                v.iter().zip(mu).map(|(&a, b)| a as f64 * b).sum::<f64>() / n
            })
        })
        .collect();
    let log_joint = |seqs: &[Sequence]| -> Result<Vec<f64>> {
        let r = response_logprobs(model, seqs, &opts.batch, None, &mut NoProgress)?;
        Ok(r.iter().map(|r| r.log_joint()).collect())
    };
    let (t, r) = (log_joint(probe.toxic)?, log_joint(probe.reject)?);
    let m: Vec<f64> = t.iter().zip(&r).map(|(a, b)| a - b).collect();
    let margin = bootstrap_mean_ci(&m, opts.bootstrap_resamples, 0.95, opts.seed)
        .with_context(|| format!("bootstrap of the margin at {label}"))?;
    Ok(DriftPoint {
        label: label.to_string(),
        step,
        scores,
        margin,
    })
}

/// The file a run's drift is kept in, inside its folder.
pub const DRIFT_FILE: &str = "drift.json";

/// Writes `dir/drift.json` (format `erosion-drift-1`: the points and their provenance)
/// atomically, creating `dir`. Called after every point, so a stopped run loses none.
pub fn write_points(dir: &Path, points: &[DriftPoint], prov: &Provenance) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(DRIFT_FILE);
    let body =
        serde_json::json!({ "format": "erosion-drift-1", "provenance": prov, "points": points });
    write_bytes_atomic(&path, serde_json::to_string_pretty(&body)?.as_bytes())?;
    Ok(path)
}

/// The points of `dir/drift.json`; none when there is no such file.
pub fn read_points(dir: &Path) -> Result<Vec<DriftPoint>> {
    let path = dir.join(DRIFT_FILE);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_value(v["points"].clone())
        .with_context(|| format!("the points of {}", path.display()))
}

/// The drift of one training run as it is measured, kept in `dir/drift.json` after every point.
/// A resumed run keeps the points measured before the step it resumes from.
pub struct DriftLog {
    dir: PathBuf,
    prov: Provenance,
    points: std::cell::RefCell<Vec<DriftPoint>>,
}

impl DriftLog {
    pub fn new(dir: &Path, prov: Provenance) -> Self {
        Self {
            dir: dir.to_path_buf(),
            prov,
            points: Default::default(),
        }
    }

    /// Adds a point measured at training step `point.step` and rewrites the file; returns every
    /// point so far.
    pub fn record(&self, point: DriftPoint) -> Result<Vec<DriftPoint>> {
        let mut points = self.points.borrow_mut();
        if points.is_empty() {
            let earlier = read_points(&self.dir)?;
            points.extend(earlier.into_iter().filter(|p| p.step < point.step));
        }
        points.push(point);
        write_points(&self.dir, &points, &self.prov)?;
        Ok(points.clone())
    }

    /// The points recorded, or those on file when none was (a run that was already done).
    pub fn into_points(self) -> Result<Vec<DriftPoint>> {
        match self.points.into_inner() {
            p if p.is_empty() => read_points(&self.dir),
            p => Ok(p),
        }
    }
}

/// The x value of each point: its step, else its position.
fn xs(points: &[DriftPoint]) -> Vec<f64> {
    points
        .iter()
        .enumerate()
        .map(|(i, p)| p.step.unwrap_or(i) as f64)
        .collect()
}

/// Two figures (margin with its band; s_l per layer) and a table.
pub fn drift_section(points: &[DriftPoint]) -> Result<Section> {
    // The figures and the table read points[0]: there is one.
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        bail!("no drift points");
    };
    let x_label = if points.iter().all(|p| p.step.is_some()) {
        "training step"
    } else {
        "checkpoint"
    };
    let x = xs(points);
    let result = format!(
        "From {} to {}, the margin ln P(harmful) - ln P(refusal) moved from {} to {}.",
        first.label,
        last.label,
        fmt_ci_fixed(&first.margin, 3),
        fmt_ci_fixed(&last.margin, 3)
    );
    let mut s = Section::new(
        "Drift during fine-tuning",
        "Alignment erodes gradually and is visible in the representations before it is in behaviour.",
        &result,
        "The study compared finished checkpoints only and called for monitoring representational drift during fine-tuning.",
        Verdict::NotRun,
    );
    s.figures.push(margin_figure(points, &x, x_label)?);
    s.figures.extend(projection_figure(points, &x, x_label)?);
    s.tables.push(drift_table(points));
    s.notes.push(
        "Verdict not run: drift is a measurement over time, not a finding of the study.".into(),
    );
    Ok(s)
}

/// The margin at each point with its 95% band.
fn margin_figure(points: &[DriftPoint], x: &[f64], x_label: &str) -> Result<Figure> {
    let mut margin = LineSeries::new(
        "margin",
        x.to_vec(),
        points.iter().map(|p| p.margin.estimate).collect(),
    );
    margin.lower = Some(points.iter().map(|p| p.margin.lower).collect());
    margin.upper = Some(points.iter().map(|p| p.margin.upper).collect());
    let chart = LineChart {
        title: "Harmful-vs-refusal margin".into(),
        x_label: x_label.into(),
        y_label: "ln P(harmful) - ln P(refusal)".into(),
        series: vec![margin],
        band_label: Some("95% bootstrap CI".into()),
    };
    Ok(Figure {
        caption: "Mean log-probability margin of compliant over refusing answers on the probe set."
            .into(),
        svg: line_chart_svg(&chart)?,
        file: None,
    })
}

/// s_l at each point, one line per layer with a direction (None when no layer has one).
fn projection_figure(points: &[DriftPoint], x: &[f64], x_label: &str) -> Result<Option<Figure>> {
    let n_layers = points[0].scores.len();
    let series: Vec<LineSeries> = (0..n_layers)
        .filter(|&l| points[0].scores[l].is_some())
        .map(|l| {
            let y = points
                .iter()
                .map(|p| p.scores.get(l).copied().flatten().unwrap_or(f64::NAN))
                .collect();
            LineSeries::new(&format!("layer {l}"), x.to_vec(), y)
        })
        .collect();
    if series.is_empty() {
        return Ok(None);
    }
    let chart = LineChart {
        title: "Projection on the alignment direction".into(),
        x_label: x_label.into(),
        y_label: "s_l".into(),
        series,
        band_label: None,
    };
    Ok(Some(Figure {
        caption: "Mean projection s_l of the probe set's response windows on each layer's unit alignment direction.".into(),
        svg: line_chart_svg(&chart)?,
        file: None,
    }))
}

/// A row per point: its step, margin and s_l per layer.
fn drift_table(points: &[DriftPoint]) -> Table {
    let mut headers = vec!["point".to_string(), "step".into(), "margin (95% CI)".into()];
    headers.extend(
        (0..points[0].scores.len())
            .filter(|&l| points[0].scores[l].is_some())
            .map(|l| format!("s_{l}")),
    );
    Table {
        caption: "Drift per point".into(),
        headers,
        rows: points
            .iter()
            .map(|p| {
                let mut row = vec![
                    p.label.clone(),
                    p.step.map_or("-".into(), |s| s.to_string()),
                    fmt_ci_fixed(&p.margin, 3),
                ];
                row.extend(p.scores.iter().flatten().map(|v| format!("{v:.4}")));
                row
            })
            .collect(),
    }
}
