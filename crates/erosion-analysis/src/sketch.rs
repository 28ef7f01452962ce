//! Seeded random-projection sketch (Johnson-Lindenstrauss) of long vectors, for cosine
//! matrices of vectors too long to store (per-example gradients), and the plan that chooses
//! between the exact blocked Gram ([`crate::cosine::blocked_gram`]) and the sketch by a
//! memory budget.
//!
//! Sketch: y = S x with S a k x D matrix of i.i.d. entries z / sqrt(k), z ~ N(0, 1)
//! ([`SketchKind::Gaussian`]) or z = +-1 with probability 1/2 ([`SketchKind::Rademacher`]).
//! S is never stored: the entries of column chunk c (256 columns) are regenerated from
//! ChaCha8(seed) on stream c, so a row sketched alone or in a block gets the same S.
//!
//! Error bound (stated in every result as [`SketchBound`]): for a fixed unit vector u,
//! P(| |Su|^2 - 1 | > eps) <= 2 exp(-k (eps^2/2 - eps^3/3) / 2) (chi-square Chernoff bound,
//! Dasgupta & Gupta 2003; Achlioptas 2003 shows the same tails for +-1 entries). Apply it to
//! the n unit vectors u_i = x_i/|x_i| and the n(n-1) vectors u_i +- u_j (n^2 events): with
//! probability >= 1 - delta, where
//!     delta = 2 n^2 exp(-k (eps^2/2 - eps^3/3) / 2),
//! all of them keep their squared norms within a factor 1 +- eps. By polarisation
//! (Su_i . Su_j = (|S(u_i+u_j)|^2 - |S(u_i-u_j)|^2)/4) every inner product is then within eps
//! of u_i . u_j, and every sketched cosine within
//!     |cos(Sx_i, Sx_j) - cos(x_i, x_j)| <= 2 eps / (1 - eps)
//! (numerator off by <= eps, each norm factor in [sqrt(1-eps), sqrt(1+eps)]). So for a
//! target cosine error e: eps = e / (2 + e), k >= 2 ln(2 n^2 / delta) / (eps^2/2 - eps^3/3).
//! The bound holds simultaneously for all pairs; typical errors are far smaller (about
//! (1 - cos^2)/sqrt(k) for Gaussian S). Mean-centring commutes with S (S(x - mu) = Sx - S mu),
//! so centred cosines from the sketch carry the same bound, applied to the centred vectors.

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::cosine::RowSource;
use crate::matrix::Matrix;

/// Columns of S regenerated together from one ChaCha stream (a multiple of 64: one u64 of
/// random bits per row and 64 columns for Rademacher entries).
const SKETCH_CHUNK: usize = 256;

/// Distribution of the entries of S (before the 1/sqrt(k) scale).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SketchKind {
    Gaussian,
    Rademacher,
}

/// The guarantee that goes with a sketch of n vectors to k dimensions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SketchBound {
    pub n_vectors: usize,
    pub sketch_dim: usize,
    /// Failure probability of the whole guarantee.
    pub delta: f64,
    /// Every normalised inner product is within this of the truth.
    pub inner_product_epsilon: f64,
    /// Every cosine is within this of the truth: 2 eps / (1 - eps).
    pub cosine_error: f64,
}

fn jl_rate(eps: f64) -> f64 {
    eps * eps / 2.0 - eps * eps * eps / 3.0
}

/// Smallest k that guarantees cosine errors <= `cosine_error` for all pairs of `n` vectors with
/// probability >= 1 - `delta` (module docs).
pub fn min_sketch_dim(n: usize, cosine_error: f64, delta: f64) -> Result<usize> {
    if cosine_error.is_nan() || cosine_error <= 0.0 || !(delta > 0.0 && delta < 1.0) || n == 0 {
        bail!("min_sketch_dim needs n > 0, cosine_error > 0, delta in (0,1): got {n}, {cosine_error}, {delta}");
    }
    let eps = cosine_error / (2.0 + cosine_error);
    let k = 2.0 * (2.0 * (n as f64).powi(2) / delta).ln() / jl_rate(eps);
    Ok(k.ceil() as usize)
}

