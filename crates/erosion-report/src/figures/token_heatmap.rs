//! Per-token log-probabilities of one response under several models (analysis 1a):
//! a heatmap models x tokens with the response's tokens as column labels, and below it the
//! running log joint probability sum_{j<=i} log p(t_j | t_<j) of each model, on the same
//! x positions.

use anyhow::{ensure, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use serde::{Deserialize, Serialize};

use super::draw::{cell, colorbar, figure_title, legend, line, render, text, Area, Mark};
use super::lines::{
    legend_entries, line_panel, padded_range, LineSeries, Panel, BOTTOM_AXIS, LEFT_AXIS,
};
use super::style::{
    clean_text, text_style, text_width, token_label, truncate, widest, ColorScale, Scale, MUTED,
    TEXT,
};

/// Data of the token heatmap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprobs {
    pub title: String,
    /// The response's tokens as text (decoded one by one).
    pub tokens: Vec<String>,
    pub models: Vec<String>,
    /// `[model][token]`: natural log-probability of each response token under each model.
    pub logprobs: Vec<Vec<f64>>,
    /// Each model's colour in the running-log-joint panel, by name (empty: by position).
    #[serde(default)]
    pub colors: super::style::ModelColors,
}

/// Longest token label, in characters, before it is cut with "…".
const TOKEN_CHARS: usize = 16;

/// Running sums; once a value is NaN or infinite the rest of the row is too.
pub fn running_log_joint(row: &[f64]) -> Vec<f64> {
    row.iter()
        .scan(0.0, |acc, &v| {
            *acc += v;
            Some(*acc)
        })
        .collect()
}

fn validate(f: &TokenLogprobs) -> Result<()> {
    ensure!(!f.tokens.is_empty(), "token heatmap: no tokens");
    ensure!(!f.models.is_empty(), "token heatmap: no models");
    ensure!(
        f.logprobs.len() == f.models.len(),
        "token heatmap: {} models but {} rows of log-probabilities",
        f.models.len(),
        f.logprobs.len()
    );
    for (m, row) in f.models.iter().zip(&f.logprobs) {
        ensure!(
            row.len() == f.tokens.len(),
            "token heatmap: model {m:?} has {} log-probabilities for {} tokens",
            row.len(),
            f.tokens.len()
        );
    }
    Ok(())
}

/// The figure as SVG. Higher probability is brighter (viridis, range from the finite
/// values); NaN and infinite log-probabilities are grey hatched cells.
pub fn token_logprob_svg(f: &TokenLogprobs) -> Result<String> {
    validate(f)?;
    let n = f.tokens.len();
    let title = clean_text(&f.title);
    let models: Vec<String> = f
        .models
        .iter()
        .map(|m| truncate(&clean_text(m), 24))
        .collect();
    let labels: Vec<String> = f
        .tokens
        .iter()
        .map(|t| token_label(t, TOKEN_CHARS))
        .collect();
    let scale = ColorScale::Sequential {
        min: None,
        max: None,
    }
    .resolve(f.logprobs.iter().flatten());
    let any_missing = f.logprobs.iter().flatten().any(|v| !v.is_finite());
    let joint = joint_series(f);
    let entries = legend_entries(&joint, None, n <= 80);
    let g = Geometry::new(n, &models, &labels, &entries, any_missing, &title);

    render(g.w as u32, g.h as u32, |root| {
        figure_title(root, &title, g.w)?;
        draw_positions(root, &g, n)?;
        draw_cells(root, &g, &f.logprobs, &models, &scale)?;
        draw_token_labels(root, &g, &labels)?;
        colorbar(
            root,
            (g.left + g.grid_w + 20, g.top),
            (16, g.bar_h),
            &scale,
            "log p(token)",
            any_missing,
        )?;
        draw_joint_panel(root, &g, n, &joint, &entries)
    })
}

/// Label height of the token labels, in pixels.
const LABEL_PX: f64 = 12.0;

/// Pixel geometry of the figure: cells of `cw` x `ch` in a grid at (`left`, `top`) of
/// `grid_w` x `grid_h`, a colour bar `bar_h` high beside it, the running-joint panel at
/// `panel_top`, `panel_h` high, on a `w` x `h` canvas.
struct Geometry {
    cw: i32,
    ch: i32,
    left: i32,
    top: i32,
    grid_w: i32,
    grid_h: i32,
    bar_h: i32,
    panel_top: i32,
    panel_h: i32,
    w: i32,
    h: i32,
}

impl Geometry {
    /// Room for `n` token columns, one row per model name, the rotated token labels below,
    /// the colour bar (and its "not finite" swatch), the panel's legend and the title.
    fn new(
        n: usize,
        models: &[String],
        labels: &[String],
        entries: &[(String, Mark)],
        any_missing: bool,
        title: &str,
    ) -> Self {
        let cw = if n <= 120 {
            (600 / n as i32).clamp(22, 48)
        } else {
            16
        };
        let ch = 30;
        let left = 16 + (widest(models, 13.0) + 12).max(LEFT_AXIS);
        let top = 56; // title, then token positions above the grid
        let grid_w = n as i32 * cw;
        let grid_h = models.len() as i32 * ch;
        let tok_h = widest(labels, LABEL_PX) + 12;
        let bar_h = grid_h.max(120);
        let right = 130;
        let legend_w = widest(entries.iter().map(|(s, _)| s), 12.0) + 50;
        let panel_top = top + (grid_h + tok_h).max(bar_h + if any_missing { 24 } else { 0 }) + 40;
        let panel_h = 240;
        let w = (left + grid_w + right.max(legend_w + 20) + 10)
            .max(text_width(title, 16.0) as i32 + 40)
            .max(left + 300);
        let h = panel_top + panel_h + BOTTOM_AXIS + 12;
        Geometry {
            cw,
            ch,
            left,
            top,
            grid_w,
            grid_h,
            bar_h,
            panel_top,
            panel_h,
            w,
            h,
        }
    }

