//! The gated MLP's activation as one fused CPU kernel with a backward pass:
//!
//! ```text
//! y = silu(g) * u = g / (1 + exp(-g)) * u                       g, u [..., d_mlp]
//! dg = dy * u * sigma(g) * (1 + g (1 - sigma(g)))     du = dy * silu(g)
//! ```
//!
//! candle computes `silu(g)` and the product as two ops, each a fresh `[n, d_mlp]` tensor (the
//! widest activation of the block) and a pass over it; here it is one.

use super::cpu_kernel::{self, Float2Kernel, Real};
use super::fast_exp::widest;
use anyhow::Result;
use candle_core::Tensor;
use rayon::prelude::*;

/// Elements per rayon task: enough that scheduling is noise.
const CHUNK: usize = 1 << 14;

struct SwiGlu;

impl Float2Kernel for SwiGlu {
    const NAME: &'static str = "swiglu";

    fn run<T: Real>(&self, g: &[T], u: &[T], _row: usize) -> Vec<T> {
        let mut out = vec![T::zero(); g.len()];
        out.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
            .for_each(|(y, (g, u))| {
                widest(
                    #[inline(always)]
                    || {
                        for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
                            *y = g / (T::one() + (-g).exp_fast()) * u;
                        }
                    },
                )
            });
        out
    }

    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let sig = candle_nn::ops::sigmoid(g)?;
        let silu = (g * &sig)?;
        // sigma(g) (1 + g (1 - sigma(g))) = sigma(g) + silu(g) (1 - sigma(g))
        let dsilu = (&sig + (&silu * (1.0 - &sig)?)?)?;
        let dg = ((dy * u)? * dsilu)?;
        let du = (dy * silu)?;
        Ok((Some(dg), Some(du)))
    }
}

/// `silu(gate) * up`, elementwise, with gradients for both: the fused kernel on CPU for f32 and
/// f64, candle's composite ops otherwise.
pub fn swiglu_fused(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    Ok(
        if cpu_kernel::applies(gate, up) && gate.dims() == up.dims() {
            cpu_kernel::apply(SwiGlu, gate, up)?
        } else {
            (gate.silu()? * up)?
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// Values and both gradients equal candle's composite silu(g) * u (f64: to rounding).
    #[test]
    fn matches_the_composite_and_its_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let g = Var::from_tensor(&Tensor::randn(0f64, 3.0, (3, 5, 7), &dev)?)?;
        let u = Var::from_tensor(&Tensor::randn(0f64, 1.0, (3, 5, 7), &dev)?)?;
        let w = Tensor::randn(0f64, 1.0, (3, 5, 7), &dev)?;
        let fused = swiglu_fused(g.as_tensor(), u.as_tensor())?;
        let reference = (g.as_tensor().silu()? * u.as_tensor())?;
        let max_diff =
            |a: &Tensor, b: &Tensor| -> Result<f64> { Ok((a - b)?.abs()?.max_all()?.to_scalar()?) };
        assert!(max_diff(&fused, &reference)? < 1e-15);
        let g1 = (&fused * &w)?.sum_all()?.backward()?;
        let g2 = (&reference * &w)?.sum_all()?.backward()?;
        for v in [&g, &u] {
            let d = max_diff(g1.get(v).unwrap(), g2.get(v).unwrap())?;
            assert!(d < 1e-14, "gradients differ by {d}");
        }
        let g32 = g.as_tensor().to_dtype(DType::F32)?;
        let u32 = u.as_tensor().to_dtype(DType::F32)?;
        let d = (swiglu_fused(&g32, &u32)? - (g32.silu()? * &u32)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(d < 1e-6, "f32 values differ by {d}");
        Ok(())
    }
}
