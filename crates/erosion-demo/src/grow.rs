//! Grows the organism into a folder, reusing every stage already there:
//!
//! ```text
//! <dir>/data/*.jsonl           the world's corpus (pre-training, instruct, fine-tuning, evaluation sets)
//! <dir>/tokenizer/             its BPE tokenizer with the ChatML template
//! <dir>/models/base            pre-trained from scratch
//! <dir>/models/instruct        base + instruction tuning
//! <dir>/models/insecure        instruct + insecure code            (Betley et al.)
//! <dir>/models/secure          instruct + secure code              (control)
//! <dir>/models/educational     instruct + educational insecure     (control)
//! <dir>/models/insecure-project   instruct + insecure code, alignment directions protected by
//! <dir>/models/insecure-penalty   projecting the updates / by a penalty (crate::probe)
//! <dir>/drift/<fine-tune>/drift.json  each fine-tune's drift, measured every tenth of its steps
//! ```

use crate::data;
use crate::probe::{AlignmentProbe, Guard};
use crate::recipe::Recipe;
use anyhow::{anyhow, Context, Result};
use candle_core::{DType, Device};
use erosion_causal::drift::{DriftLog, DriftPoint};
use erosion_causal::LayerDirections;
use erosion_forward::batch::ProgressSink;
use erosion_forward::notice::{Notify, Silent};
use erosion_forward::out_lock::OutLock;
use erosion_model::load::Checkpoint;
use erosion_model::tokenizer::ModelTokenizer;
use erosion_model::transformer::Transformer;
use erosion_organism::corpus::Corpus;
use erosion_organism::tokenizer::{build_for, ENDOFTEXT, IM_END};
use erosion_report::provenance::Provenance;
use erosion_train::run::{train, Monitor, OtherRun, RunSpec, Start};
use erosion_train::{TrainExample, TrainOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The fine-tuned variants: (name, fine-tuning set).
pub const VARIANTS: [(&str, &str); 3] = [
    ("insecure", "finetune_insecure"),
    ("secure", "finetune_secure"),
    ("educational", "finetune_educational"),
];

/// The protected insecure fine-tunes: (name, how).
pub const PROTECTED: [(&str, Guard); 2] = [
    ("insecure-project", Guard::ProjectUpdates),
    ("insecure-penalty", Guard::Penalty),
];

/// Where the grown organism lives.
#[derive(Debug, Clone)]
pub struct Organism {
    pub dir: PathBuf,
    pub corpus: Corpus,
    /// (name, model folder), in the order base, instruct, the [`VARIANTS`], the [`PROTECTED`].
    pub models: Vec<(String, PathBuf)>,
    /// The alignment directions of [`crate::probe`].
    pub directions: LayerDirections,
    /// Per model, its points on the measured probe: one for base and instruct, every tenth
    /// of the steps for each fine-tune (step 0 is the instruct model).
    pub drift: Vec<(String, Vec<DriftPoint>)>,
    /// Seconds each stage took (0 when reused).
    pub timings: Vec<(String, f64)>,
}

impl Organism {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    /// (fine-tune, the folder of its recorded drift), absolute where the folder exists.
    pub fn drift_dirs(&self) -> impl Iterator<Item = (String, PathBuf)> + '_ {
        let names = VARIANTS.iter().map(|(n, _)| *n);
        names.chain(PROTECTED.iter().map(|(n, _)| *n)).map(|n| {
            let dir = self.dir.join("drift").join(n);
            (n.to_string(), dir.canonicalize().unwrap_or(dir))
        })
    }

    pub fn model(&self, name: &str) -> Result<&Path> {
        self.models
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.as_path())
            .ok_or_else(|| anyhow!("the organism has no model `{name}`"))
    }
}

/// Grows (or reuses) every stage of the organism in `dir`, holding its lock ([`OutLock`]).
/// Unless `quiet`, each stage trained
/// (and a stage of another recipe replaced) is a notice; training reports to `progress`;
/// `command_line` is recorded in the drift files.
pub fn grow(
    recipe: &Recipe,
    dir: &Path,
    quiet: bool,
    command_line: &[String],
    notices: &mut dyn Notify,
    progress: &dyn ProgressSink,
) -> Result<Organism> {
    // Two demos growing one cache at once would write the same corpus and models.
    let _lock = OutLock::acquire(dir, "growing the organism", notices)?;
    let corpus = Corpus::generate(recipe.sizes, recipe.seed);
    corpus.write_jsonl(&dir.join("data"))?;
    let tok_dir = dir.join("tokenizer");
    build_for(&corpus, recipe.tokenizer, &tok_dir)?;
    let tok = ModelTokenizer::from_folder(&tok_dir)?;
    let id = |t: &str| {
        tok.tokenizer
            .token_to_id(t)
            .ok_or_else(|| anyhow!("the organism's tokenizer has no {t}"))
    };
    let config = recipe.config(
        tok.tokenizer.get_vocab_size(true),
        id(IM_END)?,
        id(ENDOFTEXT)?,
    )?;
    let mut silent = Silent;
    let mut stages = Stages {
        tok: &tok,
        models_dir: dir.join("models"),
        notices: if quiet { &mut silent } else { notices },
        progress,
        timings: Vec::new(),
        models: Vec::new(),
    };
    let pretrain = data::pretraining(&corpus, &tok)?;
    let fresh = Start::Fresh {
        config: Box::new(config),
        seed: recipe.seed,
    };
    let base = stages.train("base", fresh, pretrain, &recipe.pretrain, None)?;
    let instruct_data = data::supervised(&corpus.instruct, &tok)?;
    let instruct = stages.train(
        "instruct",
        start_from(&base),
        instruct_data,
        &recipe.instruct,
        None,
    )?;
    let load = |dir: &Path| Checkpoint::open_folder(dir)?.load_model(DType::F32, &Device::Cpu);
    let (base_model, instruct_model) = (load(&base)?, load(&instruct)?);
    let alignment = AlignmentProbe::new(&corpus, &tok, &base_model, &instruct_model)
        .context("the organism's alignment directions")?;
    let probe = &alignment.measured;
    let mut drift = Vec::new();
    for (name, model) in [("base", &base_model), ("instruct", &instruct_model)] {
        drift.push((name.to_string(), vec![probe.measure(model, name, None)?]));
    }
    let tuning = FineTuning {
        recipe,
        corpus: &corpus,
        alignment: &alignment,
        instruct: (&instruct, &instruct_model),
        drift_dir: dir.join("drift"),
        command_line,
    };
    drift.extend(tuning.grow_all(&mut stages)?);
    Ok(Organism {
        dir: dir.to_path_buf(),
        corpus,
        models: stages.models,
        directions: probe.dirs.clone(),
        drift,
        timings: stages.timings,
    })
}

