//! A whole training run into an output folder: resumes from the latest checkpoint there,
//! saves every `save_every` steps, and ends with the final model at the folder's root.
//! Running it again on a finished folder does nothing (the model is reused).

use crate::checkpoint::{self, data_fingerprint, FolderFiles, TrainState};
use crate::examples::TrainExample;
use crate::init::fresh_model;
use crate::options::{Method, TrainOptions};
use crate::trainer::Trainer;
use anyhow::{Context, Result};
use candle_core::{DType, Device};
use erosion_forward::batch::ProgressSink;
use erosion_forward::notice::Notify;
use erosion_forward::out_lock::OutLock;
use erosion_forward::run_folder::manifest::{Manifest, Tracker};
pub use erosion_forward::run_folder::OtherRun;
use erosion_model::load::adapter::parts;
use erosion_model::load::{Checkpoint, GenerationConfig, OpenOptions};
use erosion_model::tokenizer::ModelTokenizer;
use erosion_model::transformer::Transformer;
use erosion_model::Config;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Where training starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// A checkpoint erosion opens (folder, .gguf, hub id).
    Checkpoint(String),
    /// A new model of this shape with seeded weights (pre-training).
    Fresh { config: Box<Config>, seed: u64 },
}

impl Start {
    /// What a run started from, as its checkpoints record it to recognise the same run.
    fn describe(&self) -> Result<String> {
        Ok(match self {
            // A model with an adapter (BASE+ADAPTER, or an adapter alone on its recorded base)
            // by both parts, so each spelling of it is one start and a retrained adapter
            // another.
            Start::Checkpoint(spec) => (parts(spec, &OpenOptions::default()).iter())
                .map(|part| describe_part(part))
                .collect::<Result<Vec<_>>>()?
                .join("+"),
            Start::Fresh { seed, .. } => format!("fresh:{seed}"),
        })
    }
}

/// One checkpoint a start is made of. A folder by its absolute path, so that relative and
/// absolute spellings of one start (`erosion demo --out x` from different directories) are one
/// run; a folder trained by erosion also by its trainer state (its own start, data, options and
/// loss history): a model retrained in the same folder is another start, so what was
/// fine-tuned from the old one is not reused.
fn describe_part(spec: &str) -> Result<String> {
    let path = std::fs::canonicalize(spec)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| spec.to_string());
    Ok(match checkpoint::state_digest(Path::new(spec))? {
        Some(digest) => format!("{path}#{}", &digest[..16]),
        None => path,
    })
}

/// Whether a recorded start is `current`. States saved before starts carried their trainer
/// state's digest (`path#digest`) record the path alone, and still match it.
fn same_start(recorded: &str, current: &str) -> bool {
    recorded == current || (!recorded.contains('#') && current.split('#').next() == Some(recorded))
}

/// What to train and how to report it; [`train`] takes the data, options and output folder.
pub struct RunSpec<'a> {
    pub start: Start,
    /// Saved with every checkpoint (the folder must be a complete model).
    pub tokenizer: &'a ModelTokenizer,
    pub generation: Option<&'a GenerationConfig>,
    pub dtype: DType,
    pub device: Device,
    /// Where the run's progress goes (sequences trained, each step's loss): the caller's
    /// terminal bar, or [`erosion_forward::batch::Quiet`].
    pub progress: &'a dyn ProgressSink,
    /// Stop after this many steps with a resumable checkpoint (`None`: train to the end).
    pub stop_after: Option<usize>,
    /// Watches the model as it trains (`erosion train --monitor`).
    pub monitor: Option<Monitor<'a>>,
    /// What to do when the output folder holds another run.
    pub other_run: OtherRun,
}

/// `out` holds `what`, of another run: an error, or its files removed as `spec.other_run`
/// says (a notice).
fn other_run(spec: &RunSpec, out: &Path, what: &str, notices: &mut dyn Notify) -> Result<()> {
    spec.other_run.settle(out, what, "train", notices)
}

/// `call(step, model)` on the starting model (step 0, unless resuming), every `every` steps,
/// and after the last step; an error stops training (the last checkpoint stays resumable).
pub struct Monitor<'a> {
    pub every: usize,
    pub call: &'a dyn Fn(usize, &Transformer) -> Result<()>,
}

/// What a training run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The final model folder (= the output folder).
    pub dir: PathBuf,
    pub state: TrainState,
    /// The step training resumed from, when it did.
    pub resumed_from: Option<usize>,
    /// The folder already held this finished run; nothing was trained.
    pub reused: bool,
    /// False when `stop_after` ended the run early: `dir` is then the checkpoint to resume from.
    pub finished: bool,
}

