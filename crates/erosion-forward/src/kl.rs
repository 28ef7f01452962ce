//! The cost of an intervention: how far it moves the model's next-token distributions on
//! text it should leave alone.
//!
//! For each sequence, at every position that predicts a response token (rows
//! `response.start - 1 .. response.end - 1`), with p the model's distribution and q the
//! distribution with `hooks` active:
//!
//! ```text
//! KL(p || q) = sum_v p_v (ln p_v - ln q_v)        (nats; >= 0, 0 iff p = q)
//! ```
//!
//! averaged over the sequence's positions. Both passes run batch by batch, and only
//! `LOGIT_CHUNK_VALUES` logits exist at once.

use anyhow::{bail, Context, Result};
use candle_core::{Tensor, D};
use erosion_model::hooks::Hooks;
use erosion_model::transformer::{ForwardOptions, Transformer};

use crate::batch::{plan_batches, Batch, BatchOptions};
use crate::logprobs::{log_softmax_f32, LOGIT_CHUNK_VALUES};
use erosion_data::Sequence;

/// Mean per-token KL(p || q) of each sequence's response positions, in input order (see the
/// module docs); p without hooks, q with `hooks`. Hooks must not depend on the example
/// (batches are sorted by length): use `Positions::All` or `Positions::Same`.
pub fn response_kl(
    model: &Transformer,
    seqs: &[Sequence],
    batch: &BatchOptions,
    hooks: &mut Hooks,
) -> Result<Vec<f64>> {
    Sequence::check_all(seqs)?;
    for (i, s) in seqs.iter().enumerate() {
        if s.response.is_empty() || s.response.start == 0 {
            bail!("example {i}: the response must be non-empty and follow at least one token");
        }
    }
    let lens: Vec<usize> = seqs.iter().map(|s| s.response.end - 1).collect();
    let mut out = vec![f64::NAN; seqs.len()];
    for examples in plan_batches(&lens, batch)? {
        let rows: Vec<&[u32]> = examples.iter().map(|&i| &seqs[i].ids[..lens[i]]).collect();
        let b = Batch::new(examples, &rows, model.device())?;
        let what = || format!("forward pass over examples {:?}", b.examples);
        let p = model
            .final_hidden(&b.ids, b.mask_if_padded(), &mut ForwardOptions::fast())
            .with_context(what)?; // [b, s, d]
        let q = model
            .final_hidden(
                &b.ids,
                b.mask_if_padded(),
                &mut ForwardOptions::fast().hooks(hooks),
            )
            .with_context(what)?; // [b, s, d]
        let s = b.seq_len();
        let mut flat_rows = Vec::new();
        for (k, &i) in b.examples.iter().enumerate() {
            let r = &seqs[i].response;
            flat_rows.extend((r.start - 1..r.end - 1).map(|pos| (k * s + pos) as u32));
        }
        let kl = kl_at_rows(model, &p, &q, &flat_rows)?;
        let mut at = 0;
        for &i in &b.examples {
            let n = seqs[i].response.len();
            out[i] = kl[at..at + n].iter().map(|&x| x as f64).sum::<f64>() / n as f64;
            at += n;
        }
    }
    Ok(out)
}

/// KL(p || q) `[n_rows]` at the flattened rows of final hidden states `p`, `q` `[b, s, d]`.
fn kl_at_rows(model: &Transformer, p: &Tensor, q: &Tensor, rows: &[u32]) -> Result<Vec<f32>> {
    let d = p.dim(D::Minus1)?;
    let (p, q) = (p.reshape(((), d))?, q.reshape(((), d))?);
    let chunk = (LOGIT_CHUNK_VALUES / model.config().vocab_size.max(1)).max(1);
    let mut out = Vec::with_capacity(rows.len());
    for rows in rows.chunks(chunk) {
        let idx = Tensor::from_slice(rows, rows.len(), p.device())?;
        let lp = log_softmax_f32(model, &p.index_select(&idx, 0)?)?; // [n, vocab]
        let lq = log_softmax_f32(model, &q.index_select(&idx, 0)?)?; // [n, vocab]
        let kl = (lp.exp()? * (lp - lq)?)?.sum(D::Minus1)?; // [n]
                                                            // Rounding can make an exact zero slightly negative.
        out.extend(kl.to_vec1::<f32>()?.into_iter().map(|x| x.max(0.0)));
    }
    Ok(out)
}
