//! A square matrix as a heatmap (analysis 2: the 2N x 2N cosine matrices of loss vectors
//! and gradients), with separators between groups (quadrants), group names on both axes
//! and a diverging colour map centred at 0.
//!
//! Large matrices are shown as block means (at most [`MAX_CELLS`] blocks per side, blocks
//! never straddling a group boundary), so the SVG stays a few megabytes; the subtitle says so.

use anyhow::{ensure, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use serde::{Deserialize, Serialize};

use super::draw::{cell, colorbar, figure_title, line, plot_err, render, text, Area};
use super::style::{
    clean_text, text_style, text_width, truncate, widest, ColorScale, Scale, MUTED, TEXT,
};

/// Most blocks drawn per side.
pub const MAX_CELLS: usize = 160;
/// Per-item labels are drawn up to this size.
const MAX_LABELLED: usize = 40;

/// A consecutive run of rows (and the same columns) that belong together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixGroup {
    pub name: String,
    pub len: usize,
}

/// Data of the square heatmap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixHeatmap {
    pub title: String,
    /// `[row][col]`, square.
    pub values: Vec<Vec<f64>>,
    /// Partition of the rows (and columns) into groups, in order; may be empty.
    pub groups: Vec<MatrixGroup>,
    /// One label per row/column, drawn when the matrix has at most 40 rows.
    pub labels: Option<Vec<String>>,
    pub scale: ColorScale,
    /// What the colours mean, e.g. "cosine similarity".
    pub colorbar_label: String,
}

fn validate(f: &MatrixHeatmap) -> Result<()> {
    let n = f.values.len();
    ensure!(n > 0, "matrix heatmap: the matrix is empty");
    for (i, r) in f.values.iter().enumerate() {
        ensure!(
            r.len() == n,
            "matrix heatmap: row {i} has {} values; the matrix has {n} rows",
            r.len()
        );
    }
    if !f.groups.is_empty() {
        let total: usize = f.groups.iter().map(|g| g.len).sum();
        ensure!(
            total == n,
            "matrix heatmap: groups cover {total} rows; the matrix has {n}"
        );
        ensure!(
            f.groups.iter().all(|g| g.len > 0),
            "matrix heatmap: a group is empty"
        );
    }
    if let Some(l) = &f.labels {
        ensure!(
            l.len() == n,
            "matrix heatmap: {} labels for {n} rows",
            l.len()
        );
    }
    Ok(())
}

/// Block edges `0 = e_0 < e_1 < ... = n`: each group is split into blocks of `bs` rows
/// (its last block shorter), so no block straddles a group boundary; `bs` is the smallest
/// size that gives at most `max_cells` blocks in all (or one block per group, if there are
/// more groups than that).
pub fn block_edges(n: usize, groups: &[usize], max_cells: usize) -> Vec<usize> {
    let spans: Vec<usize> = if groups.is_empty() {
        vec![n]
    } else {
        groups.to_vec()
    };
    let blocks = |bs: usize| spans.iter().map(|l| l.div_ceil(bs)).sum::<usize>();
    let mut bs = n.div_ceil(max_cells.max(1)).max(1);
    while bs < n && blocks(bs) > max_cells {
        bs += 1;
    }
    let mut edges = vec![0];
    let mut start = 0;
    for len in spans {
        let end = start + len;
        let mut e = start;
        while e < end {
            e = (e + bs).min(end);
            edges.push(e);
        }
        start = end;
    }
    edges
}

/// Mean of the finite values of each block; NaN when a block has none.
fn block_means(values: &[Vec<f64>], edges: &[usize]) -> Vec<Vec<f64>> {
    let spans: Vec<(usize, usize)> = edges.windows(2).map(|w| (w[0], w[1])).collect();
    spans
        .iter()
        .map(|&(r0, r1)| {
            spans
                .iter()
                .map(|&(c0, c1)| {
                    let (mut s, mut k) = (0.0, 0usize);
                    for row in &values[r0..r1] {
                        for &v in row[c0..c1].iter().filter(|v| v.is_finite()) {
                            s += v;
                            k += 1;
                        }
                    }
                    if k == 0 {
                        f64::NAN
                    } else {
                        s / k as f64
                    }
                })
                .collect()
        })
        .collect()
}

/// The figure as SVG.
pub fn matrix_heatmap_svg(f: &MatrixHeatmap) -> Result<String> {
    validate(f)?;
    let n = f.values.len();
    let title = clean_text(&f.title);
    let group_lens: Vec<usize> = f.groups.iter().map(|g| g.len).collect();
    let edges = block_edges(n, &group_lens, MAX_CELLS);
    let binned = edges.len() - 1 < n;
    let shown = if binned {
        block_means(&f.values, &edges)
    } else {
        f.values.clone()
    };
    let scale = f.scale.resolve(f.values.iter().flatten());
    let any_missing = shown.iter().flatten().any(|v| !v.is_finite());
    let labels: Option<Vec<String>> = f
        .labels
        .as_ref()
        .filter(|_| n <= MAX_LABELLED)
        .map(|l| l.iter().map(|s| truncate(&clean_text(s), 18)).collect());
    let g = Geometry::new(n, labels.as_deref(), !f.groups.is_empty(), binned, &title);

    render(g.w as u32, g.h as u32, |root| {
        figure_title(root, &title, g.w)?;
        if binned {
            let note = format!(
                "{n} x {n} shown as {b} x {b} block means",
                b = edges.len() - 1
            );
            text(
                root,
                &note,
                (g.w / 2, 44),
                &text_style(12.0, MUTED, HPos::Center, VPos::Center),
            )?;
        }
        draw_blocks(root, &g, &shown, &edges, &scale)?;
        draw_groups(root, &g, &f.groups)?;
        if let Some(l) = &labels {
            draw_item_labels(root, &g, l)?;
        }
        colorbar(
            root,
            (g.left + g.grid + 20, g.top),
            (16, g.bar_h),
            &scale,
            &clean_text(&f.colorbar_label),
            any_missing,
        )?;
        Ok(())
    })
}

