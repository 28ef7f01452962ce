//! Task `generate-b1` / `generate-b16`: greedy decoding of [`NEW_TOKENS`] tokens after the
//! examples' prompts, one prompt at a time (the first [`ONE_BY_ONE`] prompts) or sixteen
//! prompts in one batch. No stop token: every row decodes all its tokens on both sides, so
//! both do the same work.

use std::path::Path;

use anyhow::{bail, Result};
use erosion_eval::generation::generate_batch;
use erosion_model::generate::SamplingOptions;
use erosion_model::hooks::Steering;
use erosion_model::transformer::Transformer;

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

/// [`NEW_TOKENS`] greedy tokens after each of `prompts`, decoded as one batch by eval's
/// decoder (left-padded prompts, then one token per row per step through one KV cache), with
/// no stop token.
fn greedy(model: &Transformer, prompts: &[Vec<u32>]) -> Result<Vec<Vec<u32>>> {
    let opts = SamplingOptions {
        max_new_tokens: NEW_TOKENS,
        temperature: 0.0,
        ..Default::default()
    };
    let seeds = vec![0; prompts.len()]; // unused at temperature 0
    let out = generate_batch(model, &Steering::default(), prompts, &seeds, &[], &opts)?;
    Ok(out.into_iter().map(|g| g.tokens).collect())
}
