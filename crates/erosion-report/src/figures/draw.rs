//! Drawing helpers in pixel coordinates: the SVG canvas, cells (with a hatch for missing
//! values), colour bars, legends and text; and the one way every figure sets up plotters'
//! axes ([`axes`], [`styled_mesh`]).

use std::ops::Range;

use anyhow::{anyhow, Result};
use plotters::chart::MeshStyle;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::style::{nice_ticks, text_style, Scale, MISSING_FILL, MISSING_HATCH, MUTED, TEXT};
use crate::format::format_tick;

/// The canvas every figure draws on.
pub type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// plotters' errors borrow nothing but are generic; turn them into anyhow errors.
pub fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the figure: {e:?}")
}

/// Runs `draw` on a white `w` x `h` SVG canvas and returns the SVG text.
pub fn render(w: u32, h: u32, draw: impl FnOnce(&Area) -> Result<()>) -> Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (w.max(1), h.max(1))).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    Ok(buf)
}

/// A chart with f64 axes drawn on an [`Area`].
pub type Chart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Light and bold grid-line colours of a mesh.
pub type GridColors = (RGBColor, RGBColor);

/// The grid of the bar charts.
pub const BAR_GRID: GridColors = (RGBColor(240, 240, 240), RGBColor(220, 220, 220));
/// The (slightly darker) grid of the line charts.
pub const LINE_GRID: GridColors = (RGBColor(238, 238, 238), RGBColor(215, 215, 215));

/// A chart over `x` x `y` filling `sub`, with `left` and `bottom` pixels of it kept for tick
/// labels and axis descriptions (0: none).
pub fn axes<'a, 'b>(
    sub: &'a Area<'b>,
    (left, bottom): (i32, i32),
    x: Range<f64>,
    y: Range<f64>,
) -> Result<Chart<'a, 'b>> {
    ChartBuilder::on(sub)
        .set_label_area_size(LabelAreaPosition::Left, left)
        .set_label_area_size(LabelAreaPosition::Bottom, bottom)
        .build_cartesian_2d(x, y)
        .map_err(plot_err)
}

/// The house style of a chart's mesh: 11 px tick labels, 12 px axis descriptions, grid lines
/// in `grid`'s colours. Callers add ticks, formatters and descriptions, then draw it.
pub fn styled_mesh<'m, 'a, 'b, X: Ranged, Y: Ranged, DB: DrawingBackend>(
    mesh: &'m mut MeshStyle<'a, 'b, X, Y, DB>,
    (light, bold): GridColors,
) -> &'m mut MeshStyle<'a, 'b, X, Y, DB> {
    mesh.label_style(text_style(11.0, TEXT, HPos::Center, VPos::Center))
        .axis_desc_style(text_style(12.0, TEXT, HPos::Center, VPos::Center))
        .light_line_style(light)
        .bold_line_style(bold)
}

/// A straight line from `a` to `b` in pixels.
pub fn line(area: &Area, a: (i32, i32), b: (i32, i32), style: ShapeStyle) -> Result<()> {
    area.draw(&PathElement::new(vec![a, b], style))
        .map_err(plot_err)
}

/// A figure's title: bold 16 px, centred on a figure `width` pixels wide, 22 px from the top.
pub fn figure_title(root: &Area, title: &str, width: i32) -> Result<()> {
    text(
        root,
        title,
        (width / 2, 22),
        &super::style::bold_style(16.0, TEXT, HPos::Center, VPos::Center),
    )
}

/// Draws `s` at pixel `pos` in `style`.
pub fn text(area: &Area, s: &str, pos: (i32, i32), style: &TextStyle) -> Result<()> {
    if s.is_empty() {
        return Ok(());
    }
    area.draw(&Text::new(s.to_string(), pos, style.clone()))
        .map_err(plot_err)
}

/// A rectangle filled with `color`, or, for a missing value (`None`), grey with diagonal
/// hatch lines 5 px apart.
pub fn cell(
    area: &Area,
    (x0, y0): (i32, i32),
    (x1, y1): (i32, i32),
    color: Option<RGBColor>,
) -> Result<()> {
    match color {
        Some(c) => area
            .draw(&Rectangle::new([(x0, y0), (x1, y1)], c.filled()))
            .map_err(plot_err),
        None => {
            area.draw(&Rectangle::new([(x0, y0), (x1, y1)], MISSING_FILL.filled()))
                .map_err(plot_err)?;
            hatch(area, (x0, y0), (x1, y1))
        }
    }
}