/// Trains `data` with `opts` into `out`, holding its lock ([`OutLock`]) throughout; a folder
/// of another run removed is a notice.
pub fn train(
    spec: &RunSpec,
    data: &[TrainExample],
    opts: &TrainOptions,
    out: &Path,
    notices: &mut dyn Notify,
) -> Result<Outcome> {
    opts.validate()?;
    // Held until the run returns: a second run into `out` fails at once, naming this one.
    let _lock = OutLock::acquire(out, "train", notices)?;
    let key = RunKey {
        options: opts,
        fingerprint: data_fingerprint(data),
        start: spec.start.describe()?,
    };
    let resume = match previous(spec, &key, out, notices)? {
        Previous::Finished(state) => {
            return Ok(Outcome {
                dir: out.to_path_buf(),
                state,
                resumed_from: None,
                reused: true,
                finished: true,
            })
        }
        Previous::Resume(resume) => resume,
    };
    let manifest = Manifest::read(out)?;
    let folder = Tracker::start(out, key.id()?, key.describe(), manifest.as_ref())?;
    let (mut trainer, mut state, resumed_from) = prepare(spec, key, data.len(), resume)?;
    let files = FolderFiles {
        tokenizer: spec.tokenizer,
        generation: spec.generation,
    };
    let until = spec.stop_after.unwrap_or(opts.steps).min(opts.steps);
    run_steps(spec, data, &folder, until, &files, &mut trainer, &mut state)?;
    if trainer.step() < opts.steps {
        return Ok(Outcome {
            dir: out.join(format!("checkpoint-{}", trainer.step())),
            state,
            resumed_from,
            reused: false,
            finished: false,
        });
    }
    checkpoint::save(&trainer, out, &files, &state)?;
    remove_checkpoints_before(out, usize::MAX)?;
    folder.record()?;
    Ok(Outcome {
        dir: out.to_path_buf(),
        state,
        resumed_from,
        reused: false,
        finished: true,
    })
}

/// What makes two runs the same: options, data and start.
struct RunKey<'a> {
    options: &'a TrainOptions,
    fingerprint: String,
    start: String,
}

impl RunKey<'_> {
    fn matches(&self, s: &TrainState) -> bool {
        s.options == *self.options
            && s.data_fingerprint == self.fingerprint
            && same_start(&s.start, &self.start)
    }

    /// A digest of the key, recorded in the folder's manifest.
    fn id(&self) -> Result<String> {
        let options = serde_json::to_string(self.options)?;
        let text = format!("{options}\n{}\n{}", self.fingerprint, self.start);
        Ok(format!("{:x}", Sha256::digest(text.as_bytes())))
    }

    /// The run in words: method, start, steps and data.
    fn describe(&self) -> String {
        let method = match &self.options.method {
            Method::Full => "full fine-tuning".to_string(),
            Method::Lora(c) => format!("LoRA (rank {}, {})", c.rank, c.targets.join(",")),
        };
        format!(
            "{method} from {}, {} steps, data {}",
            self.start,
            self.options.steps,
            &self.fingerprint[..12]
        )
    }
}

/// What the output folder already holds of this run.
enum Previous {
    /// Its finished model: nothing to train.
    Finished(TrainState),
    /// Its latest checkpoint (folder and state) to resume from, if any.
    Resume(Option<(PathBuf, TrainState)>),
}

/// Looks in `out` for this run; another run's model, checkpoint or files there are refused
/// or removed, as `spec.other_run` says.
fn previous(
    spec: &RunSpec,
    key: &RunKey,
    out: &Path,
    notices: &mut dyn Notify,
) -> Result<Previous> {
    if let Some(done) = checkpoint::read_state(out)? {
        if key.matches(&done) && done.step == key.options.steps {
            return Ok(Previous::Finished(done));
        }
        let what = format!(
            "a model trained by another run (start {}, {} steps, data {})",
            done.start,
            done.step,
            &done.data_fingerprint[..12]
        );
        other_run(spec, out, &what, notices)?;
    } else if let Some((_, dir)) = checkpoint::checkpoints(out)?.pop() {
        let state = checkpoint::read_state(&dir)?.context("a checkpoint without its state")?;
        if key.matches(&state) {
            return Ok(Previous::Resume(Some((dir, state))));
        }
        let what = "a checkpoint of another run (other options, data or start model)";
        other_run(spec, out, what, notices)?;
    } else if let Some(m) = Manifest::read(out)? {
        // No trainer state (deleted, say), but the manifest names the run that wrote here:
        // its files (a LoRA run's adapter/, say) must not end up beside this run's model.
        let left = m.existing(out);
        if m.run != key.id()? && !left.is_empty() {
            let what = format!("files of another run, {} ({})", m.describe, left.join(", "));
            other_run(spec, out, &what, notices)?;
        }
    }
    Ok(Previous::Resume(None))
}

