//! Analysis 1 (behaviour): per-token log-probabilities of fixed responses, the entropy of each
//! next-token distribution, and the next-token distribution after a prefix.
//!
//! For a sequence x with response tokens at positions `r.start..r.end`:
//! ```text
//! lp_t = ln softmax(W_U norm(h_L[t-1]))[x_t]                 t in r   (nats)
//! H_t  = -sum_v p_v ln p_v,  p = softmax(W_U norm(h_L[t-1]))  (entropy of the distribution x_t was drawn from)
//! log p(response) = sum_t lp_t;  running log joint J_t = sum_{s<=t} lp_s
//! ```
//! Logits are formed only at the needed rows: the final hidden states `[batch, seq, d_model]`
//! are gathered to `[n_rows, d_model]` and unembedded in chunks of at most
//! [`LOGIT_CHUNK_VALUES`] logits, so `[batch, seq, vocab]` never exists (150k vocabularies).
//! The log-softmax and the entropy run in f32 whatever the model dtype (as transformers'
//! `logits.float()`).

use crate::batch::{pass_groups, plan_batches, Batch, BatchOptions, Progress};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, D};
use erosion_data::Sequence;
use erosion_model::hooks::Hooks;
use erosion_model::transformer::{ForwardOptions, Transformer};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Most logits formed at once (64 MiB of f32): rows are unembedded in chunks of
/// `max(1, LOGIT_CHUNK_VALUES / vocab)`.
pub const LOGIT_CHUNK_VALUES: usize = 1 << 24;

/// The response of one example under one model. All vectors have one entry per response
/// token, in order. `[n_response]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseLogprobs {
    /// The response tokens.
    pub ids: Vec<u32>,
    /// `ln p(ids[t] | all tokens before it)`, nats.
    pub logprobs: Vec<f32>,
    /// Entropy (nats) of the next-token distribution `ids[t]` was drawn from.
    pub entropy: Vec<f32>,
}

impl ResponseLogprobs {
    /// `log p(response) = sum_t lp_t`, summed in f64.
    pub fn log_joint(&self) -> f64 {
        self.logprobs.iter().map(|&x| x as f64).sum()
    }

    /// `J_t = sum_{s<=t} lp_s`, in f64. `[n_response]`
    pub fn running_log_joint(&self) -> Vec<f64> {
        let mut acc = 0f64;
        self.logprobs
            .iter()
            .map(|&x| {
                acc += x as f64;
                acc
            })
            .collect()
    }

    /// Mean entropy over the response tokens (NaN for an empty response).
    pub fn mean_entropy(&self) -> f64 {
        self.entropy.iter().map(|&x| x as f64).sum::<f64>() / self.entropy.len() as f64
    }
}

