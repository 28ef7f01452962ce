//! `y = x W^T` for a weight that does not train, on the CPU:
//!
//! ```text
//! y = x W^T         x [n, in], W^T [in, out] contiguous, y [n, out]
//! dx = dy W         backward; no dW (W is a constant)
//! ```
//!
//! The same gemm call as candle's matmul (same strides and thread count, so the same bits),
//! less two costs. The output is not zero-filled before gemm overwrites it (5% of a forward
//! pass). And backward forms only x's gradient: candle's matmul backward also forms the
//! gradient of every frozen weight and keeps it to the end of the pass, which in LoRA training
//! is a third of the backward products and a buffer the size of the model.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Storage, Tensor, WithDType};
use gemm::{gemm, Parallelism};

/// The product with the frozen `W^T` it holds.
pub(crate) struct FrozenProduct {
    /// W^T `[in, out]`, contiguous.
    pub wt: Tensor,
}

/// Whether [`FrozenProduct`] takes `x` times the frozen `wt`: both on the CPU, in the same
/// dtype, f32 or f64, and `wt` contiguous.
pub(crate) fn applies(x: &Tensor, wt: &Tensor) -> bool {
    x.device().is_cpu()
        && x.dtype() == wt.dtype()
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && !wt.track_op()
        && wt.is_contiguous()
}

/// `x` `[n, in]` (contiguous) by `W^T` `[in, out]` into a fresh, unfilled `[n, out]`.
fn product<T: WithDType>(x: &[T], wt: &[T], n: usize, d_in: usize, d_out: usize) -> Vec<T> {
    let mut y: Vec<T> = Vec::with_capacity(n * d_out);
    let threads = candle_core::utils::get_num_threads();
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: x holds n rows of d_in, wt d_in rows of d_out, and y room for n rows of d_out;
    // with `read_dst` false gemm writes every element of y before anything reads it.
    unsafe {
        gemm(
            n,
            d_out,
            d_in,
            y.as_mut_ptr(),
            1,
            d_out as isize,
            false,
            x.as_ptr(),
            1,
            d_in as isize,
            wt.as_ptr(),
            1,
            d_out as isize,
            T::zero(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
        y.set_len(n * d_out);
    }
    y
}

impl CustomOp1 for FrozenProduct {
    fn name(&self) -> &'static str {
        "frozen linear"
    }

    fn cpu_fwd(&self, x: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, d_in) = l.shape().dims2()?;
        let (d_in_w, d_out) = self.wt.dims2()?;
        let (Some((x0, x1)), true) = (l.contiguous_offsets(), d_in == d_in_w) else {
            candle_core::bail!(
                "frozen linear: x {:?} must be contiguous and fit W^T {:?}",
                l.shape(),
                self.wt.shape()
            )
        };
        let (storage, wl) = self.wt.storage_and_layout();
        let (Storage::Cpu(w), Some((w0, w1))) = (&*storage, wl.contiguous_offsets()) else {
            candle_core::bail!("frozen linear: W^T must be a contiguous CPU tensor")
        };
        let y = match (x, w) {
            (CpuStorage::F32(x), CpuStorage::F32(w)) => {
                CpuStorage::F32(product(&x[x0..x1], &w[w0..w1], n, d_in, d_out))
            }
            (CpuStorage::F64(x), CpuStorage::F64(w)) => {
                CpuStorage::F64(product(&x[x0..x1], &w[w0..w1], n, d_in, d_out))
            }
            _ => candle_core::bail!("frozen linear: x and W^T must be both f32 or both f64"),
        };
        Ok((y, Shape::from((n, d_out))))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        // As candle's matmul backward forms dx (W^T read transposed), so the bits agree.
        Ok(Some(dy.matmul(&self.wt.t()?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The same bits as candle's matmul forward, and the same gradient for x, in f32 and f64.
    #[test]
    fn equals_candles_matmul_and_its_input_gradient() -> anyhow::Result<()> {
        for dtype in [DType::F32, DType::F64] {
            let dev = Device::Cpu;
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (37, 70), &dev)?.to_dtype(dtype)?)?;
            let wt = Tensor::randn(0f32, 1.0, (70, 45), &dev)?.to_dtype(dtype)?;
            let dy = Tensor::randn(0f32, 1.0, (37, 45), &dev)?.to_dtype(dtype)?;
            assert!(applies(x.as_tensor(), &wt));
            let theirs = x.as_tensor().matmul(&wt)?;
            let ours = x.as_tensor().apply_op1(FrozenProduct { wt: wt.clone() })?;
            assert_eq!(
                ours.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?,
                theirs
                    .flatten_all()?
                    .to_dtype(DType::F64)?
                    .to_vec1::<f64>()?
            );
            let g_ours = (&ours * &dy)?.sum_all()?.backward()?;
            let g_theirs = (&theirs * &dy)?.sum_all()?.backward()?;
            let (a, b) = (g_ours.get(&x).unwrap(), g_theirs.get(&x).unwrap());
            assert_eq!(
                a.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?,
                b.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?
            );
        }
        Ok(())
    }
}
