//! Layer-wise erosion (finding 3): pooling of response windows, the alignment direction per
//! layer, each model's mean projection onto it, and confidence intervals.
//!
//! Notation (Giordani 2025): z_{l,i}^m = pooled hidden states of example i's response window at
//! layer l under model m; mu_l^m = mean_i z_{l,i}^m (accumulate with
//! [`crate::stream::LayerMeans`]); v_l = mu_l^instruct - mu_l^base;
//!   s_l^m = mean_i z_{l,i}^m . v_l / |v_l| = mu_l^m . v_l / |v_l|      (by linearity),
//! so s_l^m needs only the streamed means, and s_l^instruct - s_l^base = |v_l| exactly.
//!
//! Pooling of the window of T response tokens starting `offset` tokens into the response:
//! - `Flatten` (the study's text, T = 64): z = concat(h_t for t in window)        // [T * d]
//! - `Mean` (the study's code, T = 10, tokens as rows): z = mean_t h_t             // `[d]`
//!   (the mean of per-token projections equals the projection of the mean, so "each token a
//!   row" and mean pooling give the same s_l).
//!
//! Confidence bands: [`score_ci`] bootstraps the mean of per-example projections onto a fixed
//! v_l (conditional on the direction; a second pass once v_l is known). [`paired_bootstrap`]
//! also re-estimates v_l in every resample (examples resampled jointly across models), from
//! n x n Gram matrices, so no per-example vector is held.

mod paired;

pub use paired::{paired_bootstrap, PairedScoreCis, ScoreGrams};

use std::ops::Range;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use erosion_data::ShortResponse;

pub use crate::alignment::alignment_directions;
use crate::matrix::{cosine, dot, norm, Matrix};
use crate::stats::{bootstrap_mean_ci, ConfidenceInterval};

/// How a window of T hidden states becomes one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Concatenate the T token vectors: [T * d] (the study's text).
    Flatten,
    /// Mean over the T token vectors: `[d]` (the study's code).
    Mean,
}

/// The response window and its pooling, recorded with every result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// T: number of response tokens.
    pub len: usize,
    /// Tokens skipped at the start of the response.
    pub offset: usize,
    pub pooling: Pooling,
    /// Fewer than T tokens after the offset: `UseAvailable` means `Mean` averages the tokens
    /// there are and `Flatten` zero-fills the missing positions, so every vector is [T * d]
    /// (missing tokens then pull those positions of the mean toward 0); zero tokens is still
    /// an error. `TruncateToShortest` is refused (one example at a time here).
    pub short: ShortResponse,
}

impl WindowSpec {
    /// Length of the pooled vector for hidden size `d`.
    pub fn pooled_dim(&self, d: usize) -> usize {
        match self.pooling {
            Pooling::Flatten => self.len * d,
            Pooling::Mean => d,
        }
    }
}

/// Pools one example's hidden states at one layer over its response window.
///
/// `hidden` is row-major [seq, d]; `response` the token positions of the response in 0..seq.
/// Window = positions response.start + offset .. + T, clipped to the response.
/// Returns `None` only under `ShortResponse::Skip`. // -> [T * d] or `[d]`
pub fn pool_window(
    hidden: &[f32],
    seq: usize,
    d: usize,
    response: Range<usize>,
    spec: &WindowSpec,
) -> Result<Option<Vec<f64>>> {
    if spec.len == 0 || d == 0 {
        bail!(
            "window length T and hidden size d must be positive (T {}, d {d})",
            spec.len
        );
    }
    if hidden.len() != seq * d {
        bail!(
            "hidden states have {} values, expected seq {seq} x d {d}",
            hidden.len()
        );
    }
    if response.start > response.end || response.end > seq {
        bail!("response span {response:?} outside a sequence of {seq} tokens");
    }
    let start = response.start + spec.offset;
    let available = response.end.saturating_sub(start).min(spec.len);
    if available < spec.len {
        let msg = || {
            format!(
                "response of {} tokens has {available} after offset {}, fewer than T = {}",
                response.len(),
                spec.offset,
                spec.len
            )
        };
        match spec.short {
            ShortResponse::Error => bail!("{} (policy error)", msg()),
            ShortResponse::Skip => return Ok(None),
            ShortResponse::UseAvailable if available == 0 => {
                bail!("{}: no token to use", msg())
            }
            ShortResponse::UseAvailable => {}
            ShortResponse::TruncateToShortest => spec.short.check_per_example()?,
        }
    }
    let rows = &hidden[start * d..(start + available) * d];
    if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
        bail!(
            "hidden state at position {} dim {} is {}",
            start + i / d,
            i % d,
            rows[i]
        );
    }
    Ok(Some(match spec.pooling {
        Pooling::Flatten => {
            let mut z = vec![0.0; spec.len * d];
            z[..available * d]
                .iter_mut()
                .zip(rows)
                .for_each(|(o, &h)| *o = h as f64);
            z
        }
        Pooling::Mean => {
            let mut z = vec![0.0; d];
            for t in 0..available {
                z.iter_mut()
                    .zip(&rows[t * d..(t + 1) * d])
                    .for_each(|(o, &h)| *o += h as f64);
            }
            z.iter_mut().for_each(|o| *o /= available as f64);
            z
        }
    }))
}

