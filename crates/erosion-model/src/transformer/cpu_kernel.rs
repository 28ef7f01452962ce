//! What the fused CPU kernels (softmax.rs, swiglu.rs) share: two contiguous inputs of one float
//! type, f32 or f64, an output of the first one's shape, and a backward pass in candle ops.

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};
use num_traits::Float;

/// The float types the kernels take, with the `exp` they use: the vectorising one for f32
/// (see `fast_exp.rs`), libm's for f64, the reference precision.
pub(crate) trait Real: Float + Send + Sync + 'static {
    fn exp_fast(self) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn exp_fast(self) -> Self {
        super::fast_exp::exp(self)
    }
}

impl Real for f64 {
    #[inline(always)]
    fn exp_fast(self) -> Self {
        self.exp()
    }
}

/// A kernel over two contiguous float slices, with its gradients.
pub(crate) trait Float2Kernel: Send + Sync + 'static {
    /// Names the kernel in errors and in candle's graph.
    const NAME: &'static str;
    /// `a` and `b` as stored; `row` is the last dimension of `a`.
    fn run<T: Real>(&self, a: &[T], b: &[T], row: usize) -> Vec<T>;
    /// The gradients for `a` and `b` from the output `res` and its gradient `grad`.
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)>;
}

/// Whether the CPU kernels take `a` and `b`: both on CPU, both f32 or both f64.
pub(crate) fn applies(a: &Tensor, b: &Tensor) -> bool {
    matches!(a.device(), Device::Cpu)
        && a.dtype() == b.dtype()
        && matches!(a.dtype(), DType::F32 | DType::F64)
}

/// `kernel` applied to `a` and `b` (made contiguous) as one differentiable candle op.
pub(crate) fn apply<K: Float2Kernel>(kernel: K, a: &Tensor, b: &Tensor) -> anyhow::Result<Tensor> {
    Ok(a.contiguous()?.apply_op2(&b.contiguous()?, Fused(kernel))?)
}

struct Fused<K>(K);

impl<K: Float2Kernel> CustomOp2 for Fused<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (Some((a1, a2)), Some((b1, b2))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("{}: inputs must be contiguous", K::NAME)
        };
        let row = *l1.shape().dims().last().unwrap_or(&1);
        let out = match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => {
                CpuStorage::F32(self.0.run(&a[a1..a2], &b[b1..b2], row))
            }
            (CpuStorage::F64(a), CpuStorage::F64(b)) => {
                CpuStorage::F64(self.0.run(&a[a1..a2], &b[b1..b2], row))
            }
            _ => candle_core::bail!("{}: inputs must be both f32 or both f64", K::NAME),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        self.0.bwd(a, b, res, grad)
    }
}
