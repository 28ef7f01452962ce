//! Line charts: several series of (x, y), each with an optional shaded band (a confidence
//! interval), a legend on the right. Used directly for drift curves and by the layer
//! figure and the running-log-joint panel.

use anyhow::{ensure, Result};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::draw::{
    axes, figure_title, legend, plot_err, render, styled_mesh, Area, Chart, Mark, LINE_GRID,
};
use super::style::{clean_text, series_color, text_width};
use crate::format::format_auto;

/// One line; `lower`/`upper`, when given, bound a shaded band around it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineSeries {
    pub name: String,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub lower: Option<Vec<f64>>,
    pub upper: Option<Vec<f64>>,
    /// Its colour (see [`super::style::ModelColors::paint`]); `None`: by position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<[u8; 3]>,
}

impl LineSeries {
    /// A series without a band.
    pub fn new(name: &str, x: Vec<f64>, y: Vec<f64>) -> Self {
        Self {
            name: name.to_string(),
            x,
            y,
            lower: None,
            upper: None,
            color: None,
        }
    }
}

/// The colour of series `s`, drawn `i`-th.
fn color_of(s: &LineSeries, i: usize) -> RGBColor {
    s.color
        .map_or_else(|| series_color(i), |[r, g, b]| RGBColor(r, g, b))
}

/// A generic line chart (x against several series).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<LineSeries>,
    /// What the shaded bands are ("95% bootstrap CI"); shown in the legend.
    pub band_label: Option<String>,
}

/// Checks lengths; `what` names the figure in messages.
pub(crate) fn validate(what: &str, series: &[LineSeries]) -> Result<()> {
    ensure!(!series.is_empty(), "{what}: no series to plot");
    for s in series {
        ensure!(
            s.x.len() == s.y.len(),
            "{what}: series {:?} has {} x values and {} y values",
            s.name,
            s.x.len(),
            s.y.len()
        );
        for (b, v) in [("lower", &s.lower), ("upper", &s.upper)] {
            if let Some(v) = v {
                ensure!(
                    v.len() == s.x.len(),
                    "{what}: series {:?} has {} points but {} {b} band values",
                    s.name,
                    s.x.len(),
                    v.len()
                );
            }
        }
    }
    ensure!(
        series.iter().any(|s| !s.x.is_empty()),
        "{what}: every series is empty"
    );
    Ok(())
}

/// [min, max] of the finite values, widened by 5% (or by 1 when they are all equal);
/// [0, 1] when there is none.
pub(crate) fn padded_range<'a>(values: impl Iterator<Item = &'a f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.5
    };
    (lo - pad, hi + pad)
}

/// The y values a chart must show: lines and bands.
pub(crate) fn y_values(series: &[LineSeries]) -> impl Iterator<Item = &f64> {
    series.iter().flat_map(|s| {
        s.y.iter()
            .chain(s.lower.iter().flatten())
            .chain(s.upper.iter().flatten())
    })
}

/// Indices of maximal runs of consecutive points where all of `cols` are finite.
fn finite_runs(n: usize, cols: &[&[f64]]) -> Vec<std::ops::Range<usize>> {
    let ok = |i: usize| cols.iter().all(|c| c[i].is_finite());
    let mut runs = Vec::new();
    let mut start = None;
    for i in 0..=n {
        match (start, i < n && ok(i)) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                runs.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    runs
}

/// Options of a [`line_panel`].
pub(crate) struct Panel<'f> {
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    pub x_desc: String,
    pub y_desc: String,
    pub x_labels: usize,
    pub x_fmt: &'f dyn Fn(&f64) -> String,
    pub markers: bool,
    /// A dashed horizontal line at y = 0, when 0 is in range.
    pub zero_line: bool,
}

/// Pixel space around the plot rectangle for tick labels and axis descriptions.
pub(crate) const LEFT_AXIS: i32 = 78;
pub(crate) const BOTTOM_AXIS: i32 = 46;

/// Draws axes and series so that the plotting rectangle is exactly
/// `(x0, y0)`-`(x1, y1)`; the axes' labels go in the `LEFT_AXIS` / `BOTTOM_AXIS` pixels
/// left of and below it.
pub(crate) fn line_panel(
    root: &Area,
    (x0, y0): (i32, i32),
    (x1, y1): (i32, i32),
    series: &[LineSeries],
    p: &Panel,
) -> Result<()> {
    let sub = root.clone().shrink(
        (x0 - LEFT_AXIS, y0),
        ((x1 - x0 + LEFT_AXIS) as u32, (y1 - y0 + BOTTOM_AXIS) as u32),
    );
    let mut chart = axes(
        &sub,
        (LEFT_AXIS, BOTTOM_AXIS),
        p.x_range.0..p.x_range.1,
        p.y_range.0..p.y_range.1,
    )?;
    let y_fmt = |v: &f64| format_auto(*v);
    styled_mesh(&mut chart.configure_mesh(), LINE_GRID)
        .x_labels(p.x_labels)
        .y_labels(8)
        .x_label_formatter(p.x_fmt)
        .y_label_formatter(&y_fmt)
        .x_desc(clean_text(&p.x_desc))
        .y_desc(clean_text(&p.y_desc))
        .draw()
        .map_err(plot_err)?;
    if p.zero_line && p.y_range.0 < 0.0 && p.y_range.1 > 0.0 {
        chart
            .draw_series(std::iter::once(plotters::element::DashedPathElement::new(
                vec![(p.x_range.0, 0.0), (p.x_range.1, 0.0)],
                6,
                4,
                RGBColor(90, 90, 90).stroke_width(1),
            )))
            .map_err(plot_err)?;
    }
    // Bands first, so every line is drawn over every band.
    draw_bands(&mut chart, series)?;
    draw_lines(&mut chart, series, p.markers)
}