/// Log-probabilities and entropies of every response token of every sequence, returned in
/// input order, with `hooks` (when given) active in every forward pass, e.g. an edit that adds
/// or removes a direction (causal tests). Batches are sorted by length, so positions in the
/// hooks must not depend on the example: use `Positions::All` or `Positions::Same`. A response
/// that starts at position 0 (no prefix to condition on) or is empty is an error naming the
/// example.
pub fn response_logprobs(
    model: &Transformer,
    seqs: &[Sequence],
    batch: &BatchOptions,
    mut hooks: Option<&mut Hooks>,
    progress: &mut dyn Progress,
) -> Result<Vec<ResponseLogprobs>> {
    Sequence::check_all(seqs)?;
    for (i, s) in seqs.iter().enumerate() {
        if s.response.is_empty() {
            bail!("example {i}: the response is empty");
        }
        if s.response.start == 0 {
            bail!("example {i}: the response starts at token 0, so its first token has no prefix to predict it from");
        }
    }
    progress.set_total(seqs.len());
    // The last response token is predicted from the one before it: the tokens after
    // `response.end - 1` are never needed.
    let lens: Vec<usize> = seqs.iter().map(|s| s.response.end - 1).collect();
    let mut out: Vec<Option<ResponseLogprobs>> = vec![None; seqs.len()];
    let mut batches = Vec::new();
    for examples in plan_batches(&lens, batch)? {
        let rows: Vec<&[u32]> = examples.iter().map(|&i| &seqs[i].ids[..lens[i]]).collect();
        batches.push(Batch::new(examples, &rows, model.device())?);
    }
    // The one set of hooks sees one batch at a time.
    for group in pass_groups(&batches, model.is_streamed() && hooks.is_none()) {
        let mut opts: Vec<ForwardOptions> = group.iter().map(|_| ForwardOptions::fast()).collect();
        if let Some(h) = hooks.as_deref_mut() {
            opts[0] = ForwardOptions::fast().hooks(h);
        }
        let inputs: Vec<_> = group.iter().map(|b| (&b.ids, b.mask_if_padded())).collect();
        let what = || {
            let examples: Vec<&[usize]> = group.iter().map(|b| b.examples.as_slice()).collect();
            format!("forward pass over examples {examples:?}")
        };
        let xs = model
            .run_batches(&inputs, model.n_layers(), &mut opts)
            .with_context(what)?;
        for ((b, x), o) in group.iter().zip(xs).zip(&mut opts) {
            let hidden = model.final_norm(&x, o)?; // [b, s, d]
            let s = b.seq_len();
            // Row k*s + p of the flattened hidden states predicts token p+1 of row k.
            let (mut flat_rows, mut targets) = (Vec::new(), Vec::new());
            for (k, &i) in b.examples.iter().enumerate() {
                let r = &seqs[i].response;
                flat_rows.extend((r.start - 1..r.end - 1).map(|p| (k * s + p) as u32));
                targets.extend_from_slice(seqs[i].response_ids());
            }
            let (lp, ent) = logprobs_at_rows(model, &hidden, &flat_rows, &targets)?;
            let mut at = 0;
            for &i in &b.examples {
                let n = seqs[i].response.len();
                out[i] = Some(ResponseLogprobs {
                    ids: seqs[i].response_ids().to_vec(),
                    logprobs: lp[at..at + n].to_vec(),
                    entropy: ent[at..at + n].to_vec(),
                });
                at += n;
            }
            progress.advance(b.len());
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, o)| o.with_context(|| format!("example {i} was in no batch")))
        .collect()
}

/// Log-probabilities of `targets[j]` and entropies at the flattened rows `rows[j]` of
/// `hidden` `[batch, seq, d_model]` (final, normalised). Returns two `[n_rows]` vectors.
fn logprobs_at_rows(
    model: &Transformer,
    hidden: &Tensor,
    rows: &[u32],
    targets: &[u32],
) -> Result<(Vec<f32>, Vec<f32>)> {
    let d = hidden.dim(D::Minus1)?;
    let flat = hidden.reshape(((), d))?; // [b * s, d]
    let vocab = model.config().vocab_size;
    let chunk = (LOGIT_CHUNK_VALUES / vocab.max(1)).max(1);
    let (mut lps, mut ents) = (
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
    );
    for (rows, targets) in rows.chunks(chunk).zip(targets.chunks(chunk)) {
        let n = rows.len();
        let idx = Tensor::from_slice(rows, n, hidden.device())?;
        let h = flat.index_select(&idx, 0)?; // [n, d]
        let logits = model
            .unembed(&h, &mut ForwardOptions::fast())?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?; // [n * vocab]
        let per_row: Vec<(f32, f32)> = logits
            .par_chunks(vocab)
            .zip(targets.par_iter())
            .map(|(x, &t)| logprob_and_entropy(x, t as usize))
            .collect();
        lps.extend(per_row.iter().map(|r| r.0));
        ents.extend(per_row.iter().map(|r| r.1));
    }
    Ok((lps, ents))
}

/// `(ln softmax(x)[t], -sum_v p_v ln p_v)` for one row of logits `x` `[vocab]`, in two passes
/// and one `exp` per logit (a log-softmax, then exp, product and sum, would take five): with
/// `y_v = x_v - max x`, `e_v = exp(y_v)` and `s = sum_v e_v` (summed in f64),
/// `ln p_t = y_t - ln s` and `H = ln s - sum_v e_v y_v / s`, both terms of H non-negative so
/// nothing cancels.
pub(crate) fn logprob_and_entropy(x: &[f32], t: usize) -> (f32, f32) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut s, mut ey) = (0.0f64, 0.0f64);
    for &v in x {
        let y = v - max;
        let e = y.exp();
        s += e as f64;
        ey += (e * y) as f64;
    }
    let ln_s = s.ln();
    (((x[t] - max) as f64 - ln_s) as f32, (ln_s - ey / s) as f32)
}