/// The guarantee of a k-dimensional sketch of `n` vectors at failure probability `delta`:
/// solves 2 n^2 exp(-k (eps^2/2 - eps^3/3)/2) = delta for eps by bisection. `None` when k is
/// too small for any eps < 1.
pub fn sketch_bound(n: usize, k: usize, delta: f64) -> Result<Option<SketchBound>> {
    if n == 0 || k == 0 || !(delta > 0.0 && delta < 1.0) {
        bail!("sketch_bound needs n > 0, k > 0, delta in (0,1): got {n}, {k}, {delta}");
    }
    let target = 2.0 * (2.0 * (n as f64).powi(2) / delta).ln() / k as f64;
    // jl_rate increases on (0, 1) up to 1/6 at eps = 1.
    if target >= jl_rate(1.0) {
        return Ok(None);
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if jl_rate(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let eps = hi;
    Ok(Some(SketchBound {
        n_vectors: n,
        sketch_dim: k,
        delta,
        inner_product_epsilon: eps,
        cosine_error: 2.0 * eps / (1.0 - eps),
    }))
}

/// A seeded k x D random projection, applied without storing S.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sketcher {
    pub input_dim: usize,
    pub sketch_dim: usize,
    pub kind: SketchKind,
    pub seed: u64,
}

impl Sketcher {
    pub fn new(input_dim: usize, sketch_dim: usize, kind: SketchKind, seed: u64) -> Result<Self> {
        if input_dim == 0 || sketch_dim == 0 {
            bail!("sketch dims must be positive: input {input_dim}, sketch {sketch_dim}");
        }
        Ok(Self {
            input_dim,
            sketch_dim,
            kind,
            seed,
        })
    }

    /// Entries of S for columns [256 c, 256 c + w), scaled by 1/sqrt(k). // -> [k, w] row-major
    fn chunk(&self, c: usize, w: usize, buf: &mut Vec<f32>) {
        let k = self.sketch_dim;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(c as u64);
        let scale = 1.0 / (k as f64).sqrt();
        buf.clear();
        // Always draw the full chunk width so a short last chunk sees the same stream prefix.
        match self.kind {
            SketchKind::Gaussian => {
                for _ in 0..k {
                    for j in 0..SKETCH_CHUNK {
                        let z = crate::stats::standard_normal(&mut rng);
                        if j < w {
                            buf.push((z * scale) as f32);
                        }
                    }
                }
            }
            SketchKind::Rademacher => {
                let s = scale as f32;
                for _ in 0..k {
                    for word in 0..SKETCH_CHUNK / 64 {
                        let bits: u64 = rng.random();
                        for b in 0..64 {
                            if word * 64 + b < w {
                                buf.push(if (bits >> b) & 1 == 1 { s } else { -s });
                            }
                        }
                    }
                }
            }
        }
    }

    /// Sketches a block of rows: S is regenerated once per block, so larger blocks amortise the
    /// generation. // rows: [n, D] -> [n, k]
    pub fn project_block(&self, rows: &[f32], n: usize) -> Result<Matrix> {
        let (d, k) = (self.input_dim, self.sketch_dim);
        if rows.len() != n * d {
            bail!("sketch: {} values for {n} rows of dim {d}", rows.len());
        }
        if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
            bail!("sketch: row {} column {} is {}", i / d, i % d, rows[i]);
        }
        let mut out = Matrix::zeros(n, k);
        let mut s = Vec::with_capacity(k * SKETCH_CHUNK);
        for c in 0..d.div_ceil(SKETCH_CHUNK) {
            let c0 = c * SKETCH_CHUNK;
            let w = SKETCH_CHUNK.min(d - c0);
            self.chunk(c, w, &mut s);
            for i in 0..n {
                let x = &rows[i * d + c0..i * d + c0 + w];
                let y = out.row_mut(i);
                for (r, yr) in y.iter_mut().enumerate() {
                    *yr += crate::cosine::chunk_dot(&s[r * w..(r + 1) * w], x);
                }
            }
        }
        Ok(out)
    }

    /// Sketches one vector. // x: `[D]` -> `[k]`
    pub fn project(&self, x: &[f32]) -> Result<Vec<f64>> {
        Ok(self.project_block(x, 1)?.data)
    }

    /// Sketches every row of a store, `block_rows` at a time. // -> [n, k]
    pub fn project_source(&self, src: &mut dyn RowSource, block_rows: usize) -> Result<Matrix> {
        if src.dim() != self.input_dim {
            bail!(
                "sketch of input dim {} applied to a store of dim {}",
                self.input_dim,
                src.dim()
            );
        }
        if block_rows == 0 {
            bail!("block_rows must be positive");
        }
        let (n, d) = (src.n_rows(), src.dim());
        let mut out = Matrix::zeros(n, self.sketch_dim);
        let mut buf = vec![0f32; block_rows * d];
        for start in (0..n).step_by(block_rows) {
            let end = (start + block_rows).min(n);
            let b = &mut buf[..(end - start) * d];
            src.read_rows(start..end, b)
                .with_context(|| format!("sketching rows {start}..{end}"))?;
            let y = self.project_block(b, end - start)?;
            for i in start..end {
                out.row_mut(i).copy_from_slice(y.row(i - start));
            }
        }
        Ok(out)
    }
}

