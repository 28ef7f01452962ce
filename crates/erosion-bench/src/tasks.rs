//! The erosion side of each task, and the shared inputs file.
//!
//! `inputs.json` holds the rendered examples (token ids and response span) that both sides
//! run; the peer re-renders the messages with `tokenizer.apply_chat_template` to check that it
//! gets the same ids, then runs erosion's ids so both sides do identical work.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use erosion_data::{render_example, DatasetSpec, Format, Message, RenderOptions};
use erosion_forward::batch::{plan_batches, Batch, BatchOptions, NoProgress};
use erosion_forward::logprobs::response_logprobs;
use erosion_forward::sequence::Sequence;
use erosion_model::hooks::{HookPoint, Positions};
use erosion_model::load::Checkpoint;
use erosion_model::transformer::{ForwardOptions, Transformer};
use serde::{Deserialize, Serialize};

use crate::measure::{best_of, min, peak_rss_mb, TaskResult};

/// One rendered example.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    pub messages: Vec<Message>,
    pub ids: Vec<u32>,
    /// `ids[response]` are the response tokens.
    pub response: Range<usize>,
}

impl Input {
    /// Tokens run for the log-prob task: the last response token is only predicted, never
    /// fed, so `ids[..response.end - 1]`.
    pub fn logprob_len(&self) -> usize {
        self.response.end - 1
    }
}

/// What both sides run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inputs {
    /// The Hugging Face folder both sides load.
    pub model: PathBuf,
    pub data: PathBuf,
    /// Padded tokens per batch (`batch * longest <= max_tokens`), the same plan on both sides.
    pub max_tokens: usize,
    pub examples: Vec<Input>,
}

impl Inputs {
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Converts a checkpoint (the GGUF) to an f32 Hugging Face folder, unless `out/config.json`
/// already exists.
pub fn convert(src: &Path, out: &Path) -> Result<()> {
    if out.join("config.json").exists() {
        println!("{} already converted", out.display());
        return Ok(());
    }
    let spec = src.to_str().context("model path is not UTF-8")?;
    let ckpt = Checkpoint::open(spec).with_context(|| format!("opening {spec}"))?;
    let files = ckpt
        .save_hf(out, DType::F32, &Default::default())
        .with_context(|| format!("saving {} as a Hugging Face folder", out.display()))?;
    println!(
        "converted {spec} -> {} ({} files)",
        out.display(),
        files.len()
    );
    Ok(())
}

/// Renders the first `n` examples of the messages-format `data` with the checkpoint's chat
/// template and writes `inputs.json`.
pub fn prepare(model: &Path, data: &Path, n: usize, max_tokens: usize, out: &Path) -> Result<()> {
    let ckpt = open(model)?;
    let mut spec = DatasetSpec::new("bench", data, Format::Messages);
    spec.limit = Some(n);
    let ds = spec.load(Path::new("."))?;
    if ds.examples.len() < n {
        bail!(
            "{} has {} examples, fewer than the {n} asked for",
            data.display(),
            ds.examples.len()
        );
    }
    let mut examples = Vec::with_capacity(n);
    for ex in &ds.examples {
        let r = render_example(&ckpt.tokenizer, ex, &RenderOptions::default())?;
        if r.response.start == 0 || r.response.is_empty() {
            bail!("{}: empty response or no prompt", ex.source);
        }
        examples.push(Input {
            messages: ex.messages.clone(),
            ids: r.ids,
            response: r.response,
        });
    }
    let inputs = Inputs {
        model: model.to_path_buf(),
        data: data.to_path_buf(),
        max_tokens,
        examples,
    };
    std::fs::write(out, serde_json::to_string(&inputs)?)
        .with_context(|| format!("writing {}", out.display()))
}

fn open(model: &Path) -> Result<Checkpoint> {
    let spec = model.to_str().context("model path is not UTF-8")?;
    Checkpoint::open(spec).with_context(|| format!("opening {spec}"))
}

fn load(model: &Path) -> Result<Transformer> {
    open(model)?.load_model(DType::F32, &Device::Cpu)
}

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

/// Task (b): per-token log-probabilities of every response; also writes them (one list per
/// example, input order) to `logprobs_out` for the peer to compare against.
pub fn logprobs(inputs: &Inputs, reps: usize, logprobs_out: &Path) -> Result<TaskResult> {
    let model = load(&inputs.model)?;
    let seqs = inputs
        .examples
        .iter()
        .map(|e| Sequence::new(e.ids.clone(), e.response.clone()))
        .collect::<Result<Vec<_>>>()?;
    let opts = batch_options(inputs);
    let (runs, out) = best_of(reps, || {
        response_logprobs(&model, &seqs, &opts, &mut NoProgress)
    })?;
    let lps: Vec<&Vec<f32>> = out.iter().map(|r| &r.logprobs).collect();
    std::fs::write(logprobs_out, serde_json::to_string(&lps)?)
        .with_context(|| format!("writing {}", logprobs_out.display()))?;
    let tokens = inputs.examples.iter().map(Input::logprob_len).sum();
    result("logprobs", runs, tokens)
}

fn batch_options(inputs: &Inputs) -> BatchOptions {
    BatchOptions {
        max_tokens: inputs.max_tokens,
        max_batch: 64,
    }
}

fn result(task: &str, runs: Vec<f64>, tokens: usize) -> Result<TaskResult> {
    Ok(TaskResult {
        side: "erosion".into(),
        task: task.into(),
        wall_s: min(&runs),
        runs_s: runs,
        tokens,
        peak_rss_mb: peak_rss_mb()?,
        extra: Default::default(),
    })
}
