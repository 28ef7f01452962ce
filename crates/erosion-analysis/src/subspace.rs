//! Random-subspace baseline (finding 4): is a cross-dataset cosine of 0.9 between directions
//! in R^d meaningful?
//!
//! Null model: the second set of directions is a uniformly random (Haar) orthonormal k_b-frame
//! of R^d, independent of the first set. By rotation invariance the first set can be taken
//! as the first k_a coordinate axes, so the null cosine matrix is C = the first k_a rows of a
//! Haar d x k_b frame Q. Statistics compared with their null distributions (seeded Monte
//! Carlo, `n_samples` draws, p-values with the +1 correction of [`crate::stats`]):
//! - max |C_ij| over the k_a x k_b matrix (what a heatmap's brightest cell shows);
//! - each entry |C_ij|: every entry of C is marginally the first coordinate of a uniform unit
//!   vector in R^d, so one pooled null (all entries of all draws) serves every entry;
//!   E|C_ij| = Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2)) ~ sqrt(2/(pi d)) ([`expected_abs_cos`]);
//! - the top canonical cosine (largest singular value of C): basis-free, the cosine of the
//!   smallest principal angle between the two subspaces.
//!
//! Exact O(k^3) sampler (independent of d): with G = [G1; G2] Gaussian, G1 [k_a, k_b],
//! Q = G L^-T where G^T G = L L^T (Gram-Schmidt of G's columns), so C = G1 L^-T, and
//! G^T G = G1^T G1 + W with W = G2^T G2 ~ Wishart_{k_b}(d - k_a, I), drawn by Bartlett's
//! decomposition (W = B B^T, B lower triangular, B_ii = sqrt(chi^2_{d-k_a-i}), B_ij ~ N(0,1)
//! below the diagonal). [`sample_null_cosines_direct`] draws G explicitly (O(d k) per draw)
//! and is used to check it.

use anyhow::{bail, Result};
use rand::Rng;
use rand_distr::{ChiSquared, Distribution};
use serde::{Deserialize, Serialize};

use crate::matrix::Matrix;
use crate::stats::{
    gaussian_vec, mean, p_value, percentile, rng_from_seed, standard_normal, Alternative,
};

/// E|cos| between a fixed and a uniform random unit vector in R^d:
/// Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2)), via r(d+2) = r(d) d / (d+1) with
/// r(d) = Gamma(d/2)/Gamma((d+1)/2), r(1) = sqrt(pi), r(2) = 2/sqrt(pi).
pub fn expected_abs_cos(d: usize) -> f64 {
    let sp = std::f64::consts::PI.sqrt();
    let (mut r, mut m) = if d % 2 == 1 { (sp, 1) } else { (2.0 / sp, 2) };
    while m < d {
        r *= m as f64 / (m as f64 + 1.0);
        m += 2;
    }
    r / sp
}

/// Cholesky factor of a small SPD matrix (row-major k x k). // -> lower-triangular [k, k]
fn cholesky(m: &[f64], k: usize) -> Result<Vec<f64>> {
    let mut l = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..=i {
            let s = m[i * k + j] - (0..j).map(|p| l[i * k + p] * l[j * k + p]).sum::<f64>();
            if i == j {
                if s.is_nan() || s <= 0.0 {
                    bail!("cholesky: matrix not positive definite at pivot {i} ({s})");
                }
                l[i * k + i] = s.sqrt();
            } else {
                l[i * k + j] = s / l[j * k + j];
            }
        }
    }
    Ok(l)
}

/// One null cosine matrix C [k_a, k_b] by the exact O(k^3) sampler (module docs).
pub fn sample_null_cosines<R: Rng + ?Sized>(
    rng: &mut R,
    d: usize,
    k_a: usize,
    k_b: usize,
) -> Result<Matrix> {
    if k_a == 0 || k_b == 0 || d < k_a + k_b {
        bail!("random subspace null needs k_a, k_b >= 1 and d >= k_a + k_b: d {d}, k_a {k_a}, k_b {k_b}");
    }
    let g1 = Matrix::from_vec(k_a, k_b, gaussian_vec(rng, k_a * k_b))?;
    // Bartlett: W = B B^T ~ Wishart_{k_b}(nu, I), nu = d - k_a.
    let nu = (d - k_a) as f64;
    let mut b = vec![0.0; k_b * k_b];
    for i in 0..k_b {
        let chi = ChiSquared::new(nu - i as f64)
            .map_err(|e| anyhow::anyhow!("chi-square({}): {e}", nu - i as f64))?;
        b[i * k_b + i] = chi.sample(rng).sqrt();
        for j in 0..i {
            b[i * k_b + j] = standard_normal(rng);
        }
    }
    // M = G1^T G1 + B B^T  [k_b, k_b]
    let mut m = vec![0.0; k_b * k_b];
    for i in 0..k_b {
        for j in 0..k_b {
            let g: f64 = (0..k_a).map(|p| g1.get(p, i) * g1.get(p, j)).sum();
            let w: f64 = (0..k_b).map(|p| b[i * k_b + p] * b[j * k_b + p]).sum();
            m[i * k_b + j] = g + w;
        }
    }
    let l = cholesky(&m, k_b)?;
    // C row r = solve(L, G1 row r) (forward substitution): C = G1 L^-T.
    let mut c = Matrix::zeros(k_a, k_b);
    for r in 0..k_a {
        for i in 0..k_b {
            let s = g1.get(r, i) - (0..i).map(|p| l[i * k_b + p] * c.get(r, p)).sum::<f64>();
            c.set(r, i, s / l[i * k_b + i]);
        }
    }
    Ok(c)
}

