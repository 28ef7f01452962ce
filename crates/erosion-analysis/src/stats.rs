//! Shared statistics: seeded RNG, percentiles, percentile bootstrap, permutation tests and the
//! p-value conventions every analysis in this crate uses.
//!
//! Conventions (recorded in every result):
//! - RNG: `ChaCha8Rng::seed_from_u64(seed)`; results are reproducible across platforms.
//! - Percentile: linear interpolation between order statistics (numpy's default, Hyndman-Fan
//!   type 7): for sorted `x[0..n]`, q in \[0, 1\], h = (n-1) q,
//!   value = `x[floor h] + (h - floor h) (x[floor h + 1] - x[floor h])`.
//! - Monte Carlo / permutation p-value with the +1 correction (Phipson & Smyth 2010):
//!   p = (1 + #{null >= observed}) / (1 + B), so p is never 0 and the test is valid (exact
//!   under exchangeability for permutations). Two-sided: min(1, 2 min(p_greater, p_less)).
//!   Ties: a null value within 1e-12 (relative) of the observed value counts as "as extreme"
//!   (conservative; sums taken in different orders may differ in the last bits).
//! - Percentile bootstrap CI at level L: [q((1-L)/2), q((1+L)/2)] of the resampled statistic.

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// The one RNG of this crate: ChaCha8 seeded from a `u64`.
pub fn rng_from_seed(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// One standard normal draw.
#[inline]
pub fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    StandardNormal.sample(rng)
}

/// `n` i.i.d. standard normal draws.
pub fn gaussian_vec<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Vec<f64> {
    (0..n).map(|_| standard_normal(rng)).collect()
}

/// Uniformly distributed unit vector in R^d (a normalised Gaussian vector).
pub fn random_unit_vector<R: Rng + ?Sized>(rng: &mut R, d: usize) -> Vec<f64> {
    loop {
        let mut v = gaussian_vec(rng, d);
        let n = crate::matrix::norm(&v);
        if n > 0.0 {
            v.iter_mut().for_each(|x| *x /= n);
            return v;
        }
    }
}

/// Fills `idx` with a bootstrap resample: idx.len() indices drawn uniformly with replacement
/// from 0..idx.len().
pub fn draw_resample<R: Rng + ?Sized>(rng: &mut R, idx: &mut [usize]) {
    let n = idx.len();
    idx.iter_mut().for_each(|i| *i = rng.random_range(0..n));
}

/// Arithmetic mean; NaN for an empty slice.
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (n - 1 denominator); NaN for fewer than 2 values.
pub fn sample_sd(xs: &[f64]) -> f64 {
    let m = mean(xs);
    (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() as f64 - 1.0)).sqrt()
}

/// Percentile `q` in [0, 1] of already **sorted** values (type 7, see module docs).
pub fn percentile_sorted(sorted: &[f64], q: f64) -> Result<f64> {
    if sorted.is_empty() {
        bail!("percentile of an empty sample");
    }
    if !(0.0..=1.0).contains(&q) {
        bail!("percentile level {q} outside [0, 1]");
    }
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    Ok(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// Percentile `q` in [0, 1] of unsorted values; errors on NaN.
pub fn percentile(values: &[f64], q: f64) -> Result<f64> {
    let mut v = values.to_vec();
    sort_finite(&mut v)?;
    percentile_sorted(&v, q)
}

fn sort_finite(v: &mut [f64]) -> Result<()> {
    if let Some(i) = v.iter().position(|x| x.is_nan()) {
        bail!("value {i} of the sample is NaN");
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("NaN excluded above"));
    Ok(())
}

/// Which tail counts as extreme in a Monte Carlo / permutation test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alternative {
    /// Large values of the statistic are evidence against the null.
    Greater,
    /// Small values are evidence against the null.
    Less,
    /// Either tail: min(1, 2 min(p_greater, p_less)).
    TwoSided,
}

/// Monte Carlo p-value of `observed` against `null` draws with the +1 correction (module docs).
pub fn p_value(observed: f64, null: &[f64], alternative: Alternative) -> Result<f64> {
    if null.is_empty() {
        bail!("p-value needs at least one null draw");
    }
    if !observed.is_finite() {
        bail!("observed statistic is {observed}");
    }
    let tol = 1e-12 * observed.abs().max(1e-300);
    let b = null.len() as f64;
    let greater = (1.0 + null.iter().filter(|&&t| t >= observed - tol).count() as f64) / (1.0 + b);
    let less = (1.0 + null.iter().filter(|&&t| t <= observed + tol).count() as f64) / (1.0 + b);
    Ok(match alternative {
        Alternative::Greater => greater,
        Alternative::Less => less,
        Alternative::TwoSided => (2.0 * greater.min(less)).min(1.0),
    })
}

/// A percentile bootstrap confidence interval, with everything needed to reproduce it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceInterval {
    /// The statistic on the original sample.
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    /// Nominal coverage, e.g. 0.95.
    pub level: f64,
    pub n_resamples: usize,
    pub seed: u64,
    /// The resampling scheme, e.g. "percentile bootstrap".
    pub method: String,
}

