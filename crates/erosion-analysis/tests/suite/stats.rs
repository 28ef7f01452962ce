//! Calibration of the shared statistics: percentile bootstrap coverage.
use crate::common;

use common::within_binomial;
use erosion_analysis::stats::*;

#[test]
fn bootstrap_ci_covers_the_true_mean_at_about_the_nominal_rate() {
    // 600 samples of n = 40 from N(2, 1); 95% percentile bootstrap CIs of the mean. The
    // percentile interval is about mean +- 1.96 sd sqrt((n-1)/n) / sqrt(n), so it under-covers
    // slightly: P(|t_39| <= 1.96 sqrt(39/40)) = 0.94, a little less with 400 resamples
    // (0.929 over 1500 trials here). Accept within 4 binomial sds of 0.935.
    let trials = 600;
    let mut covered = 0;
    for t in 0..trials {
        let mut rng = rng_from_seed(500 + t as u64);
        let xs: Vec<f64> = gaussian_vec(&mut rng, 40).iter().map(|z| 2.0 + z).collect();
        let ci = bootstrap_mean_ci(&xs, 400, 0.95, t as u64).unwrap();
        assert!(ci.lower <= ci.estimate && ci.estimate <= ci.upper);
        if ci.lower <= 2.0 && 2.0 <= ci.upper {
            covered += 1;
        }
    }
    eprintln!("bootstrap coverage: {covered} of {trials}");
    assert!(
        within_binomial(covered, trials, 0.935, 4.0),
        "covered {covered} of {trials}"
    );
}

#[test]
fn bootstrap_is_seeded_and_recorded() {
    let xs = [1.0, 2.0, 4.0, 8.0, 16.0];
    let a = bootstrap_mean_ci(&xs, 100, 0.9, 3).unwrap();
    let b = bootstrap_mean_ci(&xs, 100, 0.9, 3).unwrap();
    assert_eq!(a, b);
    assert_eq!((a.n_resamples, a.seed, a.level), (100, 3, 0.9));
    assert!((a.estimate - 6.2).abs() < 1e-12);
    assert!(bootstrap_mean_ci(&[], 100, 0.9, 3).is_err());
    assert!(bootstrap_mean_ci(&xs, 100, 1.5, 3).is_err());
    assert!(bootstrap_mean_ci(&[1.0, f64::NAN], 100, 0.9, 3).is_err());
}

#[test]
fn permutation_test_of_a_mean_difference() {
    // Group A (positions 0..5) clearly larger than B: p = 1/(B+1) (only the observed split
    // and its equals reach the observed statistic; C(10,5) = 252 splits, 1 of them).
    let xs = [10.0, 11.0, 12.0, 13.0, 14.0, 0.0, 1.0, 2.0, 3.0, 4.0];
    let stat = |perm: &[usize]| -> anyhow::Result<f64> {
        let a: f64 = perm[..5].iter().map(|&i| xs[i]).sum::<f64>() / 5.0;
        let b: f64 = perm[5..].iter().map(|&i| xs[i]).sum::<f64>() / 5.0;
        Ok(a - b)
    };
    let t = permutation_test(10, stat, 199, Alternative::Greater, 1).unwrap();
    assert!(t.p_value < 0.03, "p {}", t.p_value);
    assert!((t.observed - 10.0).abs() < 1e-12);
    let two = permutation_test(10, stat, 199, Alternative::TwoSided, 1).unwrap();
    assert!(two.p_value >= t.p_value && two.p_value <= 2.0 * t.p_value + 1e-12);
}
