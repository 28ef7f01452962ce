//! s_l against layer l for several models, with shaded confidence bands (analysis 3).

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::lines::{chart_with_legend, padded_range, validate, y_values, LineSeries, Panel};

/// The layer-wise projection figure: one series per model, `x` the layer index
/// (0 = embeddings), `y` = s_l = mean_i z_{l,i} . v_l / |v_l|, the band its interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerProjections {
    pub title: String,
    /// The y axis, e.g. "s_l: mean projection on v_l / |v_l|".
    pub y_label: String,
    pub series: Vec<LineSeries>,
    /// What the bands are, e.g. "95% bootstrap CI (1000 resamples)".
    pub band_label: Option<String>,
}

/// The figure as SVG: integer layer ticks, a marker per layer, a dashed line at s = 0.
pub fn layer_projection_svg(f: &LayerProjections) -> Result<String> {
    validate("layer projection figure", &f.series)?;
    // Half a layer of room at each end.
    let xs = f
        .series
        .iter()
        .flat_map(|s| s.x.iter())
        .filter(|v| v.is_finite());
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
        (a.min(v), b.max(v))
    });
    let x_range = if lo <= hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (0.0, 1.0)
    };
    let x_fmt = |v: &f64| {
        if (v - v.round()).abs() < 1e-9 {
            format!("{}", v.round() as i64)
        } else {
            String::new()
        }
    };
    let n_layers = f.series.iter().map(|s| s.x.len()).max().unwrap_or(0);
    let panel = Panel {
        x_range,
        y_range: padded_range(y_values(&f.series)),
        x_desc: "layer".to_string(),
        y_desc: f.y_label.clone(),
        x_labels: n_layers.clamp(2, 16),
        x_fmt: &x_fmt,
        markers: n_layers <= 70,
        zero_line: true,
    };
    chart_with_legend(&f.title, &f.series, f.band_label.as_deref(), &panel)
}
