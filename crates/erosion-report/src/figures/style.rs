//! Colours, colour maps, text clean-up and tick placement shared by every figure.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};

/// Series colours (Tableau 10), by model index, so a model keeps its colour across figures.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of series `i`.
pub fn series_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// One colour per model across every figure and report of a run: the run's models, in one
/// fixed order (base, instruct, then each fine-tune as the study lists them), take the
/// palette's colours in turn, so a model keeps its colour whichever models a figure shows and
/// in whatever order. Series that are not models take the colours after the models'.
/// Empty (the default): series are coloured by position, as before any model list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelColors {
    pub models: Vec<String>,
}

impl ModelColors {
    pub fn new<S: AsRef<str>>(models: impl IntoIterator<Item = S>) -> Self {
        Self {
            models: models.into_iter().map(|m| m.as_ref().to_string()).collect(),
        }
    }

    /// The colour of series `name`, drawn `i`-th. A name with a note in parentheses after
    /// it ("base (r = 0)") is its model's.
    pub fn color(&self, name: &str, i: usize) -> RGBColor {
        let model = name.split(" (").next().unwrap_or(name).trim();
        match self.models.iter().position(|m| m == name || m == model) {
            Some(k) => series_color(k),
            None => series_color(self.models.len() + i),
        }
    }

    /// [`Self::color`] as RGB bytes (what a [`super::LineSeries`] stores).
    pub fn rgb(&self, name: &str, i: usize) -> [u8; 3] {
        let c = self.color(name, i);
        [c.0, c.1, c.2]
    }

    /// Gives every series its colour by name.
    pub fn paint(&self, series: &mut [super::LineSeries]) {
        for (i, s) in series.iter_mut().enumerate() {
            s.color = Some(self.rgb(&s.name, i));
        }
    }
}

/// Fill of a cell whose value is NaN or infinite (drawn with a hatch over it).
pub const MISSING_FILL: RGBColor = RGBColor(215, 215, 215);
/// Hatch lines over [`MISSING_FILL`].
pub const MISSING_HATCH: RGBColor = RGBColor(120, 120, 120);
pub const TEXT: RGBColor = RGBColor(30, 30, 30);
pub const MUTED: RGBColor = RGBColor(110, 110, 110);

/// Matplotlib's viridis at 10 evenly spaced stops (low = dark purple, high = yellow).
const VIRIDIS: [(u8, u8, u8); 10] = [
    (68, 1, 84),
    (72, 40, 120),
    (62, 73, 137),
    (49, 104, 142),
    (38, 130, 142),
    (31, 158, 137),
    (53, 183, 121),
    (110, 206, 88),
    (181, 222, 43),
    (253, 231, 37),
];

/// Matplotlib's RdBu_r at 11 evenly spaced stops: blue (negative), white (0), red (positive).
const RDBU_R: [(u8, u8, u8); 11] = [
    (5, 48, 97),
    (33, 102, 172),
    (67, 147, 195),
    (146, 197, 222),
    (209, 229, 240),
    (247, 247, 247),
    (253, 219, 199),
    (244, 165, 130),
    (214, 96, 77),
    (178, 24, 43),
    (103, 0, 31),
];

/// Piecewise-linear interpolation through evenly spaced stops; `t` is clamped to [0, 1].
fn interpolate(stops: &[(u8, u8, u8)], t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0) * (stops.len() - 1) as f64;
    let i = (t.floor() as usize).min(stops.len() - 2);
    let f = t - i as f64;
    let lerp = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (stops[i], stops[i + 1]);
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

/// How values map to colours.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColorScale {
    /// Blue-white-red centred at 0, over [-limit, limit]; `None`: the largest |value|.
    Diverging { limit: Option<f64> },
    /// Viridis over [min, max]; `None`: the smallest / largest finite value.
    Sequential { min: Option<f64>, max: Option<f64> },
}

/// A [`ColorScale`] with its range fixed from the data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub lo: f64,
    pub hi: f64,
    diverging: bool,
}

