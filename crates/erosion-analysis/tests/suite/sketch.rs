//! The JL sketch: its stated bound holds empirically, it is reproducible, and the plan
//! chooses by memory budget.
use crate::common;

use common::gaussian_matrix;
use erosion_analysis::cosine::{cosine_from_gram, cosine_matrix, InMemoryRows};
use erosion_analysis::sketch::*;

#[test]
fn bound_inverts_min_dim() {
    for (n, e, delta) in [(10, 0.3, 0.1), (2000, 0.05, 0.01), (2, 0.5, 0.5)] {
        let k = min_sketch_dim(n, e, delta).unwrap();
        let b = sketch_bound(n, k, delta).unwrap().unwrap();
        assert!(
            b.cosine_error <= e * (1.0 + 1e-9),
            "k {k}: bound {} > target {e}",
            b.cosine_error
        );
        // One dimension fewer no longer meets the target.
        let b1 = sketch_bound(n, k - 1, delta).unwrap().unwrap();
        assert!(b1.cosine_error > e * (1.0 - 1e-9));
    }
    // By hand: n = 10, delta = 0.1, eps = 0.3/2.3; k = ceil(2 ln(2000) / (eps^2/2 - eps^3/3)).
    let eps: f64 = 0.3 / 2.3;
    let want = (2.0 * 2000f64.ln() / (eps * eps / 2.0 - eps.powi(3) / 3.0)).ceil() as usize;
    assert_eq!(min_sketch_dim(10, 0.3, 0.1).unwrap(), want);
    assert!(sketch_bound(1000, 10, 0.05).unwrap().is_none());
}

#[test]
fn sketch_errors_stay_within_the_stated_bound() {
    let (n, d, delta) = (12, 400, 0.1);
    let x = gaussian_matrix(n, d, 10);
    // Correlated rows so cosines are not all near 0.
    let mut rows = x.clone();
    for i in 1..n {
        for j in 0..d {
            rows.set(i, j, 0.6 * x.get(0, j) + x.get(i, j));
        }
    }
    let data: Vec<f32> = rows.data.iter().map(|&v| v as f32).collect();
    let exact = cosine_matrix(
        &erosion_analysis::Matrix::from_f32(n, d, &data).unwrap(),
        false,
    )
    .unwrap();
    let k = 1500;
    let bound = sketch_bound(n, k, delta).unwrap().unwrap();
    for kind in [SketchKind::Gaussian, SketchKind::Rademacher] {
        let mut worst: f64 = 0.0;
        let mut rms = 0.0;
        let mut count = 0.0;
        for seed in 0..5 {
            let s = Sketcher::new(d, k, kind, seed).unwrap();
            let y = s.project_block(&data, n).unwrap();
            let c = cosine_matrix(&y, false).unwrap();
            for i in 0..n {
                for j in 0..i {
                    let e = c.get(i, j) - exact.get(i, j);
                    worst = worst.max(e.abs());
                    rms += e * e;
                    count += 1.0;
                }
            }
        }
        let rms = (rms / count).sqrt();
        assert!(
            worst <= bound.cosine_error,
            "{kind:?}: worst error {worst} > bound {}",
            bound.cosine_error
        );
        // Typical error ~ (1 - cos^2)/sqrt(k) <= 1/sqrt(k): a loose check that the sketch is not
        // merely within a vacuous bound.
        assert!(rms < 2.0 / (k as f64).sqrt(), "{kind:?}: rms error {rms}");
    }
}

#[test]
fn sketch_is_reproducible_and_block_independent() {
    let (n, d, k) = (5, 150, 40);
    let x = gaussian_matrix(n, d, 11);
    let data: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
    for kind in [SketchKind::Gaussian, SketchKind::Rademacher] {
        let s = Sketcher::new(d, k, kind, 99).unwrap();
        let whole = s.project_block(&data, n).unwrap();
        for i in 0..n {
            assert_eq!(
                s.project(&data[i * d..(i + 1) * d]).unwrap(),
                whole.row(i).to_vec()
            );
        }
        let mut src = InMemoryRows::new(n, d, data.clone()).unwrap();
        assert_eq!(s.project_source(&mut src, 2).unwrap(), whole);
        let other = Sketcher::new(d, k, kind, 100)
            .unwrap()
            .project_block(&data, n)
            .unwrap();
        assert_ne!(other, whole);
        // Centred cosines from the sketch: the Gram of the sketch double-centred.
        let g = {
            let mut g = erosion_analysis::Matrix::zeros(n, n);
            for i in 0..n {
                for j in 0..n {
                    g.set(
                        i,
                        j,
                        erosion_analysis::matrix::dot(whole.row(i), whole.row(j)),
                    );
                }
            }
            g
        };
        let c1 = cosine_from_gram(&erosion_analysis::cosine::double_centre(&g).unwrap()).unwrap();
        let c2 = cosine_matrix(&whole, true).unwrap();
        assert!(c1.max_abs_diff(&c2).unwrap() < 1e-12);
    }
}

#[test]
fn plan_follows_the_budget() {
    let budget = |bytes| GramBudget {
        memory_bytes: bytes,
        max_passes: 4,
        max_cosine_error: 0.1,
        delta: 0.05,
    };
    // 100 rows of dim 1000: two blocks of 25 rows = 200 kB.
    match choose_gram_plan(100, 1000, &budget(200_000)).unwrap() {
        GramPlan::Exact { block_rows, passes } => assert_eq!((block_rows, passes), (25, 4)),
        p => panic!("expected exact, got {p:?}"),
    }
    match choose_gram_plan(100, 1000, &budget(800_000)).unwrap() {
        GramPlan::Exact { block_rows, passes } => assert_eq!((block_rows, passes), (100, 1)),
        p => panic!("expected exact, got {p:?}"),
    }
    // 100 rows of dim 1e9: exact blocks need 2 * 25 * 4e9 bytes; a sketch fits in 100 MB.
    let need = min_sketch_dim(100, 0.1, 0.05).unwrap();
    match choose_gram_plan(100, 1_000_000_000, &budget(100_000_000)).unwrap() {
        GramPlan::Sketch { bound } => {
            assert_eq!(bound.sketch_dim, need);
            assert!(bound.cosine_error <= 0.1);
        }
        p => panic!("expected sketch, got {p:?}"),
    }
    let e = choose_gram_plan(100, 1_000_000_000, &budget(1_000))
        .unwrap_err()
        .to_string();
    assert!(e.contains("fits neither"), "{e}");
}