/// Per-layer means of one model: `means[l]` = mu_l^m. // `[n_layers]``[dim]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelLayerMeans {
    pub model: String,
    pub means: Vec<Vec<f64>>,
}

/// s_l^m for every model and layer, with the direction norms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerScores {
    pub models: Vec<String>,
    pub n_layers: usize,
    /// |v_l| = s_l^instruct - s_l^base. // `[n_layers]`
    pub direction_norms: Vec<f64>,
    /// `scores[m][l]` = s_l^m = mu_l^m . v_l / |v_l|. // `[n_models][n_layers]`
    pub scores: Vec<Vec<f64>>,
}

/// v / |v|; errors on a zero (or non-finite) vector.
pub fn unit(v: &[f64]) -> Result<Vec<f64>> {
    let n = norm(v);
    if n.is_nan() || n <= 0.0 || !n.is_finite() {
        bail!("direction has norm {n}: cannot normalise");
    }
    Ok(v.iter().map(|x| x / n).collect())
}

/// Scores s_l^m of every model (module docs). `base` and `instruct` name two of the models.
pub fn layer_scores(models: &[ModelLayerMeans], base: &str, instruct: &str) -> Result<LayerScores> {
    let find = |name: &str| {
        models
            .iter()
            .find(|m| m.model == name)
            .with_context(|| format!("model {name:?} not among the layer means"))
    };
    let (b, i) = (find(base)?, find(instruct)?);
    let v = alignment_directions(&b.means, &i.means)?;
    let n_layers = v.len();
    let units: Vec<Vec<f64>> = v
        .iter()
        .enumerate()
        .map(|(l, v)| unit(v).with_context(|| format!("layer {l}")))
        .collect::<Result<_>>()?;
    let mut scores = Vec::with_capacity(models.len());
    for m in models {
        if m.means.len() != n_layers {
            bail!(
                "model {:?} has {} layers of means, expected {n_layers}",
                m.model,
                m.means.len()
            );
        }
        let mut s = Vec::with_capacity(n_layers);
        for (l, (mu, u)) in m.means.iter().zip(&units).enumerate() {
            if mu.len() != u.len() {
                bail!(
                    "model {:?} layer {l}: mean has dim {}, direction {}",
                    m.model,
                    mu.len(),
                    u.len()
                );
            }
            s.push(dot(mu, u));
        }
        scores.push(s);
    }
    Ok(LayerScores {
        models: models.iter().map(|m| m.model.clone()).collect(),
        n_layers,
        direction_norms: v.iter().map(|v| norm(v)).collect(),
        scores,
    })
}

/// Per-layer signed cosine between the directions found on two datasets (v_l has a meaning-
/// ful sign, instruct minus base, so the sign is kept). // `[n_layers]`
pub fn direction_cosines(a: &[Vec<f64>], b: &[Vec<f64>]) -> Result<Vec<f64>> {
    if a.len() != b.len() {
        bail!("directions for {} and {} layers", a.len(), b.len());
    }
    a.iter()
        .zip(b)
        .enumerate()
        .map(|(l, (x, y))| cosine(x, y).with_context(|| format!("layer {l}")))
        .collect()
}

/// Projections z_i . u of the rows of `z` onto a unit direction. // z: [n, dim] -> `[n]`
pub fn projections(z: &Matrix, u: &[f64]) -> Result<Vec<f64>> {
    if z.cols != u.len() {
        bail!(
            "projecting rows of dim {} onto a direction of dim {}",
            z.cols,
            u.len()
        );
    }
    Ok((0..z.rows).map(|i| dot(z.row(i), u)).collect())
}

/// Percentile bootstrap CI of s = mean of per-example projections onto a fixed direction
/// (conditional on v_l: it does not include the uncertainty of v_l; see [`paired_bootstrap`]).
pub fn score_ci(
    projections: &[f64],
    n_resamples: usize,
    level: f64,
    seed: u64,
) -> Result<ConfidenceInterval> {
    bootstrap_mean_ci(projections, n_resamples, level, seed)
}
