//! Grouped bar charts with error bars (one bar per model in each group of a measure), drawn
//! with plotters on the report's SVG canvas and in its colours, so a model keeps its colour
//! across the report's figures (the evaluation's rates, the causal tests' effects).

use super::draw::{figure_title, plot_err, render, text};
use super::style::{clean_text, series_color, text_style, text_width, truncate, TEXT};
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
    let m = c.models.len() as f64;
    let group_w = m * BAR_W + GAP;
    let x_max = c.groups.len() as f64 * group_w;
    let y = |v: f64| if c.log_y { v.max(LOG_FLOOR).log10() } else { v };
    let finite = |b: &&Bar| b.value.is_finite() && b.lower.is_finite() && b.upper.is_finite();
    let bars = || {
        c.groups
            .iter()
            .flat_map(|g| g.bars.iter().flatten())
            .filter(finite)
    };
    let (y_lo, y_hi) = if c.log_y {
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
    };
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
        let mut chart = ChartBuilder::on(&sub)
            .set_label_area_size(LabelAreaPosition::Left, LEFT)
            .set_label_area_size(LabelAreaPosition::Bottom, 40)
            .build_cartesian_2d(0.0..x_max, y_lo..y_hi)
            .map_err(plot_err)?;
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
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(y_ticks)
            .y_label_formatter(&y_fmt)
            .y_desc(clean_text(&c.y_label))
            .label_style(text_style(11.0, TEXT, HPos::Center, VPos::Center))
            .axis_desc_style(text_style(12.0, TEXT, HPos::Center, VPos::Center))
            .light_line_style(RGBColor(240, 240, 240))
            .bold_line_style(RGBColor(220, 220, 220))
            .draw()
            .map_err(plot_err)?;
        for (gi, g) in c.groups.iter().enumerate() {
            let x0 = gi as f64 * group_w + GAP / 2.0;
            for (k, bar) in g.bars.iter().enumerate() {
                let Some(b) = bar.as_ref().filter(finite) else {
                    continue;
                };
                let color = series_color(k);
                let (a, z) = (x0 + k as f64 * BAR_W, x0 + (k as f64 + 0.85) * BAR_W);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(a, y_lo), (z, y(b.value).max(y_lo))],
                        color.mix(0.8).filled(),
                    )))
                    .map_err(plot_err)?;
                // The whisker: a vertical line from lower to upper with caps 6 px wide.
                let mid = (a + z) / 2.0;
                let (lo, hi) = (y(b.lower).max(y_lo), y(b.upper).max(y_lo));
                let (px, plo) = chart.backend_coord(&(mid, lo));
                let (_, phi) = chart.backend_coord(&(mid, hi));
                for seg in [
                    vec![(px, plo), (px, phi)],
                    vec![(px - 3, plo), (px + 3, plo)],
                    vec![(px - 3, phi), (px + 3, phi)],
                ] {
                    root.draw(&PathElement::new(seg, TEXT.stroke_width(1)))
                        .map_err(plot_err)?;
                }
            }
            let (gx, gy) = chart.backend_coord(&(x0 + m * BAR_W / 2.0, y_lo));
            let label = truncate(&clean_text(&g.label), 60);
            text(
                root,
                &label,
                (gx, gy + 14),
                &text_style(11.0, TEXT, HPos::Center, VPos::Center),
            )?;
        }
        // Legend: a swatch per model, then the whisker meaning.
        let lx = 16 + LEFT + plot_w + 20;
        let style = text_style(12.0, TEXT, HPos::Left, VPos::Center);
        for (k, name) in c.models.iter().enumerate() {
            let cy = top + k as i32 * 20 + 10;
            root.draw(&Rectangle::new(
                [(lx, cy - 6), (lx + 14, cy + 6)],
                series_color(k).mix(0.8).filled(),
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
        root.draw(&PathElement::new(
            vec![(lx + 7, cy - 6), (lx + 7, cy + 6)],
            TEXT.stroke_width(1),
        ))
        .map_err(plot_err)?;
        text(root, &clean_text(&c.interval_label), (lx + 22, cy), &style)?;
        Ok(())
    })
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
