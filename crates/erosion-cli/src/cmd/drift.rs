//! `erosion drift CHECKPOINT... --directions FILE --toxic F --reject F --out DIR`: how a fixed
//! probe set's projection on the alignment directions (every layer) and its harmful-vs-refusal
//! log-prob margin move across a series of checkpoints (e.g. a fine-tuning run's
//! `checkpoint-N` folders). Also the probe of `erosion train --monitor`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use erosion_causal::drift::{drift_section, write_points, DriftOptions, DriftPoint, ProbeSet};
use erosion_causal::export::read_safetensors;
use erosion_forward::batch::BatchOptions;
use erosion_model::load::Checkpoint;
use erosion_model::tokenizer::ModelTokenizer;
use erosion_report::html::Report;
use erosion_report::provenance::Provenance;

use super::datasets::chat_sequences;
use crate::device::DeviceArgs;

/// The probe: paired toxic / refusing answers (messages .jsonl), the toxic ones also projected.
#[derive(clap::Args, Debug, Clone)]
pub struct ProbeArgs {
    /// Directions written by `erosion steer` (directions.safetensors).
    #[arg(long, value_name = "FILE")]
    pub directions: Option<PathBuf>,
    /// Harmful requests answered compliantly.
    #[arg(long, value_name = "FILE")]
    pub toxic: Option<PathBuf>,
    /// The same requests, in the same order, answered with refusals.
    #[arg(long, value_name = "FILE")]
    pub reject: Option<PathBuf>,
    /// Examples of the probe.
    #[arg(long, default_value_t = 50)]
    pub probe_size: usize,
    /// Response tokens averaged per example.
    #[arg(long, default_value_t = 10)]
    pub window: usize,
    /// Seed of the margin's bootstrap.
    #[arg(long, default_value_t = 0)]
    pub probe_seed: u64,
}

impl ProbeArgs {
    /// The directions, toxic and refusal files, or which is missing.
    fn files(&self) -> Result<(&Path, &Path, &Path)> {
        match (&self.directions, &self.toxic, &self.reject) {
            (Some(d), Some(t), Some(r)) => Ok((d, t, r)),
            _ => anyhow::bail!("the probe needs --directions FILE, --toxic FILE and --reject FILE"),
        }
    }
}

/// The probe of `args`, rendered for `tok`.
pub fn load_probe(args: &ProbeArgs, tok: &ModelTokenizer) -> Result<ProbeSet> {
    let (d, t, r) = args.files()?;
    Ok(ProbeSet {
        dirs: read_safetensors(d)?,
        toxic: chat_sequences(t, tok, 0..args.probe_size).context("probe toxic answers")?,
        reject: chat_sequences(r, tok, 0..args.probe_size).context("probe refusals")?,
        opts: DriftOptions {
            window: args.window,
            batch: BatchOptions::default(),
            bootstrap_resamples: 2000,
            seed: args.probe_seed,
        },
    })
}

/// What the probe was, for the drift files' provenance.
pub fn provenance(probe: &ProbeArgs) -> Provenance {
    let mut prov = Provenance::new(serde_json::json!({
        "directions": probe.directions, "toxic": probe.toxic, "reject": probe.reject,
        "probe_size": probe.probe_size, "window": probe.window,
    }));
    prov.seed = Some(probe.probe_seed);
    prov
}

/// Writes `report.html` of the drift `points` into `out`, atomically.
pub fn write_report(out: &Path, points: &[DriftPoint], prov: &Provenance) -> Result<PathBuf> {
    let html = out.join("report.html");
    Report::new("erosion drift: alignment across fine-tuning")
        .provenance(prov.clone())
        .section(drift_section(points)?)
        .write(&html)?;
    Ok(html)
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoints in training order (folders, .gguf or hub ids); a folder named
    /// `checkpoint-N` is placed at step N, a finished `erosion train` folder at its last step.
    #[arg(required = true)]
    pub checkpoints: Vec<String>,
    #[command(flatten)]
    pub probe: ProbeArgs,
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// The training step of a checkpoint: N of a `checkpoint-N` folder, else the step recorded in
/// the folder's training state (a finished `erosion train` run).
fn step_of(spec: &str) -> Option<usize> {
    let path = Path::new(spec);
    let named = path
        .file_name()?
        .to_str()?
        .strip_prefix("checkpoint-")
        .and_then(|n| n.parse().ok());
    named.or_else(|| {
        erosion_train::checkpoint::read_state(path)
            .ok()
            .flatten()
            .map(|s| s.step)
    })
}

pub fn run(args: Args) -> Result<()> {
    args.probe.files()?;
    let (dtype, device): (DType, Device) = (args.device.dtype()?, args.device.device()?);
    let mut probe: Option<ProbeSet> = None;
    let mut points = Vec::new();
    for spec in &args.checkpoints {
        let ck = Checkpoint::open(spec)?;
        let model = ck.load_model(dtype, &device)?;
        if probe.is_none() {
            probe = Some(load_probe(&args.probe, &ck.tokenizer)?);
        }
        let p = probe.as_ref().expect("loaded above");
        let point = p
            .measure(&model, spec, step_of(spec))
            .with_context(|| format!("checkpoint {spec}"))?;
        eprintln!("{spec}: margin {:.3}", point.margin.estimate);
        points.push(point);
    }
    let prov = provenance(&args.probe);
    for f in [
        write_points(&args.out, &points, &prov)?,
        write_report(&args.out, &points, &prov)?,
    ] {
        println!("wrote {}", f.display());
    }
    Ok(())
}
