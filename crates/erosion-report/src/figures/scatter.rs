//! A scatter plot of points in groups (one colour per group) on fixed axes, with optional
//! dashed threshold lines; Betley et al.'s alignment-against-coherence plot of every answer is
//! one (x = coherence, y = alignment, both 0-100, lines at the EM thresholds).

use anyhow::{ensure, Result};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::draw::{
    axes, figure_title, legend, plot_err, render, styled_mesh, Area, Mark, LINE_GRID,
};
use super::style::{clean_text, series_color, text_width};
use crate::format::format_auto;

/// One group of points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointGroup {
    pub name: String,
    /// (x, y) pairs; non-finite ones are not drawn.
    pub points: Vec<(f64, f64)>,
    /// Its colour; `None`: by position.
    #[serde(default)]
    pub color: Option<[u8; 3]>,
}

/// A scatter plot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scatter {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    pub groups: Vec<PointGroup>,
    /// Dashed vertical lines at these x.
    pub x_lines: Vec<f64>,
    /// Dashed horizontal lines at these y.
    pub y_lines: Vec<f64>,
}

const PLOT: (i32, i32) = (420, 420);
const LEFT: i32 = 70;
const BOTTOM: i32 = 46;
const TOP: i32 = 44;

/// The scatter plot as SVG: the plot on the left, the legend (with each group's count of
/// drawn points) on the right.
pub fn scatter_svg(s: &Scatter) -> Result<String> {
    ensure!(!s.groups.is_empty(), "scatter: no groups to plot");
    let ok = |r: (f64, f64)| r.0.is_finite() && r.1.is_finite() && r.0 < r.1;
    ensure!(
        ok(s.x_range) && ok(s.y_range),
        "scatter: empty or non-finite axis range"
    );
    let entries: Vec<(String, Mark)> = s
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let n = g
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .count();
            (
                format!("{} ({n})", clean_text(&g.name)),
                Mark::Line {
                    color: color(g, i),
                    marker: true,
                },
            )
        })
        .collect();
    let legend_w = entries
        .iter()
        .map(|(t, _)| text_width(t, 12.0) as i32)
        .max()
        .unwrap_or(0)
        + 50;
    let width = LEFT + PLOT.0 + 20 + legend_w;
    let height = TOP + PLOT.1 + BOTTOM;
    render(width as u32, height as u32, |root| {
        figure_title(root, &clean_text(&s.title), width)?;
        plot(root, s)?;
        legend(root, (LEFT + PLOT.0 + 20, TOP + 10), &entries)?;
        Ok(())
    })
}

/// The axes, threshold lines and points, in the plot rectangle left of the legend.
fn plot(root: &Area, s: &Scatter) -> Result<()> {
    let sub = root
        .clone()
        .shrink((0, TOP), ((LEFT + PLOT.0) as u32, (PLOT.1 + BOTTOM) as u32));
    let mut chart = axes(
        &sub,
        (LEFT, BOTTOM),
        s.x_range.0..s.x_range.1,
        s.y_range.0..s.y_range.1,
    )?;
    let fmt = |v: &f64| format_auto(*v);
    styled_mesh(&mut chart.configure_mesh(), LINE_GRID)
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .x_desc(clean_text(&s.x_label))
        .y_desc(clean_text(&s.y_label))
        .draw()
        .map_err(plot_err)?;
    let dash = |a: (f64, f64), b: (f64, f64)| {
        plotters::element::DashedPathElement::new(
            vec![a, b],
            6,
            4,
            RGBColor(90, 90, 90).stroke_width(1),
        )
    };
    let (x0, x1, y0, y1) = (s.x_range.0, s.x_range.1, s.y_range.0, s.y_range.1);
    chart
        .draw_series(s.x_lines.iter().map(|&x| dash((x, y0), (x, y1))))
        .map_err(plot_err)?;
    chart
        .draw_series(s.y_lines.iter().map(|&y| dash((x0, y), (x1, y))))
        .map_err(plot_err)?;
    for (i, g) in s.groups.iter().enumerate() {
        let c = color(g, i);
        let inside = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
        chart
            .draw_series(
                g.points
                    .iter()
                    .filter(inside)
                    .map(|&(x, y)| Circle::new((x, y), 3, c.mix(0.6).filled())),
            )
            .map_err(plot_err)?;
    }
    Ok(())
}

fn color(g: &PointGroup, i: usize) -> RGBColor {
    g.color
        .map_or_else(|| series_color(i), |[r, gr, b]| RGBColor(r, gr, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scatter_draws_every_finite_point_and_refuses_bad_ranges() {
        let mut s = Scatter {
            title: "alignment against coherence".into(),
            x_label: "coherent".into(),
            y_label: "aligned".into(),
            x_range: (0.0, 100.0),
            y_range: (0.0, 100.0),
            groups: vec![PointGroup {
                name: "model".into(),
                points: vec![(10.0, 20.0), (f64::NAN, 3.0), (90.0, 95.0)],
                color: None,
            }],
            x_lines: vec![50.0],
            y_lines: vec![30.0],
        };
        let svg = scatter_svg(&s).unwrap();
        assert!(svg.contains("model (2)"), "the legend counts drawn points");
        assert!(svg.matches("<circle").count() >= 2);
        s.x_range = (1.0, 1.0);
        assert!(scatter_svg(&s).is_err());
    }
}