impl ColorScale {
    /// Fixes the range from the finite values (a range with no width is widened, so the
    /// map never divides by zero).
    pub fn resolve<'a>(&self, values: impl IntoIterator<Item = &'a f64>) -> Scale {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &v in values {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        let any = lo <= hi;
        match *self {
            ColorScale::Diverging { limit } => {
                let data = if any { lo.abs().max(hi.abs()) } else { 1.0 };
                let l = limit.filter(|l| l.is_finite() && *l > 0.0).unwrap_or(data);
                let l = if l > 0.0 { l } else { 1.0 };
                Scale {
                    lo: -l,
                    hi: l,
                    diverging: true,
                }
            }
            ColorScale::Sequential { min, max } => {
                let mut a = min
                    .filter(|v| v.is_finite())
                    .unwrap_or(if any { lo } else { 0.0 });
                let mut b = max
                    .filter(|v| v.is_finite())
                    .unwrap_or(if any { hi } else { 1.0 });
                if b < a {
                    std::mem::swap(&mut a, &mut b);
                }
                if b - a <= f64::EPSILON * a.abs().max(1.0) {
                    let w = (a.abs() * 0.05).max(0.5);
                    a -= w;
                    b += w;
                }
                Scale {
                    lo: a,
                    hi: b,
                    diverging: false,
                }
            }
        }
    }
}

impl Scale {
    /// The colour of `v`; `None` for NaN and infinities (drawn as missing).
    pub fn color(&self, v: f64) -> Option<RGBColor> {
        if !v.is_finite() {
            return None;
        }
        let t = (v - self.lo) / (self.hi - self.lo);
        Some(if self.diverging {
            interpolate(&RDBU_R, t)
        } else {
            interpolate(&VIRIDIS, t)
        })
    }

    /// Black or white, whichever reads better on `fill` (by relative luminance).
    pub fn text_on(fill: RGBColor) -> RGBColor {
        let lum = 0.2126 * fill.0 as f64 + 0.7152 * fill.1 as f64 + 0.0722 * fill.2 as f64;
        if lum > 140.0 {
            TEXT
        } else {
            WHITE
        }
    }
}

/// plotters writes `font-size` as its size / 1.24; this gives text `px` pixels high.
pub fn font_size(px: f64) -> f64 {
    px * 1.24
}

/// A text style of `px` pixels with the given anchor.
pub fn text_style(px: f64, color: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    TextStyle {
        font: ("sans-serif", font_size(px)).into_font(),
        color: color.to_backend_color(),
        pos: Pos::new(h, v),
    }
}

/// Bold variant of [`text_style`], for titles.
pub fn bold_style(px: f64, color: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    TextStyle {
        font: ("sans-serif", font_size(px))
            .into_font()
            .style(FontStyle::Bold),
        color: color.to_backend_color(),
        pos: Pos::new(h, v),
    }
}

/// Estimated width in pixels of `s` at `px` pixels (sans-serif averages about 0.6 em
/// per character; wide East Asian characters take a full em). SVG text cannot be
/// measured without fonts, so layouts leave room by this estimate.
pub fn text_width(s: &str, px: f64) -> f64 {
    s.chars()
        .map(|c| if (c as u32) >= 0x2E80 { 1.0 } else { 0.62 })
        .sum::<f64>()
        * px
}

/// Estimated width in whole pixels of the widest of `texts` at `px` pixels (0 for none):
/// ceil(max_s [`text_width`](s, px)).
pub fn widest<S: AsRef<str>>(texts: impl IntoIterator<Item = S>, px: f64) -> i32 {
    texts
        .into_iter()
        .map(|s| text_width(s.as_ref(), px))
        .fold(0.0, f64::max)
        .ceil() as i32
}

/// Replaces characters XML cannot hold or a reader cannot see: C0 controls become their
/// Unicode control pictures (U+2400 block), DEL becomes ␡ and C1 controls `\x80`-style
/// text. plotters escapes `<`, `>`, `&`, quotes itself.
pub fn clean_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).unwrap_or('?').to_string(),
            '\u{7f}' => "\u{2421}".to_string(),
            '\u{80}'..='\u{9f}' => format!("\\x{:02x}", c as u32),
            // Non-characters are not allowed in XML.
            '\u{fffe}' | '\u{ffff}' => "\u{fffd}".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// A token's text as a figure label: spaces as ␣, newlines as ↵, tabs as ⇥, other control
/// characters as control pictures, the empty token as ∅; cut to `max_chars` with "…".
pub fn token_label(token: &str, max_chars: usize) -> String {
    if token.is_empty() {
        return "\u{2205}".to_string();
    }
    let shown: String = token
        .chars()
        .map(|c| match c {
            ' ' => "\u{2423}".to_string(),
            '\n' => "\u{21b5}".to_string(),
            '\t' => "\u{21e5}".to_string(),
            '\r' => "\u{240d}".to_string(),
            c => clean_text(&c.to_string()),
        })
        .collect();
    truncate(&shown, max_chars)
}

