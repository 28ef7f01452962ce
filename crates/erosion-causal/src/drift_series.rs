//! Drift across a series of checkpoints, as `erosion drift` runs it: a fixed probe set's
//! projection on the alignment directions (every layer) and its harmful-vs-refusal log-prob
//! margin, per checkpoint (e.g. a fine-tuning run's `checkpoint-N` folders). The same probe
//! watches a training run ([`TrainingMonitor`], `erosion train --monitor`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use erosion_forward::batch::BatchOptions;
use erosion_forward::notice::Notify;
use erosion_forward::out_lock::OutLock;
use erosion_model::load::{Checkpoint, OpenOptions};
use erosion_model::tokenizer::ModelTokenizer;
use erosion_model::transformer::Transformer;
use erosion_report::html::Report;
use erosion_report::provenance::{DatasetHash, HashCache, Provenance, ProvenanceBuilder};

use crate::data::chat_sequences;
use crate::drift::{drift_section, write_points, DriftLog, DriftOptions, DriftPoint, ProbeSet};
use crate::export::read_safetensors;

/// The probe: paired toxic / refusing answers (messages .jsonl), the toxic ones also projected.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    /// Directions written by `erosion steer` (directions.safetensors).
    pub directions: PathBuf,
    /// Harmful requests answered compliantly.
    pub toxic: PathBuf,
    /// The same requests, in the same order, answered with refusals.
    pub reject: PathBuf,
    /// Examples of the probe.
    pub probe_size: usize,
    /// Response tokens averaged per example.
    pub window: usize,
    /// Seed of the margin's bootstrap.
    pub seed: u64,
}

impl ProbeSpec {
    /// The probe, rendered for `tok`.
    pub fn load(&self, tok: &ModelTokenizer) -> Result<ProbeSet> {
        Ok(ProbeSet {
            dirs: read_safetensors(&self.directions)?,
            toxic: chat_sequences(&self.toxic, tok, 0..self.probe_size)
                .context("probe harmful answers")?,
            reject: chat_sequences(&self.reject, tok, 0..self.probe_size)
                .context("probe refusals")?,
            opts: DriftOptions {
                window: self.window,
                batch: BatchOptions::default(),
                bootstrap_resamples: 2000,
                seed: self.seed,
            },
        })
    }

