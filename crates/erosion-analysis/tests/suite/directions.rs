//! Principal directions: planted directions are recovered, the Gram route equals the SVD,
//! signs follow the stated convention, bootstrap stability separates signal from noise.
use crate::common;

use common::{assert_close, gaussian_matrix};
use erosion_analysis::directions::*;
use erosion_analysis::matrix::{dot, norm};
use erosion_analysis::stats::{gaussian_vec, random_unit_vector, rng_from_seed};
use erosion_analysis::Matrix;

/// n rows: offset + a_i u1 + b_i u2 + noise, with sd(a) = 5, sd(b) = 2, noise sd 0.05 per
/// coordinate. Spiked-model theory: 1 - cos^2 ~ sigma^2 (d/n) / lambda_2 = 0.0025 * 5 / 4, so
/// |cos| ~ 0.998 for the weaker direction at d/n = 5.
fn planted(n: usize, d: usize, seed: u64) -> (Matrix, Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut rng = rng_from_seed(seed);
    let u1 = random_unit_vector(&mut rng, d);
    let mut u2 = random_unit_vector(&mut rng, d);
    let p = dot(&u1, &u2);
    u2.iter_mut().zip(&u1).for_each(|(x, y)| *x -= p * y);
    let nu = norm(&u2);
    u2.iter_mut().for_each(|x| *x /= nu);
    let offset: Vec<f64> = gaussian_vec(&mut rng, d);
    let mut r = Matrix::zeros(n, d);
    for i in 0..n {
        let (a, b) = (
            5.0 * gaussian_vec(&mut rng, 1)[0],
            2.0 * gaussian_vec(&mut rng, 1)[0],
        );
        let noise = gaussian_vec(&mut rng, d);
        for j in 0..d {
            r.set(i, j, offset[j] + a * u1[j] + b * u2[j] + 0.05 * noise[j]);
        }
    }
    (r, u1, u2, offset)
}

#[test]
fn planted_directions_are_recovered() {
    for (n, d, method) in [
        (300, 40, SvdMethod::Svd),
        (80, 400, SvdMethod::Gram),
        (80, 400, SvdMethod::Auto),
    ] {
        let (r, u1, u2, _) = planted(n, d, 1);
        let dirs = top_directions(&r, 2, method, SignConvention::LargestComponentPositive).unwrap();
        let c1 = dot(dirs.vectors.row(0), &u1).abs();
        let c2 = dot(dirs.vectors.row(1), &u2).abs();
        assert!(c1 > 0.99 && c2 > 0.99, "n {n} d {d}: |cos| {c1}, {c2}");
        assert!(dirs.explained_variance_ratio[0] > dirs.explained_variance_ratio[1]);
        for i in 0..2 {
            assert_close(norm(dirs.vectors.row(i)), 1.0, 1e-12, "unit norm");
        }
    }
    assert_eq!(
        top_directions(
            &planted(60, 400, 1).0,
            2,
            SvdMethod::Auto,
            SignConvention::MeanProjectionPositive
        )
        .unwrap()
        .method,
        SvdMethod::Gram
    );
}

#[test]
fn gram_route_equals_svd() {
    let r = gaussian_matrix(25, 120, 2);
    let a = top_directions(
        &r,
        5,
        SvdMethod::Svd,
        SignConvention::LargestComponentPositive,
    )
    .unwrap();
    let b = top_directions(
        &r,
        5,
        SvdMethod::Gram,
        SignConvention::LargestComponentPositive,
    )
    .unwrap();
    for i in 0..5 {
        assert_close(
            a.singular_values[i],
            b.singular_values[i],
            1e-10 * a.singular_values[0],
            "singular value",
        );
        assert!(
            a.vectors.max_abs_diff(&b.vectors).unwrap() < 1e-8,
            "vectors differ"
        );
    }
    assert_close(
        a.total_variance,
        b.total_variance,
        1e-12 * a.total_variance,
        "total variance",
    );
}

