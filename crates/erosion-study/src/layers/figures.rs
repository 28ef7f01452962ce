//! Analysis 3's figures, drawn from its typed results: s_l with bands, r_l of the fine-tuned
//! models, and the cross-dataset cosines of v_l.

use super::arrays::{ci_field, COSINES};
use super::results::{DatasetLayers, DirectionCosines, LayersResults};
use super::stream::file_stem;
use crate::context::StudyContext;
use anyhow::Result;
use erosion_report::figures::{layer_projection_svg, LayerProjections, LineSeries};
use erosion_report::html::Figure;

/// The layers 0..n_layers as x values.
fn layer_axis(n_layers: usize) -> Vec<f64> {
    (0..n_layers).map(|l| l as f64).collect()
}

/// Values with None as NaN (a gap in the line).
fn with_gaps(xs: &[Option<f64>]) -> Vec<f64> {
    xs.iter().map(|x| x.unwrap_or(f64::NAN)).collect()
}

/// s_l of every model on dataset `name`, with its bootstrap bands.
pub(super) fn scores_figure(
    ctx: &StudyContext,
    res: &LayersResults,
    name: &str,
    d: &DatasetLayers,
) -> Result<Figure> {
    let xs = layer_axis(res.n_layers);
    let mut series: Vec<LineSeries> = d
        .scores
        .iter()
        .zip(d.score_ci.values())
        .map(|((model, s), c)| LineSeries {
            name: model.to_string(),
            x: xs.clone(),
            y: with_gaps(s),
            lower: Some(ci_field(c, |c| c.lower)),
            upper: Some(ci_field(c, |c| c.upper)),
            color: None,
        })
        .collect();
    ctx.colors().paint(&mut series);
    let fig = LayerProjections {
        title: format!("Mean projection on the alignment direction: {name}"),
        y_label: "s_l = mean z . v_l / |v_l|".into(),
        series,
        band_label: Some(format!(
            "{:.0}% bootstrap CI over examples ({} resamples, v_l fixed)",
            res.options.level * 100.0,
            res.options.bootstrap
        )),
    };
    ctx.save_figure(
        &format!("layers_{}", file_stem(name)),
        &format!(
            "s_l per layer on `{name}` for every model ({} examples; layer 0 = embeddings).",
            d.examples
        ),
        layer_projection_svg(&fig)?,
    )
}

/// r_l of every fine-tuned model on dataset `name`, between the lines r = 0 (base) and
/// r = 1 (instruct).
pub(super) fn relative_figure(
    ctx: &StudyContext,
    res: &LayersResults,
    name: &str,
    d: &DatasetLayers,
) -> Result<Figure> {
    let xs = layer_axis(res.n_layers);
    let mut series: Vec<LineSeries> = d
        .relative
        .iter()
        .map(|(model, c)| LineSeries {
            name: model.to_string(),
            x: xs.clone(),
            y: ci_field(c, |c| c.estimate),
            lower: Some(ci_field(c, |c| c.lower)),
            upper: Some(ci_field(c, |c| c.upper)),
            color: None,
        })
        .collect();
    let n = res.n_layers;
    series.push(LineSeries::new("base (r = 0)", xs.clone(), vec![0.0; n]));
    series.push(LineSeries::new("instruct (r = 1)", xs, vec![1.0; n]));
    ctx.colors().paint(&mut series);
    // The layer figure's integer layer ticks and zero line (r = 0 is base).
    let chart = LayerProjections {
        title: format!("Relative position between base and instruct: {name}"),
        y_label: "r_l = (s_l - s_l base) / (s_l instruct - s_l base)".into(),
        series,
        band_label: Some(format!(
            "{:.0}% paired bootstrap CI",
            res.options.level * 100.0
        )),
    };
    ctx.save_figure(
        &format!("layers_relative_{}", file_stem(name)),
        &format!("r_l of each fine-tuned model on `{name}`: 0 = base, 1 = instruct."),
        layer_projection_svg(&chart)?,
    )
}

/// The per-layer cosines of every pair of datasets.
pub(super) fn cosines_figure(
    ctx: &StudyContext,
    n_layers: usize,
    pairs: &[DirectionCosines],
) -> Result<Figure> {
    let xs = layer_axis(n_layers);
    let series = pairs
        .iter()
        .map(|p| LineSeries::new(&pair_label(p), xs.clone(), with_gaps(&p.cosine)))
        .collect();
    let chart = LayerProjections {
        title: "Alignment directions of different datasets".into(),
        y_label: "cos(v_l on A, v_l on B)".into(),
        series,
        band_label: None,
    };
    ctx.save_figure(
        COSINES,
        "Per-layer cosine between the alignment directions found on different datasets (signed: v_l points from base to instruct).",
        layer_projection_svg(&chart)?,
    )
}

/// "a vs b".
pub(super) fn pair_label(p: &DirectionCosines) -> String {
    format!("{} vs {}", p.a, p.b)
}
