//! Softmax over the last dimension as one fused CPU kernel that also has a backward pass.
//!
//! candle's fused `softmax_last_dim` has no backward, and the composite `softmax` costs about
//! eight passes over the `[b, H, s, s]` attention scores forward and many more backward; in
//! training, those passes dominated the step at sequence lengths above the model width. Here:
//!
//! ```text
//! y = exp(x - max x) / sum exp(x - max x)        one pass per row
//! dx = y * (dy - sum(dy * y))                    backward, from y alone
//! ```

use anyhow::Result;
use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor, D};

struct SoftmaxLastDim;

fn softmax_rows<T: Copy>(
    src: &[T],
    row: usize,
    to: impl Fn(T) -> f64,
    from: impl Fn(f64) -> T,
) -> Vec<T> {
    let mut dst = Vec::with_capacity(src.len());
    for r in src.chunks(row) {
        let max = r.iter().map(|&v| to(v)).fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = r.iter().map(|&v| (to(v) - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        dst.extend(exps.into_iter().map(|e| from(e / sum)));
    }
    dst
}

fn softmax_rows_f32(src: &[f32], row: usize) -> Vec<f32> {
    let mut dst = vec![0f32; src.len()];
    for (s, d) in src.chunks(row).zip(dst.chunks_mut(row)) {
        let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for (x, y) in s.iter().zip(d.iter_mut()) {
            *y = (*x - max).exp();
            sum += *y;
        }
        let inv = 1.0 / sum;
        d.iter_mut().for_each(|y| *y *= inv);
    }
    dst
}

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "erosion-softmax-last-dim"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (o1, o2) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("softmax input must be contiguous".into()))?;
        let dims = layout.shape().dims();
        let row = *dims.last().unwrap_or(&1);
        let out = match storage {
            CpuStorage::F32(s) => CpuStorage::F32(softmax_rows_f32(&s[o1..o2], row)),
            CpuStorage::F64(s) => CpuStorage::F64(softmax_rows(&s[o1..o2], row, |v| v, |v| v)),
            CpuStorage::BF16(s) => CpuStorage::BF16(softmax_rows(
                &s[o1..o2],
                row,
                |v| v.to_f64(),
                half::bf16::from_f64,
            )),
            CpuStorage::F16(s) => CpuStorage::F16(softmax_rows(
                &s[o1..o2],
                row,
                |v| v.to_f64(),
                half::f16::from_f64,
            )),
            _ => candle_core::bail!("softmax of a non-float tensor"),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let dot = (grad_res * res)?.sum_keepdim(D::Minus1)?;
        Ok(Some((res * grad_res.broadcast_sub(&dot)?)?))
    }
}

/// Softmax over the last dimension with a correct gradient: the fused kernel on CPU, candle's
/// composite op on other devices (a custom op there would need its own kernels).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    Ok(match x.device() {
        Device::Cpu if x.dtype().is_float() => x.contiguous()?.apply_op1(SoftmaxLastDim)?,
        _ => candle_nn::ops::softmax(x, D::Minus1)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// Values and gradients equal candle's composite softmax (f64: to rounding).
    #[test]
    fn matches_the_composite_softmax_and_its_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f64, 3.0, (2, 3, 7), &dev)?))?;
        let w = Tensor::randn(0f64, 1.0, (2, 3, 7), &dev)?;
        let fused = softmax_last_dim(x.as_tensor())?;
        let composite = candle_nn::ops::softmax(x.as_tensor(), D::Minus1)?;
        let diff = (&fused - &composite)?
            .abs()?
            .max_all()?
            .to_scalar::<f64>()?;
        assert!(diff < 1e-15, "values differ by {diff}");
        let g1 = (fused * &w)?.sum_all()?.backward()?;
        let g2 = (composite * &w)?.sum_all()?.backward()?;
        let (g1, g2) = (g1.get(&x).unwrap(), g2.get(&x).unwrap());
        let diff = (g1 - g2)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-14, "gradients differ by {diff}");
        // A masked (-inf) entry gets probability 0 and no gradient.
        let m = Tensor::new(&[[0f32, f32::NEG_INFINITY, 1.0]], &dev)?;
        let p = softmax_last_dim(&m)?.to_vec2::<f32>()?;
        assert_eq!(p[0][1], 0.0);
        assert!((p[0][0] + p[0][2] - 1.0).abs() < 1e-7);
        Ok(())
    }
}
