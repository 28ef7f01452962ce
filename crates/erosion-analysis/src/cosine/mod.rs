//! Cosine-similarity matrices of n vectors (finding 2: loss vectors and gradients).
//!
//! cos_ij = x_i . x_j / (|x_i| |x_j|), read off the Gram matrix G = X X^T:
//! cos_ij = G_ij / sqrt(G_ii G_jj). Mean-centring (x_i - mu, mu = mean of the rows) is applied
//! to the Gram matrix exactly by double centring: Gc = C G C with C = I - 11^T/n, i.e.
//! Gc_ij = G_ij - r_i - r_j + t, r_i = mean_j G_ij, t = mean_ij G_ij.
//!
//! Rows can be far too large to hold all at once (a gradient of a 32B model's last-layer
//! o_proj has 26M values): [`blocked_gram`] reads rows from a [`RowSource`] (in memory, or a
//! memory-mapped flat f32 file) block by block and holds two blocks plus the n x n result.
//!
//! Exactness: every Gram entry is computed by one kernel ([`dot_f32`]: f32 products accumulated
//! in f64, in a fixed order over fixed column chunks), so the blocked matrix equals the dense
//! one bit for bit, whatever the block size.
//!
//! `rows.rs` holds the row sources, `gram.rs` the kernel and the (blocked) Gram matrices;
//! here the centring and the cosines.

mod gram;
mod rows;

pub(crate) use gram::chunk_dot;
pub use gram::{blocked_cross_gram, blocked_gram, dot_f32, gram_dense_f32};
pub use rows::{InMemoryRows, MmapRows, RowFileWriter, RowSource};

use anyhow::{bail, Result};

use crate::matrix::Matrix;

/// Gram matrix of the mean-centred rows, from the uncentred one (double centring, exact in
/// exact arithmetic). // [n, n] -> [n, n]
pub fn double_centre(g: &Matrix) -> Result<Matrix> {
    if g.rows != g.cols || g.rows == 0 {
        bail!(
            "double centring needs a non-empty square Gram matrix, got {}x{}",
            g.rows,
            g.cols
        );
    }
    let n = g.rows;
    let r: Vec<f64> = (0..n)
        .map(|i| g.row(i).iter().sum::<f64>() / n as f64)
        .collect();
    let t = r.iter().sum::<f64>() / n as f64;
    let mut c = Matrix::zeros(n, n);
    for i in 0..n {
        for j in 0..n {
            c.set(i, j, g.get(i, j) - r[i] - r[j] + t);
        }
    }
    Ok(c)
}

/// Cosine matrix from a Gram matrix: G_ij / sqrt(G_ii G_jj), clamped to [-1, 1] (rounding can
/// overshoot by an ulp), diagonal exactly 1. Errors on a zero-norm row, naming it.
pub fn cosine_from_gram(g: &Matrix) -> Result<Matrix> {
    if g.rows != g.cols {
        bail!("cosine from a non-square Gram matrix {}x{}", g.rows, g.cols);
    }
    let n = g.rows;
    let norms: Vec<f64> = (0..n).map(|i| g.get(i, i).max(0.0).sqrt()).collect();
    // Relative threshold: a centred row can be zero up to rounding.
    let scale = norms.iter().cloned().fold(0.0, f64::max);
    for (i, &s) in norms.iter().enumerate() {
        if s.is_nan() || s <= 1e-12 * scale || !s.is_finite() {
            bail!("row {i} has norm {s} (max row norm {scale}): its cosine is undefined");
        }
    }
    let mut c = Matrix::zeros(n, n);
    for i in 0..n {
        for j in 0..n {
            let v = if i == j {
                1.0
            } else {
                (g.get(i, j) / (norms[i] * norms[j])).clamp(-1.0, 1.0)
            };
            c.set(i, j, v);
        }
    }
    Ok(c)
}

/// Cosine matrix of n vectors held in memory, optionally mean-centred first. // [n, d] -> [n, n]
pub fn cosine_matrix(rows: &Matrix, centre: bool) -> Result<Matrix> {
    let n = rows.rows;
    let mut g = Matrix::zeros(n, n);
    for i in 0..n {
        for j in i..n {
            let v = crate::matrix::dot(rows.row(i), rows.row(j));
            g.set(i, j, v);
            g.set(j, i, v);
        }
    }
    if centre {
        g = double_centre(&g)?;
    }
    cosine_from_gram(&g)
}

/// Cosine matrix of a row store computed block by block ([`blocked_gram`]). // -> [n, n]
pub fn blocked_cosine_matrix(
    src: &mut dyn RowSource,
    block_rows: usize,
    centre: bool,
) -> Result<Matrix> {
    let mut g = blocked_gram(src, block_rows)?;
    if centre {
        g = double_centre(&g)?;
    }
    cosine_from_gram(&g)
}
