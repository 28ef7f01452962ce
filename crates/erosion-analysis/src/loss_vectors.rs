//! Per-token loss vectors (finding 2a).
//!
//! For example i with response log-probs lp_i[0..len_i] (log p(token_t | prefix), the
//! response tokens only), the loss vector is the first T cross-entropies
//!   `l_i = (-lp_i[0], ..., -lp_i[T-1])`                                   // `[T]`
//! and the analysis is the cosine matrix of the l_i (see [`crate::cosine`]). A response
//! shorter than T is handled by an explicit [`ShortResponse`]: `UseAvailable` gives
//! missing positions cross-entropy 0 (no loss there) so every vector has length T;
//! `TruncateToShortest` uses T' = min(T, shortest response) for every example; `Skip` drops
//! examples shorter than T (their indices are recorded); `Error` names the first short one.
//! The policy is recorded in the result.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use erosion_data::ShortResponse;

use crate::matrix::Matrix;

/// Loss vectors of a set of examples, with the choices that made them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossVectors {
    /// The T asked for.
    pub requested_window: usize,
    /// The T used (smaller than requested only under TruncateToShortest).
    pub window: usize,
    pub policy: ShortResponse,
    /// Input indices of the rows of `vectors`, in order.
    pub kept: Vec<usize>,
    /// Input indices dropped by `Skip`.
    pub skipped: Vec<usize>,
    /// Cross-entropies, one row per kept example. // [kept, window]
    pub vectors: Matrix,
}

/// Largest log-prob accepted: log-softmax in f32 can round a little above 0.
const MAX_LOGPROB: f64 = 1e-5;

fn check_logprobs(i: usize, lp: &[f64]) -> Result<()> {
    if let Some(t) = lp.iter().position(|v| !v.is_finite() || *v > MAX_LOGPROB) {
        bail!(
            "example {i}, response token {t}: log-prob {} is not a finite value <= 0",
            lp[t]
        );
    }
    Ok(())
}

/// Builds the loss vectors of `logprobs[i]` (example i's response log-probs) over window `t`.
pub fn loss_vectors<L: AsRef<[f64]>>(
    logprobs: &[L],
    t: usize,
    policy: ShortResponse,
) -> Result<LossVectors> {
    if t == 0 {
        bail!("loss vector window T must be positive");
    }
    if logprobs.is_empty() {
        bail!("loss vectors of zero examples");
    }
    for (i, lp) in logprobs.iter().enumerate() {
        check_logprobs(i, lp.as_ref())?;
    }
    let lens: Vec<usize> = logprobs.iter().map(|l| l.as_ref().len()).collect();
    let window = match policy {
        ShortResponse::TruncateToShortest => {
            let (i, &shortest) = lens
                .iter()
                .enumerate()
                .min_by_key(|(_, &l)| l)
                .expect("non-empty");
            if shortest == 0 {
                bail!("example {i} has an empty response: truncating to the shortest leaves T = 0");
            }
            t.min(shortest)
        }
        _ => t,
    };
    let (mut kept, mut skipped, mut data) = (Vec::new(), Vec::new(), Vec::new());
    for (i, lp) in logprobs.iter().enumerate() {
        let lp = lp.as_ref();
        if lp.len() < window {
            match policy {
                ShortResponse::Error => {
                    bail!("example {i} has {} response tokens, fewer than T = {window} (policy error)", lp.len())
                }
                ShortResponse::Skip => {
                    skipped.push(i);
                    continue;
                }
                ShortResponse::UseAvailable | ShortResponse::TruncateToShortest => {}
            }
        }
        kept.push(i);
        data.extend((0..window).map(|p| lp.get(p).map_or(0.0, |v| -v)));
    }
    if kept.is_empty() {
        bail!("every example is shorter than T = {window}: nothing left (policy skip)");
    }
    let vectors = Matrix::from_vec(kept.len(), window, data)?;
    Ok(LossVectors {
        requested_window: t,
        window,
        policy,
        kept,
        skipped,
        vectors,
    })
}

/// Loss vectors of two groups (A then B) built together, so TruncateToShortest uses one T for
/// both; `n_a` / `n_b` count the kept rows of each group (rows 0..n_a are A).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TwoGroupLossVectors {
    pub loss: LossVectors,
    pub n_a: usize,
    pub n_b: usize,
}

pub fn two_group_loss_vectors<L: AsRef<[f64]>>(
    a: &[L],
    b: &[L],
    t: usize,
    policy: ShortResponse,
) -> Result<TwoGroupLossVectors> {
    let all: Vec<&[f64]> = a
        .iter()
        .map(|l| l.as_ref())
        .chain(b.iter().map(|l| l.as_ref()))
        .collect();
    let loss = loss_vectors(&all, t, policy)?;
    let n_a = loss.kept.iter().filter(|&&i| i < a.len()).count();
    let n_b = loss.kept.len() - n_a;
    Ok(TwoGroupLossVectors { loss, n_a, n_b })
}
