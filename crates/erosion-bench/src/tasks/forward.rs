//! Tasks `matmul` (the ceiling), `forward` (a) and `logprobs` (b).

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use erosion_forward::batch::{plan_batches, Batch, NoProgress};
use erosion_forward::logprobs::response_logprobs;
use erosion_model::hooks::{HookPoint, Positions};
use erosion_model::transformer::ForwardOptions;

use super::{batch_options, load, result, Input, Inputs};
use crate::measure::{best_of, min, TaskResult};

/// 1024 x 1024 x 1024 f32 matrix product: the ceiling the model tasks are measured against.
pub fn matmul(reps: usize) -> Result<TaskResult> {
    const N: usize = 1024;
    let a = Tensor::randn(0f32, 1.0, (N, N), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1.0, (N, N), &Device::Cpu)?;
    // Several products per timed run, so one run lasts long enough to time.
    const INNER: usize = 10;
    let (runs, _) = best_of(reps, || {
        let mut c = a.matmul(&b)?;
        for _ in 1..INNER {
            c = a.matmul(&b)?;
        }
        Ok(c)
    })?;
    let wall = min(&runs);
    let gflops = 2.0 * (N * N * N * INNER) as f64 / wall / 1e9;
    let mut r = result("matmul", runs, 0)?;
    r.extra.insert("gflops".into(), gflops.into());
    Ok(r)
}

/// Task (a): a forward pass over the examples, recording every Hugging Face hidden state
/// (`hidden_states[0..=L]`, `[batch, seq, d_model]` each) of every batch.
pub fn forward(inputs: &Inputs, reps: usize) -> Result<TaskResult> {
    let model = load(&inputs.model)?;
    let n_layers = model.n_layers();
    let lens: Vec<usize> = inputs.examples.iter().map(|e| e.ids.len()).collect();
    let plan = plan_batches(&lens, &batch_options(inputs))?;
    let (runs, kept) = best_of(reps, || {
        let mut kept = 0usize;
        for examples in &plan {
            let rows: Vec<&[u32]> = examples
                .iter()
                .map(|&i| inputs.examples[i].ids.as_slice())
                .collect();
            let b = Batch::new(examples.clone(), &rows, model.device())?;
            let mut hooks = model.hooks();
            for i in 0..=n_layers {
                hooks.record(HookPoint::hf_hidden_state(i, n_layers)?, Positions::All)?;
            }
            model.final_hidden(
                &b.ids,
                b.mask_if_padded(),
                &mut ForwardOptions::fast().hooks(&mut hooks),
            )?;
            // The peer holds its batch's hidden states too; count them so neither is dead work.
            kept += hooks.take_cache().len();
        }
        Ok(kept)
    })?;
    if kept != plan.len() * (n_layers + 1) {
        bail!(
            "recorded {kept} hidden states, expected {}",
            plan.len() * (n_layers + 1)
        );
    }
    result("forward", runs, lens.iter().sum())
}

/// Task (b): per-token log-probabilities of every response and the entropy of each next-token
/// distribution (the dataset-level table needs both); also writes them (`{"logprobs": [...],
/// "entropy": [...]}`, one list per example, input order) to `logprobs_out` for the peer to
/// compare against.
pub fn logprobs(inputs: &Inputs, reps: usize, logprobs_out: &Path) -> Result<TaskResult> {
    let model = load(&inputs.model)?;
    let seqs = inputs.sequences()?;
    let opts = batch_options(inputs);
    let (runs, out) = best_of(reps, || {
        response_logprobs(&model, &seqs, &opts, None, &mut NoProgress)
    })?;
    let values = serde_json::json!({
        "logprobs": out.iter().map(|r| &r.logprobs).collect::<Vec<_>>(),
        "entropy": out.iter().map(|r| &r.entropy).collect::<Vec<_>>(),
    });
    erosion_model::atomic::write_bytes_atomic(
        logprobs_out,
        serde_json::to_string(&values)?.as_bytes(),
    )?;
    let tokens = inputs.examples.iter().map(Input::logprob_len).sum();
    result("logprobs", runs, tokens)
}
