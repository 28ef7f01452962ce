//! Confidence intervals of the measures: the Wilson score interval for proportions, and the
//! percentile bootstrap (erosion-analysis) for means.

use anyhow::{bail, Result};
use erosion_report::format::Estimate;
use serde::{Deserialize, Serialize};

/// The standard normal's 0.975 quantile: z of a two-sided 95% interval.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// A proportion k / n with its Wilson score interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proportion {
    pub count: usize,
    pub n: usize,
    /// count / n.
    pub rate: f64,
    pub lower: f64,
    pub upper: f64,
    /// Nominal coverage (0.95).
    pub level: f64,
}

/// The rate is the estimate: the report's interval formatters read a proportion as one.
impl Estimate for Proportion {
    fn estimate(&self) -> f64 {
        self.rate
    }
    fn lower(&self) -> f64 {
        self.lower
    }
    fn upper(&self) -> f64 {
        self.upper
    }
}

impl Proportion {
    /// `count` of `n` with its 95% Wilson interval. `n = 0` is an error (no rate to report).
    pub fn new(count: usize, n: usize) -> Result<Self> {
        let (lower, upper) = wilson(count, n, Z_95)?;
        Ok(Self {
            count,
            n,
            rate: count as f64 / n as f64,
            lower,
            upper,
            level: 0.95,
        })
    }
}

/// Wilson score interval of k successes in n trials at normal quantile z:
///
/// p = k/n, centre = (p + z^2/(2n)) / (1 + z^2/n),
/// half = z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/(4n^2)),
/// interval = [centre - half, centre + half] (clamped to [0, 1] against rounding).
///
/// Unlike the normal (Wald) interval it never leaves [0, 1] and is not empty at k = 0 or n.
pub fn wilson(k: usize, n: usize, z: f64) -> Result<(f64, f64)> {
    if n == 0 {
        bail!("a proportion of 0 trials has no interval");
    }
    if k > n {
        bail!("{k} successes in {n} trials");
    }
    if !(z > 0.0 && z.is_finite()) {
        bail!("normal quantile z = {z} must be positive and finite");
    }
    let (kf, nf) = (k as f64, n as f64);
    let p = kf / nf;
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / denom;
    let half = z / denom * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    // At k = 0 (k = n) the lower (upper) end is exactly 0 (1); rounding may leave 1e-17.
    let lower = if k == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let upper = if k == n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    Ok((lower, upper))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_hand_computed_values() {
        // 8 of 10: z^2 = 3.841459, denom = 1.3841459, centre = 0.992073/1.3841459 = 0.716740,
        // half = 1.959964/1.3841459 * sqrt(0.016 + 0.00960365) = 1.416011 * 0.160011 = 0.226578.
        let (lo, hi) = wilson(8, 10, Z_95).unwrap();
        assert!((lo - 0.490162).abs() < 1e-5, "{lo}");
        assert!((hi - 0.943318).abs() < 1e-5, "{hi}");
        // 0 of 100: upper = (z^2/n) / (1 + z^2/n) = 0.0384146 / 1.0384146 = 0.0369935.
        let (lo, hi) = wilson(0, 100, Z_95).unwrap();
        assert_eq!(lo, 0.0);
        assert!((hi - 0.0369935).abs() < 1e-6, "{hi}");
        // Symmetry: k of n mirrors n - k of n.
        let (a, b) = wilson(3, 17, Z_95).unwrap();
        let (c, d) = wilson(14, 17, Z_95).unwrap();
        assert!((a - (1.0 - d)).abs() < 1e-12 && (b - (1.0 - c)).abs() < 1e-12);
    }

    #[test]
    fn bad_counts_are_errors() {
        assert!(wilson(1, 0, Z_95).is_err());
        assert!(wilson(5, 4, Z_95).is_err());
        assert!(Proportion::new(0, 0).is_err());
        let p = Proportion::new(50, 100).unwrap();
        assert_eq!(p.rate, 0.5);
        assert!(p.lower < 0.5 && p.upper > 0.5);
    }
}
