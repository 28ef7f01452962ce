//! Attention that computes only the scores a query may see, a block of queries at a time:
//!
//! ```text
//! for each example b, query head h (reading kv head h / (Hq/Hkv)), block I of query rows:
//!   [k0, k1) = the keys some row of I may see (the bias's first and last 0 in those rows)
//!   S = scale Q_I K[k0..k1]^T + bias[I, k0..k1]     [|I|, k1 - k0]
//!   P = softmax(S)                                   per row; keys at -inf get 0
//!   z[b, I, h, :] = P V[k0..k1]                       [|I|, d]
//! ```
//!
//! The full path multiplies every query with every key of the padded batch, materialises the
//! `[b, Hq, s, s_k]` scores and pattern, and copies z out of the head-major layout; under a
//! causal mask over half of that work is discarded, and more with padding. Here the scores of a
//! block live in a small buffer and z is written in place. Backward recomputes each block's
//! pattern instead of keeping it (kernel.rs), so training holds no `[b, Hq, s, s_k]` tensor
//! either. The pattern is never formed: a hook on `attn.hook_pattern` takes the full path.
//! Values and gradients equal the full path's to rounding (the same terms, less the zero-weight
//! ones, summed in blocks of another width).

mod kernel;

use super::cpu_kernel::Real;
use anyhow::{bail, Result};
use candle_core::{
    CpuStorage, CustomOp3, DType, Device, Layout, Shape, Storage, Tensor, WithDType,
};
use kernel::{Dims, Kernel};

/// `z` `[b, s, Hq, d]` from `q` `[b, Hq, s, d]`, `k`, `v` `[b, Hkv, s_k, d]` and the additive
/// `bias` `[b, 1, s, s_k]` (0 or -inf), all f32 or all f64 on the CPU, differentiable in q, k
/// and v; `None` where the kernel does not apply (another device or dtype): the caller then
/// takes the full path.
pub(crate) fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    scale: f64,
) -> Result<Option<Tensor>> {
    let dtype = q.dtype();
    if !matches!(q.device(), Device::Cpu)
        || !matches!(dtype, DType::F32 | DType::F64)
        || [k, v, bias].iter().any(|t| t.dtype() != dtype)
    {
        return Ok(None);
    }
    let (b, hq, s, d) = q.dims4()?;
    let (_, hk, sk, _) = k.dims4()?;
    if k.dims() != [b, hk, sk, d] || v.dims() != k.dims() || bias.dims() != [b, 1, s, sk] {
        bail!(
            "attention inputs do not fit: q {:?}, k {:?}, v {:?}, bias {:?}",
            q.dims(),
            k.dims(),
            v.dims(),
            bias.dims()
        );
    }
    if hk == 0 || hq % hk != 0 {
        bail!("{hq} query heads cannot share {hk} kv heads");
    }
    let op = BlockAttention {
        bias: bias.contiguous()?,
        scale,
        dims: Dims {
            b,
            hq,
            hk,
            s,
            sk,
            d,
        },
    };
    Ok(Some(q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        op,
    )?))
}

/// The op in candle's graph: the bias is a constant, so it is held here, not an input.
struct BlockAttention {
    bias: Tensor,
    scale: f64,
    dims: Dims,
}

/// The contiguous CPU slice behind a storage.
fn cpu_slice<'a, T: WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [T]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("block attention needs contiguous inputs")
    };
    Ok(&storage.as_slice::<T>()?[start..end])
}

/// The CPU storage of a tensor.
fn cpu_of(storage: &Storage) -> candle_core::Result<&CpuStorage> {
    match storage {
        Storage::Cpu(c) => Ok(c),
        _ => candle_core::bail!("block attention runs on CPU tensors only"),
    }
}

