//! The dot kernel and Gram matrices G = X X^T (and X Y^T), dense or block by block; every
//! entry from the same kernel, so all of them agree bit for bit.

use std::ops::Range;

use anyhow::{bail, Context, Result};

use super::rows::RowSource;
use crate::matrix::Matrix;

/// Column chunk of the dot kernel; tiles of the blocked Gram use the same width.
const CHUNK: usize = 1024;

/// Lanes of the dot kernel: 32 f64 accumulators (four 512-bit or eight 256-bit vectors), so
/// the additions are independent and vectorise; a fixed count keeps the result deterministic.
const LANES: usize = 32;

/// Dot product of one column chunk: f32 products summed in f64 over [`LANES`] lanes, the
/// lanes then added as a fixed pairwise tree. Symmetric in (a, b) bit for bit.
#[inline]
pub(crate) fn chunk_dot(a: &[f32], b: &[f32]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut lanes = [0.0f64; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for k in 0..LANES {
            lanes[k] += x[k] as f64 * y[k] as f64;
        }
    }
    for (k, (x, y)) in ar.iter().zip(br).enumerate() {
        lanes[k] += *x as f64 * *y as f64;
    }
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for k in 0..w {
            lanes[k] += lanes[k + w];
        }
    }
    lanes[0]
}

/// The Gram kernel: sum over 1024-column chunks of a 32-lane f64 dot product, in chunk order. Symmetric in
/// (a, b) bit for bit.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = 0.0;
    for (x, y) in a.chunks(CHUNK).zip(b.chunks(CHUNK)) {
        acc += chunk_dot(x, y);
    }
    acc
}

/// Gram matrix of row-major f32 rows held in memory, with [`dot_f32`]. // data: [n, dim] -> [n, n]
pub fn gram_dense_f32(n: usize, dim: usize, data: &[f32]) -> Result<Matrix> {
    if data.len() != n * dim {
        bail!("gram: {} values for {n} rows of dim {dim}", data.len());
    }
    let mut g = Matrix::zeros(n, n);
    for i in 0..n {
        for j in i..n {
            let v = dot_f32(&data[i * dim..(i + 1) * dim], &data[j * dim..(j + 1) * dim]);
            g.set(i, j, v);
            g.set(j, i, v);
        }
    }
    Ok(g)
}

/// acc[i, j] = a_i . b_j for a tile, on every core: the rows of `a` are split among threads.
/// Each entry is summed in the same order whatever the split, so results stay bit-identical.
fn tile_products(a: &[f32], na: usize, b: &[f32], nb: usize, dim: usize, acc: &mut [f64]) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Below about a million multiply-adds a thread costs more than it saves.
    let threads = if na * nb * dim < 1 << 20 {
        1
    } else {
        cores.min(na)
    };
    if threads <= 1 {
        return tile_rows(a, na, b, nb, dim, acc);
    }
    let per = na.div_ceil(threads);
    std::thread::scope(|scope| {
        for (t, out) in acc[..na * nb].chunks_mut(per * nb).enumerate() {
            let rows = out.len() / nb;
            let a = &a[t * per * dim..(t * per + rows) * dim];
            scope.spawn(move || tile_rows(a, rows, b, nb, dim, out));
        }
    });
}

/// The Gram tile of two row blocks, column chunk by column chunk (cache-friendly for long
/// rows), in the same order as [`dot_f32`]. // a: [na, dim], b: [nb, dim], acc: [na, nb]
fn tile_rows(a: &[f32], na: usize, b: &[f32], nb: usize, dim: usize, acc: &mut [f64]) {
    acc.iter_mut().for_each(|v| *v = 0.0);
    let mut c0 = 0;
    while c0 < dim {
        let c1 = (c0 + CHUNK).min(dim);
        for i in 0..na {
            let ai = &a[i * dim + c0..i * dim + c1];
            for j in 0..nb {
                acc[i * nb + j] += chunk_dot(ai, &b[j * dim + c0..j * dim + c1]);
            }
        }
        c0 = c1;
    }
}

