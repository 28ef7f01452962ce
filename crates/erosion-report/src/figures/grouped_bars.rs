//! Grouped bar charts with error bars (one bar per model in each group of a measure), drawn
//! with plotters on the report's SVG canvas and in its colours, so a model keeps its colour
//! across the report's figures (the evaluation's rates, the causal tests' effects).

use super::draw::{
    axes, figure_title, line, plot_err, render, styled_mesh, text, Area, Chart, BAR_GRID,
};
use super::style::{clean_text, text_style, text_width, truncate, ModelColors, TEXT};
use crate::format::format_auto;
use anyhow::{ensure, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use serde::{Deserialize, Serialize};

/// A value and its interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
}

/// One measure: a label and one bar per model (`None`: not measured for that model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BarGroup {
    pub label: String,
    pub bars: Vec<Option<Bar>>,
}

/// A grouped bar chart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupedBars {
    pub title: String,
    pub y_label: String,
    /// Series names (models), in colour order.
    pub models: Vec<String>,
    pub groups: Vec<BarGroup>,
    /// Plot log10 of the values (all must be > 0); else a linear axis from 0.
    pub log_y: bool,
    /// What the whiskers are ("95% Wilson interval").
    pub interval_label: String,
    /// Each model's colour, by name (empty: by position).
    #[serde(default)]
    pub colors: ModelColors,
}

const PLOT_H: i32 = 300;
const LEFT: i32 = 86;
const BAR_W: f64 = 1.0;
const GAP: f64 = 0.8;

/// Smallest value drawn on a log axis.
const LOG_FLOOR: f64 = 1e-6;

fn validate(c: &GroupedBars) -> Result<()> {
    ensure!(!c.models.is_empty(), "bar chart {:?}: no models", c.title);
    ensure!(!c.groups.is_empty(), "bar chart {:?}: no groups", c.title);
    for g in &c.groups {
        ensure!(
            g.bars.len() == c.models.len(),
            "bar chart {:?}: group {:?} has {} bars for {} models",
            c.title,
            g.label,
            g.bars.len(),
            c.models.len()
        );
    }
    Ok(())
}

/// The SVG. Non-finite values are left out; on a log axis values are floored at 1e-6.
pub fn grouped_bars_svg(c: &GroupedBars) -> Result<String> {
    validate(c)?;
    let group_w = c.models.len() as f64 * BAR_W + GAP;
    let x_max = c.groups.len() as f64 * group_w;
    let (y_lo, y_hi) = y_range(c);
    // Wide enough for every group label on one line.
    let widest_label = c
        .groups
        .iter()
        .map(|g| text_width(&clean_text(&g.label), 11.0) + 12.0)
        .fold(0.0, f64::max);
    let px_per_unit = (widest_label / group_w).max(34.0);
    let plot_w = (x_max * px_per_unit).ceil() as i32;
    let legend_w = c
        .models
        .iter()
        .map(|n| text_width(&truncate(&clean_text(n), 28), 12.0))
        .fold(text_width(&clean_text(&c.interval_label), 12.0), f64::max)
        .ceil() as i32
        + 40;
    let title = clean_text(&c.title);
    let top = 50;
    let bottom = 64;
    let w = (16 + LEFT + plot_w + 20 + legend_w).max(text_width(&title, 16.0) as i32 + 40);
    let legend_h = (c.models.len() as i32 + 1) * 20;
    let h = top + PLOT_H.max(legend_h) + bottom;
    render(w as u32, h as u32, |root| {
        figure_title(root, &title, w)?;
        let sub = root
            .clone()
            .shrink((16, top), ((LEFT + plot_w) as u32, (PLOT_H + 40) as u32));
        let mut chart = axes(&sub, (LEFT, 40), 0.0..x_max, y_lo..y_hi)?;
        draw_y_axis(&mut chart, c, (y_lo, y_hi))?;
        for (gi, g) in c.groups.iter().enumerate() {
            draw_group(
                root,
                &mut chart,
                c,
                gi as f64 * group_w + GAP / 2.0,
                g,
                y_lo,
            )?;
        }
        draw_legend(root, c, (16 + LEFT + plot_w + 20, top))
    })
}

/// Where `v` goes on the y axis: log10(max(v, 1e-6)) on a log axis, else v.
fn axis_y(log_y: bool, v: f64) -> f64 {
    if log_y {
        v.max(LOG_FLOOR).log10()
    } else {
        v
    }
}

/// A bar is drawn only when its value and both ends of its interval are finite.
fn drawable(b: &&Bar) -> bool {
    b.value.is_finite() && b.lower.is_finite() && b.upper.is_finite()
}

/// The y axis' range in axis units: on a log axis whole decades covering every drawn bar and
/// whisker (and 10^0); else from 0 to 1, or to 5% above the highest whisker when that is
/// above 1.
fn y_range(c: &GroupedBars) -> (f64, f64) {
    let y = |v: f64| axis_y(c.log_y, v);
    let bars = || {
        c.groups
            .iter()
            .flat_map(|g| g.bars.iter().flatten())
            .filter(drawable)
    };
    if c.log_y {
        let lo = bars()
            .map(|b| y(b.lower.min(b.value)))
            .fold(0.0, f64::min)
            .floor();
        let hi = bars()
            .map(|b| y(b.upper.max(b.value)))
            .fold(lo + 1.0, f64::max)
            .ceil();
        (lo, hi.max(lo + 1.0))
    } else {
        let hi = bars().map(|b| b.upper.max(b.value)).fold(0.0, f64::max);
        (0.0, if hi <= 1.0 { 1.0 } else { hi * 1.05 })
    }
}