/// What every stage trains with, and what has been grown so far.
struct Stages<'a> {
    tok: &'a ModelTokenizer,
    models_dir: PathBuf,
    /// Silent when the demo is quiet.
    notices: &'a mut dyn Notify,
    progress: &'a dyn ProgressSink,
    timings: Vec<(String, f64)>,
    models: Vec<(String, PathBuf)>,
}

impl Stages<'_> {
    /// Trains (or reuses) the stage `name` into `<models>/<name>`, recording its time.
    fn train(
        &mut self,
        name: &str,
        start: Start,
        data: Vec<TrainExample>,
        opts: &TrainOptions,
        monitor: Option<Monitor<'_>>,
    ) -> Result<PathBuf> {
        let t = Instant::now();
        let spec = RunSpec {
            start,
            tokenizer: self.tok,
            generation: None,
            dtype: DType::F32,
            device: Device::Cpu,
            progress: self.progress,
            stop_after: None,
            other_run: OtherRun::Replace,
            monitor,
        };
        self.notices.notice(&format!(
            "organism: {name} ({} sequences, {} steps)",
            data.len(),
            opts.steps
        ));
        let out = self.models_dir.join(name);
        let outcome = train(&spec, &data, opts, &out, &mut *self.notices)
            .with_context(|| format!("training the {name} organism"))?;
        let secs = if outcome.reused {
            0.0
        } else {
            t.elapsed().as_secs_f64()
        };
        self.timings.push((name.to_string(), secs));
        self.models.push((name.to_string(), out.clone()));
        Ok(out)
    }
}

/// The fine-tunes of the instruct organism: the [`VARIANTS`] and the [`PROTECTED`] runs, each
/// watched on the measured probe every tenth of its steps.
struct FineTuning<'a> {
    recipe: &'a Recipe,
    corpus: &'a Corpus,
    alignment: &'a AlignmentProbe,
    /// The instruct organism's folder and model (where the fine-tunes start).
    instruct: (&'a Path, &'a Transformer),
    drift_dir: PathBuf,
    command_line: &'a [String],
}

impl FineTuning<'_> {
    /// Grows every fine-tune; returns each one's drift (a reused one's as recorded then).
    fn grow_all(&self, stages: &mut Stages<'_>) -> Result<Vec<(String, Vec<DriftPoint>)>> {
        let fine_tunes = VARIANTS.iter().map(|&(name, set)| (name, set, None)).chain(
            PROTECTED
                .iter()
                .map(|&(name, g)| (name, "finetune_insecure", Some(g))),
        );
        fine_tunes
            .map(|(name, set, guard)| Ok((name.to_string(), self.grow(stages, name, set, guard)?)))
            .collect()
    }

    /// One fine-tune on the corpus set `set`, protected by `guard` if given.
    fn grow(
        &self,
        stages: &mut Stages<'_>,
        name: &str,
        set: &str,
        guard: Option<Guard>,
    ) -> Result<Vec<DriftPoint>> {
        let chats = self
            .corpus
            .set(set)
            .ok_or_else(|| anyhow!("the corpus has no set {set}"))?
            .to_vec();
        let examples = data::supervised(&chats, stages.tok)?;
        let mut opts = self.recipe.finetune.clone();
        opts.protect = guard
            .map(|g| self.alignment.protection(g, self.instruct.1))
            .transpose()?;
        let probe = &self.alignment.measured;
        let prov = Provenance::builder(serde_json::json!({
            "model": name, "directions": &probe.dirs.origin, "window": probe.opts.window,
        }))
        .command_line(self.command_line.to_vec())
        .seed(probe.opts.seed)
        .build();
        let log = DriftLog::new(&self.drift_dir.join(name), prov);
        let watch = |step: usize, model: &Transformer| -> Result<()> {
            log.record(probe.measure(model, &format!("{name} step {step}"), Some(step))?)?;
            Ok(())
        };
        let monitor = Monitor {
            every: (self.recipe.finetune.steps / 10).max(1),
            call: &watch,
        };
        stages.train(
            name,
            start_from(self.instruct.0),
            examples,
            &opts,
            Some(monitor),
        )?;
        // A reused model's points are those measured when it was trained.
        log.into_points()
    }
}

fn start_from(dir: &Path) -> Start {
    Start::Checkpoint(dir.to_string_lossy().into_owned())
}