#[test]
fn explained_variance_and_sign_by_hand() {
    // Rows (+-3, 0, 0) and (0, +-1, 0) around the mean (1, 1, 1): centred A has singular
    // values sqrt(18) and sqrt(2) with directions e1 and e2; |A|_F^2 = 20, n - 1 = 3.
    let r = Matrix::from_rows(&[
        vec![4.0, 1.0, 1.0],
        vec![-2.0, 1.0, 1.0],
        vec![1.0, 2.0, 1.0],
        vec![1.0, 0.0, 1.0],
    ])
    .unwrap();
    let d = top_directions(
        &r,
        2,
        SvdMethod::Svd,
        SignConvention::MeanProjectionPositive,
    )
    .unwrap();
    assert_close(d.singular_values[0], 18f64.sqrt(), 1e-12, "s1");
    assert_close(d.singular_values[1], 2f64.sqrt(), 1e-12, "s2");
    assert_close(d.explained_variance[0], 6.0, 1e-12, "ev1");
    assert_close(d.explained_variance_ratio[0], 0.9, 1e-12, "ratio1");
    assert_close(d.total_variance, 20.0 / 3.0, 1e-12, "total");
    // Mean (1, 1, 1): e1 . m = 1 > 0 so v1 = +e1 (not -e1); same for e2.
    assert_close(d.vectors.get(0, 0), 1.0, 1e-12, "v1 sign");
    assert_close(d.vectors.get(1, 1), 1.0, 1e-12, "v2 sign");
    assert_eq!(d.column_mean, vec![1.0, 1.0, 1.0]);
    // Zero mean: the mean rule falls back to the largest component, and says so.
    let r0 = Matrix::from_rows(&[
        vec![-3.0, 0.0],
        vec![3.0, 0.0],
        vec![0.0, 1.0],
        vec![0.0, -1.0],
    ])
    .unwrap();
    let d0 = top_directions(
        &r0,
        1,
        SvdMethod::Gram,
        SignConvention::MeanProjectionPositive,
    )
    .unwrap();
    assert_eq!(d0.sign_fallback, vec![true]);
    assert_close(d0.vectors.get(0, 0), 1.0, 1e-12, "fallback sign");
    // Rank too low for k.
    assert!(top_directions(
        &r0,
        2,
        SvdMethod::Svd,
        SignConvention::MeanProjectionPositive
    )
    .is_ok());
    let flat = Matrix::from_rows(&[
        vec![1.0, 0.0, 0.0],
        vec![2.0, 0.0, 0.0],
        vec![3.0, 0.0, 0.0],
    ])
    .unwrap();
    let e = top_directions(
        &flat,
        2,
        SvdMethod::Svd,
        SignConvention::MeanProjectionPositive,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("rank"), "{e}");
}

#[test]
fn cross_cosines_signed_and_absolute() {
    // Dataset B's top direction is dataset A's second one, and vice versa.
    let (ra, u1, u2, _) = planted(200, 30, 3);
    let mut rb = Matrix::zeros(200, 30);
    let mut rng = rng_from_seed(4);
    for i in 0..200 {
        let (a, b) = (
            5.0 * gaussian_vec(&mut rng, 1)[0],
            2.0 * gaussian_vec(&mut rng, 1)[0],
        );
        let noise = gaussian_vec(&mut rng, 30);
        for j in 0..30 {
            rb.set(i, j, a * u2[j] + b * u1[j] + 0.3 * noise[j]);
        }
    }
    let a = top_directions(
        &ra,
        2,
        SvdMethod::Svd,
        SignConvention::LargestComponentPositive,
    )
    .unwrap();
    let b = top_directions(
        &rb,
        2,
        SvdMethod::Svd,
        SignConvention::LargestComponentPositive,
    )
    .unwrap();
    let abs = cross_cosines(&a, &b, CosineMode::Absolute).unwrap();
    assert!(abs.get(0, 1) > 0.98 && abs.get(1, 0) > 0.98, "{abs:?}");
    assert!(abs.get(0, 0) < 0.1 && abs.get(1, 1) < 0.1, "{abs:?}");
    let signed = cross_cosines(&a, &b, CosineMode::Signed).unwrap();
    for (x, y) in abs.data.iter().zip(&signed.data) {
        assert_close(*x, y.abs(), 1e-15, "|signed| = absolute");
    }
    let m = top_directions(
        &rb,
        2,
        SvdMethod::Svd,
        SignConvention::MeanProjectionPositive,
    )
    .unwrap();
    assert!(cross_cosines(&a, &m, CosineMode::Signed).is_err());
}

#[test]
fn bootstrap_stability_separates_signal_from_noise() {
    // Component 0 is planted (sd 5), component 1 is isotropic noise: the first is stable,
    // the second is not. Both routes (Gram for 2n <= d, SVD otherwise).
    for (n, d) in [(40, 100), (120, 20)] {
        let mut rng = rng_from_seed(6);
        let u = random_unit_vector(&mut rng, d);
        let mut r = Matrix::zeros(n, d);
        for i in 0..n {
            let a = 5.0 * gaussian_vec(&mut rng, 1)[0];
            let z = gaussian_vec(&mut rng, d);
            (0..d).for_each(|j| r.set(i, j, a * u[j] + 0.5 * z[j]));
        }
        let dirs = top_directions(
            &r,
            2,
            SvdMethod::Auto,
            SignConvention::LargestComponentPositive,
        )
        .unwrap();
        let st = bootstrap_stability(&r, &dirs, 60, 0.9, 11).unwrap();
        assert!(
            st[0].mean_abs_cos > 0.98 && st[0].lower > 0.95,
            "n {n} d {d}: {:?}",
            st[0]
        );
        assert!(
            st[1].mean_abs_cos < 0.8,
            "n {n} d {d}: noise component {:?}",
            st[1]
        );
        assert!(st[1].mean_best_abs_cos >= st[1].mean_abs_cos);
        assert_eq!((st[0].n_resamples, st[0].seed), (60, 11));
    }
}
