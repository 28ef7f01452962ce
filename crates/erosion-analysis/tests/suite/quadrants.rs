//! Quadrant reading and its permutation test: by hand, with an effect, and calibrated under
//! the null (rejection rate at 0.05 within a binomial tolerance of 0.05).
use crate::common;

use common::{assert_close, within_binomial};
use erosion_analysis::cosine::cosine_matrix;
use erosion_analysis::quadrants::*;
use erosion_analysis::stats::{gaussian_vec, rng_from_seed};
use erosion_analysis::Matrix;

#[test]
fn quadrant_means_by_hand() {
    // n_a = 2, n_b = 2. Within A off-diagonal: 0.5; within B: 0.7; across entries
    // (0,2)=0.1, (0,3)=0.2, (1,2)=-0.3, (1,3)=0.4 (symmetric) -> mean 0.1.
    let m = Matrix::from_rows(&[
        vec![1.0, 0.5, 0.1, 0.2],
        vec![0.5, 1.0, -0.3, 0.4],
        vec![0.1, -0.3, 1.0, 0.7],
        vec![0.2, 0.4, 0.7, 1.0],
    ])
    .unwrap();
    let s = quadrant_summary(&m, 2, 50, 1).unwrap();
    assert_close(s.mean_within_a, 0.5, 1e-15, "within A");
    assert_close(s.mean_within_b, 0.7, 1e-15, "within B");
    assert_close(s.mean_across, 0.1, 1e-15, "across");
    assert_close(s.within_minus_across, 0.5, 1e-15, "statistic");
    assert_eq!((s.n_a, s.n_b, s.n_permutations, s.seed), (2, 2, 50, 1));
    // With 4 units there are only 3 distinct splits into pairs; the observed one is the
    // largest, so p is about 1/3 (never below 1/(B+1)).
    assert!(
        s.p_value >= 1.0 / 51.0 && s.p_value < 0.6,
        "p = {}",
        s.p_value
    );
    assert!(quadrant_summary(&m, 1, 10, 1).is_err());
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains("\"mean_within_a\"") && json.contains("\"n_permutations\":50"));
}

/// Two groups of unit-ish vectors: A around +u, B around +u or -u (effect) plus noise.
fn two_groups(n: usize, d: usize, effect: f64, seed: u64) -> Matrix {
    let mut rng = rng_from_seed(seed);
    let u = gaussian_vec(&mut rng, d);
    let rows: Vec<Vec<f64>> = (0..2 * n)
        .map(|i| {
            let sign = if i < n { 1.0 } else { -1.0 };
            gaussian_vec(&mut rng, d)
                .iter()
                .zip(&u)
                .map(|(z, ui)| z + effect * sign * ui)
                .collect()
        })
        .collect();
    cosine_matrix(&Matrix::from_rows(&rows).unwrap(), false).unwrap()
}

#[test]
fn effect_gives_small_p_and_negative_across() {
    let m = two_groups(15, 20, 0.8, 5);
    let s = quadrant_summary(&m, 15, 999, 2).unwrap();
    assert!(s.mean_across < 0.0, "across {}", s.mean_across);
    assert!(s.mean_within_a > 0.0 && s.mean_within_b > 0.0);
    // Smallest possible p with 999 permutations is 1/1000.
    assert_close(s.p_value, 1.0 / 1000.0, 1e-12, "p with a strong effect");
    assert!(s.null_p95 < s.within_minus_across);
}

#[test]
fn null_rejection_rate_is_nominal() {
    // i.i.d. vectors: labels exchangeable, so P(p <= 0.05) = 10/200 exactly with 199
    // permutations. 400 data sets: the count of rejections must be Binomial(400, 0.05)-like.
    let trials = 400;
    let mut rejections = 0;
    let mut sum_p = 0.0;
    for t in 0..trials {
        let m = two_groups(6, 5, 0.0, 1000 + t as u64);
        let s = quadrant_summary(&m, 6, 199, 7 + t as u64).unwrap();
        sum_p += s.p_value;
        if s.p_value <= 0.05 {
            rejections += 1;
        }
    }
    eprintln!(
        "null: {rejections} rejections of {trials}, mean p {}",
        sum_p / trials as f64
    );
    assert!(
        within_binomial(rejections, trials, 0.05, 3.5),
        "{rejections} rejections of {trials}"
    );
    // p roughly uniform: mean near 0.5 (sd of the mean of 400 uniforms ~ 0.014).
    assert!(
        (sum_p / trials as f64 - 0.5).abs() < 0.06,
        "mean p {}",
        sum_p / trials as f64
    );
}
