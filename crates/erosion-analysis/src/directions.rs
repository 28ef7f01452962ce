//! Shared directions (finding 4): principal directions of what alignment changed.
//!
//! R [n, d]: one row per example, h^instruct - h^base at a chosen layer and token choice.
//! A = R - 1 m^T (column-centred, m = column means of R); thin SVD A = U S V^T; the top-k
//! right singular vectors v_1..v_k (rows of [`Directions::vectors`], [k, d]) are the
//! principal directions. explained_variance_i = s_i^2 / (n - 1); ratio_i = s_i^2 / |A|_F^2.
//!
//! Two routes, equal up to rounding (tested):
//! - `Svd`: faer's thin SVD of A.
//! - `Gram`: eigen-decomposition of A A^T [n, n] = U S^2 U^T, then v_i = A^T u_i / s_i.
//!   4-6x faster when n << d (measured); `Auto` takes it when 2n <= d.
//!
//! Signs: a singular vector's sign is arbitrary. Every [`Directions`] is returned with a fixed
//! sign ([`SignConvention`], default `MeanProjectionPositive`: v_i . m > 0, i.e. the direction
//! points along the mean instruct-minus-base shift, so "positive = toward instruct"; when
//! |v_i . m| <= 1e-8 |m| the largest-|component| rule decides, and `sign_fallback[i]` says so).
//! Cross-dataset comparisons default to |cos| ([`CosineMode::Absolute`]), which needs no sign
//! convention at all; `CosineMode::Signed` reports the cosines of the sign-fixed vectors.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::matrix::{dot, norm, Matrix};
use crate::stats::{ci_from_draws, rng_from_seed};

/// Which decomposition computes the directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SvdMethod {
    /// Gram when 2n <= d, else Svd (default).
    #[default]
    Auto,
    Svd,
    Gram,
}

/// How the arbitrary sign of each direction is fixed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignConvention {
    /// v . m > 0, m = mean of the uncentred rows (default).
    #[default]
    MeanProjectionPositive,
    /// The entry of largest |value| is positive (ties: lowest index).
    LargestComponentPositive,
}

/// How two sets of directions are compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CosineMode {
    /// |cos|: independent of signs (default).
    #[default]
    Absolute,
    /// cos of the sign-fixed vectors (their `sign_convention`).
    Signed,
}

/// Top-k principal directions of a residual matrix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Directions {
    pub n_examples: usize,
    pub dim: usize,
    pub k: usize,
    /// The route actually taken (`Svd` or `Gram`).
    pub method: SvdMethod,
    pub sign_convention: SignConvention,
    /// Per component: the largest-component rule decided because v . m was ~0.
    pub sign_fallback: Vec<bool>,
    pub singular_values: Vec<f64>,
    pub explained_variance: Vec<f64>,
    pub explained_variance_ratio: Vec<f64>,
    /// |A|_F^2 / (n - 1).
    pub total_variance: f64,
    /// Column means of R (the mean residual). // `[d]`
    pub column_mean: Vec<f64>,
    /// Unit right singular vectors, one per row. // [k, d]
    pub vectors: Matrix,
}

/// Column-centres R: returns (A = R - 1 m^T, m). // [n, d] -> ([n, d], `[d]`)
pub fn column_centre(r: &Matrix) -> (Matrix, Vec<f64>) {
    let (n, d) = (r.rows, r.cols);
    let mut m = vec![0.0; d];
    for i in 0..n {
        m.iter_mut().zip(r.row(i)).for_each(|(a, &x)| *a += x);
    }
    m.iter_mut().for_each(|a| *a /= n as f64);
    let mut a = r.clone();
    for i in 0..n {
        a.row_mut(i)
            .iter_mut()
            .zip(&m)
            .for_each(|(x, &mu)| *x -= mu);
    }
    (a, m)
}

/// Flips `v` to the convention; returns whether the mean rule fell back.
fn fix_sign(v: &mut [f64], mean: &[f64], conv: SignConvention) -> bool {
    let mut fallback = false;
    if conv == SignConvention::MeanProjectionPositive {
        let p = dot(v, mean);
        if p.abs() > 1e-8 * norm(mean) {
            if p < 0.0 {
                v.iter_mut().for_each(|x| *x = -*x);
            }
            return false;
        }
        fallback = true;
    }
    let j = v
        .iter()
        .enumerate()
        .fold(0, |b, (j, x)| if x.abs() > v[b].abs() { j } else { b });
    if v[j] < 0.0 {
        v.iter_mut().for_each(|x| *x = -*x);
    }
    fallback
}

