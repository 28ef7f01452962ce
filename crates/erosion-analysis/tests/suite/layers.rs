//! Layer-wise erosion: pooling by hand (every short-window policy), scores s_l^m by hand,
//! linearity (score of the mean = mean of the scores), direction cosines, and the paired
//! bootstrap against a brute-force recomputation.
// Index loops read like the hand-computed tables they check.
#![allow(clippy::needless_range_loop)]
use crate::common;

use common::{assert_close, gaussian_matrix};
use erosion_analysis::layers::*;
use erosion_analysis::matrix::dot;
use erosion_analysis::stats::{ci_from_draws, draw_resample, rng_from_seed};
use erosion_analysis::stream::LayerMeans;
use erosion_analysis::Matrix;
use erosion_data::ShortResponse;

/// seq = 6, d = 2, h_t = (t, 10 t).
fn hidden() -> Vec<f32> {
    (0..6).flat_map(|t| [t as f32, 10.0 * t as f32]).collect()
}

fn spec(len: usize, offset: usize, pooling: Pooling, short: ShortResponse) -> WindowSpec {
    WindowSpec {
        len,
        offset,
        pooling,
        short,
    }
}

#[test]
fn pooling_by_hand() {
    let h = hidden();
    // Response = positions 1..5; T = 2 from offset 1 -> positions 2, 3.
    let s = spec(2, 1, Pooling::Flatten, ShortResponse::Error);
    assert_eq!(
        pool_window(&h, 6, 2, 1..5, &s).unwrap().unwrap(),
        vec![2.0, 20.0, 3.0, 30.0]
    );
    let s = spec(2, 1, Pooling::Mean, ShortResponse::Error);
    assert_eq!(
        pool_window(&h, 6, 2, 1..5, &s).unwrap().unwrap(),
        vec![2.5, 25.0]
    );
    assert_eq!(s.pooled_dim(2), 2);
    assert_eq!(
        spec(2, 1, Pooling::Flatten, ShortResponse::Error).pooled_dim(3),
        6
    );
}

#[test]
fn short_window_policies() {
    let h = hidden();
    // T = 4 from offset 1 in a 4-token response: only positions 2, 3, 4 are available.
    let short = |p, pol| pool_window(&h, 6, 2, 1..5, &spec(4, 1, p, pol));
    let e = short(Pooling::Flatten, ShortResponse::Error)
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 after offset 1") && e.contains("T = 4"), "{e}");
    assert_eq!(short(Pooling::Mean, ShortResponse::Skip).unwrap(), None);
    assert_eq!(
        short(Pooling::Flatten, ShortResponse::UseAvailable)
            .unwrap()
            .unwrap(),
        vec![2.0, 20.0, 3.0, 30.0, 4.0, 40.0, 0.0, 0.0]
    );
    assert_eq!(
        short(Pooling::Mean, ShortResponse::UseAvailable)
            .unwrap()
            .unwrap(),
        vec![3.0, 30.0]
    );
    // Offset past the end of the response: nothing to use.
    let none = |pol| pool_window(&h, 6, 2, 1..5, &spec(1, 4, Pooling::Mean, pol));
    assert_eq!(none(ShortResponse::Skip).unwrap(), None);
    assert!(none(ShortResponse::UseAvailable)
        .unwrap_err()
        .to_string()
        .contains("no token"));
    assert!(none(ShortResponse::Error).is_err());
    // Bad inputs.
    let ok = spec(1, 0, Pooling::Mean, ShortResponse::Error);
    assert!(pool_window(&h, 6, 2, 4..7, &ok).is_err());
    assert!(pool_window(&h[..10], 6, 2, 1..5, &ok).is_err());
    let mut nan = h.clone();
    nan[2] = f32::NAN;
    assert!(pool_window(&nan, 6, 2, 1..5, &ok)
        .unwrap_err()
        .to_string()
        .contains("position 1"));
}

