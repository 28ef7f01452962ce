//! The attention softmax as one fused CPU kernel with a backward pass:
//!
//! ```text
//! y = softmax(c x + bias)          over the last dim    x [b, H, s, k], bias [b, 1, s, k]
//! dx = c y (dy - sum(dy y))        backward, from y alone (bias is a constant)
//! ```
//!
//! Composed from candle ops this is a scale, a broadcast add and a softmax: a fresh `[b, H, s, k]`
//! tensor and a pass over it for each, and many more passes backward (candle's own fused softmax
//! has no backward at all). In training those passes dominated the step at sequence lengths above
//! the model width; in inference they were a tenth of the forward pass. Each row is scaled, biased
//! and normalised in one pass here, rows in parallel.

use super::cpu_kernel::{self, Float2Kernel, Real};
use super::fast_exp::widest;
use super::ForwardMode;
use anyhow::{ensure, Result};
use candle_core::{Tensor, D};
use num_traits::Float;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Independent accumulators in a reduction: enough for a 512-bit register of f32.
const LANES: usize = 16;

/// `v` folded with `f` from `init` in [`LANES`] independent accumulators, so the compiler can
/// keep them in one vector register (a plain fold is a serial chain of float operations).
#[inline(always)]
fn lanes<T: Float>(v: &[T], init: T, f: impl Fn(T, T) -> T) -> T {
    let mut acc = [init; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(init, |a, &b| f(a, b));
    for c in chunks {
        for (a, &b) in acc.iter_mut().zip(c) {
            *a = f(*a, b);
        }
    }
    acc.into_iter().fold(tail, &f)
}

/// `y <- softmax(y)` in place, where `y` already holds `scale x + bias`: keys at -inf get 0 and
/// skip the exponential. Inline into a caller run under [`widest`], so that it vectorises there.
#[inline(always)]
pub(super) fn normalise<T: Real>(y: &mut [T]) {
    let max = lanes(y, T::neg_infinity(), |m, v| if v > m { v } else { m });
    for y in y.iter_mut() {
        *y = if *y == T::neg_infinity() {
            T::zero()
        } else {
            (*y - max).exp_fast()
        };
    }
    let inv = T::one() / lanes(y, T::zero(), |s, v| s + v);
    y.iter_mut().for_each(|y| *y = *y * inv);
}

struct AttentionSoftmax {
    scale: f64,
    /// Query heads: rows of x per row of bias are `heads` blocks of `s` rows.
    heads: usize,
    seq: usize,
}

impl AttentionSoftmax {
    /// Row of x `r` = ((batch * heads) + head) * seq + i reads bias row batch * seq + i.
    fn bias_row(&self, r: usize) -> usize {
        (r / (self.heads * self.seq)) * self.seq + r % self.seq
    }
}

impl Float2Kernel for AttentionSoftmax {
    const NAME: &'static str = "attention softmax";

    /// Each `k`-wide row of `x` scaled, plus its bias row, normalised, rows in parallel. The
    /// passes are written so that the compiler vectorises them (lane-wise max and sum), and
    /// masked keys skip the exponential.
    fn run<T: Real>(&self, x: &[T], bias: &[T], k: usize) -> Vec<T> {
        let scale = T::from(self.scale).expect("a float scale");
        let mut out = Vec::with_capacity(x.len());
        // Only the first x.len() slots: Vec may reserve more than asked.
        out.spare_capacity_mut()[..x.len()]
            .par_chunks_mut(k)
            .enumerate()
            .for_each(|(r, y)| {
                widest(
                    #[inline(always)]
                    || {
                        let xr = &x[r * k..(r + 1) * k];
                        let br = &bias[self.bias_row(r) * k..][..k];
                        for ((y, &a), &b) in y.iter_mut().zip(xr).zip(br) {
                            y.write(scale * a + b);
                        }
                        // SAFETY: every element of the row was written just above.
                        let y = unsafe { &mut *(y as *mut [MaybeUninit<T>] as *mut [T]) };
                        normalise(y);
                    },
                )
            });
        // SAFETY: the rows cover the first x.len() slots, and each was written.
        unsafe { out.set_len(x.len()) };
        out
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dot = (grad_res * res)?.sum_keepdim(D::Minus1)?;
        let dx = ((res * grad_res.broadcast_sub(&dot)?)? * self.scale)?;
        Ok((Some(dx), None))
    }
}

/// `softmax(scale * x + bias)` over the last dimension, with a correct gradient for `x`:
/// `x` `[b, H, s, k]` scores, `bias` `[b, 1, s, k]` (0 or -inf), both f32 or both f64. The
/// fused kernel on CPU; elsewhere candle's fused softmax in [`ForwardMode::Fast`] (it has no
/// backward) and its composite ops when differentiating (a custom op there would need its own
/// kernels).
pub fn attention_softmax(
    x: &Tensor,
    bias: &Tensor,
    scale: f64,
    mode: ForwardMode,
) -> Result<Tensor> {
    let (b, heads, seq, k) = x.dims4()?;
    ensure!(
        bias.dims() == [b, 1, seq, k],
        "attention bias {:?} does not fit scores {:?}",
        bias.dims(),
        x.dims()
    );
    if cpu_kernel::applies(x, bias) {
        return cpu_kernel::apply(AttentionSoftmax { scale, heads, seq }, x, bias);
    }
    let z = (x * scale)?.broadcast_add(bias)?;
    Ok(match mode {
        ForwardMode::Fast => candle_nn::ops::softmax_last_dim(&z)?,
        ForwardMode::Differentiable => candle_nn::ops::softmax(&z, D::Minus1)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;
    use candle_core::{DType, Device};

    fn composite(x: &Tensor, bias: &Tensor, scale: f64) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax(
            &(x * scale)?.broadcast_add(bias)?,
            D::Minus1,
        )?)
    }

    /// A causal bias for 2 examples, the second with its first key padded.
    fn bias(dtype: DType) -> Result<Tensor> {
        let inf = f64::NEG_INFINITY;
        let mut v = Vec::new();
        for pad_first in [false, true] {
            for i in 0..3 {
                for j in 0..3 {
                    let allowed = j == i || (j < i && !(pad_first && j == 0));
                    v.push(if allowed { 0.0 } else { inf });
                }
            }
        }
        Ok(Tensor::from_vec(v, (2, 1, 3, 3), &Device::Cpu)?.to_dtype(dtype)?)
    }

    /// Values and gradients equal candle's composite ops (f64: to rounding); masked keys get
    /// probability 0 and no gradient.
    #[test]
    fn matches_the_composite_softmax_and_its_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f64, 3.0, (2, 4, 3, 3), &dev)?))?;
        let w = Tensor::randn(0f64, 1.0, (2, 4, 3, 3), &dev)?;
        let bias = bias(DType::F64)?;
        let fused = attention_softmax(x.as_tensor(), &bias, 0.125, ForwardMode::Differentiable)?;
        let reference = composite(x.as_tensor(), &bias, 0.125)?;
        let diff = (&fused - &reference)?
            .abs()?
            .max_all()?
            .to_scalar::<f64>()?;
        assert!(diff < 1e-15, "values differ by {diff}");
        let g1 = (&fused * &w)?.sum_all()?.backward()?;
        let g2 = (&reference * &w)?.sum_all()?.backward()?;
        let (g1, g2) = (g1.get(&x).unwrap(), g2.get(&x).unwrap());
        let diff = (g1 - g2)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-14, "gradients differ by {diff}");
        // Example 1 (first key padded), head 2, query 1: only key 1 is visible.
        let row = fused.get(1)?.get(2)?.get(1)?.to_vec1::<f64>()?;
        assert_eq!(row, [0.0, 1.0, 0.0]);
        let grow = g1.get(1)?.get(2)?.get(1)?.to_vec1::<f64>()?;
        assert_eq!(grow, [0.0, 0.0, 0.0]);
        Ok(())
    }

    #[test]
    fn f32_kernel_matches_the_composite() -> Result<()> {
        let x = Tensor::randn(0f32, 3.0, (2, 4, 3, 3), &Device::Cpu)?;
        let bias = bias(DType::F32)?;
        let fused = attention_softmax(&x, &bias, 0.125, ForwardMode::Fast)?;
        let diff = (fused - composite(&x, &bias, 0.125)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-6, "values differ by {diff}");
        Ok(())
    }
}