    /// Left edge of token column `i`.
    fn x(&self, i: usize) -> i32 {
        self.left + i as i32 * self.cw
    }
}

/// Each model's running log joint against token position (x = 0..n).
fn joint_series(f: &TokenLogprobs) -> Vec<LineSeries> {
    let n = f.tokens.len();
    let mut series: Vec<LineSeries> = f
        .models
        .iter()
        .zip(&f.logprobs)
        .map(|(m, row)| {
            LineSeries::new(
                m,
                (0..n).map(|i| i as f64).collect(),
                running_log_joint(row),
            )
        })
        .collect();
    f.colors.paint(&mut series);
    series
}

/// Token positions every 5 tokens (every 10 when long), above the grid.
fn draw_positions(root: &Area, g: &Geometry, n: usize) -> Result<()> {
    let every = if n > 60 { 10 } else { 5 };
    let pos_style = text_style(10.0, MUTED, HPos::Center, VPos::Bottom);
    for i in (0..n).step_by(every) {
        text(
            root,
            &i.to_string(),
            (g.x(i) + g.cw / 2, g.top - 3),
            &pos_style,
        )?;
    }
    Ok(())
}

/// One row of cells per model with its name on the left, then a thin white line between
/// columns, which keeps neighbouring tokens apart.
fn draw_cells(
    root: &Area,
    g: &Geometry,
    logprobs: &[Vec<f64>],
    models: &[String],
    scale: &Scale,
) -> Result<()> {
    for (r, row) in logprobs.iter().enumerate() {
        let y = g.top + r as i32 * g.ch;
        for (i, &v) in row.iter().enumerate() {
            let x = g.x(i);
            cell(root, (x, y), (x + g.cw, y + g.ch), scale.color(v))?;
        }
        let ms = text_style(13.0, TEXT, HPos::Right, VPos::Center);
        text(root, &models[r], (g.left - 8, y + g.ch / 2), &ms)?;
    }
    let n = logprobs.first().map_or(0, Vec::len);
    for i in 1..n {
        let x = g.x(i);
        line(
            root,
            (x, g.top),
            (x, g.top + g.grid_h),
            WHITE.stroke_width(1),
        )?;
    }
    Ok(())
}

/// Token labels, rotated to read downwards, hanging under their column.
fn draw_token_labels(root: &Area, g: &Geometry, labels: &[String]) -> Result<()> {
    let ls =
        text_style(LABEL_PX, TEXT, HPos::Left, VPos::Center).transform(FontTransform::Rotate90);
    for (i, l) in labels.iter().enumerate() {
        text(root, l, (g.x(i) + g.cw / 2, g.top + g.grid_h + 6), &ls)?;
    }
    Ok(())
}

/// The running log joint panel under the grid, its x aligned with the cells' centres, with
/// a heading above it and the legend on its right.
fn draw_joint_panel(
    root: &Area,
    g: &Geometry,
    n: usize,
    joint: &[LineSeries],
    entries: &[(String, Mark)],
) -> Result<()> {
    let x_fmt = |v: &f64| {
        if (v - v.round()).abs() < 1e-9 {
            format!("{}", v.round() as i64)
        } else {
            String::new()
        }
    };
    let panel = Panel {
        x_range: (-0.5, n as f64 - 0.5),
        y_range: padded_range(joint.iter().flat_map(|s| s.y.iter()).chain([0.0].iter())),
        x_desc: "response token position".to_string(),
        y_desc: "running log joint (nats)".to_string(),
        x_labels: n.clamp(2, 25),
        x_fmt: &x_fmt,
        markers: n <= 80,
        zero_line: false,
    };
    text(
        root,
        "Running log joint probability: sum of the log-probabilities above, up to each token",
        (g.left, g.panel_top - 12),
        &text_style(12.0, TEXT, HPos::Left, VPos::Bottom),
    )?;
    line_panel(
        root,
        (g.left, g.panel_top),
        (g.left + g.grid_w, g.panel_top + g.panel_h),
        joint,
        &panel,
    )?;
    legend(root, (g.left + g.grid_w + 20, g.panel_top), entries)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_sum_by_hand() {
        assert_eq!(
            running_log_joint(&[-1.0, -0.5, -2.0]),
            vec![-1.0, -1.5, -3.5]
        );
        let r = running_log_joint(&[-1.0, f64::NEG_INFINITY, -1.0]);
        assert_eq!(r[0], -1.0);
        assert!(r[1] == f64::NEG_INFINITY && r[2] == f64::NEG_INFINITY);
    }
}