/// How a cosine matrix of n vectors of length D is computed under a memory budget.
///
/// Trade-off: the exact Gram costs n^2 D / 2 multiply-adds and needs the rows stored (e.g. a
/// [`crate::cosine::MmapRows`] file of 4 n D bytes) and read ceil(n/b) times; the sketch costs
/// n k D multiply-adds plus generating S once per block, reads each row once and stores only
/// n x k values, so vectors produced one at a time (per-example gradients) need never be
/// written. With the uniform guarantee k is often larger than n/2, so the sketch is the
/// choice for memory and storage, not for arithmetic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum GramPlan {
    /// Exact blocked Gram over a stored row source: `block_rows` rows per block, `passes` =
    /// ceil(n / block_rows) sweeps over the store.
    Exact { block_rows: usize, passes: usize },
    /// Seeded sketch to `bound.sketch_dim` dimensions, with its guarantee.
    Sketch { bound: SketchBound },
}

/// The inputs of [`choose_gram_plan`], recorded with the result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GramBudget {
    /// Bytes the computation may hold besides the n x n f64 result.
    pub memory_bytes: usize,
    /// Most sweeps over the stored rows the exact method may take (I/O cost).
    pub max_passes: usize,
    /// Largest cosine error a sketch may have (guaranteed at probability 1 - delta).
    pub max_cosine_error: f64,
    pub delta: f64,
}

/// Chooses exact-blocked vs sketch. Exact when two blocks of b = ceil(n / max_passes) rows
/// (2 b D f32) fit in the budget (blocks then grow to use the budget). Otherwise a sketch
/// with the smallest k whose guaranteed cosine error is <= `max_cosine_error`, provided its
/// n x k f64 sketch plus one 256-column chunk of S (k x 256 f32) fits; otherwise an error that
/// says what budget is needed.
pub fn choose_gram_plan(n: usize, dim: usize, budget: &GramBudget) -> Result<GramPlan> {
    if n == 0 || dim == 0 || budget.max_passes == 0 {
        bail!(
            "gram plan needs n, dim and max_passes positive: got {n}, {dim}, {}",
            budget.max_passes
        );
    }
    let block_rows = n.div_ceil(budget.max_passes);
    if 2 * block_rows * dim * 4 <= budget.memory_bytes {
        // Use the whole budget for larger blocks (fewer passes).
        let fit = (budget.memory_bytes / (2 * dim * 4)).clamp(block_rows, n);
        return Ok(GramPlan::Exact {
            block_rows: fit,
            passes: n.div_ceil(fit),
        });
    }
    let k = budget.memory_bytes / (8 * n + 4 * SKETCH_CHUNK);
    let need_k = min_sketch_dim(n, budget.max_cosine_error, budget.delta)?;
    if k >= need_k {
        // The smallest k that meets the target: sketching costs n k D multiply-adds.
        if let Some(bound) = sketch_bound(n, need_k, budget.delta)? {
            return Ok(GramPlan::Sketch { bound });
        }
    }
    bail!(
        "memory budget of {} bytes fits neither the exact Gram ({} bytes for {} passes over {n} rows of dim {dim}) \
         nor a sketch with cosine error <= {} at delta {} (k >= {need_k}: {} bytes)",
        budget.memory_bytes,
        2 * block_rows * dim * 4,
        budget.max_passes,
        budget.max_cosine_error,
        budget.delta,
        need_k * (8 * n + 4 * SKETCH_CHUNK)
    )
}