/// `s` cut to `max_chars` characters, ending in "…" when cut.
pub fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('\u{2026}');
    out
}

/// "Nice" tick values (1, 2 or 5 times a power of ten) covering [lo, hi], about `target`
/// of them, and the step.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return (vec![if lo.is_finite() { lo } else { 0.0 }], 1.0);
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * 0.999)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let ticks = (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            // Avoid "-0".
            if v == 0.0 {
                0.0
            } else {
                v
            }
        })
        .collect();
    (ticks, step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice_and_cover_the_range() {
        assert_eq!(
            nice_ticks(0.0, 1.0, 5),
            (vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0], 0.2)
        );
        let (t, s) = nice_ticks(-1.0, 1.0, 4);
        assert_eq!((t, s), (vec![-1.0, -0.5, 0.0, 0.5, 1.0], 0.5));
        let (t, s) = nice_ticks(-123.0, 0.0, 5);
        assert_eq!(s, 50.0);
        assert_eq!(t, vec![-100.0, -50.0, 0.0]);
        assert_eq!(nice_ticks(f64::NAN, 1.0, 5).0.len(), 1);
    }

    #[test]
    fn a_model_keeps_its_colour_whatever_a_figure_shows() {
        let c = ModelColors::new(["base", "instruct", "insecure", "secure"]);
        // The same model, drawn first in one figure and third in another.
        assert_eq!(c.color("insecure", 0), c.color("insecure", 2));
        assert_eq!(c.color("insecure", 0), series_color(2));
        // A note after the name is the model's too.
        assert_eq!(c.color("base (r = 0)", 5), c.color("base", 0));
        // Series that are not models take colours after the models', never a model's.
        let other = c.color("layer 3", 0);
        assert!((0..4).all(|k| other != series_color(k)));
        // No model list: by position, as before.
        assert_eq!(ModelColors::default().color("x", 1), series_color(1));
        let mut s = vec![super::super::LineSeries::new(
            "secure",
            vec![0.0],
            vec![1.0],
        )];
        c.paint(&mut s);
        assert_eq!(s[0].color, Some(c.rgb("secure", 7)));
    }

    #[test]
    fn colour_maps_hit_their_stops() {
        let d = ColorScale::Diverging { limit: None }.resolve(&[-0.5, 0.25]);
        assert_eq!((d.lo, d.hi), (-0.5, 0.5));
        assert_eq!(d.color(0.0), Some(RGBColor(247, 247, 247)));
        assert_eq!(d.color(-0.5), Some(RGBColor(5, 48, 97)));
        assert_eq!(d.color(9.0), Some(RGBColor(103, 0, 31)));
        assert_eq!(d.color(f64::NAN), None);
        assert_eq!(d.color(f64::INFINITY), None);
        let s = ColorScale::Sequential {
            min: None,
            max: None,
        }
        .resolve(&[-3.0, -1.0, f64::NAN]);
        assert_eq!((s.lo, s.hi), (-3.0, -1.0));
        assert_eq!(s.color(-3.0), Some(RGBColor(68, 1, 84)));
        assert_eq!(s.color(-1.0), Some(RGBColor(253, 231, 37)));
        // Halfway between stops 4 and 5 of 10 (t = 0.5 -> 4.5).
        assert_eq!(s.color(-2.0), Some(RGBColor(35, 144, 140)));
        // No finite value, or a single one: still a usable range.
        let e = ColorScale::Sequential {
            min: None,
            max: None,
        }
        .resolve(&[f64::NAN]);
        assert!(e.hi > e.lo);
        let one = ColorScale::Sequential {
            min: None,
            max: None,
        }
        .resolve(&[2.0]);
        assert!(one.hi > one.lo && one.color(2.0).is_some());
        let z = ColorScale::Diverging { limit: None }.resolve(&[0.0]);
        assert_eq!((z.lo, z.hi), (-1.0, 1.0));
    }

    #[test]
    fn tokens_show_whitespace_and_controls() {
        assert_eq!(token_label(" the", 10), "\u{2423}the");
        assert_eq!(token_label("\n\n", 10), "\u{21b5}\u{21b5}");
        assert_eq!(token_label("a\tb\u{1b}", 10), "a\u{21e5}b\u{241b}");
        assert_eq!(token_label("", 10), "\u{2205}");
        assert_eq!(token_label("abcdefgh", 5), "abcd\u{2026}");
        assert_eq!(clean_text("x\u{0}\u{85}\u{ffff}"), "x\u{2400}\\x85\u{fffd}");
    }
}
