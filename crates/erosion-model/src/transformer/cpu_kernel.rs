//! What the fused CPU kernels (softmax.rs, swiglu.rs) share: two contiguous inputs of one float
//! type, f32 or f64, and an output of the first one's shape.

use candle_core::{CpuStorage, Layout, Shape};
use num_traits::Float;

/// A kernel over two contiguous float slices.
pub(crate) trait Float2Kernel {
    /// Names the kernel in errors.
    const NAME: &'static str;
    /// `a` and `b` as stored; `row` is the last dimension of `a`.
    fn run<T: Float + Send + Sync>(&self, a: &[T], b: &[T], row: usize) -> Vec<T>;
}

/// `CustomOp2::cpu_fwd` for a [`Float2Kernel`].
pub(crate) fn cpu_fwd2<K: Float2Kernel>(
    kernel: &K,
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
            CpuStorage::F32(kernel.run(&a[a1..a2], &b[b1..b2], row))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b)) => {
            CpuStorage::F64(kernel.run(&a[a1..a2], &b[b1..b2], row))
        }
        _ => candle_core::bail!("{}: inputs must be both f32 or both f64", K::NAME),
    };
    Ok((out, l1.shape().clone()))
}
