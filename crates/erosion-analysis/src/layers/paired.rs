//! The paired bootstrap of a layer's scores, re-estimating the direction in every resample
//! from n x n Gram-form data (no per-example vector held).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::matrix::{dot, Matrix};
use crate::stats::{ci_from_draws, rng_from_seed, ConfidenceInterval};

const PAIRED: &str = "percentile bootstrap (paired examples, direction re-estimated)";

/// Gram-form data for the paired bootstrap of one layer: per model m,
/// D^m = Z^m (Z^instruct)^T - Z^m (Z^base)^T, where Z^m [n, dim] stacks the pooled vectors
/// of the same n examples under model m. For resample multiplicities w (sum n):
///   v* = (1/n) sum_j w_j (z_j^I - z_j^B),  |v*|^2 = w^T (D^I - D^B) w / n^2,
///   s_m* = (1/n) sum_i w_i z_i^m . v*/|v*| = w^T D^m w / (n sqrt(w^T (D^I - D^B) w)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreGrams {
    pub models: Vec<String>,
    pub base: usize,
    pub instruct: usize,
    /// D^m per model. // `[n_models]` of [n, n]
    pub d: Vec<Matrix>,
}

impl ScoreGrams {
    /// From in-memory pooled vectors of the same examples under each model. // `z[m]`: [n, dim]
    pub fn from_matrices(
        models: &[String],
        z: &[&Matrix],
        base: usize,
        instruct: usize,
    ) -> Result<Self> {
        if z.len() != models.len() || base >= z.len() || instruct >= z.len() {
            bail!(
                "{} names, {} matrices, base {base}, instruct {instruct}",
                models.len(),
                z.len()
            );
        }
        let (n, dim) = (z[0].rows, z[0].cols);
        for (m, zm) in z.iter().enumerate() {
            if zm.rows != n || zm.cols != dim {
                bail!(
                    "model {:?}: pooled vectors {}x{}, expected {n}x{dim}",
                    models[m],
                    zm.rows,
                    zm.cols
                );
            }
        }
        let d = z
            .iter()
            .map(|zm| {
                let mut dm = Matrix::zeros(n, n);
                for i in 0..n {
                    for j in 0..n {
                        dm.set(
                            i,
                            j,
                            dot(zm.row(i), z[instruct].row(j)) - dot(zm.row(i), z[base].row(j)),
                        );
                    }
                }
                dm
            })
            .collect();
        Ok(Self {
            models: models.to_vec(),
            base,
            instruct,
            d,
        })
    }

    /// From cross Grams computed elsewhere (e.g. [`crate::cosine::blocked_cross_gram`] over
    /// stores): `g_mi[m]` = Z^m Z^I^T, `g_mb[m]` = Z^m Z^B^T. // each [n, n]
    pub fn from_cross_grams(
        models: &[String],
        g_mi: &[Matrix],
        g_mb: &[Matrix],
        base: usize,
        instruct: usize,
    ) -> Result<Self> {
        if g_mi.len() != models.len()
            || g_mb.len() != models.len()
            || base >= models.len()
            || instruct >= models.len()
        {
            bail!(
                "{} names, {} + {} grams, base {base}, instruct {instruct}",
                models.len(),
                g_mi.len(),
                g_mb.len()
            );
        }
        let n = g_mi[0].rows;
        let mut d = Vec::with_capacity(models.len());
        for (m, (a, b)) in g_mi.iter().zip(g_mb).enumerate() {
            if a.rows != n || a.cols != n || b.rows != n || b.cols != n {
                bail!(
                    "model {:?}: cross grams {}x{} and {}x{}, expected {n}x{n}",
                    models[m],
                    a.rows,
                    a.cols,
                    b.rows,
                    b.cols
                );
            }
            d.push(Matrix::from_vec(
                n,
                n,
                a.data.iter().zip(&b.data).map(|(x, y)| x - y).collect(),
            )?);
        }
        Ok(Self {
            models: models.to_vec(),
            base,
            instruct,
            d,
        })
    }

    pub fn n_examples(&self) -> usize {
        self.d[0].rows
    }
}

/// The quadratic form w^T M w, skipping the rows where w_i = 0 (most, in a resample).
fn quad_form(m: &Matrix, w: &[f64]) -> f64 {
    (0..m.rows)
        .filter(|&i| w[i] != 0.0)
        .map(|i| w[i] * dot(m.row(i), w))
        .sum()
}

/// Paired bootstrap CIs of one layer's scores, re-estimating v in each resample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedScoreCis {
    pub models: Vec<String>,
    /// CI of s^m per model.
    pub scores: Vec<ConfidenceInterval>,
    /// CI of (s^m - s^base) / (s^instruct - s^base): 0 = base, 1 = instruct.
    pub relative: Vec<ConfidenceInterval>,
}

/// Paired percentile bootstrap of s^m and of the relative position (see [`ScoreGrams`]).
pub fn paired_bootstrap(
    g: &ScoreGrams,
    n_resamples: usize,
    level: f64,
    seed: u64,
) -> Result<PairedScoreCis> {
    if n_resamples < 2 || !(level > 0.0 && level < 1.0) {
        bail!("paired bootstrap needs >= 2 resamples and a level in (0, 1), got {n_resamples}, {level}");
    }
    let n = g.n_examples();
    let stats_of = |idx: &[usize]| -> Result<(Vec<f64>, Vec<f64>)> {
        let mut w = vec![0.0; n];
        idx.iter().for_each(|&i| w[i] += 1.0);
        let q: Vec<f64> = g.d.iter().map(|dm| quad_form(dm, &w)).collect();
        let k = q[g.instruct] - q[g.base];
        if k.is_nan() || k <= 0.0 {
            bail!(
                "resample has a zero alignment direction (|v|^2 = {})",
                k / (n * n) as f64
            );
        }
        let s = q.iter().map(|qm| qm / (n as f64 * k.sqrt())).collect();
        let r = q.iter().map(|qm| (qm - q[g.base]) / k).collect();
        Ok((s, r))
    };
    // One stream of resamples shared by every statistic, so the CIs are jointly consistent.
    let identity: Vec<usize> = (0..n).collect();
    let (s0, r0) = stats_of(&identity)?;
    let mut rng = rng_from_seed(seed);
    let m = g.models.len();
    let (mut sd, mut rd) = (vec![Vec::new(); m], vec![Vec::new(); m]);
    let mut idx = vec![0usize; n];
    for _ in 0..n_resamples {
        crate::stats::draw_resample(&mut rng, &mut idx);
        let (s, r) = stats_of(&idx)?;
        for k in 0..m {
            sd[k].push(s[k]);
            rd[k].push(r[k]);
        }
    }
    let mut scores = Vec::with_capacity(m);
    let mut relative = Vec::with_capacity(m);
    for (k, (s, r)) in sd.into_iter().zip(rd).enumerate() {
        scores.push(ci_from_draws(s0[k], s, level, seed, PAIRED)?);
        relative.push(ci_from_draws(r0[k], r, level, seed, PAIRED)?);
    }
    Ok(PairedScoreCis {
        models: g.models.clone(),
        scores,
        relative,
    })
}