/// Pixel geometry: an `n` x `n` matrix drawn as a `grid` px square at (`left`, `top`), a
/// colour bar `bar_h` high, on a `w` x `h` canvas.
struct Geometry {
    n: usize,
    grid: i32,
    left: i32,
    top: i32,
    bar_h: i32,
    w: i32,
    h: i32,
}

impl Geometry {
    /// 24 px per row for labelled matrices (160 to 640 px), 640 px otherwise; room for the
    /// group names, the per-item labels (left and below), the block-means note and the title.
    fn new(n: usize, labels: Option<&[String]>, grouped: bool, binned: bool, title: &str) -> Self {
        let grid = if n <= MAX_LABELLED {
            (n as i32 * 24).clamp(160, 640)
        } else {
            640
        };
        let item_w = labels.map_or(0, |l| widest(l, 11.0) + 8);
        let group_band = if grouped { 26 } else { 0 };
        let top = 50 + if binned { 18 } else { 0 } + group_band;
        let left = 16 + group_band + item_w;
        let bottom_labels = if labels.is_some() { item_w } else { 0 };
        let bar_h = grid.min(320);
        let w = (left + grid + 120).max(text_width(title, 16.0) as i32 + 40);
        let h = top + grid.max(bar_h + 30) + bottom_labels + 16;
        Geometry {
            n,
            grid,
            left,
            top,
            bar_h,
            w,
            h,
        }
    }

    /// Pixel offset of row (or column) boundary `i` from the grid's edge:
    /// round(i * grid / n).
    fn px(&self, i: usize) -> i32 {
        (i as f64 * self.grid as f64 / self.n as f64).round() as i32
    }
}

/// The blocks between `edges` (rows and columns alike) in their colours, and a frame.
fn draw_blocks(
    root: &Area,
    g: &Geometry,
    shown: &[Vec<f64>],
    edges: &[usize],
    scale: &Scale,
) -> Result<()> {
    let (left, top) = (g.left, g.top);
    for (r, row) in shown.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let (x0, x1) = (left + g.px(edges[c]), left + g.px(edges[c + 1]));
            let (y0, y1) = (top + g.px(edges[r]), top + g.px(edges[r + 1]));
            cell(root, (x0, y0), (x1, y1), scale.color(v))?;
        }
    }
    root.draw(&Rectangle::new(
        [(left, top), (left + g.grid, top + g.grid)],
        TEXT.stroke_width(1),
    ))
    .map_err(plot_err)
}

/// Each group's name above the grid and (rotated) left of it, and 2 px separators between
/// groups across the whole grid.
fn draw_groups(root: &Area, g: &Geometry, groups: &[MatrixGroup]) -> Result<()> {
    let (left, top, grid) = (g.left, g.top, g.grid);
    let mut start = 0;
    for (gi, group) in groups.iter().enumerate() {
        let (a, b) = (g.px(start), g.px(start + group.len));
        let name = truncate(&clean_text(&group.name), 40);
        text(
            root,
            &name,
            (left + (a + b) / 2, top - 8),
            &text_style(13.0, TEXT, HPos::Center, VPos::Bottom),
        )?;
        let rot =
            text_style(13.0, TEXT, HPos::Center, VPos::Center).transform(FontTransform::Rotate270);
        text(root, &name, (16 + 8, top + (a + b) / 2), &rot)?;
        if gi > 0 {
            let sep = TEXT.stroke_width(2);
            line(root, (left + a, top), (left + a, top + grid), sep)?;
            line(root, (left, top + a), (left + grid, top + a), sep)?;
        }
        start += group.len;
    }
    Ok(())
}

/// One label per row, left of the grid, and per column, rotated below it.
fn draw_item_labels(root: &Area, g: &Geometry, labels: &[String]) -> Result<()> {
    let row_style = text_style(11.0, TEXT, HPos::Right, VPos::Center);
    let col_style =
        text_style(11.0, TEXT, HPos::Left, VPos::Center).transform(FontTransform::Rotate90);
    for (i, s) in labels.iter().enumerate() {
        let mid = (g.px(i) + g.px(i + 1)) / 2;
        text(root, s, (g.left - 4, g.top + mid), &row_style)?;
        text(root, s, (g.left + mid, g.top + g.grid + 4), &col_style)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_respect_groups() {
        assert_eq!(block_edges(4, &[], 10), vec![0, 1, 2, 3, 4]);
        // 10 rows, at most 4 blocks: block size 3; groups of 5 and 5 split 3 + 2 each.
        assert_eq!(block_edges(10, &[5, 5], 4), vec![0, 3, 5, 8, 10]);
        // Three groups of 3 in at most 4 blocks: size 3 gives 3 blocks (size 2 would give 6).
        assert_eq!(block_edges(9, &[3, 3, 3], 4), vec![0, 3, 6, 9]);
        let m = vec![
            vec![1.0, 3.0, 0.0],
            vec![f64::NAN, 5.0, 0.0],
            vec![0.0, 0.0, 7.0],
        ];
        let b = block_means(&m, &[0, 2, 3]);
        assert_eq!(b[0][0], 3.0); // (1 + 3 + 5) / 3, the NaN skipped
        assert_eq!(b[0][1], 0.0);
        assert_eq!(b[1][1], 7.0);
        let all_nan = block_means(&[vec![f64::NAN]], &[0, 1]);
        assert!(all_nan[0][0].is_nan());
    }
}
