//! Task `generate-b1` / `generate-b16`: greedy decoding of [`NEW_TOKENS`] tokens after the
//! examples' prompts, one prompt at a time (the first [`ONE_BY_ONE`] prompts) or sixteen
//! prompts in one batch. No stop token: every row decodes all its tokens on both sides, so
//! both do the same work.

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::Tensor;
use erosion_model::generate::left_padded;
use erosion_model::transformer::{ForwardOptions, Transformer};

use super::{load, result, Inputs};
use crate::measure::{best_of, TaskResult};

/// New tokens per prompt.
pub const NEW_TOKENS: usize = 32;
/// Prompts decoded at batch 1.
pub const ONE_BY_ONE: usize = 4;

/// The prompts (ids before the response) of the task at `batch` (1 or 16).
pub fn prompts(inputs: &Inputs, batch: usize) -> Result<Vec<Vec<u32>>> {
    let n = if batch == 1 { ONE_BY_ONE } else { batch };
    if inputs.examples.len() < n {
        bail!(
            "generation at batch {batch} needs {n} examples, the inputs have {}",
            inputs.examples.len()
        );
    }
    Ok(inputs.examples[..n]
        .iter()
        .map(|e| e.ids[..e.response.start].to_vec())
        .collect())
}

/// Decodes greedily at `batch` and writes the new tokens (`{"new_tokens": T, "ids": [[...]]}`,
/// one list per prompt) to `ids_out` for the peer to compare.
pub fn generate(inputs: &Inputs, reps: usize, batch: usize, ids_out: &Path) -> Result<TaskResult> {
    let model = load(&inputs.model)?;
    let prompts = prompts(inputs, batch)?;
    let (runs, ids) = best_of(reps, || {
        let mut ids = Vec::with_capacity(prompts.len());
        for group in prompts.chunks(batch) {
            ids.extend(greedy(&model, group)?);
        }
        Ok(ids)
    })?;
    let values = serde_json::json!({"new_tokens": NEW_TOKENS, "ids": ids});
    erosion_model::atomic::write_bytes_atomic(ids_out, serde_json::to_string(&values)?.as_bytes())?;
    result(
        &format!("generate-b{batch}"),
        runs,
        prompts.len() * NEW_TOKENS,
    )
}

/// [`NEW_TOKENS`] greedy tokens after each of `prompts`, decoded as one batch: the prompts
/// left-padded under a mask, then one token per row per step through one KV cache (what
/// `erosion eval` and `erosion serve` do, without their batch-size policies).
fn greedy(model: &Transformer, prompts: &[Vec<u32>]) -> Result<Vec<Vec<u32>>> {
    let (b, dev) = (prompts.len(), model.device());
    let mut cache = model.new_cache();
    let mut opts = ForwardOptions::fast();
    let (ids, mask) = left_padded(prompts, dev)?;
    let mut logits = model.prefill(&ids, Some(&mask), &mut cache, &mut opts)?; // [b, vocab]
    let mut out = vec![Vec::with_capacity(NEW_TOKENS); b];
    for step in 0..NEW_TOKENS {
        let next: Vec<u32> = logits
            .to_vec2::<f32>()?
            .iter()
            .map(|row| argmax(row))
            .collect();
        out.iter_mut().zip(&next).for_each(|(o, &t)| o.push(t));
        if step + 1 < NEW_TOKENS {
            let input = Tensor::from_vec(next, (b, 1), dev)?;
            logits = model
                .forward_cached(&input, None, &mut cache, &mut opts)?
                .squeeze(1)?;
        }
    }
    Ok(out)
}

/// The first index of the largest logit (torch's argmax and `generate`'s greedy rule).
fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}