/// Each series' band, where it has one, as a translucent polygon per run of finite points:
/// upper ends left to right, then lower ends right to left.
fn draw_bands(chart: &mut Chart, series: &[LineSeries]) -> Result<()> {
    for (i, s) in series.iter().enumerate() {
        let color = color_of(s, i);
        if let (Some(lo), Some(hi)) = (&s.lower, &s.upper) {
            for r in finite_runs(s.x.len(), &[&s.x, lo, hi]) {
                let mut pts: Vec<(f64, f64)> = r.clone().map(|k| (s.x[k], hi[k])).collect();
                pts.extend(r.rev().map(|k| (s.x[k], lo[k])));
                chart
                    .draw_series(std::iter::once(Polygon::new(pts, color.mix(0.18).filled())))
                    .map_err(plot_err)?;
            }
        }
    }
    Ok(())
}

/// Each series' line, broken at non-finite points; a dot per point with `markers` (and for
/// a point with no neighbour, which a line cannot show).
fn draw_lines(chart: &mut Chart, series: &[LineSeries], markers: bool) -> Result<()> {
    for (i, s) in series.iter().enumerate() {
        let color = color_of(s, i);
        for r in finite_runs(s.x.len(), &[&s.x, &s.y]) {
            let pts: Vec<(f64, f64)> = r.map(|k| (s.x[k], s.y[k])).collect();
            if markers || pts.len() == 1 {
                chart
                    .draw_series(pts.iter().map(|&q| Circle::new(q, 3, color.filled())))
                    .map_err(plot_err)?;
            }
            chart
                .draw_series(std::iter::once(PathElement::new(
                    pts,
                    color.stroke_width(2),
                )))
                .map_err(plot_err)?;
        }
    }
    Ok(())
}

/// Legend entries for the series, plus one for the bands if any series has one.
pub(crate) fn legend_entries(
    series: &[LineSeries],
    band_label: Option<&str>,
    markers: bool,
) -> Vec<(String, Mark)> {
    let mut e: Vec<(String, Mark)> = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                clean_text(&s.name),
                Mark::Line {
                    color: color_of(s, i),
                    marker: markers,
                },
            )
        })
        .collect();
    if series
        .iter()
        .any(|s| s.lower.is_some() && s.upper.is_some())
    {
        let label = band_label.map_or("shaded: interval".to_string(), |b| {
            format!("shaded: {}", clean_text(b))
        });
        e.push((label, Mark::Band(RGBColor(90, 90, 90))));
    }
    e
}

/// Title, plot and legend-on-the-right layout shared by the line and layer figures.
pub(crate) fn chart_with_legend(
    title: &str,
    series: &[LineSeries],
    band_label: Option<&str>,
    panel: &Panel,
) -> Result<String> {
    let entries = legend_entries(series, band_label, panel.markers);
    let legend_w = entries
        .iter()
        .map(|(n, _)| text_width(n, 12.0))
        .fold(0.0, f64::max)
        .ceil() as i32
        + 50;
    let title = clean_text(title);
    let (plot_w, plot_h) = (560, 340);
    let left = 16 + LEFT_AXIS;
    let top = 50;
    let w = (left + plot_w + 20 + legend_w + 10).max(text_width(&title, 16.0) as i32 + 40);
    let legend_h = entries.len() as i32 * 20;
    let h = top + plot_h.max(legend_h) + BOTTOM_AXIS + 14;
    render(w as u32, h as u32, |root| {
        figure_title(root, &title, w)?;
        line_panel(
            root,
            (left, top),
            (left + plot_w, top + plot_h),
            series,
            panel,
        )?;
        legend(root, (left + plot_w + 20, top), &entries)?;
        Ok(())
    })
}

/// A line chart as SVG. Non-finite points break the line (and the band) there.
pub fn line_chart_svg(c: &LineChart) -> Result<String> {
    validate("line chart", &c.series)?;
    let x_range = padded_range(c.series.iter().flat_map(|s| s.x.iter()));
    let y_range = padded_range(y_values(&c.series));
    let x_fmt = |v: &f64| format_auto(*v);
    let panel = Panel {
        x_range,
        y_range,
        x_desc: c.x_label.clone(),
        y_desc: c.y_label.clone(),
        x_labels: 10,
        x_fmt: &x_fmt,
        markers: c.series.iter().map(|s| s.x.len()).max().unwrap_or(0) <= 40,
        zero_line: false,
    };
    chart_with_legend(&c.title, &c.series, c.band_label.as_deref(), &panel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_at_non_finite_points() {
        let x = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [1.0, f64::NAN, 2.0, 3.0, f64::INFINITY, 4.0];
        assert_eq!(finite_runs(6, &[&x, &y]), vec![0..1, 2..4, 5..6]);
        assert_eq!(finite_runs(0, &[]), Vec::<std::ops::Range<usize>>::new());
    }

    #[test]
    fn ranges_pad_and_survive_degenerate_data() {
        assert_eq!(padded_range([0.0, 10.0].iter()), (-0.5, 10.5));
        assert_eq!(padded_range([2.0, 2.0].iter()), (1.0, 3.0));
        assert_eq!(padded_range([f64::NAN].iter()), (0.0, 1.0));
    }
}
