//! Cosine matrices: by hand, blocked == dense bit for bit, memory-mapped store, centring.
// Index loops read like the hand-computed tables they check.
#![allow(clippy::needless_range_loop)]
use crate::common;

use common::{assert_close, gaussian_matrix};
use erosion_analysis::cosine::*;
use erosion_analysis::Matrix;

fn f32_rows(m: &Matrix) -> Vec<f32> {
    m.data.iter().map(|&x| x as f32).collect()
}

#[test]
fn cosine_matrix_by_hand() {
    // (1,0), (1,1), (-2,0): cos = [[1, 1/sqrt2, -1], [1/sqrt2, 1, -1/sqrt2], [-1, -1/sqrt2, 1]]
    let x = Matrix::from_rows(&[vec![1.0, 0.0], vec![1.0, 1.0], vec![-2.0, 0.0]]).unwrap();
    let c = cosine_matrix(&x, false).unwrap();
    let h = std::f64::consts::FRAC_1_SQRT_2;
    let want = [[1.0, h, -1.0], [h, 1.0, -h], [-1.0, -h, 1.0]];
    for i in 0..3 {
        for j in 0..3 {
            assert_close(c.get(i, j), want[i][j], 1e-15, &format!("cos({i},{j})"));
        }
    }
    // Centred: mean (0, 1/3); rows (1,-1/3), (1,2/3), (-2,-1/3).
    let cc = cosine_matrix(&x, true).unwrap();
    let r = [[1.0, -1.0 / 3.0], [1.0, 2.0 / 3.0], [-2.0, -1.0 / 3.0]];
    let cos = |a: [f64; 2], b: [f64; 2]| {
        (a[0] * b[0] + a[1] * b[1])
            / ((a[0] * a[0] + a[1] * a[1]).sqrt() * (b[0] * b[0] + b[1] * b[1]).sqrt())
    };
    for i in 0..3 {
        for j in 0..3 {
            assert_close(
                cc.get(i, j),
                cos(r[i], r[j]),
                1e-14,
                &format!("centred cos({i},{j})"),
            );
        }
    }
}

#[test]
fn zero_row_is_named() {
    let x = Matrix::from_rows(&[vec![1.0, 0.0], vec![0.0, 0.0]]).unwrap();
    let e = cosine_matrix(&x, false).unwrap_err().to_string();
    assert!(e.contains("row 1"), "{e}");
}

#[test]
fn blocked_gram_equals_dense_exactly() {
    // dim 2500 spans several 1024-column chunks and a ragged tail.
    let (n, d) = (11, 2500);
    let data = f32_rows(&gaussian_matrix(n, d, 1));
    let dense = gram_dense_f32(n, d, &data).unwrap();
    // Independent check of the kernel against a plain f64 sum.
    for (i, j) in [(0, 0), (3, 7), (10, 2)] {
        let naive: f64 = (0..d)
            .map(|t| data[i * d + t] as f64 * data[j * d + t] as f64)
            .sum();
        assert_close(
            dense.get(i, j),
            naive,
            1e-9 * naive.abs().max(1.0),
            "kernel vs naive",
        );
    }
    for block in [1, 2, 3, 4, 7, 11, 20] {
        let mut src = InMemoryRows::new(n, d, data.clone()).unwrap();
        let g = blocked_gram(&mut src, block).unwrap();
        assert_eq!(
            g.data, dense.data,
            "block {block}: blocked Gram differs from dense"
        );
    }
    assert!(blocked_gram(&mut InMemoryRows::new(n, d, data).unwrap(), 0).is_err());
}

#[test]
fn mmap_store_round_trip_and_cross_gram() {
    let (n, d) = (9, 300);
    let x = gaussian_matrix(n, d, 2);
    let data = f32_rows(&x);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.f32");
    let mut w = RowFileWriter::create(&path, d).unwrap();
    for i in 0..n {
        w.push(&data[i * d..(i + 1) * d]).unwrap();
    }
    assert!(w.push(&[1.0]).is_err());
    assert_eq!(w.finish().unwrap(), n);

    let mut store = MmapRows::open(&path, d).unwrap();
    assert_eq!((store.n_rows(), store.dim()), (n, d));
    let mut buf = vec![0f32; 2 * d];
    store.read_rows(3..5, &mut buf).unwrap();
    assert_eq!(&buf[..], &data[3 * d..5 * d]);
    assert!(store.read_rows(8..10, &mut buf).is_err());

    let dense = gram_dense_f32(n, d, &data).unwrap();
    for block in [1, 4, 9] {
        assert_eq!(
            blocked_gram(&mut store, block).unwrap().data,
            dense.data,
            "mmap block {block}"
        );
    }
    // Cross gram of the first 4 rows against all rows equals the top rows of the Gram.
    let mut top = InMemoryRows::new(4, d, data[..4 * d].to_vec()).unwrap();
    let cross = blocked_cross_gram(&mut top, &mut store, 2).unwrap();
    for i in 0..4 {
        assert_eq!(cross.row(i), dense.row(i));
    }
    // A file that is not whole rows is refused.
    assert!(MmapRows::open(&path, 7).is_err());
}

#[test]
fn blocked_cosine_with_centring_matches_explicit_centring() {
    let (n, d) = (8, 50);
    let x = gaussian_matrix(n, d, 3);
    // Shift every row so centring matters.
    let shifted = Matrix::from_vec(
        n,
        d,
        x.data
            .iter()
            .enumerate()
            .map(|(i, v)| v + (i % d) as f64 * 0.1)
            .collect(),
    )
    .unwrap();
    let data = f32_rows(&shifted);
    let mut src = InMemoryRows::new(n, d, data.clone()).unwrap();
    let blocked = blocked_cosine_matrix(&mut src, 3, true).unwrap();
    let widened = Matrix::from_f32(n, d, &data).unwrap();
    let mut centred = widened.clone();
    for j in 0..d {
        let m: f64 = (0..n).map(|i| widened.get(i, j)).sum::<f64>() / n as f64;
        (0..n).for_each(|i| centred.set(i, j, widened.get(i, j) - m));
    }
    let explicit = cosine_matrix(&centred, false).unwrap();
    assert!(blocked.max_abs_diff(&explicit).unwrap() < 1e-12);
}

#[test]
fn threaded_tiles_equal_single_threaded_ones_bit_for_bit() {
    // 33 x 33 x 1500 multiply-adds: a whole-matrix tile runs on several threads, a 4-row block
    // on one; the entries must be identical either way.
    let (n, d) = (33, 1500);
    let data = f32_rows(&gaussian_matrix(n, d, 2));
    let threaded = blocked_gram(&mut InMemoryRows::new(n, d, data.clone()).unwrap(), n).unwrap();
    let single = blocked_gram(&mut InMemoryRows::new(n, d, data).unwrap(), 4).unwrap();
    assert_eq!(threaded.data, single.data);
}
