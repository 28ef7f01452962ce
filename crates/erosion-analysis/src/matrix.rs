//! A small row-major `f64` matrix: the currency of this crate.
//!
//! Activations arrive from many sources (candle tensors, safetensors caches, `.npy` files); the
//! analyses take them as plain row-major data so the caller can feed any of them. faer is used
//! for the heavy linear algebra (SVD, eigen-decomposition) through [`Matrix::to_faer`].

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Row-major `rows x cols` matrix of `f64`: element (i, j) is `data[i * cols + j]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Matrix {
    /// All-zero `rows x cols` matrix.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// Wraps row-major `data`; its length must be `rows * cols`.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f64>) -> Result<Self> {
        if data.len() != rows * cols {
            bail!(
                "matrix data has {} values, expected rows {} x cols {} = {}",
                data.len(),
                rows,
                cols,
                rows * cols
            );
        }
        Ok(Self { rows, cols, data })
    }

    /// Row-major `f32` data (e.g. activations) widened to `f64`.
    pub fn from_f32(rows: usize, cols: usize, data: &[f32]) -> Result<Self> {
        if data.len() != rows * cols {
            bail!(
                "f32 matrix data has {} values, expected rows {} x cols {} = {}",
                data.len(),
                rows,
                cols,
                rows * cols
            );
        }
        Ok(Self {
            rows,
            cols,
            data: data.iter().map(|&x| x as f64).collect(),
        })
    }

    /// Stacks equal-length rows; an empty slice gives a 0 x 0 matrix.
    pub fn from_rows(rows: &[Vec<f64>]) -> Result<Self> {
        let cols = rows.first().map_or(0, |r| r.len());
        let mut data = Vec::with_capacity(rows.len() * cols);
        for (i, r) in rows.iter().enumerate() {
            if r.len() != cols {
                bail!("row {i} has {} values, row 0 has {cols}", r.len());
            }
            data.extend_from_slice(r);
        }
        Ok(Self {
            rows: rows.len(),
            cols,
            data,
        })
    }

    /// Element (i, j). Panics on out-of-range indices, like slice indexing.
    #[inline]
    pub fn get(&self, i: usize, j: usize) -> f64 {
        debug_assert!(i < self.rows && j < self.cols);
        self.data[i * self.cols + j]
    }

    /// Sets element (i, j).
    #[inline]
    pub fn set(&mut self, i: usize, j: usize, v: f64) {
        debug_assert!(i < self.rows && j < self.cols);
        self.data[i * self.cols + j] = v;
    }

    /// Row i as a slice. // `[cols]`
    #[inline]
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Row i as a mutable slice. // `[cols]`
    #[inline]
    pub fn row_mut(&mut self, i: usize) -> &mut [f64] {
        let c = self.cols;
        &mut self.data[i * c..(i + 1) * c]
    }

    /// The rows as owned vectors.
    pub fn to_rows(&self) -> Vec<Vec<f64>> {
        (0..self.rows).map(|i| self.row(i).to_vec()).collect()
    }

    /// Transposed copy. // [cols, rows]
    pub fn transpose(&self) -> Matrix {
        let mut t = Matrix::zeros(self.cols, self.rows);
        for i in 0..self.rows {
            for j in 0..self.cols {
                t.data[j * self.rows + i] = self.data[i * self.cols + j];
            }
        }
        t
    }

    /// Copy into a faer matrix (column-major) for decompositions.
    pub fn to_faer(&self) -> faer::Mat<f64> {
        faer::Mat::from_fn(self.rows, self.cols, |i, j| self.get(i, j))
    }

    /// Copy out of a faer matrix view.
    pub fn from_faer(m: faer::MatRef<'_, f64>) -> Matrix {
        let (rows, cols) = (m.nrows(), m.ncols());
        let mut out = Matrix::zeros(rows, cols);
        for i in 0..rows {
            for j in 0..cols {
                out.data[i * cols + j] = m[(i, j)];
            }
        }
        out
    }

    /// Largest absolute element-wise difference to `other` (same shape), for tests and checks.
    pub fn max_abs_diff(&self, other: &Matrix) -> Result<f64> {
        if self.rows != other.rows || self.cols != other.cols {
            bail!(
                "shape mismatch: {}x{} vs {}x{}",
                self.rows,
                self.cols,
                other.rows,
                other.cols
            );
        }
        Ok(self
            .data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max))
    }
}

/// Dot product in f64.
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Euclidean norm in f64.
#[inline]
pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// Cosine similarity `a . b / (|a| |b|)`; errors on a zero vector or a length mismatch.
pub fn cosine(a: &[f64], b: &[f64]) -> Result<f64> {
    if a.len() != b.len() {
        bail!(
            "cosine of vectors of different lengths {} and {}",
            a.len(),
            b.len()
        );
    }
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 || !na.is_finite() || !nb.is_finite() {
        bail!("cosine undefined: vector norms are {na} and {nb}");
    }
    Ok(dot(a, b) / (na * nb))
}