/// The y axis with its grid (no vertical grid lines, no x ticks: groups are labelled by
/// hand); a log axis is labelled in the values, one tick per decade.
fn draw_y_axis(chart: &mut Chart, c: &GroupedBars, (y_lo, y_hi): (f64, f64)) -> Result<()> {
    let y_fmt = |v: &f64| {
        if c.log_y {
            format_auto(10f64.powf(*v))
        } else {
            format_auto(*v)
        }
    };
    let y_ticks = if c.log_y {
        (y_hi - y_lo) as usize + 1
    } else {
        6
    };
    styled_mesh(&mut chart.configure_mesh(), BAR_GRID)
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(y_ticks)
        .y_label_formatter(&y_fmt)
        .y_desc(clean_text(&c.y_label))
        .draw()
        .map_err(plot_err)
}

/// One group starting at `x0` (axis units): a bar per model in the model's colour with its
/// whisker, then the group's label under the axis.
fn draw_group(
    root: &Area,
    chart: &mut Chart,
    c: &GroupedBars,
    x0: f64,
    g: &BarGroup,
    y_lo: f64,
) -> Result<()> {
    let y = |v: f64| axis_y(c.log_y, v).max(y_lo);
    for (k, bar) in g.bars.iter().enumerate() {
        let Some(b) = bar.as_ref().filter(drawable) else {
            continue;
        };
        let (a, z) = (x0 + k as f64 * BAR_W, x0 + (k as f64 + 0.85) * BAR_W);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, y_lo), (z, y(b.value))],
                c.colors.color(&c.models[k], k).mix(0.8).filled(),
            )))
            .map_err(plot_err)?;
        // The whisker: a vertical line from lower to upper with caps 6 px wide.
        let mid = (a + z) / 2.0;
        let (px, plo) = chart.backend_coord(&(mid, y(b.lower)));
        let (_, phi) = chart.backend_coord(&(mid, y(b.upper)));
        for (from, to) in [
            ((px, plo), (px, phi)),
            ((px - 3, plo), (px + 3, plo)),
            ((px - 3, phi), (px + 3, phi)),
        ] {
            line(root, from, to, TEXT.stroke_width(1))?;
        }
    }
    let m = c.models.len() as f64;
    let (gx, gy) = chart.backend_coord(&(x0 + m * BAR_W / 2.0, y_lo));
    let label = truncate(&clean_text(&g.label), 60);
    text(
        root,
        &label,
        (gx, gy + 14),
        &text_style(11.0, TEXT, HPos::Center, VPos::Center),
    )
}

/// The legend with its top-left corner at (lx, top): a swatch per model, then the whisker
/// and what it means.
fn draw_legend(root: &Area, c: &GroupedBars, (lx, top): (i32, i32)) -> Result<()> {
    let style = text_style(12.0, TEXT, HPos::Left, VPos::Center);
    for (k, name) in c.models.iter().enumerate() {
        let cy = top + k as i32 * 20 + 10;
        root.draw(&Rectangle::new(
            [(lx, cy - 6), (lx + 14, cy + 6)],
            c.colors.color(name, k).mix(0.8).filled(),
        ))
        .map_err(plot_err)?;
        text(
            root,
            &truncate(&clean_text(name), 28),
            (lx + 22, cy),
            &style,
        )?;
    }
    let cy = top + c.models.len() as i32 * 20 + 10;
    line(
        root,
        (lx + 7, cy - 6),
        (lx + 7, cy + 6),
        TEXT.stroke_width(1),
    )?;
    text(root, &clean_text(&c.interval_label), (lx + 22, cy), &style)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(log_y: bool) -> GroupedBars {
        let bar = |v: f64| {
            Some(Bar {
                value: v,
                lower: v / 2.0,
                upper: (v * 1.5).min(1.0),
            })
        };
        GroupedBars {
            colors: Default::default(),
            title: "rates <&>".into(),
            y_label: "rate".into(),
            models: vec!["base".into(), "instruct".into()],
            groups: vec![
                BarGroup {
                    label: "refusal".into(),
                    bars: vec![bar(0.01), bar(0.9)],
                },
                BarGroup {
                    label: "compliance".into(),
                    bars: vec![bar(0.5), None],
                },
            ],
            log_y,
            interval_label: "95% Wilson interval".into(),
        }
    }

    #[test]
    fn draws_a_safe_svg_with_every_label() {
        for log_y in [false, true] {
            let svg = grouped_bars_svg(&chart(log_y)).unwrap();
            crate::html::inline_svg(&svg, "t").unwrap();
            for s in [
                "rates &lt;&amp;&gt;",
                "refusal",
                "compliance",
                "base",
                "instruct",
                "95% Wilson interval",
            ] {
                assert!(svg.contains(s), "{s} missing (log_y {log_y})");
            }
            // 3 bars drawn, one missing: 3 filled bars + 2 legend swatches.
            assert_eq!(svg.matches("opacity=\"0.8\"").count(), 5, "log_y {log_y}");
        }
    }

    #[test]
    fn mismatched_groups_are_errors() {
        let mut c = chart(false);
        c.groups[0].bars.pop();
        let e = grouped_bars_svg(&c).unwrap_err().to_string();
        assert!(e.contains("refusal"), "{e}");
    }
}
