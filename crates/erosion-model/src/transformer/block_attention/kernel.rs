//! The block kernel on slices: forward, and backward by recomputing each block's pattern.
//!
//! ```text
//! forward, per (b, h, I):   P = softmax(scale Q_I K_J^T + bias_IJ)    z_I = P V_J
//! backward, per (b, kv head), over its query heads h and blocks I:
//!   dP = dz_I V_J^T      dS = scale P (dP - rowsum(P dP))
//!   dQ_I = dS K_J        dK_J += dS^T Q_I        dV_J += P^T dz_I
//! ```
//! J = [k0, k1), the keys some row of I sees. A backward task owns one kv head's dK and dV,
//! so the sums over its query heads need no locks; P is recomputed, never stored.

use super::super::cpu_kernel::Real;
use super::super::fast_exp::widest;
use super::super::softmax::normalise;
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Query rows per block: large enough for the products to run near the kernel's peak, small
/// enough that the diagonal block's masked half stays a small share of a long row.
pub(super) const BLOCK: usize = 64;

#[derive(Debug, Clone, Copy)]
pub(super) struct Dims {
    pub b: usize,
    pub hq: usize,
    pub hk: usize,
    pub s: usize,
    pub sk: usize,
    pub d: usize,
}

/// A matrix operand: element (i, j) at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
struct Mat<T> {
    ptr: *const T,
    rs: usize,
    cs: usize,
}

fn mat<T>(s: &[T], rs: usize, cs: usize) -> Mat<T> {
    Mat {
        ptr: s.as_ptr(),
        rs,
        cs,
    }
}

/// `dst[m, n] (+)= lhs[m, k] rhs[k, n]` on one thread, `dst` row-major with row stride
/// `dst_rs`; `accumulate` adds to what `dst` holds.
///
/// # Safety
/// Every element the strides reach must lie inside its buffer, and `dst`'s be writable.
#[allow(clippy::too_many_arguments)]
unsafe fn product<T: Real>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat<T>,
    rhs: Mat<T>,
) {
    gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs.ptr,
        lhs.cs as isize,
        lhs.rs as isize,
        rhs.ptr,
        rhs.cs as isize,
        rhs.rs as isize,
        T::one(),
        T::one(),
        false,
        false,
        false,
        Parallelism::None,
    )
}

/// A raw output buffer that tasks write in disjoint parts.
struct Out<T>(*mut T);
// SAFETY: each task writes only the rows it owns (see the callers).
unsafe impl<T> Sync for Out<T> {}

/// The inputs, in the layouts of `attend`: q `[b, Hq, s, d]`, k and v `[b, Hkv, s_k, d]`,
/// bias `[b, s, s_k]`.
pub(super) struct Kernel<'a, T> {
    pub q: &'a [T],
    pub k: &'a [T],
    pub v: &'a [T],
    pub bias: &'a [T],
    pub scale: T,
    pub dims: Dims,
    /// The keys each query row sees, `[b * s]`: from its first 0 in the bias to one past its last.
    ranges: Vec<(usize, usize)>,
}

impl<'a, T: Real> Kernel<'a, T> {
    pub fn new(q: &'a [T], k: &'a [T], v: &'a [T], bias: &'a [T], scale: T, dims: Dims) -> Self {
        let seen = |x: &T| *x != T::neg_infinity();
        let ranges = bias
            .par_chunks(dims.sk)
            .map(|row| match row.iter().position(seen) {
                Some(first) => (first, row.iter().rposition(seen).map_or(first, |l| l + 1)),
                None => (0, 0),
            })
            .collect();
        Kernel {
            q,
            k,
            v,
            bias,
            scale,
            dims,
            ranges,
        }
    }

    /// The keys `[k0, k0 + n)` some row of the block (example `bi`, rows `i0..i0 + m`) sees;
    /// `None` when no row sees any.
    fn keys(&self, bi: usize, i0: usize, m: usize) -> Option<(usize, usize)> {
        let rows = &self.ranges[bi * self.dims.s + i0..][..m];
        let k0 = rows.iter().map(|r| r.0).min()?;
        let k1 = rows.iter().map(|r| r.1).max()?;
        (k1 > k0).then_some((k0, k1 - k0))
    }

    /// The first row of query head `h`'s kv head in k and v, `[.., d]` rows.
    fn kv_row(&self, bi: usize, h: usize) -> usize {
        let Dims { hq, hk, sk, .. } = self.dims;
        (bi * hk + h / (hq / hk)) * sk
    }

    /// P `[m, n]` of the block into `p`: scores by gemm, then scaled, biased and normalised.
    #[inline(always)]
    fn pattern(
        &self,
        (bi, h, i0, m): (usize, usize, usize, usize),
        (k0, n): (usize, usize),
        p: &mut Vec<T>,
    ) {
        let Dims { hq, s, sk, d, .. } = self.dims;
        p.clear();
        p.resize(m * n, T::zero());
        let qi = &self.q[((bi * hq + h) * s + i0) * d..];
        let kj = &self.k[(self.kv_row(bi, h) + k0) * d..];
        // SAFETY: `attend` checked the shapes, so the block's rows lie inside q and k.
        unsafe {
            product(
                (m, n, d),
                p.as_mut_ptr(),
                n,
                false,
                mat(qi, d, 1),
                mat(kj, 1, d),
            )
        };
        for (r, y) in p.chunks_exact_mut(n).enumerate() {
            let br = &self.bias[(bi * s + i0 + r) * sk + k0..][..n];
            for (y, &c) in y.iter_mut().zip(br) {
                *y = self.scale * *y + c;
            }
            normalise(y);
        }
    }

