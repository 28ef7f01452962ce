//! The argument groups that commands share, each defined once and flattened into every command
//! that takes it (`#[command(flatten)]`), so a flag is spelled, documented and defaulted the
//! same way everywhere: the model (and the device and dtype it runs on), sampling, datasets
//! and the output folder.
//!
//! Conventions for every command, including those added later:
//! - a layer is a residual-stream point named as TransformerLens names its hook
//!   (`blocks.11.hook_resid_post`); a bare integer L means `blocks.L.hook_resid_post`, and
//!   `embed` the embeddings (see [`crate::layer`]);
//! - requests a model should refuse are *harmful* (`--harmful`), in flags, files and reports;
//! - a renamed flag keeps its old spelling as a hidden alias (`#[arg(alias = "old")]`) for one
//!   release, listed in CHANGELOG.md.

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use erosion_data::format::Unrecognised;
use erosion_data::{DatasetList, DatasetSpec, Format};
use erosion_forward::run_folder::{OtherRun, RunFolder, RunIdentity};
use erosion_model::generate::SamplingOptions;
use erosion_model::load::{Checkpoint, OpenOptions};
use std::path::{Path, PathBuf};

/// The checkpoint a command reads, without running it.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArg {
    /// A model folder, a .gguf file, a hub id in the local Hugging Face cache, or
    /// BASE+ADAPTER (a PEFT LoRA adapter folder or hub id on its base; an adapter alone means
    /// the base its adapter_config.json records).
    pub model: String,
}

/// The checkpoint a command runs, and where.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A model folder, a .gguf file, a hub id in the local Hugging Face cache, or
    /// BASE+ADAPTER (a PEFT LoRA adapter folder or hub id on its base; an adapter alone means
    /// the base its adapter_config.json records).
    pub model: String,
    /// Multiply the adapter's update by K (1 = as trained; Turner et al. scale adapters
    /// x1-x5). Only for a BASE+ADAPTER model.
    #[arg(long, value_name = "K", allow_hyphen_values = true)]
    pub adapter_scale: Option<f64>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl ModelArgs {
    /// How the model spec is opened: with `--adapter-scale`.
    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            adapter_scale: self.adapter_scale,
            ..OpenOptions::default()
        }
    }

    /// The checkpoint named, its adapter (if any) scaled by `--adapter-scale`.
    pub fn open(&self) -> Result<Checkpoint> {
        Checkpoint::open_with(&self.model, &self.open_options())
    }
}

/// The device and dtype a command's models run with.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// cpu, cuda[:N] or metal (cuda/metal need the matching cargo feature)
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32 or bf16
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

impl DeviceArgs {
    /// The `--device` named.
    pub fn device(&self) -> Result<Device> {
        erosion_model::device::parse_device(&self.device)
    }

    /// The `--dtype` named.
    pub fn dtype(&self) -> Result<DType> {
        erosion_model::device::parse_dtype(&self.dtype)
    }
}

/// How answers are sampled. A command with another default length sets it with
/// `#[command(mut_arg("max_new_tokens", |a| a.default_value("N")))]` (clap keeps one default per
/// field, so a generic parameter cannot carry it).
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Most tokens generated per answer.
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// 0 = greedy, the default (`eval --questions` samples at 1 unless told, as its protocol
    /// does).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Keep only the k most probable tokens (0 = all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = all).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Seed of the sampling (and of the bootstrap intervals, where a command has them).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    /// The model crate's sampling options.
    pub fn options(&self) -> SamplingOptions {
        SamplingOptions {
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature.unwrap_or(0.0),
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
        }
    }
}

/// The datasets a command reads: a spec file or one data file.
#[derive(clap::Args, Debug, Clone)]
pub struct DatasetArgs {
    /// A dataset file (.jsonl, .json, .csv) or a dataset spec (.toml).
    pub dataset: String,
    /// messages, alpaca, prompt-completion, json-fields or csv (default: guessed from the file).
    #[arg(long)]
    pub format: Option<String>,
    /// Only the first N examples of each dataset.
    #[arg(long)]
    pub limit: Option<usize>,
}

impl DatasetArgs {
    /// The specs (with `--limit` applied) and the folder their paths are relative to.
    pub fn specs(&self) -> Result<(Vec<DatasetSpec>, PathBuf)> {
        let (mut specs, base) = dataset_specs(&self.dataset, self.format.as_deref())?;
        if self.limit.is_some() {
            for spec in &mut specs {
                spec.limit = self.limit;
            }
        }
        Ok((specs, base))
    }
}