impl BlockAttention {
    /// Runs `f` on the kernel built over q, k, v (as stored) and the bias, in their float type.
    fn with_kernel<R>(
        &self,
        [(q, lq), (k, lk), (v, lv)]: [(&CpuStorage, &Layout); 3],
        f32_fn: impl FnOnce(&Kernel<f32>) -> candle_core::Result<R>,
        f64_fn: impl FnOnce(&Kernel<f64>) -> candle_core::Result<R>,
    ) -> candle_core::Result<R> {
        let (guard, lb) = self.bias.storage_and_layout();
        let bias = cpu_of(&guard)?;
        fn build<'a, T: Real + WithDType>(
            op: &BlockAttention,
            [q, k, v, bias]: [(&'a CpuStorage, &Layout); 4],
            scale: T,
        ) -> candle_core::Result<Kernel<'a, T>> {
            Ok(Kernel::new(
                cpu_slice(q.0, q.1)?,
                cpu_slice(k.0, k.1)?,
                cpu_slice(v.0, v.1)?,
                cpu_slice(bias.0, bias.1)?,
                scale,
                op.dims,
            ))
        }
        let parts = [(q, lq), (k, lk), (v, lv), (bias, lb)];
        match q {
            CpuStorage::F32(_) => f32_fn(&build(self, parts, self.scale as f32)?),
            CpuStorage::F64(_) => f64_fn(&build(self, parts, self.scale)?),
            _ => candle_core::bail!("block attention takes f32 or f64"),
        }
    }
}