/// "/" lines across the rectangle: the line x + y = c meets it for x in
/// [max(x0, c - y1), min(x1, c - y0)].
fn hatch(area: &Area, (x0, y0): (i32, i32), (x1, y1): (i32, i32)) -> Result<()> {
    const GAP: i32 = 5;
    if x1 - x0 < 4 || y1 - y0 < 4 {
        return Ok(());
    }
    let mut c = x0 + y0 + GAP;
    while c < x1 + y1 {
        let xa = x0.max(c - y1);
        let xb = x1.min(c - y0);
        if xa < xb {
            area.draw(&PathElement::new(
                vec![(xa, c - xa), (xb, c - xb)],
                MISSING_HATCH.stroke_width(1),
            ))
            .map_err(plot_err)?;
        }
        c += GAP;
    }
    Ok(())
}

/// A vertical colour bar with its top-left corner at (x, y), `w` x `h` pixels, tick labels
/// on its right and `label` rotated beside them; a hatched "not finite" swatch below when
/// `show_missing`. Returns the bottom of what was drawn.
pub fn colorbar(
    area: &Area,
    (x, y): (i32, i32),
    (w, h): (i32, i32),
    scale: &Scale,
    label: &str,
    show_missing: bool,
) -> Result<i32> {
    let steps = h.max(1);
    for k in 0..steps {
        // Top = high values.
        let v = scale.hi - (k as f64 + 0.5) / steps as f64 * (scale.hi - scale.lo);
        let c = scale.color(v).unwrap_or(MISSING_FILL);
        area.draw(&Rectangle::new(
            [(x, y + k), (x + w, y + k + 1)],
            c.filled(),
        ))
        .map_err(plot_err)?;
    }
    area.draw(&Rectangle::new(
        [(x, y), (x + w, y + h)],
        TEXT.stroke_width(1),
    ))
    .map_err(plot_err)?;
    let (ticks, step) = nice_ticks(scale.lo, scale.hi, 5);
    let tick_style = text_style(11.0, TEXT, HPos::Left, VPos::Center);
    let mut widest = 0f64;
    for t in ticks {
        let ty = y + ((scale.hi - t) / (scale.hi - scale.lo) * h as f64).round() as i32;
        area.draw(&PathElement::new(
            vec![(x + w, ty), (x + w + 4, ty)],
            TEXT.stroke_width(1),
        ))
        .map_err(plot_err)?;
        let s = format_tick(t, step);
        widest = widest.max(super::style::text_width(&s, 11.0));
        text(area, &s, (x + w + 6, ty), &tick_style)?;
    }
    let lx = x + w + 6 + widest.ceil() as i32 + 16;
    let label_style =
        text_style(12.0, TEXT, HPos::Center, VPos::Center).transform(FontTransform::Rotate90);
    text(area, label, (lx, y + h / 2), &label_style)?;
    let mut bottom = y + h;
    if show_missing {
        let sy = y + h + 10;
        cell(area, (x, sy), (x + w, sy + 14), None)?;
        text(
            area,
            "not finite",
            (x + w + 6, sy + 7),
            &text_style(11.0, MUTED, HPos::Left, VPos::Center),
        )?;
        bottom = sy + 14;
    }
    Ok(bottom)
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy)]
pub enum Mark {
    /// A line segment (and a dot if `marker`).
    Line { color: RGBColor, marker: bool },
    /// A translucent box, as for a confidence band.
    Band(RGBColor),
}

/// A legend, one entry per row, starting at (x, y). Returns the bottom.
pub fn legend(area: &Area, (x, y): (i32, i32), entries: &[(String, Mark)]) -> Result<i32> {
    let style = text_style(12.0, TEXT, HPos::Left, VPos::Center);
    let row = 20;
    for (i, (name, mark)) in entries.iter().enumerate() {
        let cy = y + i as i32 * row + row / 2;
        match *mark {
            Mark::Line { color, marker } => {
                area.draw(&PathElement::new(
                    vec![(x, cy), (x + 24, cy)],
                    color.stroke_width(2),
                ))
                .map_err(plot_err)?;
                if marker {
                    area.draw(&Circle::new((x + 12, cy), 3, color.filled()))
                        .map_err(plot_err)?;
                }
            }
            Mark::Band(color) => {
                area.draw(&Rectangle::new(
                    [(x, cy - 6), (x + 24, cy + 6)],
                    color.mix(0.25).filled(),
                ))
                .map_err(plot_err)?;
            }
        }
        text(area, name, (x + 30, cy), &style)?;
    }
    Ok(y + entries.len() as i32 * row)
}