/// A spec file (`.toml`, relative paths relative to it) or one data file in `format` (guessed
/// when `None`).
fn dataset_specs(dataset: &str, format: Option<&str>) -> Result<(Vec<DatasetSpec>, PathBuf)> {
    let path = Path::new(dataset);
    if path.extension().is_some_and(|e| e == "toml") {
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        return Ok((DatasetList::from_file(path)?.datasets, base));
    }
    let format = match format {
        Some(name) => serde_json::from_value::<Format>(serde_json::Value::String(name.to_string()))
            .with_context(|| format!("unknown --format `{name}` (messages, alpaca, prompt-completion, json-fields, csv)"))?,
        // --format cures a file whose first record says nothing, not one that cannot be read.
        None => Format::guess(path).map_err(|e| match e.is::<Unrecognised>() {
            true => e.context("pass --format (messages, alpaca, prompt-completion, json-fields, csv)"),
            false => e,
        })?,
    };
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((
        vec![DatasetSpec::new(&name, path, format)],
        PathBuf::from("."),
    ))
}

/// A model argument `NAME=PATH` split into its name and checkpoint; `None` for the name when the
/// argument is a bare checkpoint (a file or folder whose own name holds `=` included). The one
/// reading of `NAME=PATH` for every command that takes named models.
pub fn split_named(arg: &str) -> (Option<String>, String) {
    if !Path::new(arg).exists() {
        if let Some((name, spec)) = arg.split_once('=') {
            if !name.is_empty() && !name.contains('/') && !spec.is_empty() {
                return (Some(name.to_string()), spec.to_string());
            }
        }
    }
    (None, arg.to_string())
}

/// `--adapter-scale NAME=K` of the commands that take several named models: the adapter of
/// model NAME (a `NAME=BASE+ADAPTER`) scaled by K.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AdapterScales {
    /// Multiply model NAME's adapter update by K (1 = as trained; Turner et al. scale adapters
    /// x1-x5), e.g. `x3=BASE+ADAPTER --adapter-scale x3=3`; repeat for several models.
    #[arg(long = "adapter-scale", value_name = "NAME=K", value_parser = named_scale)]
    pub adapter_scales: Vec<(String, f64)>,
}

impl AdapterScales {
    /// Every scale must name one of the command's checkpoints, `names`.
    pub fn check(&self, names: &[String]) -> Result<()> {
        if let Some((n, _)) = self.adapter_scales.iter().find(|(n, _)| !names.contains(n)) {
            anyhow::bail!(
                "--adapter-scale {n}=...: no checkpoint is named {n} (the checkpoints: {})",
                names.join(", ")
            );
        }
        Ok(())
    }

    /// How model `name` is opened (its adapter scaled as asked).
    pub fn open_options(&self, name: &str) -> OpenOptions {
        let scale = self.adapter_scales.iter().rev().find(|(n, _)| n == name);
        OpenOptions {
            adapter_scale: scale.map(|(_, k)| *k),
            ..OpenOptions::default()
        }
    }
}

/// `NAME=K`.
fn named_scale(s: &str) -> Result<(String, f64), String> {
    let (name, k) = s.split_once('=').ok_or_else(|| {
        format!("expected NAME=K (a model's name and its adapter's scale), got `{s}`")
    })?;
    let k: f64 = k.parse().map_err(|_| format!("`{k}` is not a number"))?;
    if name.is_empty() || !k.is_finite() {
        return Err(format!("expected NAME=K with a finite K, got `{s}`"));
    }
    Ok((name.to_string(), k))
}

/// The folder a command writes into, and what to do when another run wrote there.
#[derive(clap::Args, Debug, Clone)]
pub struct OutArgs {
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// When OUT holds another run's files (another command, other models; for train also
    /// other options, data or start): remove the files erosion wrote there (listed in
    /// OUT/.erosion-manifest.json) and run anew. Files erosion did not write are kept.
    #[arg(long)]
    pub force: bool,
}

impl OutArgs {
    /// What to do with a folder that holds another run (`--force`).
    pub fn other_run(&self) -> OtherRun {
        OtherRun::forced(self.force)
    }

    /// Claims OUT for `run` before any work starts: an unusable folder, another run writing
    /// there now, or another run's files (without `--force`) fail at once.
    pub fn claim(&self, run: &RunIdentity) -> Result<RunFolder> {
        RunFolder::claim(
            &self.out,
            run,
            self.other_run(),
            &mut crate::notice_on_stderr,
        )
        .with_context(|| format!("--out {}", self.out.display()))
    }
}

/// `--shard I/N`.
pub fn shard_index(s: &str) -> Result<erosion_forward::shard::ShardIndex, String> {
    erosion_forward::shard::ShardIndex::parse(s).map_err(|e| e.to_string())
}