/// The trainer and the run's state: fresh, or restored from the checkpoint `resume` (whose
/// step is returned).
fn prepare(
    spec: &RunSpec,
    key: RunKey,
    n_examples: usize,
    resume: Option<(PathBuf, TrainState)>,
) -> Result<(Trainer, TrainState, Option<usize>)> {
    let opts = key.options;
    let model = match (&resume, &opts.method, &spec.start) {
        // Full fine-tuning: the checkpoint's weights are the trained ones.
        (Some((dir, _)), Method::Full, _) => {
            Checkpoint::open_folder(dir)?.load_model(spec.dtype, &spec.device)?
        }
        (_, _, Start::Checkpoint(s)) => {
            Checkpoint::open(s)?.load_model(spec.dtype, &spec.device)?
        }
        (_, _, Start::Fresh { config, seed }) => {
            fresh_model(config, *seed, spec.dtype, &spec.device)?
        }
    };
    let mut trainer = Trainer::new(model, opts.clone())?;
    let mut state = TrainState {
        step: 0,
        options: opts.clone(),
        start: key.start,
        data_fingerprint: key.fingerprint,
        n_examples,
        history: Vec::new(),
        erosion_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let resumed_from = match resume {
        Some((dir, saved)) => {
            checkpoint::restore(&mut trainer, &dir, &saved, &spec.device)?;
            state.history = saved.history;
            state.step = saved.step;
            Some(saved.step)
        }
        None => None,
    };
    Ok((trainer, state, resumed_from))
}

/// Trains to step `until`: the monitor watches the start and every `every` steps, a
/// checkpoint is saved every `save_every` steps and where the run stops early.
fn run_steps(
    spec: &RunSpec,
    data: &[TrainExample],
    folder: &Tracker,
    until: usize,
    files: &FolderFiles,
    trainer: &mut Trainer,
    state: &mut TrainState,
) -> Result<()> {
    let (steps, save_every) = (trainer.options().steps, trainer.options().save_every);
    let out = folder.out();
    if let (Some(m), 0) = (&spec.monitor, trainer.step()) {
        (m.call)(0, trainer.model()).context("monitoring the starting model")?;
    }
    let mut progress = spec.progress.start("training");
    trainer.fit(data, until, &mut *progress, |t, s| {
        if let Some(m) = &spec.monitor {
            if s.step % m.every.max(1) == 0 || s.step == steps {
                (m.call)(s.step, t.model())
                    .with_context(|| format!("monitoring step {}", s.step))?;
            }
        }
        state.history.push(s.clone());
        state.step = s.step;
        let periodic = save_every.is_some_and(|k| s.step % k == 0);
        if s.step < steps && (periodic || s.step == until) {
            let dir = out.join(format!("checkpoint-{}", s.step));
            checkpoint::save(t, &dir, files, state)?;
            remove_checkpoints_before(out, s.step)?;
            folder.record()?;
        }
        Ok(())
    })?;
    Ok(())
}

fn remove_checkpoints_before(out: &Path, step: usize) -> Result<()> {
    for (s, dir) in checkpoint::checkpoints(out)? {
        if s < step {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{same_start, Start};

    /// BASE+ADAPTER and the adapter alone (on its recorded base) are one start, by both
    /// folders' absolute paths; a retrained adapter (another trainer state) is another.
    #[test]
    fn a_start_with_an_adapter_is_described_by_both_parts() {
        let tmp = tempfile::tempdir().unwrap();
        let (base, adapter) = (tmp.path().join("base"), tmp.path().join("adapter"));
        std::fs::create_dir_all(&base).unwrap();
        std::fs::create_dir_all(adapter.join(super::checkpoint::STATE_DIR)).unwrap();
        std::fs::write(base.join("config.json"), "{}").unwrap();
        let config = serde_json::json!({"peft_type": "LORA", "base_model_name_or_path": base});
        std::fs::write(adapter.join("adapter_config.json"), config.to_string()).unwrap();
        let state = adapter
            .join(super::checkpoint::STATE_DIR)
            .join(super::checkpoint::STATE_FILE);
        std::fs::write(&state, "{\"step\": 1}").unwrap();
        let describe = |spec: String| Start::Checkpoint(spec).describe().unwrap();
        let both = describe(format!("{}+{}", base.display(), adapter.display()));
        let alone = describe(adapter.display().to_string());
        assert_eq!(both, alone);
        let canon = |p: &std::path::Path| std::fs::canonicalize(p).unwrap();
        assert!(
            both.starts_with(&format!(
                "{}+{}#",
                canon(&base).display(),
                canon(&adapter).display()
            )),
            "{both}"
        );
        std::fs::write(&state, "{\"step\": 2}").unwrap();
        assert_ne!(describe(adapter.display().to_string()), alone);
    }

    #[test]
    fn a_start_matches_itself_and_a_legacy_record_of_its_path() {
        assert!(same_start("/m/base#0123", "/m/base#0123"));
        assert!(!same_start("/m/base#0123", "/m/base#4567"));
        assert!(same_start("/m/base", "/m/base#4567"));
        assert!(!same_start("/m/other", "/m/base#4567"));
        assert!(same_start("fresh:3", "fresh:3"));
    }
}
