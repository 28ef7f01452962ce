//! Checkpoints: a standard Hugging Face folder (adapters merged) that erosion and transformers
//! load, plus `training_state/` to resume from:
//!
//! ```text
//! <dir>/config.json, model.safetensors, tokenizer.json, tokenizer_config.json, generation_config.json
//! <dir>/adapter/adapter_config.json, adapter_model.safetensors      LoRA only (PEFT's layout)
//! <dir>/training_state/optimizer.safetensors                        AdamW moments
//! <dir>/training_state/trainer_state.json                           step, options, data, history
//! ```
//! `trainer_state.json` is written last: a folder without it is an interrupted save and is
//! ignored when resuming.

use crate::examples::TrainExample;
use crate::options::{Method, TrainOptions};
use crate::trainer::{StepStats, Trainer};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use erosion_model::atomic::write_bytes_atomic;
use erosion_model::load::{save_hf_folder, write_safetensors, GenerationConfig, SaveOptions};
use erosion_model::tokenizer::ModelTokenizer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const STATE_DIR: &str = "training_state";
pub const STATE_FILE: &str = "trainer_state.json";
pub const ADAPTER_DIR: &str = "adapter";
/// What PEFT puts before a module's path in adapter_model.safetensors.
const PEFT_PREFIX: &str = "base_model.model.";

/// What a checkpoint records about the run that made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: usize,
    pub options: TrainOptions,
    /// Where training started: a checkpoint (LoRA resumes by re-attaching adapters to it) or
    /// `fresh:<seed>` for a model initialised from scratch.
    pub start: String,
    /// sha256 over every example's ids and loss flags, in order: resuming on other data fails.
    pub data_fingerprint: String,
    pub n_examples: usize,
    pub history: Vec<StepStats>,
    pub erosion_version: String,
}

/// sha256 of the training data as the trainer sees it.
pub fn data_fingerprint(data: &[TrainExample]) -> String {
    let mut h = Sha256::new();
    for ex in data {
        h.update((ex.ids.len() as u64).to_le_bytes());
        for (&id, &t) in ex.ids.iter().zip(&ex.target) {
            h.update(id.to_le_bytes());
            h.update([t as u8]);
        }
    }
    format!("{:x}", h.finalize())
}

/// Files a checkpoint's model folder carries besides the weights.
pub struct FolderFiles<'a> {
    pub tokenizer: &'a ModelTokenizer,
    pub generation: Option<&'a GenerationConfig>,
}

/// Writes the merged model and the state to resume from into `dir`.
pub fn save(trainer: &Trainer, dir: &Path, files: &FolderFiles, state: &TrainState) -> Result<()> {
    let merged = trainer.merged()?;
    let tensors: HashMap<String, Tensor> = merged
        .parameter_names()
        .into_iter()
        .map(|n| Ok((n.clone(), merged.parameter(&n)?.clone())))
        .collect::<Result<_>>()?;
    let opts = SaveOptions::default();
    save_hf_folder(
        dir,
        merged.config(),
        &tensors,
        files.tokenizer,
        files.generation,
        &opts,
    )?;
    if let Method::Lora(cfg) = &trainer.options().method {
        let adapter = dir.join(ADAPTER_DIR);
        std::fs::create_dir_all(&adapter)?;
        // PEFT's names: the module path under its wrapper's `base_model.model.`.
        let params: Vec<(String, Tensor)> = trainer
            .params()
            .iter()
            .map(|(n, v)| Ok((format!("{PEFT_PREFIX}{n}"), v.value()?)))
            .collect::<Result<_>>()?;
        write_safetensors(
            &adapter.join("adapter_model.safetensors"),
            params.iter().map(|(n, t)| (n.as_str(), t)),
        )?;
        let config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model(&state.start),
            "r": cfg.rank,
            "lora_alpha": cfg.alpha,
            "lora_dropout": 0.0,
            "target_modules": cfg.targets,
            "bias": "none",
        });
        write_bytes_atomic(
            &adapter.join("adapter_config.json"),
            serde_json::to_string_pretty(&config)?.as_bytes(),
        )?;
    }
    let state_dir = dir.join(STATE_DIR);
    std::fs::create_dir_all(&state_dir)?;
    let moments = trainer.optimizer().state()?;
    write_safetensors(
        &state_dir.join("optimizer.safetensors"),
        moments.iter().map(|(k, v)| (k.as_str(), v)),
    )?;
    write_bytes_atomic(
        &state_dir.join(STATE_FILE),
        serde_json::to_string_pretty(state)?.as_bytes(),
    )
}

/// The model a LoRA run's adapter goes on, as PEFT's `base_model_name_or_path`: the start's
/// path without the trainer-state digest `#0123456789abcdef` that `Start::describe` adds;
/// `None` for a fresh model, which no checkpoint holds.
fn base_model(start: &str) -> Option<&str> {
    if start.starts_with("fresh:") {
        return None;
    }
    match start.rsplit_once('#') {
        Some((path, digest))
            if digest.len() == 16 && digest.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Some(path)
        }
        _ => Some(start),
    }
}

/// The state saved in checkpoint `dir`, if the save completed.
pub fn read_state(dir: &Path) -> Result<Option<TrainState>> {
    let path = dir.join(STATE_DIR).join(STATE_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let state = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a trainer state", path.display()))?;
    Ok(Some(state))
}

/// sha256 of the trainer state saved in `dir`, or `None` for a model that erosion did not train.
pub fn state_digest(dir: &Path) -> Result<Option<String>> {
    let path = dir.join(STATE_DIR).join(STATE_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(format!("{:x}", Sha256::digest(&bytes))))
}

/// `<out>/checkpoint-<step>` folders whose save completed, latest last.
pub fn checkpoints(out: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(found);
    };
    for entry in entries {
        let path = entry?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("checkpoint-"))
            .and_then(|s| s.parse::<usize>().ok());
        if let Some(step) = step {
            if path.join(STATE_DIR).join(STATE_FILE).is_file() {
                found.push((step, path));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Puts a saved run's trained values back into `trainer` (built from the same start and
/// options): the LoRA adapters from `dir/adapter` (full fine-tuning restores its weights by
/// loading `dir` as the model), and the optimizer's moments.
pub fn restore(
    trainer: &mut Trainer,
    dir: &Path,
    state: &TrainState,
    device: &Device,
) -> Result<()> {
    if matches!(trainer.options().method, Method::Lora(_)) {
        let path = dir.join(ADAPTER_DIR).join("adapter_model.safetensors");
        let saved = candle_core::safetensors::load(&path, device)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for (name, var) in trainer.params() {
            // Adapters saved before erosion wrote PEFT's names lack the prefix.
            let t = saved
                .get(&format!("{PEFT_PREFIX}{name}"))
                .or_else(|| saved.get(name))
                .with_context(|| format!("{} has no `{PEFT_PREFIX}{name}`", path.display()))?;
            let now = var.value()?;
            if t.dims() != now.dims() {
                bail!(
                    "{}: `{name}` is {:?}, expected {:?}",
                    path.display(),
                    t.dims(),
                    now.dims()
                );
            }
            var.set(&t.to_dtype(now.dtype())?)?;
        }
    }
    let path = dir.join(STATE_DIR).join("optimizer.safetensors");
    let moments = candle_core::safetensors::load(&path, device)
        .with_context(|| format!("cannot read {}", path.display()))?;
    trainer
        .optimizer_mut()
        .load_state(&moments, state.step)
        .with_context(|| format!("restoring {}", path.display()))
}
