//! The scalar a training step backpropagates from: `sum(logits * stopgrad(G))`, whose gradient at
//! the logits is exactly `G = d loss / d logits` (computed in closed form by the cross-entropy).
//!
//! Built from candle ops, its backward multiplies `G` by a broadcast 1 (a scalar loop over
//! `[n, vocab]`) and keeps one more `[n, vocab]` tensor alive. On CPU it is one custom op whose
//! backward hands `G` over as it is: the same gradient bit for bit, one less pass over the largest
//! tensor of the step (the vocabulary is 49,152 wide for SmolLM2).

use anyhow::Result;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Storage, Tensor};

/// `sum(logits * stopgrad(g))`, a 0-dimensional tensor; `logits` and `g` `[n, vocab]`.
pub(crate) fn surrogate(logits: &Tensor, g: &Tensor) -> Result<Tensor> {
    let fused = matches!(logits.device(), Device::Cpu)
        && logits.dtype() == g.dtype()
        && matches!(g.dtype(), DType::F32 | DType::F64)
        && logits.dims() == g.dims();
    if !fused {
        return Ok((logits.to_dtype(g.dtype())? * g.detach())?.sum_all()?);
    }
    let g = g.detach().contiguous()?;
    Ok(logits.contiguous()?.apply_op1(DotWith(g))?)
}

/// `x -> sum(x * G)` with the gradient `G * d_out`.
struct DotWith(Tensor);

impl CustomOp1 for DotWith {
    fn name(&self) -> &'static str {
        "dot-with-gradient"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (guard, gl) = self.0.storage_and_layout();
        let (Some((x0, x1)), Some((g0, g1)), Storage::Cpu(g)) =
            (l.contiguous_offsets(), gl.contiguous_offsets(), &*guard)
        else {
            candle_core::bail!("dot-with-gradient: inputs must be contiguous and on the CPU")
        };
        let out = match (s, g) {
            (CpuStorage::F32(x), CpuStorage::F32(g)) => {
                CpuStorage::F32(vec![dot(&x[x0..x1], &g[g0..g1]) as f32])
            }
            (CpuStorage::F64(x), CpuStorage::F64(g)) => {
                CpuStorage::F64(vec![dot(&x[x0..x1], &g[g0..g1])])
            }
            _ => candle_core::bail!("dot-with-gradient: both inputs f32 or both f64"),
        };
        Ok((out, Shape::from(())))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _res: &Tensor,
        d_out: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        // backward() seeds the root with 1: then G itself, with no pass over it.
        let scale = d_out.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        Ok(Some(if scale == 1.0 {
            self.0.clone()
        } else {
            self.0.affine(scale, 0.0)?
        }))
    }
}

fn dot<T: Copy + Into<f64>>(x: &[T], g: &[T]) -> f64 {
    x.iter().zip(g).map(|(&a, &b)| a.into() * b.into()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// The fused op and the candle composite give the same value (to rounding: the op sums in
    /// f64) and the same gradient bit for bit, on a case where G has exact zeros and negative
    /// entries.
    #[test]
    fn matches_the_composite_bit_for_bit() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_vec(
            (0..24).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(),
            (4, 6),
            &dev,
        )?;
        let g = Tensor::from_vec(
            (0..24)
                .map(|i| {
                    if i % 5 == 0 {
                        0.0
                    } else {
                        (i as f32 * 0.91).cos()
                    }
                })
                .collect::<Vec<_>>(),
            (4, 6),
            &dev,
        )?;
        let h = (x.as_tensor() * 1.5)?; // not a leaf, as the logits are not
        let fused = surrogate(&h, &g)?;
        let composite = (&h * &g)?.sum_all()?;
        let value = fused.to_scalar::<f32>()?;
        assert!((value - composite.to_scalar::<f32>()?).abs() < 1e-5);
        let a = grad_at(&x, &fused)?;
        assert_eq!(bits(&a), bits(&grad_at(&x, &composite)?));
        // Scaled from above (a loss weight on the surrogate), the gradient scales too.
        let c = grad_at(&x, &(surrogate(&h, &g)? * 2.0)?)?;
        for (c, a) in c.iter().zip(&a) {
            assert_eq!(*c, 2.0 * a);
        }
        Ok(())
    }

    fn grad_at(x: &Var, root: &Tensor) -> Result<Vec<f32>> {
        let grads = root.backward()?;
        let g = grads.get(x).expect("x is upstream of root");
        Ok(g.flatten_all()?.to_vec1::<f32>()?)
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|v| v.to_bits()).collect()
    }
}
