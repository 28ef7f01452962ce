//! Tasks `train-lora` and `train-full`: [`STEPS`] optimizer steps of [`BATCH`] examples each
//! (the first `STEPS * BATCH` inputs, in order), loss on the response tokens, AdamW at a
//! constant learning rate, the gradient's global norm clipped to 1: LoRA (rank 8, alpha 16 on
//! q, k, v and o) or every weight. The peer runs the same steps with PyTorch + peft, starting
//! from erosion's LoRA initialisation (B = 0, A as drawn here), so the losses of every step
//! must agree.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use erosion_model::transformer::LoraConfig;
use erosion_train::adamw::AdamWConfig;
use erosion_train::{LossOn, Method, TrainExample, TrainOptions, Trainer};

use super::{load, result, Inputs};
use crate::measure::TaskResult;

/// Optimizer steps per timed run.
pub const STEPS: usize = 3;
/// Examples per step (one micro-batch, right-padded).
pub const BATCH: usize = 2;
/// The learning rate, constant (no warm-up, no decay).
pub const LR: f64 = 1e-4;

/// What both sides train with; `lora` picks the method.
pub fn options(lora: bool) -> TrainOptions {
    TrainOptions {
        steps: STEPS,
        batch_size: BATCH,
        grad_accum: 1,
        lr: LR,
        warmup_steps: 0,
        min_lr_ratio: 1.0,
        adamw: AdamWConfig::default(),
        max_grad_norm: Some(1.0),
        max_seq_len: 1 << 16,
        loss_on: LossOn::Response,
        method: if lora {
            Method::Lora(LoraConfig::default())
        } else {
            Method::Full
        },
        threads: 1,
        seed: 0,
        save_every: None,
        protect: None,
    }
}

/// The task's examples: the first `STEPS * BATCH` inputs, loss on their responses.
fn examples(inputs: &Inputs) -> Result<Vec<TrainExample>> {
    let n = STEPS * BATCH;
    if inputs.examples.len() < n {
        bail!(
            "training needs {n} examples, the inputs have {}",
            inputs.examples.len()
        );
    }
    inputs.examples[..n]
        .iter()
        .map(|e| Ok(TrainExample::response(e.sequence()?)))
        .collect()
}

/// One untimed run, then `reps` timed ones, each from a freshly loaded model (loading is not
/// timed). Writes `values_out` (`{"losses": [per step], "targets": [[start, end] per example],
/// "adapters": file or null, "options": ...}`) and, for LoRA, the adapters' initial A
/// matrices (`<module>.lora_A.weight`, Hugging Face's `[r, in]`) beside it, for the peer.
pub fn train(inputs: &Inputs, reps: usize, lora: bool, values_out: &Path) -> Result<TaskResult> {
    let data = examples(inputs)?;
    let opts = options(lora);
    let mut runs = Vec::with_capacity(reps);
    let mut losses = Vec::new();
    let mut adapters = None;
    for rep in 0..=reps.max(1) {
        let mut trainer = Trainer::new(load(&inputs.model)?, opts.clone())?;
        if rep == 0 && lora {
            adapters = Some(save_lora_a(&trainer, values_out)?);
        }
        let start = Instant::now();
        losses = data
            .chunks(BATCH)
            .map(|step| Ok(trainer.train_step(&step.iter().collect::<Vec<_>>())?.loss))
            .collect::<Result<Vec<f64>>>()?;
        if rep > 0 {
            runs.push(start.elapsed().as_secs_f64());
        }
    }
    let targets = data
        .iter()
        .map(|e| {
            let first = e.target.iter().position(|&t| t).context("no target")?;
            let end = e.target.iter().rposition(|&t| t).context("no target")? + 1;
            if e.target[first..end].iter().any(|&t| !t) {
                bail!("the targets of an example are not one span");
            }
            Ok([first, end])
        })
        .collect::<Result<Vec<_>>>()?;
    let values = serde_json::json!({
        "losses": losses,
        "targets": targets,
        "adapters": adapters,
        "steps": STEPS,
        "batch": BATCH,
        "options": opts,
    });
    erosion_model::atomic::write_bytes_atomic(
        values_out,
        serde_json::to_string(&values)?.as_bytes(),
    )?;
    let name = if lora { "train-lora" } else { "train-full" };
    result(name, runs, data.iter().map(|e| e.ids.len()).sum())
}

/// Saves every adapter's initial A as `<values_out>.lora-a.safetensors`; returns the file name.
fn save_lora_a(trainer: &Trainer, values_out: &Path) -> Result<String> {
    let tensors: HashMap<String, candle_core::Tensor> = trainer
        .lora()
        .iter()
        .map(|l| {
            (
                format!("{}.lora_A.weight", l.module),
                l.a.as_tensor().clone(),
            )
        })
        .collect();
    let path = values_out.with_extension("lora-a.safetensors");
    candle_core::safetensors::save(&tensors, &path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path
        .file_name()
        .context("values file has no name")?
        .to_string_lossy()
        .into_owned())
}
