//! How numbers are written in reports, tables and sentences: one home for every formatter.
//!
//! Several styles coexist because published outputs use them and must not change by a byte:
//! - [`fmt_number`]: 4 significant digits, scientific outside [1e-3, 1e6), a true minus sign
//!   (U+2212), "n/a" for NaN: the HTML report's default;
//! - [`fmt_sig4`]: 4 significant digits, scientific outside [1e-3, 1e4), ASCII minus, "n/a" for
//!   any non-finite value: the layers and directions analyses' tables and sentences;
//! - [`fmt_fixed`]: a fixed number of decimals (`{x:.d$}`);
//! - [`format_tick`], [`format_auto`], [`format_value`]: the text of charts (no "-0", a
//!   true minus sign).
//!
//! An estimate with its interval is written "estimate [lower, upper]" in each style
//! ([`fmt_ci`], [`fmt_ci_sig4`], [`fmt_ci_fixed`]); a proportion adds its counts
//! ([`fmt_proportion`]). They read anything that is an [`Estimate`].

use erosion_analysis::stats::ConfidenceInterval;

/// A point estimate with the bounds of its interval, as the interval formatters read it.
pub trait Estimate {
    fn estimate(&self) -> f64;
    fn lower(&self) -> f64;
    fn upper(&self) -> f64;
}

impl Estimate for ConfidenceInterval {
    fn estimate(&self) -> f64 {
        self.estimate
    }
    fn lower(&self) -> f64 {
        self.lower
    }
    fn upper(&self) -> f64 {
        self.upper
    }
}

/// `(estimate, lower, upper)`.
impl Estimate for (f64, f64, f64) {
    fn estimate(&self) -> f64 {
        self.0
    }
    fn lower(&self) -> f64 {
        self.1
    }
    fn upper(&self) -> f64 {
        self.2
    }
}

/// A number with 4 significant digits (scientific outside [1e-3, 1e6)), "n/a" if NaN.
pub fn fmt_number(v: f64) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    let a = v.abs();
    let s = if a == 0.0 {
        "0".to_string()
    } else if !(1e-3..1e6).contains(&a) {
        format!("{v:.3e}")
    } else {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        format!("{v:.decimals$}")
    };
    s.replace('-', "\u{2212}")
}

/// A p-value: three decimals, or scientific below 0.001.
pub fn fmt_p(p: f64) -> String {
    if p.is_nan() {
        "n/a".to_string()
    } else if p < 1e-3 {
        format!("{p:.1e}").replace('-', "\u{2212}")
    } else {
        format!("{p:.3}")
    }
}

/// A confidence level as a percentage: 0.95 -> "95%", 0.995 -> "99.5%".
pub fn fmt_level(level: f64) -> String {
    let pct = level * 100.0;
    if (pct - pct.round()).abs() < 1e-9 {
        format!("{}%", pct.round())
    } else {
        format!("{}%", (pct * 1000.0).round() / 1000.0)
    }
}

/// A byte count: "123 B", "4.6 MB", "61.2 GB" (powers of 1000).
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// A number for a table or a sentence: 4 significant digits, scientific outside [1e-3, 1e4),
/// ASCII minus, "n/a" if not finite; 0 is "0.000".
pub fn fmt_sig4(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e4).contains(&a) {
        format!("{x:.3e}")
    } else {
        let decimals = if a == 0.0 {
            3
        } else {
            (3 - a.log10().floor() as i32).clamp(0, 6) as usize
        };
        format!("{x:.decimals$}")
    }
}

/// `x` with `decimals` decimals; a non-finite value as Rust writes it ("NaN", "inf").
pub fn fmt_fixed(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        format!("{x}")
    }
}

/// "0.0053 [0.0031, 0.0080]": each number by [`fmt_number`].
pub fn fmt_ci<E: Estimate + ?Sized>(ci: &E) -> String {
    bracketed(ci, fmt_number)
}

/// "0.1235 [0.0031, 12.50]": each number by [`fmt_sig4`].
pub fn fmt_ci_sig4<E: Estimate + ?Sized>(ci: &E) -> String {
    bracketed(ci, fmt_sig4)
}

/// "0.12 [0.07, 0.20]" (`decimals` = 2): each number by [`fmt_fixed`].
pub fn fmt_ci_fixed<E: Estimate + ?Sized>(ci: &E, decimals: usize) -> String {
    bracketed(ci, |x| fmt_fixed(x, decimals))
}

/// "estimate [lower, upper]", each number written by `number`.
fn bracketed<E: Estimate + ?Sized>(ci: &E, number: impl Fn(f64) -> String) -> String {
    format!(
        "{} [{}, {}]",
        number(ci.estimate()),
        number(ci.lower()),
        number(ci.upper())
    )
}

