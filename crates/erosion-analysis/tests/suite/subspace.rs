//! Random-subspace baseline: the exact sampler matches brute force and the known expectation
//! E|cos| = Gamma(d/2)/(sqrt(pi) Gamma((d+1)/2)) ~ sqrt(2/(pi d)).
use crate::common;

use common::{assert_close, gaussian_matrix};
use erosion_analysis::stats::{mean, percentile, rng_from_seed};
use erosion_analysis::subspace::*;
use erosion_analysis::Matrix;

#[test]
fn expected_abs_cos_by_hand() {
    // d = 2: E|cos theta| over the circle = 2/pi; d = 3: |z| uniform on [0, 1], mean 1/2.
    assert_close(
        expected_abs_cos(2),
        2.0 / std::f64::consts::PI,
        1e-15,
        "d=2",
    );
    assert_close(expected_abs_cos(3), 0.5, 1e-15, "d=3");
    // Large d: sqrt(2/(pi d)) (1 + O(1/d)).
    let d = 5120;
    assert_close(
        expected_abs_cos(d),
        (2.0 / (std::f64::consts::PI * d as f64)).sqrt(),
        1e-4 * expected_abs_cos(d),
        "d=5120",
    );
}

#[test]
fn k1_null_matches_the_expectation() {
    for d in [10, 400, 5120] {
        let mut rng = rng_from_seed(d as u64);
        let draws: Vec<f64> = (0..20000)
            .map(|_| {
                sample_null_cosines(&mut rng, d, 1, 1)
                    .unwrap()
                    .get(0, 0)
                    .abs()
            })
            .collect();
        let m = mean(&draws);
        // sd of |cos| <= 1/sqrt(d); 20000 draws: standard error <= 0.0071/sqrt(d).
        assert_close(
            m,
            expected_abs_cos(d),
            4.0 * 0.0071 / (d as f64).sqrt(),
            &format!("E|cos| d={d}"),
        );
        if d == 5120 {
            // |cos| ~ |N(0, 1/d)|: 95th percentile ~ 1.96 / sqrt(d).
            assert_close(
                percentile(&draws, 0.95).unwrap(),
                1.96 / (d as f64).sqrt(),
                0.05 * 1.96 / (d as f64).sqrt(),
                "p95",
            );
        }
    }
}

#[test]
fn exact_sampler_matches_brute_force() {
    // Compare the distributions of max |C_ij| and of the top canonical cosine for k = 3 in
    // d = 30, 4000 draws each (standard error of each mean ~0.002).
    let (d, k, b) = (30, 3, 4000);
    let mut r1 = rng_from_seed(1);
    let mut r2 = rng_from_seed(2);
    let stat = |c: &Matrix| {
        (
            c.data.iter().fold(0.0f64, |m, x| m.max(x.abs())),
            top_singular_value(c).unwrap(),
        )
    };
    let (mut m1, mut m2, mut s1, mut s2) = (vec![], vec![], vec![], vec![]);
    for _ in 0..b {
        let (a, x) = stat(&sample_null_cosines(&mut r1, d, k, k).unwrap());
        let (c, y) = stat(&sample_null_cosines_direct(&mut r2, d, k, k).unwrap());
        m1.push(a);
        s1.push(x);
        m2.push(c);
        s2.push(y);
    }
    assert_close(mean(&m1), mean(&m2), 0.012, "mean max |cos|");
    assert_close(mean(&s1), mean(&s2), 0.012, "mean top canonical cos");
    assert_close(
        percentile(&m1, 0.95).unwrap(),
        percentile(&m2, 0.95).unwrap(),
        0.03,
        "p95 max |cos|",
    );
    // Each column of C is the first k_a coordinates of a uniform unit vector: its squared
    // norm is Beta(k_a/2, (d-k_a)/2), mean k_a/d (0.75 for k_a = 6, d = 8), and never > 1.
    let mut sq = vec![];
    for _ in 0..4000 {
        let c = sample_null_cosines(&mut r1, 8, 6, 2).unwrap();
        for j in 0..2 {
            let n2: f64 = (0..6).map(|i| c.get(i, j) * c.get(i, j)).sum();
            assert!(n2 <= 1.0 + 1e-12, "column {j} norm^2 {n2}");
            sq.push(n2);
        }
    }
    // sd of Beta(3, 1) = 0.194; 8000 values: standard error 0.0022.
    assert_close(mean(&sq), 0.75, 0.009, "mean squared column norm");
    assert!(sample_null_cosines(&mut r1, 4, 3, 2).is_err());
}

#[test]
fn baseline_flags_a_real_alignment_and_not_a_random_one() {
    let d = 500;
    // Observed: 0.9 at (1, 0) (the study's headline), others small.
    let mut obs = Matrix::zeros(3, 3);
    obs.set(1, 0, 0.9);
    obs.set(0, 1, 0.05);
    let b = random_subspace_baseline(&obs, d, 2000, 7).unwrap();
    assert_close(b.max_abs_cos.p_value, 1.0 / 2001.0, 1e-15, "p of 0.9");
    assert_close(
        b.entry_p_values.get(1, 0),
        1.0 / (2000.0 * 9.0 + 1.0),
        1e-15,
        "entry p of 0.9",
    );
    assert!(
        b.entry_p_values.get(0, 1) > 0.1,
        "0.05 is typical in d = 500"
    );
    assert_close(
        b.entry_null_mean,
        b.entry_expected_abs_cos,
        0.002,
        "pooled entry null mean",
    );
    assert!(b.top_canonical_cos.observed >= 0.9 - 1e-12);
    assert_eq!((b.n_samples, b.seed, b.k_a, b.k_b), (2000, 7, 3, 3));
    // A random pair of 3-frames is not flagged (p-value is not small).
    let x = gaussian_matrix(3, d, 8);
    let y = gaussian_matrix(3, d, 9);
    let mut c = Matrix::zeros(3, 3);
    for i in 0..3 {
        for j in 0..3 {
            c.set(
                i,
                j,
                erosion_analysis::matrix::cosine(x.row(i), y.row(j)).unwrap(),
            );
        }
    }
    let r = random_subspace_baseline(&c, d, 2000, 7).unwrap();
    assert!(
        r.max_abs_cos.p_value > 0.01,
        "random frames flagged: {:?}",
        r.max_abs_cos
    );
}