/// `log_softmax(W_U h)` in f32 for final hidden rows `h` `[n, d_model]`: `[n, vocab]`.
pub(crate) fn log_softmax_f32(model: &Transformer, h: &Tensor) -> Result<Tensor> {
    let logits = model
        .unembed(h, &mut ForwardOptions::fast())?
        .to_dtype(DType::F32)?;
    Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?)
}

/// One token of a next-token distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenProb {
    pub id: u32,
    pub prob: f32,
    /// ln prob, nats.
    pub logprob: f32,
}

/// The distribution of the token after a prefix: its `k` most likely tokens and its entropy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextToken {
    /// Most likely first; ties by token id.
    pub top: Vec<TokenProb>,
    /// `-sum_v p_v ln p_v` over the whole vocabulary, nats.
    pub entropy: f32,
}

/// The next-token distribution after `prompt_ids` (e.g. a chat prompt with the assistant's
/// first words "I wish I could"): the top `k` tokens and the entropy, with `hooks` (when given)
/// active in the forward pass (e.g. an edit along a direction).
pub fn next_token(
    model: &Transformer,
    prompt_ids: &[u32],
    k: usize,
    hooks: Option<&mut Hooks>,
) -> Result<NextToken> {
    if prompt_ids.is_empty() {
        bail!("next_token needs a non-empty prompt");
    }
    let n = prompt_ids.len();
    let ids = Tensor::from_slice(prompt_ids, (1, n), model.device())?;
    let mut opts = ForwardOptions::fast();
    if let Some(h) = hooks {
        opts = opts.hooks(h);
    }
    let hidden = model.final_hidden(&ids, None, &mut opts)?; // [1, n, d]
    let last = hidden.squeeze(0)?.narrow(0, n - 1, 1)?; // [1, d]
    let lp = log_softmax_f32(model, &last)?
        .squeeze(0)?
        .to_vec1::<f32>()?; // [vocab]
                            // Over log-probabilities the row's max is ~0 and ln s ~0: the same H as from the logits.
    let (_, ent) = logprob_and_entropy(&lp, 0);
    let mut order: Vec<usize> = (0..lp.len()).collect();
    let k = k.min(lp.len());
    let by_prob = |a: &usize, b: &usize| lp[*b].total_cmp(&lp[*a]).then(a.cmp(b));
    if k < order.len() && k > 0 {
        order.select_nth_unstable_by(k - 1, by_prob);
    }
    order.truncate(k);
    order.sort_by(by_prob);
    Ok(NextToken {
        top: order
            .into_iter()
            .map(|i| TokenProb {
                id: i as u32,
                prob: lp[i].exp(),
                logprob: lp[i],
            })
            .collect(),
        entropy: ent,
    })
}

#[cfg(test)]
mod tests {
    use super::logprob_and_entropy;

    #[test]
    fn the_fused_row_pass_gives_known_log_probs_and_entropies() {
        // Uniform over 4: ln p = -ln 4, H = ln 4, whatever the offset.
        let (lp, h) = logprob_and_entropy(&[7.0; 4], 2);
        assert!((lp as f64 + 4f64.ln()).abs() < 1e-6 && (h as f64 - 4f64.ln()).abs() < 1e-6);
        // Two outcomes with p = (1/(1+e), e/(1+e)).
        let (lp, h) = logprob_and_entropy(&[0.0, 1.0], 0);
        let p1 = 1f64.exp() / (1.0 + 1f64.exp());
        let p0 = 1.0 - p1;
        assert!((lp as f64 - p0.ln()).abs() < 1e-6);
        assert!((h as f64 + p0 * p0.ln() + p1 * p1.ln()).abs() < 1e-6);
        // Nearly certain: H near 0 and never negative.
        let (lp, h) = logprob_and_entropy(&[50.0, 0.0, 0.0], 0);
        assert!(lp.abs() < 1e-6 && (0.0..1e-18).contains(&h.max(0.0)) && h >= 0.0);
    }
}
