//! The erosion side of each task, and the shared inputs file.
//!
//! `inputs.json` holds the rendered examples (token ids and response span) that both sides
//! run; the peer re-renders the messages with `tokenizer.apply_chat_template` to check that it
//! gets the same ids, then runs erosion's ids so both sides do identical work.
//!
//! - [`forward`]: `matmul`, `forward` (a), `logprobs` (b);
//! - [`gradients`]: `gradients` (c), per-example gradients at the last layer's `o_proj`;
//! - [`layers`]: `layers` (d), the layer-wise alignment direction, and the perturbed "base"
//!   model it needs;
//! - [`generate`]: `generate-b1` and `generate-b16`, greedy decoding;
//! - [`train`]: `train-lora` and `train-full`, optimizer steps.

pub mod forward;
pub mod generate;
pub mod gradients;
pub mod layers;
pub mod train;

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use erosion_data::Sequence;
use erosion_data::{render_example, DatasetSpec, Format, Message, RenderOptions};
use erosion_forward::batch::BatchOptions;
use erosion_model::load::Checkpoint;
use erosion_model::transformer::Transformer;
use serde::{Deserialize, Serialize};

use crate::alloc::peak_rss_mb;
use crate::measure::{min, TaskResult};

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

    pub fn sequence(&self) -> Result<Sequence> {
        Sequence::new(self.ids.clone(), self.response.clone())
    }
}

/// What both sides run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inputs {
    /// The Hugging Face folder both sides load (the "instruct" model of task (d)).
    pub model: PathBuf,
    pub data: PathBuf,
    /// Padded tokens per batch (`batch * longest <= max_tokens`), the same plan on both sides.
    pub max_tokens: usize,
    /// Task (d) only: the "base" model folder (see [`layers::perturb`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<PathBuf>,
    /// Task (d) only: the response window T; every example has at least T response tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
    pub examples: Vec<Input>,
}

impl Inputs {
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn sequences(&self) -> Result<Vec<Sequence>> {
        self.examples.iter().map(Input::sequence).collect()
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

/// What `prepare` selects and records.
pub struct PrepareOptions {
    pub n: usize,
    pub max_tokens: usize,
    /// Task (d): the base model folder to record in the inputs.
    pub base: Option<PathBuf>,
    /// Task (d): keep only examples with at least this many response tokens (the window T),
    /// so no short-response policy is needed on either side.
    pub window: Option<usize>,
}

/// Renders the first `n` examples of the messages-format `data` (with `window`: the first
/// `n` whose response has at least `window` tokens) with the checkpoint's chat template and
/// writes the inputs file.
pub fn prepare(model: &Path, data: &Path, opts: &PrepareOptions, out: &Path) -> Result<()> {
    let ckpt = open(model)?;
    let mut spec = DatasetSpec::new("bench", data, Format::Messages);
    // Without a window every example is kept, so only the first n need reading.
    spec.limit = opts.window.is_none().then_some(opts.n);
    let ds = spec.load(Path::new("."))?;
    let mut examples = Vec::with_capacity(opts.n);
    for ex in &ds.examples {
        if examples.len() == opts.n {
            break;
        }
        let r = render_example(&ckpt.tokenizer, ex, &RenderOptions::default())?;
        if r.seq.response.start == 0 || r.seq.response.is_empty() {
            bail!("{}: empty response or no prompt", ex.source);
        }
        if opts.window.is_some_and(|t| r.seq.response.len() < t) {
            continue;
        }
        examples.push(Input {
            messages: ex.messages.clone(),
            ids: r.seq.ids,
            response: r.seq.response,
        });
    }
    if examples.len() < opts.n {
        bail!(
            "{} has {} usable examples (response of at least {} tokens), fewer than the {} asked for",
            data.display(),
            examples.len(),
            opts.window.unwrap_or(1),
            opts.n
        );
    }
    let inputs = Inputs {
        model: model.to_path_buf(),
        data: data.to_path_buf(),
        max_tokens: opts.max_tokens,
        base: opts.base.clone(),
        window: opts.window,
        examples,
    };
    erosion_model::atomic::write_bytes_atomic(out, serde_json::to_string(&inputs)?.as_bytes())
}

fn open(model: &Path) -> Result<Checkpoint> {
    let spec = model.to_str().context("model path is not UTF-8")?;
    Checkpoint::open(spec).with_context(|| format!("opening {spec}"))
}

fn load(model: &Path) -> Result<Transformer> {
    open(model)?.load_model(DType::F32, &Device::Cpu)
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
