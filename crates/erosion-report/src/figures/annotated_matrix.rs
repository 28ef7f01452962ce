//! A small matrix with its value printed in every cell (analysis 4: the k x k cosine
//! between the top-k directions of two domains).

use anyhow::{ensure, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use serde::{Deserialize, Serialize};

use super::draw::{cell, colorbar, figure_title, plot_err, render, text};
use super::style::{
    bold_style, clean_text, text_style, text_width, truncate, ColorScale, Scale, MUTED, TEXT,
};
use crate::format::format_value;

/// Data of the annotated heatmap; `values` is `[row][col]`, rows x cols (k x k or not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnotatedMatrix {
    pub title: String,
    pub row_labels: Vec<String>,
    pub col_labels: Vec<String>,
    /// What the rows are, e.g. "insecure code: component".
    pub row_title: String,
    pub col_title: String,
    pub values: Vec<Vec<f64>>,
    pub scale: ColorScale,
    /// Decimals of the printed values.
    pub decimals: usize,
    pub colorbar_label: String,
    /// A line under the title, e.g. the sign convention.
    pub note: Option<String>,
}

fn validate(f: &AnnotatedMatrix) -> Result<()> {
    ensure!(!f.values.is_empty(), "annotated matrix: no rows");
    ensure!(
        f.values.len() == f.row_labels.len(),
        "annotated matrix: {} rows but {} row labels",
        f.values.len(),
        f.row_labels.len()
    );
    ensure!(!f.col_labels.is_empty(), "annotated matrix: no columns");
    for (i, r) in f.values.iter().enumerate() {
        ensure!(
            r.len() == f.col_labels.len(),
            "annotated matrix: row {i} has {} values but there are {} column labels",
            r.len(),
            f.col_labels.len()
        );
    }
    Ok(())
}

/// The figure as SVG. Cells are 60 px (wider when the printed values need it); text is
/// black or white by the cell's brightness.
pub fn annotated_matrix_svg(f: &AnnotatedMatrix) -> Result<String> {
    validate(f)?;
    let (rows, cols) = (f.values.len() as i32, f.col_labels.len() as i32);
    let title = clean_text(&f.title);
    let note = f.note.as_ref().map(|n| clean_text(n));
    let row_labels: Vec<String> = f
        .row_labels
        .iter()
        .map(|s| truncate(&clean_text(s), 24))
        .collect();
    let col_labels: Vec<String> = f
        .col_labels
        .iter()
        .map(|s| truncate(&clean_text(s), 24))
        .collect();
    let values: Vec<Vec<String>> = f
        .values
        .iter()
        .map(|r| r.iter().map(|&v| format_value(v, f.decimals)).collect())
        .collect();
    let scale = f.scale.resolve(f.values.iter().flatten());
    let any_missing = f.values.iter().flatten().any(|v| !v.is_finite());

    let value_w = values
        .iter()
        .flatten()
        .map(|s| text_width(s, 13.0))
        .fold(0.0, f64::max)
        .ceil() as i32;
    let cs = 60.max(value_w + 12);
    let col_w = col_labels
        .iter()
        .map(|s| text_width(s, 12.0))
        .fold(0.0, f64::max)
        .ceil() as i32;
    let rotate_cols = col_w > cs - 4;
    let col_band = if rotate_cols { col_w + 8 } else { 20 };
    let row_w = row_labels
        .iter()
        .map(|s| text_width(s, 12.0))
        .fold(0.0, f64::max)
        .ceil() as i32;
    let top = 46 + if note.is_some() { 18 } else { 0 } + 22 + col_band;
    let left = 16 + 24 + row_w + 8;
    let (gw, gh) = (cols * cs, rows * cs);
    let bar_h = gh.max(120);
    let w = (left + gw + 110).max(text_width(&title, 16.0) as i32 + 40);
    let h = top + gh.max(bar_h + if any_missing { 30 } else { 0 }) + 16;

    render(w as u32, h as u32, |root| {
        figure_title(root, &title, w)?;
        if let Some(n) = &note {
            text(
                root,
                n,
                (w / 2, 44),
                &text_style(12.0, MUTED, HPos::Center, VPos::Center),
            )?;
        }
        // Column axis title and labels above the grid.
        let ct = clean_text(&f.col_title);
        text(
            root,
            &ct,
            (left + gw / 2, top - col_band - 8),
            &bold_style(12.0, TEXT, HPos::Center, VPos::Bottom),
        )?;
        for (j, l) in col_labels.iter().enumerate() {
            let x = left + j as i32 * cs + cs / 2;
            if rotate_cols {
                let st = text_style(12.0, TEXT, HPos::Left, VPos::Center)
                    .transform(FontTransform::Rotate270);
                text(root, l, (x, top - 4), &st)?;
            } else {
                text(
                    root,
                    l,
                    (x, top - 4),
                    &text_style(12.0, TEXT, HPos::Center, VPos::Bottom),
                )?;
            }
        }
        // Row axis title (rotated) and labels left of the grid.
        let rt = clean_text(&f.row_title);
        let st =
            bold_style(12.0, TEXT, HPos::Center, VPos::Center).transform(FontTransform::Rotate270);
        text(root, &rt, (16 + 10, top + gh / 2), &st)?;
        for (i, l) in row_labels.iter().enumerate() {
            let y = top + i as i32 * cs + cs / 2;
            text(
                root,
                l,
                (left - 6, y),
                &text_style(12.0, TEXT, HPos::Right, VPos::Center),
            )?;
        }
        for (i, row) in f.values.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let (x0, y0) = (left + j as i32 * cs, top + i as i32 * cs);
                let fill = scale.color(v);
                cell(root, (x0, y0), (x0 + cs, y0 + cs), fill)?;
                let ink = fill.map_or(TEXT, Scale::text_on);
                let style = text_style(13.0, ink, HPos::Center, VPos::Center);
                text(root, &values[i][j], (x0 + cs / 2, y0 + cs / 2), &style)?;
            }
        }
        // Thin white grid lines between cells.
        for j in 1..cols {
            let x = left + j * cs;
            root.draw(&PathElement::new(
                vec![(x, top), (x, top + gh)],
                WHITE.stroke_width(1),
            ))
            .map_err(plot_err)?;
        }
        for i in 1..rows {
            let y = top + i * cs;
            root.draw(&PathElement::new(
                vec![(left, y), (left + gw, y)],
                WHITE.stroke_width(1),
            ))
            .map_err(plot_err)?;
        }
        colorbar(
            root,
            (left + gw + 20, top),
            (16, bar_h),
            &scale,
            &clean_text(&f.colorbar_label),
            any_missing,
        )?;
        Ok(())
    })
}
