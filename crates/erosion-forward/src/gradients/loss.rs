//! The loss an example's gradient is taken of: next-token cross-entropy over a span of its
//! tokens, and its derivative with respect to the logits.
//!
//! ```text
//! CE_j = -log softmax(logits_{j-1})[ids_j]        (token j predicted from tokens 0..j)
//! loss = (1/|J|) sum_{j in J} CE_j   (Mean)   or   sum_{j in J} CE_j   (Sum)
//! d loss / d logits_{j-1} = w (softmax(logits_{j-1}) - onehot(ids_j)),   w = 1/|J| or 1
//! ```
//! J, the target tokens, comes from [`LossSpan`]: the first T response tokens (the study's
//! text), the whole response, or every token after the first (the study's code, which passed
//! the whole sequence as labels).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};
use std::ops::Range;

use erosion_data::{Sequence, ShortResponse};

/// Which tokens the loss covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LossSpan {
    /// The first `t` response tokens (the study's text, T = 64).
    ResponseWindow { t: usize },
    /// Every response token.
    Response,
    /// Every token but the first (the study's code: labels = input ids).
    Sequence,
}

impl Default for LossSpan {
    fn default() -> Self {
        LossSpan::ResponseWindow { t: 64 }
    }
}

/// How the per-token cross-entropies are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// Mean over the span's tokens (as transformers' loss).
    #[default]
    Mean,
    Sum,
}

/// In words, for reports: `first 64 response tokens`, `response`, `sequence`.
impl std::fmt::Display for LossSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LossSpan::ResponseWindow { t } => write!(f, "the first {t} response tokens"),
            LossSpan::Response => f.write_str("every response token"),
            LossSpan::Sequence => f.write_str("every token but the first"),
        }
    }
}

impl std::fmt::Display for Reduction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
        })
    }
}

/// The loss of one example: span, reduction, and the policy for a response shorter than the
/// window `t` (and for an example whose span has no token at all, which is skipped under
/// `Skip` and an error otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossSpec {
    pub span: LossSpan,
    pub reduction: Reduction,
    pub short: ShortResponse,
}

impl Default for LossSpec {
    /// The first 64 response tokens, mean, and the tokens there are for a shorter response
    /// (`UseAvailable`, not the policy's own default `Error`: a loss reads what it is given).
    fn default() -> Self {
        LossSpec {
            span: LossSpan::default(),
            reduction: Reduction::default(),
            short: ShortResponse::UseAvailable,
        }
    }
}

/// The tokens an example's loss reads, or why it is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Target token indices J (into `ids`), and whether the window was cut short.
    Use {
        tokens: Range<usize>,
        short: bool,
    },
    Skip(String),
}

impl LossSpec {
    /// Resolves the span of example `index` (named in errors) to its target tokens.
    pub fn targets(&self, index: usize, seq: &Sequence) -> Result<Targets> {
        self.short.check_per_example()?;
        let n = seq.ids.len();
        let r = &seq.response;
        if matches!(self.span, LossSpan::ResponseWindow { t: 0 }) {
            bail!("the response window T must be at least 1 token");
        }
        if self.span != LossSpan::Sequence {
            if r.start > r.end || r.end > n {
                bail!("example {index}: response span {r:?} is outside its {n} tokens");
            }
            if r.start == 0 && r.end > 0 {
                bail!(
                    "example {index}: the response starts at token 0, so nothing precedes its first \
                     token to predict it from"
                );
            }
        }
        let (tokens, short) = match self.span {
            LossSpan::Sequence => (1.min(n)..n, false),
            LossSpan::Response => (r.clone(), false),
            LossSpan::ResponseWindow { t } => {
                let end = r.start.saturating_add(t);
                (r.start..end.min(r.end), end > r.end)
            }
        };
        let why = if tokens.is_empty() {
            Some(format!(
                "example {index}: the loss span {:?} has no tokens (response {r:?} of {n} tokens)",
                self.span
            ))
        } else if short && self.short != ShortResponse::UseAvailable {
            Some(format!(
                "example {index}: its response has {} tokens, fewer than the window T = {} \
                 (the short-response policy is {:?}; use-available would use them)",
                r.len(),
                self.window().unwrap_or(0),
                self.short
            ))
        } else {
            None
        };
        Ok(match (why, self.short) {
            (None, _) => Targets::Use { tokens, short },
            (Some(why), ShortResponse::Skip) => Targets::Skip(why),
            (Some(why), _) => bail!(why),
        })
    }

    /// The window T, for `ResponseWindow`.
    pub fn window(&self) -> Option<usize> {
        match self.span {
            LossSpan::ResponseWindow { t } => Some(t),
            _ => None,
        }
    }
}

/// Cross-entropy of `logits` `[n, vocab]` (row i predicts `targets[i]`) and its derivative.
pub struct CrossEntropy {
    /// The reduced loss.
    pub loss: f64,
    /// CE_j per target token. // [n]
    pub per_token: Vec<f64>,
    /// d loss / d logits, in the softmax dtype (f32, or f64 for f64 models). // [n, vocab]
    pub dlogits: Tensor,
}

pub fn cross_entropy(
    logits: &Tensor,
    targets: &[u32],
    reduction: Reduction,
) -> Result<CrossEntropy> {
    let (n, vocab) = logits.dims2().context("logits must be [tokens, vocab]")?;
    if n != targets.len() || n == 0 {
        bail!("{n} logit rows for {} targets", targets.len());
    }
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= vocab) {
        bail!("target token {t} is outside the vocabulary of {vocab}");
    }
    // Softmax in f32 (f64 for f64 models), as the attention does: bf16 logits lose the tail.
    let dtype = if logits.dtype() == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let logits = logits.to_dtype(dtype)?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?; // [n, vocab]
    let idx = Tensor::from_slice(targets, (n, 1), logits.device())?;
    let picked = logp.gather(&idx, 1)?.squeeze(1)?; // [n]
    let per_token: Vec<f64> = picked
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?
        .into_iter()
        .map(|v| -v)
        .collect();
    if let Some(j) = per_token.iter().position(|v| !v.is_finite()) {
        bail!("the cross-entropy of target {j} is {}", per_token[j]);
    }
    let w = match reduction {
        Reduction::Mean => 1.0 / n as f64,
        Reduction::Sum => 1.0,
    };
    let loss = per_token.iter().sum::<f64>() * w;
    let minus_one = Tensor::full(-1f64, (n, 1), logits.device())?.to_dtype(dtype)?;
    let dlogits = (logp.exp()?.scatter_add(&idx, &minus_one, 1)? * w)?;
    Ok(CrossEntropy {
        loss,
        per_token,
        dlogits,
    })
}
