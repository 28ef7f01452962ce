//! A small matrix with its value printed in every cell (analysis 4: the k x k cosine
//! between the top-k directions of two domains).

use anyhow::{ensure, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use serde::{Deserialize, Serialize};

use super::draw::{cell, colorbar, figure_title, line, render, text, Area};
use super::style::{
    bold_style, clean_text, text_style, text_width, truncate, widest, ColorScale, Scale, MUTED,
    TEXT,
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
    let title = clean_text(&f.title);
    let note = f.note.as_ref().map(|n| clean_text(n));
    let labels =
        |l: &[String]| -> Vec<String> { l.iter().map(|s| truncate(&clean_text(s), 24)).collect() };
    let (row_labels, col_labels) = (labels(&f.row_labels), labels(&f.col_labels));
    let values: Vec<Vec<String>> = f
        .values
        .iter()
        .map(|r| r.iter().map(|&v| format_value(v, f.decimals)).collect())
        .collect();
    let scale = f.scale.resolve(f.values.iter().flatten());
    let any_missing = f.values.iter().flatten().any(|v| !v.is_finite());
    let g = Geometry::new(
        f,
        &row_labels,
        &col_labels,
        &values,
        note.is_some(),
        any_missing,
        &title,
    );

    render(g.w as u32, g.h as u32, |root| {
        figure_title(root, &title, g.w)?;
        if let Some(n) = &note {
            text(
                root,
                n,
                (g.w / 2, 44),
                &text_style(12.0, MUTED, HPos::Center, VPos::Center),
            )?;
        }
        draw_col_labels(root, &g, &clean_text(&f.col_title), &col_labels)?;
        draw_row_labels(root, &g, &clean_text(&f.row_title), &row_labels)?;
        draw_cells(root, &g, &f.values, &values, &scale)?;
        colorbar(
            root,
            (g.left + g.gw + 20, g.top),
            (16, g.bar_h),
            &scale,
            &clean_text(&f.colorbar_label),
            any_missing,
        )?;
        Ok(())
    })
}

/// Pixel geometry: `rows` x `cols` square cells of `cs` px in a `gw` x `gh` grid at
/// (`left`, `top`), column labels in a band `col_band` px high above it (rotated when
/// `rotate_cols`), a colour bar `bar_h` high, on a `w` x `h` canvas.
struct Geometry {
    rows: i32,
    cols: i32,
    cs: i32,
    rotate_cols: bool,
    col_band: i32,
    top: i32,
    left: i32,
    gw: i32,
    gh: i32,
    bar_h: i32,
    w: i32,
    h: i32,
}

impl Geometry {
    /// Cells wide enough for the printed values (at least 60 px); column labels upright when
    /// they fit a cell, rotated otherwise; room for the note, the row labels, the colour bar
    /// (and its "not finite" swatch) and the title.
    fn new(
        f: &AnnotatedMatrix,
        row_labels: &[String],
        col_labels: &[String],
        values: &[Vec<String>],
        has_note: bool,
        any_missing: bool,
        title: &str,
    ) -> Self {
        let (rows, cols) = (f.values.len() as i32, f.col_labels.len() as i32);
        let cs = 60.max(widest(values.iter().flatten(), 13.0) + 12);
        let col_w = widest(col_labels, 12.0);
        let rotate_cols = col_w > cs - 4;
        let col_band = if rotate_cols { col_w + 8 } else { 20 };
        let row_w = widest(row_labels, 12.0);
        let top = 46 + if has_note { 18 } else { 0 } + 22 + col_band;
        let left = 16 + 24 + row_w + 8;
        let (gw, gh) = (cols * cs, rows * cs);
        let bar_h = gh.max(120);
        let w = (left + gw + 110).max(text_width(title, 16.0) as i32 + 40);
        let h = top + gh.max(bar_h + if any_missing { 30 } else { 0 }) + 16;
        Geometry {
            rows,
            cols,
            cs,
            rotate_cols,
            col_band,
            top,
            left,
            gw,
            gh,
            bar_h,
            w,
            h,
        }
    }
}

/// The column axis' title and the column labels, above the grid.
fn draw_col_labels(root: &Area, g: &Geometry, title: &str, labels: &[String]) -> Result<()> {
    text(
        root,
        title,
        (g.left + g.gw / 2, g.top - g.col_band - 8),
        &bold_style(12.0, TEXT, HPos::Center, VPos::Bottom),
    )?;
    for (j, l) in labels.iter().enumerate() {
        let x = g.left + j as i32 * g.cs + g.cs / 2;
        if g.rotate_cols {
            let st = text_style(12.0, TEXT, HPos::Left, VPos::Center)
                .transform(FontTransform::Rotate270);
            text(root, l, (x, g.top - 4), &st)?;
        } else {
            text(
                root,
                l,
                (x, g.top - 4),
                &text_style(12.0, TEXT, HPos::Center, VPos::Bottom),
            )?;
        }
    }
    Ok(())
}

/// The row axis' title (rotated) and the row labels, left of the grid.
fn draw_row_labels(root: &Area, g: &Geometry, title: &str, labels: &[String]) -> Result<()> {
    let st = bold_style(12.0, TEXT, HPos::Center, VPos::Center).transform(FontTransform::Rotate270);
    text(root, title, (16 + 10, g.top + g.gh / 2), &st)?;
    for (i, l) in labels.iter().enumerate() {
        let y = g.top + i as i32 * g.cs + g.cs / 2;
        text(
            root,
            l,
            (g.left - 6, y),
            &text_style(12.0, TEXT, HPos::Right, VPos::Center),
        )?;
    }
    Ok(())
}

/// Every cell in its colour with its printed value, then thin white grid lines between
/// cells.
fn draw_cells(
    root: &Area,
    g: &Geometry,
    values: &[Vec<f64>],
    printed: &[Vec<String>],
    scale: &Scale,
) -> Result<()> {
    let cs = g.cs;
    for (i, row) in values.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let (x0, y0) = (g.left + j as i32 * cs, g.top + i as i32 * cs);
            let fill = scale.color(v);
            cell(root, (x0, y0), (x0 + cs, y0 + cs), fill)?;
            let ink = fill.map_or(TEXT, Scale::text_on);
            let style = text_style(13.0, ink, HPos::Center, VPos::Center);
            text(root, &printed[i][j], (x0 + cs / 2, y0 + cs / 2), &style)?;
        }
    }
    let white = WHITE.stroke_width(1);
    for j in 1..g.cols {
        let x = g.left + j * cs;
        line(root, (x, g.top), (x, g.top + g.gh), white)?;
    }
    for i in 1..g.rows {
        let y = g.top + i * cs;
        line(root, (g.left, y), (g.left + g.gw, y), white)?;
    }
    Ok(())
}
