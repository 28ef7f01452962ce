//! Behaviour summaries (finding 1) from log-probs and next-token distributions.
//!
//! - log joint probability of a response: log p(r) = sum_t lp_t (nats), and its running sum;
//! - entropy of a distribution: H(p) = -sum_i p_i ln p_i in nats, with 0 ln 0 = 0;
//! - top-k of a probability vector;
//! - dataset level: streaming means over responses, mergeable across chunks.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::stream::WelfordAccumulator;

/// Log joint probability of a response: sum of its token log-probs (nats).
pub fn log_joint(logprobs: &[f64]) -> f64 {
    logprobs.iter().sum()
}

/// Running log joint probability: `out[t] = sum_{s <= t} lp_s`. // `[len]` -> `[len]`
pub fn running_log_joint(logprobs: &[f64]) -> Vec<f64> {
    let mut acc = 0.0;
    logprobs
        .iter()
        .map(|lp| {
            acc += lp;
            acc
        })
        .collect()
}

/// Numerically stable log-softmax in f64: lp_i = z_i - max z - ln sum_j exp(z_j - max z).
/// `-inf` logits (masked tokens) are allowed; NaN, `+inf` or all `-inf` are errors. // `[V]` -> `[V]`
pub fn log_softmax(logits: &[f32]) -> Result<Vec<f64>> {
    if logits.is_empty() {
        bail!("log-softmax of an empty logit vector");
    }
    if let Some(i) = logits
        .iter()
        .position(|z| z.is_nan() || *z == f32::INFINITY)
    {
        bail!("logit {i} is {}", logits[i]);
    }
    let m = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &z| m.max(z as f64));
    if m == f64::NEG_INFINITY {
        bail!("every logit is -inf");
    }
    let lse = m + logits
        .iter()
        .map(|&z| (z as f64 - m).exp())
        .sum::<f64>()
        .ln();
    Ok(logits.iter().map(|&z| z as f64 - lse).collect())
}

/// Probabilities from logits (softmax in f64). // `[V]` -> `[V]`
pub fn softmax(logits: &[f32]) -> Result<Vec<f64>> {
    Ok(log_softmax(logits)?.into_iter().map(f64::exp).collect())
}

/// Entropy in nats of a probability vector, with 0 ln 0 = 0. Entries must be finite and >= 0
/// and sum to 1 within 1e-3 (f32 softmax over a large vocabulary drifts by ~1e-5); the vector
/// is renormalised by its sum before use.
pub fn entropy(probs: &[f64]) -> Result<f64> {
    if probs.is_empty() {
        bail!("entropy of an empty distribution");
    }
    if let Some(i) = probs.iter().position(|p| !p.is_finite() || *p < 0.0) {
        bail!("probability {i} is {}", probs[i]);
    }
    let s: f64 = probs.iter().sum();
    if (s - 1.0).abs() > 1e-3 {
        bail!("probabilities sum to {s}, not 1");
    }
    Ok(-probs
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| (p / s) * (p / s).ln())
        .sum::<f64>())
}

/// Entropy in nats of softmax(logits), from the log-softmax (no underflow to 0 ln 0 issues).
pub fn entropy_from_logits(logits: &[f32]) -> Result<f64> {
    let lp = log_softmax(logits)?;
    Ok(-lp
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| l.exp() * l)
        .sum::<f64>())
}

/// One entry of a top-k list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenProb {
    pub index: usize,
    pub prob: f64,
}

/// The `k` largest probabilities, descending; ties broken by the lower index. Fewer than `k`
/// when the vector is shorter. NaN is an error.
pub fn top_k(probs: &[f64], k: usize) -> Result<Vec<TokenProb>> {
    if let Some(i) = probs.iter().position(|p| p.is_nan()) {
        bail!("probability {i} is NaN");
    }
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| {
        probs[b]
            .partial_cmp(&probs[a])
            .expect("NaN excluded")
            .then(a.cmp(&b))
    });
    Ok(idx
        .into_iter()
        .take(k)
        .map(|i| TokenProb {
            index: i,
            prob: probs[i],
        })
        .collect())
}

/// Next-token distribution summary after a prefix (finding 1b).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NextTokenSummary {
    pub entropy_nats: f64,
    pub top_k: Vec<TokenProb>,
}