    /// z `[b, s, Hq, d]`, flat.
    pub fn forward(&self) -> Vec<T> {
        let Dims { b, hq, s, d, .. } = self.dims;
        let per_head = s.div_ceil(BLOCK);
        let mut z: Vec<T> = Vec::with_capacity(b * s * hq * d);
        let out = Out(z.as_mut_ptr());
        let out = &out;
        (0..b * hq * per_head)
            .into_par_iter()
            .for_each_init(Vec::new, |p: &mut Vec<T>, task| {
                let (bh, i0) = (task / per_head, (task % per_head) * BLOCK);
                let (bi, h, m) = (bh / hq, bh % hq, BLOCK.min(s - i0));
                // SAFETY: task (bi, h, block) alone writes z[bi, i0..i0 + m, h, :].
                let dst = unsafe { out.0.add(((bi * s + i0) * hq + h) * d) };
                let Some((k0, n)) = self.keys(bi, i0, m) else {
                    // No key visible to any row: the full path's softmax gives NaN there too.
                    for r in 0..m {
                        // SAFETY: as for `dst`.
                        unsafe { std::slice::from_raw_parts_mut(dst.add(r * hq * d), d) }
                            .fill(T::nan());
                    }
                    return;
                };
                widest(
                    #[inline(always)]
                    || {
                        self.pattern((bi, h, i0, m), (k0, n), p);
                        let vj = &self.v[(self.kv_row(bi, h) + k0) * d..];
                        // SAFETY: as for `dst`; z's rows are hq * d apart.
                        unsafe {
                            product((m, d, n), dst, hq * d, false, mat(p, n, 1), mat(vj, d, 1))
                        };
                    },
                )
            });
        // SAFETY: the tasks cover every (b, i, h) row of d values once.
        unsafe { z.set_len(b * s * hq * d) };
        z
    }

    /// (dq `[b, Hq, s, d]`, dk, dv `[b, Hkv, s_k, d]`) from dz `[b, s, Hq, d]`, all flat.
    pub fn backward(&self, dz: &[T]) -> (Vec<T>, Vec<T>, Vec<T>) {
        let Dims {
            b,
            hq,
            hk,
            s,
            sk,
            d,
        } = self.dims;
        let group = hq / hk;
        // dq rows of a block without visible keys stay 0 (its forward was NaN).
        let mut dq = vec![T::zero(); b * hq * s * d];
        let mut dk = vec![T::zero(); b * hk * sk * d];
        let mut dv = vec![T::zero(); b * hk * sk * d];
        let outs = (
            Out(dq.as_mut_ptr()),
            Out(dk.as_mut_ptr()),
            Out(dv.as_mut_ptr()),
        );
        let outs = &outs;
        (0..b * hk).into_par_iter().for_each(|task| {
            let (bi, kvh) = (task / hk, task % hk);
            let (mut p, mut dp) = (Vec::new(), Vec::new());
            let kv = (bi * hk + kvh) * sk;
            for h in kvh * group..(kvh + 1) * group {
                for i0 in (0..s).step_by(BLOCK) {
                    let m = BLOCK.min(s - i0);
                    let Some((k0, n)) = self.keys(bi, i0, m) else {
                        continue;
                    };
                    widest(
                        #[inline(always)]
                        || {
                            self.pattern((bi, h, i0, m), (k0, n), &mut p);
                            let dzi = &dz[((bi * s + i0) * hq + h) * d..];
                            let (kj, vj) = (&self.k[(kv + k0) * d..], &self.v[(kv + k0) * d..]);
                            let qi = &self.q[((bi * hq + h) * s + i0) * d..];
                            dp.clear();
                            dp.resize(m * n, T::zero());
                            // SAFETY: the block's rows lie inside every buffer (shapes checked
                            // by `attend`); this task alone writes dq rows of its query heads
                            // and the dk, dv rows of its kv head.
                            unsafe {
                                let (dq_i, dk_j, dv_j) = (
                                    outs.0 .0.add(((bi * hq + h) * s + i0) * d),
                                    outs.1 .0.add((kv + k0) * d),
                                    outs.2 .0.add((kv + k0) * d),
                                );
                                // dP = dz_I V_J^T;  dV_J += P^T dz_I
                                product(
                                    (m, n, d),
                                    dp.as_mut_ptr(),
                                    n,
                                    false,
                                    mat(dzi, hq * d, 1),
                                    mat(vj, 1, d),
                                );
                                product(
                                    (n, d, m),
                                    dv_j,
                                    d,
                                    true,
                                    mat(&p, 1, n),
                                    mat(dzi, hq * d, 1),
                                );
                                // dS = scale P (dP - rowsum(P dP)), in dp
                                for (pr, dr) in p.chunks_exact(n).zip(dp.chunks_exact_mut(n)) {
                                    let dot = pr
                                        .iter()
                                        .zip(dr.iter())
                                        .fold(T::zero(), |a, (&x, &y)| a + x * y);
                                    for (y, &x) in dr.iter_mut().zip(pr) {
                                        *y = self.scale * x * (*y - dot);
                                    }
                                }
                                // dQ_I = dS K_J;  dK_J += dS^T Q_I
                                product((m, d, n), dq_i, d, false, mat(&dp, n, 1), mat(kj, d, 1));
                                product((n, d, m), dk_j, d, true, mat(&dp, 1, n), mat(qi, d, 1));
                            }
                        },
                    )
                }
            }
        });
        (dq, dk, dv)
    }
}
