//! Quadrant reading of a two-group similarity matrix (finding 2).
//!
//! M is (n_a + n_b) x (n_a + n_b), rows/columns 0..n_a group A (e.g. insecure), n_a.. group B
//! (e.g. educational). With W_A = {(i, j): i != j, both in A}, etc.:
//!   mean_within_a = sum_{W_A} M_ij / (n_a (n_a - 1))      (off-diagonal: the diagonal is 1)
//!   mean_within_b = sum_{W_B} M_ij / (n_b (n_b - 1))
//!   mean_across   = sum_{i in A, j in B} (M_ij + M_ji) / (2 n_a n_b)
//!   statistic     = (mean_within_a + mean_within_b) / 2 - mean_across
//! The study's finding is "across < within" (across even negative for gradients): a
//! permutation test of statistic > 0 (alternative "greater") relabels the units at random
//! into groups of sizes n_a and n_b, which is exact under the null that the labels are
//! exchangeable. p-value with the +1 correction ([`crate::stats`]).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::matrix::Matrix;
use crate::stats::{permutation_test, Alternative};

/// Quadrant means and the permutation test of within - across.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuadrantSummary {
    pub n_a: usize,
    pub n_b: usize,
    pub mean_within_a: f64,
    pub mean_within_b: f64,
    pub mean_across: f64,
    /// (mean_within_a + mean_within_b) / 2 - mean_across.
    pub within_minus_across: f64,
    /// One-sided p-value of within_minus_across > 0, (1 + #{null >= obs}) / (1 + B).
    pub p_value: f64,
    pub alternative: Alternative,
    pub n_permutations: usize,
    pub seed: u64,
    pub null_mean: f64,
    pub null_sd: f64,
    pub null_p95: f64,
}

/// Quadrant means for the units at positions `perm[0..n_a]` (group A) and the rest (group B).
/// Returns (mean_within_a, mean_within_b, mean_across). // m: [n, n]
pub fn quadrant_means(m: &Matrix, perm: &[usize], n_a: usize) -> Result<(f64, f64, f64)> {
    let n = m.rows;
    if m.cols != n || perm.len() != n {
        bail!(
            "quadrant means: matrix {}x{} with {} labels",
            m.rows,
            m.cols,
            perm.len()
        );
    }
    if n_a < 2 || n - n_a < 2 {
        bail!(
            "quadrant means need at least 2 units per group, got n_a {n_a}, n_b {}",
            n.saturating_sub(n_a)
        );
    }
    let mut in_a = vec![false; n];
    perm[..n_a].iter().for_each(|&u| in_a[u] = true);
    let (mut aa, mut bb, mut ab) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let row = m.row(i);
        let (mut ra, mut rb) = (0.0, 0.0);
        for (j, &v) in row.iter().enumerate() {
            if j == i {
                continue;
            }
            if in_a[j] {
                ra += v;
            } else {
                rb += v;
            }
        }
        if in_a[i] {
            aa += ra;
            ab += rb;
        } else {
            bb += rb;
            ab += ra;
        }
    }
    let n_b = n - n_a;
    let (fa, fb) = (n_a as f64, n_b as f64);
    Ok((
        aa / (fa * (fa - 1.0)),
        bb / (fb * (fb - 1.0)),
        ab / (2.0 * fa * fb),
    ))
}

/// Reads the quadrants of `m` (first `n_a` units group A) and tests within > across with
/// `n_permutations` seeded relabelings. // m: [n_a + n_b, n_a + n_b]
pub fn quadrant_summary(
    m: &Matrix,
    n_a: usize,
    n_permutations: usize,
    seed: u64,
) -> Result<QuadrantSummary> {
    let n = m.rows;
    if m.cols != n {
        bail!(
            "quadrant summary of a non-square matrix {}x{}",
            m.rows,
            m.cols
        );
    }
    if let Some(i) = m.data.iter().position(|v| !v.is_finite()) {
        bail!("matrix entry ({}, {}) is {}", i / n, i % n, m.data[i]);
    }
    let identity: Vec<usize> = (0..n).collect();
    let (wa, wb, ac) = quadrant_means(m, &identity, n_a)?;
    let stat = |perm: &[usize]| -> Result<f64> {
        let (a, b, x) = quadrant_means(m, perm, n_a)?;
        Ok((a + b) / 2.0 - x)
    };
    let t = permutation_test(n, stat, n_permutations, Alternative::Greater, seed)?;
    Ok(QuadrantSummary {
        n_a,
        n_b: n - n_a,
        mean_within_a: wa,
        mean_within_b: wb,
        mean_across: ac,
        within_minus_across: t.observed,
        p_value: t.p_value,
        alternative: t.alternative,
        n_permutations,
        seed,
        null_mean: t.null_mean,
        null_sd: t.null_sd,
        null_p95: t.null_p95,
    })
}