/// Top-k (s_i, v_i) of a centred A by the route `method` (not Auto). // A: [n, d]
fn top_k_of_centred(a: &Matrix, k: usize, method: SvdMethod) -> Result<(Vec<f64>, Matrix)> {
    let (n, d) = (a.rows, a.cols);
    let fa = a.to_faer();
    let (s, v) = match method {
        SvdMethod::Gram => {
            let g = &fa * fa.transpose(); // [n, n]
            let eig = g.self_adjoint_eigen(faer::Side::Lower).map_err(|e| {
                anyhow::anyhow!("eigen-decomposition of the {n}x{n} Gram matrix failed: {e:?}")
            })?;
            let (u, lam) = (eig.U(), eig.S().column_vector());
            let mut s = Vec::with_capacity(k);
            let mut v = Matrix::zeros(k, d);
            for c in 0..k {
                let col = n - 1 - c; // eigenvalues ascend
                let si = lam[col].max(0.0).sqrt();
                s.push(si);
                // v = A^T u / s, renormalised (rounding).
                let row = v.row_mut(c);
                for i in 0..n {
                    let ui = u[(i, col)];
                    row.iter_mut()
                        .zip(a.row(i))
                        .for_each(|(o, &x)| *o += ui * x);
                }
                let nr = norm(row);
                if nr > 0.0 {
                    row.iter_mut().for_each(|o| *o /= nr);
                }
            }
            (s, v)
        }
        _ => {
            let svd = fa.thin_svd().map_err(|e| {
                anyhow::anyhow!("thin SVD of the {n}x{d} residual matrix failed: {e:?}")
            })?;
            let (vm, sv) = (svd.V(), svd.S().column_vector());
            let s = (0..k).map(|c| sv[c]).collect();
            let mut v = Matrix::zeros(k, d);
            for c in 0..k {
                v.row_mut(c)
                    .iter_mut()
                    .enumerate()
                    .for_each(|(j, o)| *o = vm[(j, c)]);
            }
            (s, v)
        }
    };
    // Singular values at rounding level: the direction is arbitrary, so refuse it.
    let s0 = s[0];
    if let Some(c) = s
        .iter()
        .position(|&x| x.is_nan() || x <= 1e-10 * s0 || !x.is_finite())
    {
        bail!("component {c} has singular value {} (largest {s0}): the centred residual matrix has rank < k = {k}", s[c]);
    }
    Ok((s, v))
}

/// Top-k principal directions of the column-centred residual matrix R [n, d] (module docs).
pub fn top_directions(
    r: &Matrix,
    k: usize,
    method: SvdMethod,
    sign: SignConvention,
) -> Result<Directions> {
    let (n, d) = (r.rows, r.cols);
    if k == 0 || n < 2 || k > (n - 1).min(d) {
        bail!("need 1 <= k <= min(n - 1, d) after centring: k {k}, n {n}, d {d}");
    }
    if let Some(i) = r.data.iter().position(|x| !x.is_finite()) {
        bail!(
            "residual matrix entry (row {}, col {}) is {}",
            i / d,
            i % d,
            r.data[i]
        );
    }
    let method = match method {
        SvdMethod::Auto if 2 * n <= d => SvdMethod::Gram,
        SvdMethod::Auto => SvdMethod::Svd,
        m => m,
    };
    let (a, m) = column_centre(r);
    let (s, mut v) = top_k_of_centred(&a, k, method)?;
    let sign_fallback = (0..k).map(|c| fix_sign(v.row_mut(c), &m, sign)).collect();
    let fro2: f64 = a.data.iter().map(|x| x * x).sum();
    let dof = (n - 1) as f64;
    Ok(Directions {
        n_examples: n,
        dim: d,
        k,
        method,
        sign_convention: sign,
        sign_fallback,
        explained_variance: s.iter().map(|x| x * x / dof).collect(),
        explained_variance_ratio: s.iter().map(|x| x * x / fro2).collect(),
        singular_values: s,
        total_variance: fro2 / dof,
        column_mean: m,
        vectors: v,
    })
}

/// Cross-dataset cosine matrix C_ij = cos(a_i, b_j) (or |cos|). // -> [k_a, k_b]
pub fn cross_cosines(a: &Directions, b: &Directions, mode: CosineMode) -> Result<Matrix> {
    if a.dim != b.dim {
        bail!(
            "directions of dims {} and {} cannot be compared",
            a.dim,
            b.dim
        );
    }
    if mode == CosineMode::Signed && a.sign_convention != b.sign_convention {
        bail!(
            "signed cosines of directions with different sign conventions ({:?} vs {:?})",
            a.sign_convention,
            b.sign_convention
        );
    }
    let mut c = Matrix::zeros(a.k, b.k);
    for i in 0..a.k {
        for j in 0..b.k {
            // Unit vectors: the dot product is the cosine.
            let x = dot(a.vectors.row(i), b.vectors.row(j)).clamp(-1.0, 1.0);
            c.set(
                i,
                j,
                if mode == CosineMode::Absolute {
                    x.abs()
                } else {
                    x
                },
            );
        }
    }
    Ok(c)
}