#[test]
fn scores_by_hand() {
    // Layer 0: v = (3, 4), u = (0.6, 0.8); layer 1: v = (0, 2), u = (0, 1).
    let m = |name: &str, means: Vec<Vec<f64>>| ModelLayerMeans {
        model: name.into(),
        means,
    };
    let models = vec![
        m("base", vec![vec![0.0, 0.0], vec![1.0, 1.0]]),
        m("instruct", vec![vec![3.0, 4.0], vec![1.0, 3.0]]),
        m("misaligned", vec![vec![1.0, 2.0], vec![5.0, 0.5]]),
    ];
    let s = layer_scores(&models, "base", "instruct").unwrap();
    assert_eq!(s.direction_norms, vec![5.0, 2.0]);
    let want = [[0.0, 1.0], [5.0, 3.0], [2.2, 0.5]];
    for (mi, w) in want.iter().enumerate() {
        for l in 0..2 {
            assert_close(
                s.scores[mi][l],
                w[l],
                1e-12,
                &format!("s model {mi} layer {l}"),
            );
        }
    }
    // s_instruct - s_base = |v_l|.
    for l in 0..2 {
        assert_close(
            s.scores[1][l] - s.scores[0][l],
            s.direction_norms[l],
            1e-12,
            "gap = |v|",
        );
    }
    assert!(layer_scores(&models, "base", "chat")
        .unwrap_err()
        .to_string()
        .contains("chat"));
    // Equal means: zero direction at that layer is an error naming the layer.
    let flat = vec![
        m("base", vec![vec![1.0, 1.0]]),
        m("instruct", vec![vec![1.0, 1.0]]),
    ];
    assert!(
        format!("{:#}", layer_scores(&flat, "base", "instruct").unwrap_err()).contains("layer 0")
    );
}

#[test]
fn score_of_streamed_means_equals_mean_of_projections() {
    // Linearity: s = mu . u = mean_i (z_i . u), with the means streamed in two merged chunks.
    let (n, d, layers) = (30, 7, 3);
    let z: Vec<Vec<Matrix>> = (0..3)
        .map(|m| {
            (0..layers)
                .map(|l| gaussian_matrix(n, d, 100 + 10 * m + l as u64))
                .collect()
        })
        .collect();
    let names = ["base", "instruct", "ft"];
    let mut models = Vec::new();
    for (m, zm) in z.iter().enumerate() {
        let (mut a, mut b) = (LayerMeans::new(layers, d), LayerMeans::new(layers, d));
        for (l, zl) in zm.iter().enumerate() {
            for i in 0..n {
                if i < 11 {
                    a.push(l, zl.row(i)).unwrap()
                } else {
                    b.push(l, zl.row(i)).unwrap()
                }
            }
        }
        a.merge(&b).unwrap();
        models.push(ModelLayerMeans {
            model: names[m].into(),
            means: a.means().unwrap(),
        });
    }
    let s = layer_scores(&models, "base", "instruct").unwrap();
    let v = alignment_directions(&models[0].means, &models[1].means).unwrap();
    for l in 0..layers {
        let u = unit(&v[l]).unwrap();
        for m in 0..3 {
            let p = projections(&z[m][l], &u).unwrap();
            let mean_p = p.iter().sum::<f64>() / n as f64;
            assert_close(s.scores[m][l], mean_p, 1e-12, "linearity");
            let ci = score_ci(&p, 200, 0.95, 1).unwrap();
            assert_close(ci.estimate, s.scores[m][l], 1e-12, "CI estimate");
            assert!(ci.lower < ci.estimate && ci.estimate < ci.upper);
        }
    }
}

#[test]
fn direction_cosines_keep_the_sign() {
    let a = vec![vec![1.0, 0.0], vec![1.0, 1.0]];
    let b = vec![vec![-2.0, 0.0], vec![0.0, 3.0]];
    let c = direction_cosines(&a, &b).unwrap();
    assert_close(c[0], -1.0, 1e-15, "opposite");
    assert_close(c[1], std::f64::consts::FRAC_1_SQRT_2, 1e-15, "45 degrees");
    assert!(direction_cosines(&a, &b[..1]).is_err());
    assert!(format!(
        "{:#}",
        direction_cosines(&[vec![0.0, 0.0]], &[vec![1.0, 0.0]]).unwrap_err()
    )
    .contains("layer 0"));
}