/// Summary of softmax(logits): entropy and top-k. // logits: `[V]`
pub fn next_token_summary(logits: &[f32], k: usize) -> Result<NextTokenSummary> {
    let p = softmax(logits)?;
    Ok(NextTokenSummary {
        entropy_nats: entropy_from_logits(logits)?,
        top_k: top_k(&p, k)?,
    })
}

/// Dataset-level behaviour of one model on one dataset (finding 1c).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetBehaviour {
    pub n_responses: u64,
    pub n_tokens: u64,
    /// Mean over responses of log p(response) (sum over its tokens), and its sample sd.
    pub mean_log_joint: f64,
    /// None for a single response.
    pub sd_log_joint: Option<f64>,
    /// Mean over all response tokens of log p(token) (token-weighted).
    pub mean_token_logprob: f64,
    /// Mean over all response tokens of the next-token entropy (token-weighted), nats.
    pub mean_token_entropy: f64,
    /// Mean over responses of each response's mean token entropy, nats.
    pub mean_response_entropy: f64,
    /// Which positions: always "response tokens".
    pub positions: String,
}

/// Streaming accumulator of [`DatasetBehaviour`], mergeable across chunks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BehaviourAccumulator {
    log_joint: WelfordAccumulator,        // per response
    response_entropy: WelfordAccumulator, // per response
    token_logprob_sum: f64,
    token_entropy_sum: f64,
    n_tokens: u64,
}

impl Default for BehaviourAccumulator {
    fn default() -> Self {
        Self::new()
    }
}

impl BehaviourAccumulator {
    pub fn new() -> Self {
        Self {
            log_joint: WelfordAccumulator::new(1),
            response_entropy: WelfordAccumulator::new(1),
            token_logprob_sum: 0.0,
            token_entropy_sum: 0.0,
            n_tokens: 0,
        }
    }

    /// Adds one response: its token log-probs and the entropies of the next-token distributions
    /// that predicted those tokens (same length). Empty responses are an error.
    pub fn push_response(&mut self, logprobs: &[f64], entropies: &[f64]) -> Result<()> {
        if logprobs.is_empty() || logprobs.len() != entropies.len() {
            bail!(
                "response with {} log-probs and {} entropies",
                logprobs.len(),
                entropies.len()
            );
        }
        if let Some(i) = logprobs.iter().position(|v| !v.is_finite() || *v > 1e-5) {
            bail!("response token {i}: log-prob {}", logprobs[i]);
        }
        if let Some(i) = entropies.iter().position(|v| !v.is_finite() || *v < 0.0) {
            bail!("response token {i}: entropy {}", entropies[i]);
        }
        let lj = log_joint(logprobs);
        let h: f64 = entropies.iter().sum();
        self.log_joint.push(&[lj])?;
        self.response_entropy.push(&[h / entropies.len() as f64])?;
        self.token_logprob_sum += lj;
        self.token_entropy_sum += h;
        self.n_tokens += logprobs.len() as u64;
        Ok(())
    }

    pub fn merge(&mut self, other: &BehaviourAccumulator) -> Result<()> {
        self.log_joint.merge(&other.log_joint)?;
        self.response_entropy.merge(&other.response_entropy)?;
        self.token_logprob_sum += other.token_logprob_sum;
        self.token_entropy_sum += other.token_entropy_sum;
        self.n_tokens += other.n_tokens;
        Ok(())
    }

    pub fn finish(&self) -> Result<DatasetBehaviour> {
        let n = self.log_joint.count();
        if n == 0 {
            bail!("dataset behaviour of zero responses");
        }
        let sd = if n > 1 {
            Some(self.log_joint.sample_variance()?[0].sqrt())
        } else {
            None
        };
        Ok(DatasetBehaviour {
            n_responses: n,
            n_tokens: self.n_tokens,
            mean_log_joint: self.log_joint.mean()?[0],
            sd_log_joint: sd,
            mean_token_logprob: self.token_logprob_sum / self.n_tokens as f64,
            mean_token_entropy: self.token_entropy_sum / self.n_tokens as f64,
            mean_response_entropy: self.response_entropy.mean()?[0],
            positions: "response tokens".into(),
        })
    }
}
