//! The embedding and unembedding matrices `[vocab, d_model]`: held in memory, or, for a
//! streamed model, left in the checkpoint and read as a pass needs them. At 32B each is 3.1 GB
//! in f32, larger than a block, so a streamed model that held them would be bound by them.
//!
//! - Embedding: only the rows of the batch's token ids are read (each run of consecutive ids
//!   in one read) and gathered.
//! - Unembedding: read in slices of [`SLICE_VALUES`] values; each slice's logits are computed
//!   and the slice dropped before the next is read.
//!
//! Each logit is one dot product whatever the slice, so the results are those of the held
//! matrix (the streamed-model tests hold them to the same bits).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::ops::Range;
use std::sync::Arc;

/// Most values of the unembedding read at once (64 MB in f32).
pub const SLICE_VALUES: usize = 1 << 24;

/// Rows of a checkpoint's `[rows, cols]` matrices, read when asked.
pub trait MatrixRows: Send + Sync {
    /// The shape of the matrix `name` as stored; an error naming it when it is not there.
    fn shape(&self, name: &str) -> Result<Vec<usize>>;

    /// Rows `rows` of the matrix `name` (Hugging Face naming) `[rows.len(), cols]`, in
    /// `dtype` on `device`, checked finite.
    fn rows(&self, name: &str, rows: Range<usize>, dtype: DType, device: &Device)
        -> Result<Tensor>;
}

/// `model.embed_tokens.weight` or `lm_head.weight`.
#[derive(Clone)]
pub(crate) enum Matrix {
    Held(Tensor),
    /// Read from `source` as needed; `[rows, cols]`.
    Streamed {
        name: &'static str,
        rows: usize,
        cols: usize,
        source: Arc<dyn MatrixRows>,
    },
}

impl std::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Matrix::Held(t) => f.debug_tuple("Held").field(&t.shape()).finish(),
            Matrix::Streamed {
                name, rows, cols, ..
            } => {
                write!(f, "Streamed({name} [{rows}, {cols}])")
            }
        }
    }
}

impl Matrix {
    /// The matrix itself when held.
    pub fn held(&self) -> Option<&Tensor> {
        match self {
            Matrix::Held(t) => Some(t),
            Matrix::Streamed { .. } => None,
        }
    }

    pub fn held_mut(&mut self) -> Option<&mut Tensor> {
        match self {
            Matrix::Held(t) => Some(t),
            Matrix::Streamed { .. } => None,
        }
    }

    /// The whole matrix `[rows, cols]`, read from the files when streamed.
    pub fn whole(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        match self {
            Matrix::Held(t) => Ok(t.clone()),
            Matrix::Streamed {
                name, rows, source, ..
            } => source.rows(name, 0..*rows, dtype, device),
        }
    }

    /// Rows `ids` (flat) `[ids.len(), cols]`, in the model's dtype.
    pub fn gather(&self, ids: &Tensor, dtype: DType) -> Result<Tensor> {
        let (name, source, device) = match self {
            Matrix::Held(t) => return Ok(t.index_select(ids, 0)?),
            Matrix::Streamed { name, source, .. } => (*name, source, ids.device()),
        };
        let ids = ids.to_vec1::<u32>()?;
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        // One read per run of consecutive ids; `at[k]` is unique[k]'s row in `read`.
        let mut parts = Vec::new();
        let mut start = 0;
        for k in 1..=unique.len() {
            if k == unique.len() || unique[k] != unique[k - 1] + 1 {
                let rows = unique[start] as usize..unique[k - 1] as usize + 1;
                parts.push(source.rows(name, rows, dtype, device)?);
                start = k;
            }
        }
        let read = Tensor::cat(&parts, 0)?;
        let at: Vec<u32> = ids
            .iter()
            .map(|id| unique.binary_search(id).expect("every id is in unique") as u32)
            .collect();
        Ok(read.index_select(&Tensor::new(at, device)?, 0)?)
    }

    /// `x @ selfᵀ`: `[..., cols] -> [..., rows]`, a slice of rows at a time when streamed.
    pub fn project(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        self.project_in_slices(x, dtype, SLICE_VALUES)
    }

    fn project_in_slices(&self, x: &Tensor, dtype: DType, slice_values: usize) -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        let d_in = dims.pop().context("a projection of a scalar")?;
        let x = x.contiguous()?.reshape(((), d_in))?; // [n, cols]
        let y = match self {
            Matrix::Held(w) => x.matmul(&w.t()?)?,
            Matrix::Streamed {
                name,
                rows,
                cols,
                source,
            } => {
                let step = (slice_values / cols).max(1);
                let parts = (0..*rows)
                    .step_by(step)
                    .map(|start| {
                        let w = source.rows(
                            name,
                            start..(start + step).min(*rows),
                            dtype,
                            x.device(),
                        )?;
                        Ok(x.matmul(&w.t()?)?) // [n, step]
                    })
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&parts, 1)?
            }
        };
        dims.push(y.dim(1)?);
        Ok(y.reshape(dims)?)
    }
}

/// An error unless `rows` lies within a matrix of `total` rows.
pub(crate) fn check_rows(name: &str, rows: &Range<usize>, total: usize) -> Result<()> {
    if rows.start >= rows.end || rows.end > total {
        bail!("rows {rows:?} of {name} are out of its {total} rows");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A held tensor served row by row, as a checkpoint would be.
    struct Rows(Tensor);

    impl MatrixRows for Rows {
        fn shape(&self, _: &str) -> Result<Vec<usize>> {
            Ok(self.0.dims().to_vec())
        }

        fn rows(&self, _: &str, rows: Range<usize>, dtype: DType, _: &Device) -> Result<Tensor> {
            check_rows("w", &rows, self.0.dim(0)?)?;
            Ok(self.0.narrow(0, rows.start, rows.len())?.to_dtype(dtype)?)
        }
    }

    #[test]
    fn streamed_rows_gather_and_project_as_the_held_matrix() -> Result<()> {
        let dev = Device::Cpu;
        let (rows, cols) = (37, 5);
        let w = Tensor::randn(0f32, 1.0, (rows, cols), &dev)?;
        let held = Matrix::Held(w.clone());
        let streamed = Matrix::Streamed {
            name: "w",
            rows,
            cols,
            source: Arc::new(Rows(w)),
        };
        let ids = Tensor::new(&[3u32, 4, 5, 3, 36, 0, 10, 11, 4], &dev)?;
        let same = |a: Tensor, b: Tensor| -> Result<()> {
            let (a, b) = (
                a.flatten_all()?.to_vec1::<f32>()?,
                b.flatten_all()?.to_vec1::<f32>()?,
            );
            assert_eq!(a, b);
            Ok(())
        };
        same(
            held.gather(&ids, DType::F32)?,
            streamed.gather(&ids, DType::F32)?,
        )?;
        let x = Tensor::randn(0f32, 1.0, (2, 3, cols), &dev)?;
        let want = held.project(&x, DType::F32)?;
        same(want.clone(), streamed.project(&x, DType::F32)?)?;
        // Slices of 4 rows (the last of 1): the logits of every slice land in place.
        same(want, streamed.project_in_slices(&x, DType::F32, 20)?)?;
        assert!(Rows(Tensor::zeros((2, 2), DType::F32, &dev)?)
            .rows("w", 1..3, DType::F32, &dev)
            .is_err());
        Ok(())
    }
}