/// One null cosine matrix by brute force: k_b Gaussian vectors in R^d, Gram-Schmidt, first
/// k_a coordinates. O(d k_b^2) per draw; for checking [`sample_null_cosines`].
pub fn sample_null_cosines_direct<R: Rng + ?Sized>(
    rng: &mut R,
    d: usize,
    k_a: usize,
    k_b: usize,
) -> Result<Matrix> {
    if k_a == 0 || k_b == 0 || d < k_a + k_b {
        bail!("random subspace null needs k_a, k_b >= 1 and d >= k_a + k_b: d {d}, k_a {k_a}, k_b {k_b}");
    }
    let mut q: Vec<Vec<f64>> = Vec::with_capacity(k_b);
    for _ in 0..k_b {
        let mut v = gaussian_vec(rng, d);
        for u in &q {
            let p = crate::matrix::dot(&v, u);
            v.iter_mut().zip(u).for_each(|(x, y)| *x -= p * y);
        }
        let n = crate::matrix::norm(&v);
        v.iter_mut().for_each(|x| *x /= n);
        q.push(v);
    }
    let mut c = Matrix::zeros(k_a, k_b);
    for (j, qj) in q.iter().enumerate() {
        for (r, &x) in qj[..k_a].iter().enumerate() {
            c.set(r, j, x);
        }
    }
    Ok(c)
}

/// Largest singular value of a small matrix.
pub fn top_singular_value(c: &Matrix) -> Result<f64> {
    let s = c
        .to_faer()
        .singular_values()
        .map_err(|e| anyhow::anyhow!("singular values of a {}x{} matrix: {e:?}", c.rows, c.cols))?;
    Ok(s.first().copied().unwrap_or(0.0))
}

/// An observed statistic against its null distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NullComparison {
    pub observed: f64,
    pub null_mean: f64,
    pub null_p95: f64,
    /// (1 + #{null >= observed}) / (1 + B).
    pub p_value: f64,
}

fn compare(observed: f64, null: &[f64]) -> Result<NullComparison> {
    Ok(NullComparison {
        observed,
        null_mean: mean(null),
        null_p95: percentile(null, 0.95)?,
        p_value: p_value(observed, null, Alternative::Greater)?,
    })
}

/// The random-subspace baseline of a cross-dataset cosine matrix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubspaceBaseline {
    pub dim: usize,
    pub k_a: usize,
    pub k_b: usize,
    pub n_samples: usize,
    pub seed: u64,
    pub max_abs_cos: NullComparison,
    pub top_canonical_cos: NullComparison,
    /// Pooled null of single entries |C_ij| (n_samples k_a k_b values).
    pub entry_null_mean: f64,
    pub entry_null_p95: f64,
    /// Exact E|C_ij| for comparison with `entry_null_mean`.
    pub entry_expected_abs_cos: f64,
    /// p-value of each observed |C_ij| against the pooled entry null. // [k_a, k_b]
    pub entry_p_values: Matrix,
}

/// Compares an observed cross-dataset cosine matrix (signed, any sign convention, or |cos|
/// for the entry and max statistics) of directions in R^`dim` with `n_samples` random
/// subspace draws.
pub fn random_subspace_baseline(
    observed: &Matrix,
    dim: usize,
    n_samples: usize,
    seed: u64,
) -> Result<SubspaceBaseline> {
    let (k_a, k_b) = (observed.rows, observed.cols);
    if n_samples == 0 {
        bail!("random subspace baseline needs at least one sample");
    }
    if let Some(i) = observed
        .data
        .iter()
        .position(|x| !x.is_finite() || x.abs() > 1.0 + 1e-9)
    {
        bail!(
            "observed cosine ({}, {}) = {} is not a cosine",
            i / k_b.max(1),
            i % k_b.max(1),
            observed.data[i]
        );
    }
    let mut rng = rng_from_seed(seed);
    let (mut maxes, mut canon, mut entries) = (
        Vec::with_capacity(n_samples),
        Vec::with_capacity(n_samples),
        Vec::with_capacity(n_samples * k_a * k_b),
    );
    for _ in 0..n_samples {
        let c = sample_null_cosines(&mut rng, dim, k_a, k_b)?;
        maxes.push(c.data.iter().fold(0.0f64, |m, x| m.max(x.abs())));
        canon.push(top_singular_value(&c)?);
        entries.extend(c.data.iter().map(|x| x.abs()));
    }
    let obs_max = observed.data.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let mut entry_p = Matrix::zeros(k_a, k_b);
    for i in 0..k_a {
        for j in 0..k_b {
            entry_p.set(
                i,
                j,
                p_value(observed.get(i, j).abs(), &entries, Alternative::Greater)?,
            );
        }
    }
    Ok(SubspaceBaseline {
        dim,
        k_a,
        k_b,
        n_samples,
        seed,
        max_abs_cos: compare(obs_max, &maxes)?,
        top_canonical_cos: compare(top_singular_value(observed)?, &canon)?,
        entry_null_mean: mean(&entries),
        entry_null_p95: percentile(&entries, 0.95)?,
        entry_expected_abs_cos: expected_abs_cos(dim),
        entry_p_values: entry_p,
    })
}