/// "0.120 [0.070, 0.200] (12/100)": a rate `count / n` with its interval, three decimals.
pub fn fmt_proportion<E: Estimate + ?Sized>(p: &E, count: usize, n: usize) -> String {
    format!("{} ({count}/{n})", fmt_ci_fixed(p, 3))
}

// Chart text: axis ticks and labels, values in cells and on bars.

/// A tick label with as many decimals as the step needs.
pub fn format_tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 || step <= 0.0 || !step.is_finite() {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    typeset_minus(format!("{v:.decimals$}"))
}

/// A typeset minus sign (U+2212) for `-`, and no sign on a zero ("-0.0" reads as a mistake).
fn typeset_minus(s: String) -> String {
    if s.trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        s.trim_start_matches('-').to_string()
    } else {
        s.replace('-', "\u{2212}")
    }
}

/// An axis label for a value plotters chose: at most 6 decimals, trailing zeros dropped,
/// scientific notation outside [1e-4, 1e5).
pub fn format_auto(v: f64) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    let a = v.abs();
    let s = if a != 0.0 && !(1e-4..1e5).contains(&a) {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s.replace('-', "\u{2212}")
    }
}

/// A value for a cell or a bar: fixed decimals, "n/a" for NaN, "+∞"/"−∞".
pub fn format_value(v: f64, decimals: usize) -> String {
    non_finite(v).unwrap_or_else(|| typeset_minus(format!("{v:.decimals$}")))
}

/// "n/a" for NaN, "+∞" / "−∞" (true minus) for the infinities; `None` for a finite number.
fn non_finite(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("n/a".to_string())
    } else if v.is_infinite() {
        Some(
            if v > 0.0 {
                "+\u{221e}"
            } else {
                "\u{2212}\u{221e}"
            }
            .to_string(),
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(fmt_number(0.123456), "0.1235");
        assert_eq!(fmt_number(-12.5), "\u{2212}12.50");
        assert_eq!(fmt_number(1234.0), "1234");
        assert_eq!(fmt_number(2.5e-5), "2.500e\u{2212}5");
        assert_eq!(fmt_number(f64::NAN), "n/a");
        assert_eq!(fmt_p(0.0312), "0.031");
        assert_eq!(fmt_p(0.0001), "1.0e\u{2212}4");
        assert_eq!(fmt_level(0.95), "95%");
        assert_eq!(fmt_level(0.995), "99.5%");
        assert_eq!(fmt_bytes(999), "999 B");
        assert_eq!(fmt_bytes(65_536_000_000), "65.5 GB");
    }

    #[test]
    fn sig4_is_ascii_and_switches_at_1e4() {
        assert_eq!(fmt_sig4(-12.5), "-12.50");
        assert_eq!(fmt_sig4(0.0), "0.000");
        assert_eq!(fmt_sig4(23456.0), "2.346e4");
        assert_eq!(fmt_sig4(f64::INFINITY), "n/a");
    }

    #[test]
    fn fixed_is_rusts_precision_format_for_every_value() {
        // So fmt_ci_fixed equals the `{:.d$} [{:.d$}, {:.d$}]` it replaced, non-finite included.
        for x in [
            0.125,
            -3.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
        ] {
            for d in [0, 2, 3] {
                assert_eq!(fmt_fixed(x, d), format!("{x:.d$}"));
            }
        }
    }

    #[test]
    fn intervals_in_each_style() {
        let e = (0.12, 0.07, 0.2);
        assert_eq!(fmt_ci_fixed(&e, 2), "0.12 [0.07, 0.20]");
        assert_eq!(fmt_proportion(&e, 12, 100), "0.120 [0.070, 0.200] (12/100)");
        assert_eq!(
            fmt_ci(&(-0.5, -1.0, 2.5e-5)),
            "\u{2212}0.5000 [\u{2212}1.000, 2.500e\u{2212}5]"
        );
        assert_eq!(
            fmt_ci_sig4(&(-0.5, -1.0, 2.5e-5)),
            "-0.5000 [-1.000, 2.500e-5]"
        );
    }

    #[test]
    fn tick_and_value_text() {
        assert_eq!(format_tick(0.6000000000000001, 0.2), "0.6");
        assert_eq!(format_tick(-50.0, 50.0), "\u{2212}50");
        assert_eq!(format_tick(-0.0, 0.5), "0.0");
        assert_eq!(format_value(0.9012, 2), "0.90");
        assert_eq!(format_auto(0.6000000000000001), "0.6");
        assert_eq!(format_auto(-25.0), "\u{2212}25");
        assert_eq!(format_auto(-0.0), "0");
        assert_eq!(format_auto(2.5e-6), "2.50e\u{2212}6");
        assert_eq!(format_value(-0.001, 2), "0.00");
        assert_eq!(format_value(f64::NAN, 2), "n/a");
        assert_eq!(format_value(f64::NEG_INFINITY, 2), "\u{2212}\u{221e}");
    }
}