/// `0..n` cut into consecutive ranges of `block_rows` (the last shorter).
fn blocks(n: usize, block_rows: usize) -> Vec<Range<usize>> {
    (0..n)
        .step_by(block_rows)
        .map(|s| s..(s + block_rows).min(n))
        .collect()
}

/// Gram matrix G = X X^T of a row store, reading `block_rows` rows at a time: holds two
/// blocks (2 * block_rows * dim f32) and the result; reads the store ceil(n/b)(ceil(n/b)+1)/2
/// block-times. Equal bit for bit to [`gram_dense_f32`]. // -> [n, n]
pub fn blocked_gram(src: &mut dyn RowSource, block_rows: usize) -> Result<Matrix> {
    if block_rows == 0 {
        bail!("block_rows must be positive");
    }
    let (n, dim) = (src.n_rows(), src.dim());
    let bl = blocks(n, block_rows);
    let mut g = Matrix::zeros(n, n);
    let mut buf_i = vec![0f32; block_rows.min(n) * dim];
    let mut buf_j = vec![0f32; block_rows.min(n) * dim];
    let mut tile = vec![0f64; block_rows * block_rows];
    for (bi, ri) in bl.iter().enumerate() {
        let a = &mut buf_i[..ri.len() * dim];
        src.read_rows(ri.clone(), a)
            .with_context(|| format!("gram block rows {ri:?}"))?;
        for rj in &bl[bi..] {
            let b: &[f32] = if rj == ri {
                &*a
            } else {
                let b = &mut buf_j[..rj.len() * dim];
                src.read_rows(rj.clone(), b)
                    .with_context(|| format!("gram block rows {rj:?}"))?;
                b
            };
            let t = &mut tile[..ri.len() * rj.len()];
            tile_products(a, ri.len(), b, rj.len(), dim, t);
            for (ii, i) in ri.clone().enumerate() {
                for (jj, j) in rj.clone().enumerate() {
                    let v = t[ii * rj.len() + jj];
                    g.set(i, j, v);
                    g.set(j, i, v);
                }
            }
        }
    }
    Ok(g)
}

/// Cross Gram matrix X Y^T of two stores of the same dim, block by block. // -> [n_x, n_y]
pub fn blocked_cross_gram(
    x: &mut dyn RowSource,
    y: &mut dyn RowSource,
    block_rows: usize,
) -> Result<Matrix> {
    if block_rows == 0 {
        bail!("block_rows must be positive");
    }
    if x.dim() != y.dim() {
        bail!("cross gram of stores of dims {} and {}", x.dim(), y.dim());
    }
    let dim = x.dim();
    let (bx, by) = (
        blocks(x.n_rows(), block_rows),
        blocks(y.n_rows(), block_rows),
    );
    let mut g = Matrix::zeros(x.n_rows(), y.n_rows());
    let mut buf_x = vec![0f32; block_rows * dim];
    let mut buf_y = vec![0f32; block_rows * dim];
    let mut tile = vec![0f64; block_rows * block_rows];
    for rx in &bx {
        let a = &mut buf_x[..rx.len() * dim];
        x.read_rows(rx.clone(), a)
            .with_context(|| format!("cross gram: first store rows {rx:?}"))?;
        for ry in &by {
            let b = &mut buf_y[..ry.len() * dim];
            y.read_rows(ry.clone(), b)
                .with_context(|| format!("cross gram: second store rows {ry:?}"))?;
            let t = &mut tile[..rx.len() * ry.len()];
            tile_products(a, rx.len(), b, ry.len(), dim, t);
            for (ii, i) in rx.clone().enumerate() {
                g.row_mut(i)[ry.clone()].copy_from_slice(&t[ii * ry.len()..(ii + 1) * ry.len()]);
            }
        }
    }
    Ok(g)
}