/// Bootstrap stability of one direction: |cos| between the direction re-estimated on
/// resampled examples and the original one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectionStability {
    pub component: usize,
    /// Same index: |cos(v*_i, v_i)|, mean over resamples and percentile CI.
    pub mean_abs_cos: f64,
    pub lower: f64,
    pub upper: f64,
    /// Best match among the k resampled directions: max_j |cos(v*_j, v_i)| (robust to
    /// components swapping order when singular values are close).
    pub mean_best_abs_cos: f64,
    pub best_lower: f64,
    pub best_upper: f64,
    pub level: f64,
    pub n_resamples: usize,
    pub seed: u64,
}

/// Resamples the examples (rows of R) with replacement `n_resamples` times, recomputes the
/// top-k directions, and compares them with `original` (computed from the same R).
/// When 2n <= d it works from the uncentred Gram R R^T [n, n], computed once: a resample's
/// centred Gram is `C G[idx, idx] C`, and `v = R[idx]^T C u / s` (k n d work per resample).
pub fn bootstrap_stability(
    r: &Matrix,
    original: &Directions,
    n_resamples: usize,
    level: f64,
    seed: u64,
) -> Result<Vec<DirectionStability>> {
    let (n, d, k) = (r.rows, r.cols, original.k);
    if original.n_examples != n || original.dim != d {
        bail!(
            "directions of a {}x{} matrix checked against a {n}x{d} one",
            original.n_examples,
            original.dim
        );
    }
    let gram = if 2 * n <= d {
        let fr = r.to_faer();
        Some(Matrix::from_faer((&fr * fr.transpose()).as_ref()))
    } else {
        None
    };
    let mut rng = rng_from_seed(seed);
    let mut idx = vec![0usize; n];
    let (mut same, mut best) = (vec![Vec::new(); k], vec![Vec::new(); k]);
    for b in 0..n_resamples {
        crate::stats::draw_resample(&mut rng, &mut idx);
        let v = match &gram {
            Some(g) => resampled_gram_directions(r, g, &idx, k),
            None => {
                let rs =
                    Matrix::from_rows(&idx.iter().map(|&i| r.row(i).to_vec()).collect::<Vec<_>>())?;
                top_k_of_centred(&column_centre(&rs).0, k, SvdMethod::Svd).map(|x| x.1)
            }
        }
        .with_context(|| format!("bootstrap resample {b} (seed {seed})"))?;
        for i in 0..k {
            let o = original.vectors.row(i);
            same[i].push(dot(v.row(i), o).abs().min(1.0));
            best[i].push(
                (0..k)
                    .map(|j| dot(v.row(j), o).abs())
                    .fold(0.0, f64::max)
                    .min(1.0),
            );
        }
    }
    let method = "percentile bootstrap of examples";
    (0..k)
        .map(|i| {
            let m1 = crate::stats::mean(&same[i]);
            let m2 = crate::stats::mean(&best[i]);
            let c1 = ci_from_draws(m1, std::mem::take(&mut same[i]), level, seed, method)?;
            let c2 = ci_from_draws(m2, std::mem::take(&mut best[i]), level, seed, method)?;
            Ok(DirectionStability {
                component: i,
                mean_abs_cos: m1,
                lower: c1.lower,
                upper: c1.upper,
                mean_best_abs_cos: m2,
                best_lower: c2.lower,
                best_upper: c2.upper,
                level,
                n_resamples,
                seed,
            })
        })
        .collect()
}

/// Top-k directions of the resample `idx` from the uncentred Gram `g` = R R^T. // -> [k, d]
fn resampled_gram_directions(r: &Matrix, g: &Matrix, idx: &[usize], k: usize) -> Result<Matrix> {
    let (n, d) = (r.rows, r.cols);
    let gs = faer::Mat::from_fn(n, n, |a, b| g.get(idx[a], idx[b]));
    // Double centring C gs C.
    let rm: Vec<f64> = (0..n)
        .map(|a| (0..n).map(|b| gs[(a, b)]).sum::<f64>() / n as f64)
        .collect();
    let t = rm.iter().sum::<f64>() / n as f64;
    let gc = faer::Mat::from_fn(n, n, |a, b| gs[(a, b)] - rm[a] - rm[b] + t);
    let eig = gc
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| anyhow::anyhow!("eigen-decomposition failed: {e:?}"))?;
    let (u, lam) = (eig.U(), eig.S().column_vector());
    let s0 = lam[n - 1].max(0.0).sqrt();
    let mut v = Matrix::zeros(k, d);
    for c in 0..k {
        let col = n - 1 - c;
        let s = lam[col].max(0.0).sqrt();
        if s.is_nan() || s <= 1e-10 * s0 {
            bail!("component {c} has singular value {s} (largest {s0}) in this resample: rank < k");
        }
        let um = (0..n).map(|a| u[(a, col)]).sum::<f64>() / n as f64;
        let row = v.row_mut(c);
        for (a, &i) in idx.iter().enumerate() {
            let coef = u[(a, col)] - um; // (C u)_a
            row.iter_mut()
                .zip(r.row(i))
                .for_each(|(o, &x)| *o += coef * x);
        }
        let nr = norm(row);
        row.iter_mut().for_each(|o| *o /= nr);
    }
    Ok(v)
}