/// Percentile bootstrap CI of a statistic of `n` units (examples).
///
/// `statistic(indices)` receives `n` indices drawn with replacement from 0..n (the original
/// sample is `0..n`) and returns the statistic of that resample. Resamples whose statistic is
/// not finite are an error (they would bias the interval silently).
pub fn bootstrap_ci<F>(
    n: usize,
    mut statistic: F,
    n_resamples: usize,
    level: f64,
    seed: u64,
) -> Result<ConfidenceInterval>
where
    F: FnMut(&[usize]) -> Result<f64>,
{
    if n == 0 {
        bail!("bootstrap of an empty sample");
    }
    if n_resamples < 2 {
        bail!("bootstrap needs at least 2 resamples, got {n_resamples}");
    }
    if !(level > 0.0 && level < 1.0) {
        bail!("confidence level {level} outside (0, 1)");
    }
    let identity: Vec<usize> = (0..n).collect();
    let estimate = statistic(&identity)?;
    let mut rng = rng_from_seed(seed);
    let mut idx = vec![0usize; n];
    let mut draws = Vec::with_capacity(n_resamples);
    for b in 0..n_resamples {
        draw_resample(&mut rng, &mut idx);
        let t = statistic(&idx)?;
        if !t.is_finite() {
            bail!("bootstrap resample {b} (seed {seed}) gave a non-finite statistic {t}");
        }
        draws.push(t);
    }
    ci_from_draws(estimate, draws, level, seed, "percentile bootstrap")
}

/// Percentile CI from bootstrap draws of a statistic (shared by every bootstrap here):
/// [q((1-L)/2), q((1+L)/2)] of the draws. `method` names the resampling scheme.
pub fn ci_from_draws(
    estimate: f64,
    mut draws: Vec<f64>,
    level: f64,
    seed: u64,
    method: &str,
) -> Result<ConfidenceInterval> {
    if draws.len() < 2 {
        bail!("a bootstrap CI needs at least 2 draws, got {}", draws.len());
    }
    if !(level > 0.0 && level < 1.0) {
        bail!("confidence level {level} outside (0, 1)");
    }
    sort_finite(&mut draws)?;
    Ok(ConfidenceInterval {
        estimate,
        lower: percentile_sorted(&draws, (1.0 - level) / 2.0)?,
        upper: percentile_sorted(&draws, (1.0 + level) / 2.0)?,
        level,
        n_resamples: draws.len(),
        seed,
        method: method.into(),
    })
}

/// Percentile bootstrap CI of the mean of `xs`.
pub fn bootstrap_mean_ci(
    xs: &[f64],
    n_resamples: usize,
    level: f64,
    seed: u64,
) -> Result<ConfidenceInterval> {
    if let Some(i) = xs.iter().position(|x| !x.is_finite()) {
        bail!("value {i} of the sample is {}", xs[i]);
    }
    bootstrap_ci(
        xs.len(),
        |idx| Ok(idx.iter().map(|&i| xs[i]).sum::<f64>() / idx.len() as f64),
        n_resamples,
        level,
        seed,
    )
}