    /// What the probe was, for the drift files' provenance: its options (with the adapter
    /// scale the checkpoints were opened with, if any), and its two datasets hashed with the `n`
    /// examples used (what was read, which may be fewer than asked for).
    pub fn provenance(
        &self,
        command_line: Vec<String>,
        n: usize,
        adapter_scale: Option<f64>,
    ) -> Result<ProvenanceBuilder> {
        let mut cache = HashCache::in_memory();
        let datasets = [("toxic", &self.toxic), ("reject", &self.reject)]
            .into_iter()
            .map(|(name, path)| DatasetHash::new(name, path, n, &format!("first {n}"), &mut cache))
            .collect::<Result<Vec<_>>>()?;
        let mut options = serde_json::json!({
            "directions": self.directions, "toxic": self.toxic, "reject": self.reject,
            "probe_size": self.probe_size, "window": self.window,
        });
        if let Some(k) = adapter_scale {
            options["adapter_scale"] = k.into();
        }
        Ok(Provenance::builder(options)
            .command_line(command_line)
            .seed(self.seed)
            .datasets(datasets))
    }
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

/// One drift run over checkpoints.
#[derive(Debug, Clone)]
pub struct DriftSpec {
    /// Checkpoints in training order (folders, .gguf or hub ids); a folder named
    /// `checkpoint-N` is placed at step N, a finished `erosion train` folder at its last step.
    pub checkpoints: Vec<String>,
    pub probe: ProbeSpec,
    pub out: PathBuf,
    pub dtype: DType,
    pub device: Device,
    /// Recorded in the provenance.
    pub command_line: Vec<String>,
    /// Every checkpoint's adapter update multiplied by this (checkpoints that are adapters on
    /// a base, as one LoRA run saves them); `None`: as trained.
    pub adapter_scale: Option<f64>,
}

/// What a drift run measured and wrote.
#[derive(Debug, Clone)]
pub struct DriftOutcome {
    /// One point per checkpoint, in order.
    pub points: Vec<DriftPoint>,
    /// `drift.json` and `report.html`.
    pub files: Vec<PathBuf>,
}

/// Measures the probe on every checkpoint (rendered with the first one's tokenizer) and writes
/// `drift.json` and `report.html` into `spec.out`, whose lock ([`OutLock`]) it holds from the
/// start; each checkpoint's margin goes to `notices`.
pub fn run_drift(spec: &DriftSpec, notices: &mut dyn Notify) -> Result<DriftOutcome> {
    let _lock = OutLock::acquire(&spec.out, "drift", notices)?;
    let probe = fixed_probe(spec)?;
    let mut points = Vec::new();
    for name in &spec.checkpoints {
        let point = measure(spec, &probe, name)?;
        notices.notice(&format!("{name}: margin {:.3}", point.margin.estimate));
        points.push(point);
    }
    finish(spec, points, probe.toxic.len())
}

/// The probe, rendered once with the first checkpoint's tokenizer: the same token ids for
/// every checkpoint (and every shard).
pub(crate) fn fixed_probe(spec: &DriftSpec) -> Result<ProbeSet> {
    let first = spec
        .checkpoints
        .first()
        .context("no checkpoint to measure")?;
    spec.probe.load(&Checkpoint::open(first)?.tokenizer)
}

/// `probe` measured on checkpoint `name`.
pub(crate) fn measure(spec: &DriftSpec, probe: &ProbeSet, name: &str) -> Result<DriftPoint> {
    let opts = OpenOptions {
        adapter_scale: spec.adapter_scale,
        ..OpenOptions::default()
    };
    let model = Checkpoint::open_with(name, &opts)?.load_model(spec.dtype, &spec.device)?;
    probe
        .measure(&model, name, step_of(name))
        .with_context(|| format!("checkpoint {name}"))
}

/// Writes `drift.json` and `report.html` of `points` (one per checkpoint of `spec`, in order;
/// the probe read `n` examples) into `spec.out`.
pub(crate) fn finish(spec: &DriftSpec, points: Vec<DriftPoint>, n: usize) -> Result<DriftOutcome> {
    let mut prov = (spec.probe).provenance(spec.command_line.clone(), n, spec.adapter_scale)?;
    // Every checkpoint measured, as the user named it, with its files hashed.
    let mut cache = HashCache::in_memory();
    for name in &spec.checkpoints {
        prov = prov.model_at(name, name, &mut cache)?;
    }
    let prov = prov.build();
    let files = vec![
        write_points(&spec.out, &points, &prov)?,
        write_report(&spec.out, &points, &prov)?,
    ];
    Ok(DriftOutcome { points, files })
}

/// The probe watching a training run: each measured step is recorded in `dir/drift.json`
/// (see [`DriftLog`]) and `dir/report.html` is rewritten.
pub struct TrainingMonitor {
    probe: ProbeSet,
    log: DriftLog,
    prov: Provenance,
    dir: PathBuf,
}

impl TrainingMonitor {
    /// The probe of `spec`, rendered for `tok`, writing into `dir`.
    pub fn new(
        spec: &ProbeSpec,
        tok: &ModelTokenizer,
        dir: &Path,
        command_line: Vec<String>,
    ) -> Result<Self> {
        let probe = spec.load(tok)?;
        // The model being trained changes at every step: the probe's data is what is fixed.
        let prov = spec
            .provenance(command_line, probe.toxic.len(), None)?
            .build();
        Ok(TrainingMonitor {
            probe,
            log: DriftLog::new(dir, prov.clone()),
            prov,
            dir: dir.to_path_buf(),
        })
    }

    /// Measures `model` at training step `step`, records it and rewrites the report.
    pub fn watch(&self, step: usize, model: &Transformer) -> Result<()> {
        let point = self
            .probe
            .measure(model, &format!("step {step}"), Some(step))?;
        let points = self.log.record(point)?;
        write_report(&self.dir, &points, &self.prov)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::step_of;

    #[test]
    fn a_checkpoint_folder_is_placed_at_its_step() {
        assert_eq!(step_of("runs/lora/checkpoint-40"), Some(40));
        assert_eq!(step_of("runs/lora/checkpoint-final"), None);
        assert_eq!(step_of("org/no-such-model"), None);
    }
}