impl CustomOp3 for BlockAttention {
    fn name(&self) -> &'static str {
        "block attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        lq: &Layout,
        k: &CpuStorage,
        lk: &Layout,
        v: &CpuStorage,
        lv: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let Dims { b, hq, s, d, .. } = self.dims;
        let z = self.with_kernel(
            [(q, lq), (k, lk), (v, lv)],
            |kern| Ok(CpuStorage::F32(kern.forward())),
            |kern| Ok(CpuStorage::F64(kern.forward())),
        )?;
        Ok((z, Shape::from((b, s, hq, d))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _z: &Tensor,
        dz: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Dims {
            b,
            hq,
            hk,
            s,
            sk,
            d,
        } = self.dims;
        let dz = dz.contiguous()?;
        let guards = [q, k, v, &dz].map(|t| t.storage_and_layout());
        let [q, k, v, dz] = [0, 1, 2, 3].map(|i| cpu_of(&guards[i].0));
        let ls = [0, 1, 2, 3].map(|i| guards[i].1);
        let dev = Device::Cpu;
        let tensors = |(dq, dk, dv): (CpuStorage, CpuStorage, CpuStorage)| {
            let wrap = |st: CpuStorage, shape: (usize, usize, usize, usize)| match st {
                CpuStorage::F32(x) => Tensor::from_vec(x, shape, &dev),
                CpuStorage::F64(x) => Tensor::from_vec(x, shape, &dev),
                _ => unreachable!("the kernel makes f32 or f64"),
            };
            Ok((
                Some(wrap(dq, (b, hq, s, d))?),
                Some(wrap(dk, (b, hk, sk, d))?),
                Some(wrap(dv, (b, hk, sk, d))?),
            ))
        };
        let (dz, ldz) = (dz?, ls[3]);
        let grads = self.with_kernel(
            [(q?, ls[0]), (k?, ls[1]), (v?, ls[2])],
            |kern| {
                let (a, b, c) = kern.backward(cpu_slice(dz, ldz)?);
                Ok((CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)))
            },
            |kern| {
                let (a, b, c) = kern.backward(cpu_slice(dz, ldz)?);
                Ok((CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)))
            },
        )?;
        tensors(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transformer::softmax::attention_softmax;
    use crate::transformer::ForwardMode;
    use candle_core::Var;
    use kernel::BLOCK;

    /// The full path: scores for every key, the fused softmax, `P V`, moved to `[b, s, Hq, d]`.
    fn full(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor, scale: f64) -> Result<Tensor> {
        let (b, hq, s, d) = q.dims4()?;
        let rep = |t: &Tensor| -> Result<Tensor> {
            let (b, hk, sk, d) = t.dims4()?;
            Ok(t.unsqueeze(2)?
                .expand((b, hk, hq / hk, sk, d))?
                .reshape((b, hq, sk, d))?)
        };
        let scores = q.matmul(&rep(k)?.t()?.contiguous()?)?;
        let p = attention_softmax(&scores, bias, scale, ForwardMode::Differentiable)?;
        Ok(p.matmul(&rep(v)?.contiguous()?)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, s, hq, d))?)
    }

    /// A bias from rows of visible-key flags `[b][s][sk]`.
    fn bias_from(allowed: &[Vec<Vec<bool>>], dtype: DType) -> Result<Tensor> {
        let (b, s, sk) = (allowed.len(), allowed[0].len(), allowed[0][0].len());
        let v: Vec<f64> = allowed
            .iter()
            .flatten()
            .flatten()
            .map(|&a| if a { 0.0 } else { f64::NEG_INFINITY })
            .collect();
        Ok(Tensor::from_vec(v, (b, 1, s, sk), &Device::Cpu)?.to_dtype(dtype)?)
    }

    /// Causal over a cache of `past` keys, example 1 right-padded after `len1` tokens and, in
    /// sliding layers, a window of `window` keys.
    fn causal(b: usize, s: usize, past: usize, len1: usize, window: usize) -> Vec<Vec<Vec<bool>>> {
        (0..b)
            .map(|e| {
                (0..s)
                    .map(|i| {
                        let qi = past + i;
                        (0..past + s)
                            .map(|j| {
                                j == qi
                                    || (j < qi && (e == 0 || j < past + len1) && qi - j < window)
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    /// Block kernel against the full path, values and gradients: `[b, Hq, Hkv, s, past]`,
    /// example 1's length and the window as in [`causal`].
    fn check(shape: [usize; 5], len1: usize, window: usize, dtype: DType, tol: f64) -> Result<()> {
        let [b, hq, hk, s, past] = shape;
        let dev = Device::Cpu;
        let d = 8;
        let var = |dims: (usize, usize, usize, usize)| -> Result<Var> {
            Ok(Var::from_tensor(
                &Tensor::randn(0f64, 1.0, dims, &dev)?.to_dtype(dtype)?,
            )?)
        };
        let (q, k, v) = (
            var((b, hq, s, d))?,
            var((b, hk, past + s, d))?,
            var((b, hk, past + s, d))?,
        );
        let dz = Tensor::randn(0f64, 1.0, (b, s, hq, d), &dev)?.to_dtype(dtype)?;
        let bias = bias_from(&causal(b, s, past, len1, window), dtype)?;
        let got = attend(&q, &k, &v, &bias, 0.35)?.expect("applies on CPU");
        let want = full(&q, &k, &v, &bias, 0.35)?;
        let max_diff = |a: &Tensor, b: &Tensor| -> Result<f64> {
            Ok((a - b)?
                .abs()?
                .to_dtype(DType::F64)?
                .max_all()?
                .to_scalar::<f64>()?)
        };
        let diff = max_diff(&got, &want)?;
        assert!(diff < tol, "{shape:?}: values differ by {diff}");
        let g_got = (&got * &dz)?.sum_all()?.backward()?;
        let g_want = (&want * &dz)?.sum_all()?.backward()?;
        for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
            let diff = max_diff(g_got.get(x).unwrap(), g_want.get(x).unwrap())?;
            assert!(diff < 10.0 * tol, "{shape:?}: d{name} differs by {diff}");
        }
        Ok(())
    }

    /// Equal to the full path over several blocks (s > BLOCK), grouped heads, padding, a window
    /// and a KV cache; f64 to rounding, f32 to its precision.
    #[test]
    fn matches_the_full_path_and_its_gradients() -> Result<()> {
        let long = 2 * BLOCK + 9;
        check([2, 6, 2, long, 0], 70, usize::MAX, DType::F64, 1e-13)?;
        check([2, 6, 3, long, 0], 70, 20, DType::F64, 1e-13)?;
        check([3, 4, 4, 1, 37], 20, usize::MAX, DType::F64, 1e-13)?;
        check([2, 6, 2, BLOCK + 3, 0], 5, usize::MAX, DType::F32, 1e-5)?;
        Ok(())
    }

    #[test]
    fn does_not_apply_off_its_dtypes() -> Result<()> {
        let t = Tensor::zeros((1, 1, 2, 4), DType::BF16, &Device::Cpu)?;
        let bias = Tensor::zeros((1, 1, 2, 2), DType::BF16, &Device::Cpu)?;
        assert!(attend(&t, &t, &t, &bias, 1.0)?.is_none());
        Ok(())
    }
}
