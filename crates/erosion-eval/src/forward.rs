//! Next-token log-probabilities after many prompts, by batched forward passes (no sampling).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use erosion_model::hooks::{Hooks, Steering};
use erosion_model::transformer::{ForwardOptions, Transformer};

/// Upper bound on the logits one batched pass may hold (f32 values), so a real model's large
/// vocabulary does not exhaust memory.
const MAX_LOGITS: usize = 1 << 26;

/// Fast forward options running `hooks` (built from a [`Steering`]); none when it is empty,
/// so an unsteered model does no hook work at all.
pub(crate) fn steered(hooks: &mut Hooks) -> ForwardOptions<'_> {
    if hooks.is_empty() {
        ForwardOptions::fast()
    } else {
        ForwardOptions::fast().hooks(hooks)
    }
}

/// log p(t | prompt) for each prompt and each token id in `ids`: out[i][j] = log_softmax(z_i)[ids[j]],
/// where z_i `[vocab]` are the logits after the last token of `prompts[i]`, with `steering`
/// applied at every position.
///
/// Prompts are right-padded into batches of at most `batch_size` and run without a mask: with
/// causal attention a real token never attends to the pads after it, so each row's last real
/// position is exactly its unpadded value. Only those positions are unembedded.
pub fn next_token_logprobs(
    model: &Transformer,
    prompts: &[Vec<u32>],
    ids: &[u32],
    batch_size: usize,
    steering: &Steering,
) -> Result<Vec<Vec<f64>>> {
    check_ids(model, ids)?;
    next_token_rows(model, prompts, batch_size, steering, |lp| {
        ids.iter().map(|&t| lp[t as usize]).collect()
    })
}

/// [`next_token_logprobs`], each with whether the id is among the `k` most probable next
/// tokens, ranked as an endpoint ranks its `top_logprobs` ([`in_top_k`]).
pub fn next_token_logprobs_ranked(
    model: &Transformer,
    prompts: &[Vec<u32>],
    ids: &[u32],
    batch_size: usize,
    steering: &Steering,
    k: usize,
) -> Result<Vec<Vec<(f64, bool)>>> {
    check_ids(model, ids)?;
    next_token_rows(model, prompts, batch_size, steering, |lp| {
        ids.iter()
            .map(|&t| (lp[t as usize], in_top_k(lp, t as usize, k)))
            .collect()
    })
}

/// Whether token `t` is among the `k` most probable of `lp`: fewer than `k` tokens are more
/// probable or as probable with a lower id (`erosion serve` breaks ties so).
pub fn in_top_k(lp: &[f64], t: usize, k: usize) -> bool {
    let x = lp[t];
    let ahead = lp
        .iter()
        .enumerate()
        .filter(|&(u, &y)| y > x || (y == x && u < t))
        .count();
    ahead < k
}

fn check_ids(model: &Transformer, ids: &[u32]) -> Result<()> {
    let vocab = model.config().vocab_size;
    if let Some(&bad) = ids.iter().find(|&&t| t as usize >= vocab) {
        bail!("token id {bad} is outside the vocabulary (vocab_size {vocab})");
    }
    Ok(())
}

/// `pick(log_softmax(z_i))` for each prompt i (see [`next_token_logprobs`]).
fn next_token_rows<R>(
    model: &Transformer,
    prompts: &[Vec<u32>],
    batch_size: usize,
    steering: &Steering,
    pick: impl Fn(&[f64]) -> R,
) -> Result<Vec<R>> {
    let mut out = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(batch_size.max(1)) {
        let len = chunk.iter().map(Vec::len).max().unwrap_or(0);
        if chunk.iter().any(Vec::is_empty) {
            bail!("cannot score the next token after an empty prompt");
        }
        let mut flat = Vec::with_capacity(chunk.len() * len);
        for p in chunk {
            flat.extend_from_slice(p);
            flat.extend(std::iter::repeat_n(0u32, len - p.len()));
        }
        let device = model.device();
        let input = Tensor::from_vec(flat, (chunk.len(), len), device)?;
        let mut hooks = steering.hooks(model.n_layers())?;
        let mut fopts = steered(&mut hooks);
        // [b, len, d_model]
        let hidden = model.final_hidden(&input, None, &mut fopts)?;
        // Row b's last real position, as an index into the flattened [b * len] rows.
        let last: Vec<u32> = chunk
            .iter()
            .enumerate()
            .map(|(b, p)| (b * len + p.len() - 1) as u32)
            .collect();
        let d = hidden.dim(2)?;
        let picked = hidden
            .reshape((chunk.len() * len, d))?
            .index_select(&Tensor::new(last.as_slice(), device)?, 0)?; // [b, d_model]
        let logits = model
            .unembed(&picked, &mut fopts)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()
            .context("reading the next-token logits")?; // [b, vocab]
        for row in logits {
            let lp = erosion_analysis::behaviour::log_softmax(&row)?;
            out.push(pick(&lp));
        }
    }
    Ok(out)
}

/// Rows of a padded batch that fit in [`MAX_LOGITS`] for prompts of `len` tokens.
pub(crate) fn rows_for(len: usize, vocab: usize, batch_size: usize) -> usize {
    (MAX_LOGITS / (len.max(1) * vocab.max(1))).clamp(1, batch_size.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_counts_ties_to_the_lower_id() {
        let lp = [-1.0, -2.0, -1.0, -3.0, -0.5];
        // Order: 4, 0, 2 (tie with 0, higher id), 1, 3.
        let top2: Vec<usize> = (0..5).filter(|&t| in_top_k(&lp, t, 2)).collect();
        assert_eq!(top2, [0, 4]);
        let top3: Vec<usize> = (0..5).filter(|&t| in_top_k(&lp, t, 3)).collect();
        assert_eq!(top3, [0, 2, 4]);
        assert!(!in_top_k(&lp, 4, 0));
    }
}
