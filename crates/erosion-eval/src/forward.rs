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
    let vocab = model.config().vocab_size;
    if let Some(&bad) = ids.iter().find(|&&t| t as usize >= vocab) {
        bail!("token id {bad} is outside the vocabulary (vocab_size {vocab})");
    }
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
            out.push(ids.iter().map(|&t| lp[t as usize]).collect());
        }
    }
    Ok(out)
}

/// Rows of a padded batch that fit in [`MAX_LOGITS`] for prompts of `len` tokens.
pub(crate) fn rows_for(len: usize, vocab: usize, batch_size: usize) -> usize {
    (MAX_LOGITS / (len.max(1) * vocab.max(1))).clamp(1, batch_size.max(1))
}