/// Result of a permutation test, with everything needed to reproduce it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PermutationTest {
    pub observed: f64,
    pub p_value: f64,
    pub alternative: Alternative,
    pub n_permutations: usize,
    pub seed: u64,
    pub null_mean: f64,
    pub null_sd: f64,
    /// 95th percentile of the null distribution.
    pub null_p95: f64,
}

/// Permutation test over `n` exchangeable units.
///
/// `statistic(perm)` receives a permutation of 0..n: position `p` holds the original unit
/// `perm[p]`, and the caller reads its group labels by position (e.g. positions `0..n_a` form
/// group A). The observed statistic is `statistic(identity)`. p-value as in the module docs.
pub fn permutation_test<F>(
    n: usize,
    mut statistic: F,
    n_permutations: usize,
    alternative: Alternative,
    seed: u64,
) -> Result<PermutationTest>
where
    F: FnMut(&[usize]) -> Result<f64>,
{
    if n < 2 {
        bail!("permutation test needs at least 2 units, got {n}");
    }
    if n_permutations == 0 {
        bail!("permutation test needs at least 1 permutation");
    }
    let mut perm: Vec<usize> = (0..n).collect();
    let observed = statistic(&perm)?;
    let mut rng = rng_from_seed(seed);
    let mut null = Vec::with_capacity(n_permutations);
    for b in 0..n_permutations {
        perm.shuffle(&mut rng);
        let t = statistic(&perm)?;
        if !t.is_finite() {
            bail!("permutation {b} (seed {seed}) gave a non-finite statistic {t}");
        }
        null.push(t);
    }
    let p = p_value(observed, &null, alternative)?;
    let null_mean = mean(&null);
    let null_sd = if null.len() > 1 {
        sample_sd(&null)
    } else {
        0.0
    };
    let null_p95 = percentile(&null, 0.95)?;
    Ok(PermutationTest {
        observed,
        p_value: p,
        alternative,
        n_permutations,
        seed,
        null_mean,
        null_sd,
        null_p95,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4], [0, 25, 50, 90, 100]) = [1, 1.75, 2.5, 3.7, 4]
        let xs = [4.0, 1.0, 3.0, 2.0];
        let want = [(0.0, 1.0), (0.25, 1.75), (0.5, 2.5), (0.9, 3.7), (1.0, 4.0)];
        for (q, w) in want {
            assert!((percentile(&xs, q).unwrap() - w).abs() < 1e-12, "q={q}");
        }
        assert!(percentile(&[], 0.5).is_err());
        assert!(percentile(&[1.0, f64::NAN], 0.5).is_err());
    }

    #[test]
    fn p_value_counts_with_plus_one() {
        let null = [0.0, 1.0, 2.0, 3.0];
        // #{null >= 2} = 2 -> (1 + 2) / 5
        assert!((p_value(2.0, &null, Alternative::Greater).unwrap() - 0.6).abs() < 1e-12);
        // #{null <= 0.5} = 1 -> 2 / 5
        assert!((p_value(0.5, &null, Alternative::Less).unwrap() - 0.4).abs() < 1e-12);
        // two-sided: 2 * min(p>=10 = 1/5, p<=10 = 5/5) = 0.4
        assert!((p_value(10.0, &null, Alternative::TwoSided).unwrap() - 0.4).abs() < 1e-12);
        assert!(p_value(1.0, &[], Alternative::Greater).is_err());
    }

    #[test]
    fn same_seed_same_stream() {
        let a: Vec<f64> = gaussian_vec(&mut rng_from_seed(7), 5);
        let b: Vec<f64> = gaussian_vec(&mut rng_from_seed(7), 5);
        let c: Vec<f64> = gaussian_vec(&mut rng_from_seed(8), 5);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