#[test]
fn paired_bootstrap_matches_brute_force() {
    let (n, d) = (9, 4);
    let zb = gaussian_matrix(n, d, 1);
    // Instruct = base + a shift along e0, so the direction is well defined.
    let zi = Matrix::from_vec(
        n,
        d,
        zb.data
            .iter()
            .enumerate()
            .map(|(k, x)| x + if k % d == 0 { 3.0 } else { 0.3 })
            .collect(),
    )
    .unwrap();
    let zf = gaussian_matrix(n, d, 2);
    let names: Vec<String> = ["base", "instruct", "ft"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let g = ScoreGrams::from_matrices(&names, &[&zb, &zi, &zf], 0, 1).unwrap();
    let (seed, b, level) = (5u64, 300, 0.9);
    let got = paired_bootstrap(&g, b, level, seed).unwrap();

    // Brute force: same resample stream, explicit means and direction per resample.
    let score = |idx: &[usize]| -> Vec<f64> {
        let mean = |z: &Matrix| -> Vec<f64> {
            (0..d)
                .map(|j| idx.iter().map(|&i| z.get(i, j)).sum::<f64>() / n as f64)
                .collect()
        };
        let (mb, mi) = (mean(&zb), mean(&zi));
        let u = unit(&mi.iter().zip(&mb).map(|(x, y)| x - y).collect::<Vec<_>>()).unwrap();
        [&zb, &zi, &zf].iter().map(|z| dot(&mean(z), &u)).collect()
    };
    let identity: Vec<usize> = (0..n).collect();
    let s0 = score(&identity);
    let mut rng = rng_from_seed(seed);
    let mut idx = vec![0; n];
    let mut draws = vec![vec![]; 3];
    let mut rel = vec![vec![]; 3];
    for _ in 0..b {
        draw_resample(&mut rng, &mut idx);
        let s = score(&idx);
        for m in 0..3 {
            draws[m].push(s[m]);
            rel[m].push((s[m] - s[0]) / (s[1] - s[0]));
        }
    }
    for m in 0..3 {
        let want = ci_from_draws(s0[m], draws[m].clone(), level, seed, "x").unwrap();
        let c = &got.scores[m];
        assert_close(c.estimate, want.estimate, 1e-10, "estimate");
        assert_close(c.lower, want.lower, 1e-10, "lower");
        assert_close(c.upper, want.upper, 1e-10, "upper");
        let wr = ci_from_draws(0.0, rel[m].clone(), level, seed, "x").unwrap();
        assert_close(got.relative[m].lower, wr.lower, 1e-10, "relative lower");
        assert_close(got.relative[m].upper, wr.upper, 1e-10, "relative upper");
    }
    assert_close(got.relative[0].estimate, 0.0, 1e-12, "base at 0");
    assert_close(got.relative[1].estimate, 1.0, 1e-12, "instruct at 1");

    // The same Grams from cross products.
    let cross = |a: &Matrix, b: &Matrix| {
        let mut g = Matrix::zeros(n, n);
        (0..n).for_each(|i| (0..n).for_each(|j| g.set(i, j, dot(a.row(i), b.row(j)))));
        g
    };
    let gi: Vec<Matrix> = [&zb, &zi, &zf].iter().map(|z| cross(z, &zi)).collect();
    let gb: Vec<Matrix> = [&zb, &zi, &zf].iter().map(|z| cross(z, &zb)).collect();
    let g2 = ScoreGrams::from_cross_grams(&names, &gi, &gb, 0, 1).unwrap();
    for m in 0..3 {
        assert!(g2.d[m].max_abs_diff(&g.d[m]).unwrap() < 1e-12);
    }
}
