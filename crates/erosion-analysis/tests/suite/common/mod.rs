//! Helpers shared by the integration tests.
#![allow(dead_code)]

use erosion_analysis::stats::{gaussian_vec, rng_from_seed};
use erosion_analysis::Matrix;

/// A seeded [n, d] matrix of i.i.d. N(0, 1) entries.
pub fn gaussian_matrix(n: usize, d: usize, seed: u64) -> Matrix {
    Matrix::from_vec(n, d, gaussian_vec(&mut rng_from_seed(seed), n * d)).unwrap()
}

/// True when `count` successes in `trials` are within `z` binomial standard deviations of
/// `trials * p`.
pub fn within_binomial(count: usize, trials: usize, p: f64, z: f64) -> bool {
    let mean = trials as f64 * p;
    let sd = (trials as f64 * p * (1.0 - p)).sqrt();
    (count as f64 - mean).abs() <= z * sd
}

pub fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b} (tol {tol})");
}
