//! Top-k next tokens after a prefix, one small bar chart per model, with the entropy of
//! each model's full next-token distribution in its title (analysis 1b).

use anyhow::{ensure, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use serde::{Deserialize, Serialize};

use super::draw::{axes, figure_title, plot_err, render, styled_mesh, text, Area, BAR_GRID};
use super::style::{bold_style, clean_text, text_style, text_width, token_label, truncate, TEXT};
use crate::format::{format_auto, format_value};

/// One model's top-k next tokens, most probable first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextTokenPanel {
    pub model: String,
    pub tokens: Vec<String>,
    pub probs: Vec<f64>,
    /// Entropy of the whole next-token distribution (not only the top k).
    pub entropy: f64,
}

/// Data of the next-token figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextTokenBars {
    pub title: String,
    /// The text the distributions follow, shown under the title.
    pub prefix: Option<String>,
    /// "nats" or "bits".
    pub entropy_unit: String,
    pub panels: Vec<NextTokenPanel>,
    /// Each model's colour, by name (empty: by position).
    #[serde(default)]
    pub colors: super::style::ModelColors,
}

const BAR_ROW: i32 = 24;
const PLOT_W: i32 = 230;
const COLS: usize = 3;

fn validate(f: &NextTokenBars) -> Result<()> {
    ensure!(!f.panels.is_empty(), "next-token figure: no models");
    for p in &f.panels {
        ensure!(
            !p.tokens.is_empty(),
            "next-token figure: model {:?} has no tokens",
            p.model
        );
        ensure!(
            p.tokens.len() == p.probs.len(),
            "next-token figure: model {:?} has {} tokens and {} probabilities",
            p.model,
            p.tokens.len(),
            p.probs.len()
        );
    }
    Ok(())
}

/// The figure as SVG: panels in rows of three, a shared probability axis so bar lengths
/// compare across models, each bar labelled with its probability.
pub fn next_token_svg(f: &NextTokenBars) -> Result<String> {
    validate(f)?;
    let title = clean_text(&f.title);
    let subtitle = f.prefix.as_ref().map(|p| {
        format!(
            "next token after \u{201c}{}\u{201d}",
            truncate(&clean_text(p), 90)
        )
    });
    let k = f.panels.iter().map(|p| p.tokens.len()).max().unwrap_or(1) as i32;
    let labels: Vec<Vec<String>> = f
        .panels
        .iter()
        .map(|p| p.tokens.iter().map(|t| token_label(t, 18)).collect())
        .collect();
    let tok_w = labels
        .iter()
        .flatten()
        .map(|l| text_width(l, 12.0))
        .fold(0.0, f64::max)
        .ceil() as i32;
    let max_p = f
        .panels
        .iter()
        .flat_map(|p| &p.probs)
        .filter(|p| p.is_finite())
        .fold(0.0, |a: f64, &b| a.max(b));
    // A shared axis with room for the value labels, at most 1.
    let x_max = ((max_p * 1.15 * 10.0).ceil() / 10.0).clamp(0.1, 1.0);

    let panel_w = tok_w + 10 + PLOT_W + 50;
    let panel_h = 34 + k * BAR_ROW + 40;
    let cols = f.panels.len().min(COLS) as i32;
    let rows = f.panels.len().div_ceil(COLS) as i32;
    let top = if subtitle.is_some() { 64 } else { 46 };
    let w = (16 + cols * panel_w).max(text_width(&title, 16.0) as i32 + 40);
    let h = top + rows * panel_h + 10;
    render(w as u32, h as u32, |root| {
        figure_title(root, &title, w)?;
        if let Some(s) = &subtitle {
            text(
                root,
                s,
                (w / 2, 44),
                &text_style(13.0, TEXT, HPos::Center, VPos::Center),
            )?;
        }
        for (i, p) in f.panels.iter().enumerate() {
            let px = 16 + (i as i32 % cols) * panel_w;
            let py = top + (i as i32 / cols) * panel_h;
            panel(
                root,
                (px, py),
                tok_w,
                k,
                x_max,
                p,
                &labels[i],
                &f.entropy_unit,
                f.colors.color(&p.model, i),
            )?;
        }
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)]
fn panel(
    root: &Area,
    (px, py): (i32, i32),
    tok_w: i32,
    k: i32,
    x_max: f64,
    p: &NextTokenPanel,
    labels: &[String],
    unit: &str,
    color: RGBColor,
) -> Result<()> {
    let entropy = match p.entropy.is_finite() {
        true => format!("{} {}", format_value(p.entropy, 2), clean_text(unit)),
        false => "n/a".to_string(),
    };
    let head = format!(
        "{}  \u{b7}  H = {entropy}",
        truncate(&clean_text(&p.model), 28)
    );
    let x0 = px + tok_w + 10;
    text(
        root,
        &head,
        (x0 + PLOT_W / 2, py + 12),
        &bold_style(13.0, TEXT, HPos::Center, VPos::Center),
    )?;
    let y0 = py + 30;
    let plot_h = k * BAR_ROW;
    let sub = root
        .clone()
        .shrink((x0, y0), (PLOT_W as u32, (plot_h + 36) as u32));
    let mut chart = axes(&sub, (0, 36), 0.0..x_max, 0.0..k as f64)?;
    let fmt = |v: &f64| format_auto(*v);
    styled_mesh(&mut chart.configure_mesh(), BAR_GRID)
        .disable_y_mesh()
        .y_labels(0)
        .x_labels(6)
        .x_label_formatter(&fmt)
        .x_desc("probability")
        .draw()
        .map_err(plot_err)?;
    let value_style = text_style(11.0, TEXT, HPos::Left, VPos::Center);
    let label_style = text_style(12.0, TEXT, HPos::Right, VPos::Center);
    for (j, (&prob, label)) in p.probs.iter().zip(labels).enumerate() {
        // Most probable at the top.
        let top = k as f64 - j as f64;
        let mid = top - 0.5;
        if prob.is_finite() && prob > 0.0 {
            let len = prob.min(x_max);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, top - 0.15), (len, top - 0.85)],
                    color.filled(),
                )))
                .map_err(plot_err)?;
        }
        let shown = if prob.is_finite() {
            prob.clamp(0.0, x_max)
        } else {
            0.0
        };
        let (bx, by) = chart.backend_coord(&(shown, mid));
        text(root, &format_value(prob, 3), (bx + 4, by), &value_style)?;
        text(root, label, (x0 - 6, by), &label_style)?;
    }
    Ok(())
}
