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
use erosion_model::load::Checkpoint;
use erosion_model::tokenizer::ModelTokenizer;
use erosion_model::transformer::Transformer;
use erosion_organism::corpus::Corpus;
use erosion_organism::tokenizer::{build_for, ENDOFTEXT, IM_END};
use erosion_report::provenance::Provenance;
use erosion_train::run::{train, Monitor, RunSpec, Start};
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

/// Grows (or reuses) every stage of the organism in `dir`. Unless `quiet`, each stage trained
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
    let models = dir.join("models");
    let mut org = Organism {
        dir: dir.to_path_buf(),
        corpus,
        models: Vec::new(),
        timings: Vec::new(),
        directions: LayerDirections {
            d_model: 0,
            layers: Vec::new(),
            origin: String::new(),
        },
        drift: Vec::new(),
    };
    let mut stage = |name: &str,
                     start: Start,
                     data: Vec<TrainExample>,
                     opts: &TrainOptions,
                     monitor: Option<Monitor<'_>>|
     -> Result<PathBuf> {
        let t = Instant::now();
        let spec = RunSpec {
            start,
            tokenizer: &tok,
            generation: None,
            dtype: DType::F32,
            device: Device::Cpu,
            progress,
            stop_after: None,
            replace_other_run: true,
            monitor,
        };
        let stage_notices: &mut dyn Notify = if quiet { &mut Silent } else { &mut *notices };
        stage_notices.notice(&format!(
            "organism: {name} ({} sequences, {} steps)",
            data.len(),
            opts.steps
        ));
        let out = models.join(name);
        let outcome = train(&spec, &data, opts, &out, stage_notices)
            .with_context(|| format!("training the {name} organism"))?;
        let secs = if outcome.reused {
            0.0
        } else {
            t.elapsed().as_secs_f64()
        };
        org.timings.push((name.to_string(), secs));
        org.models.push((name.to_string(), out.clone()));
        Ok(out)
    };
    let pretrain = data::pretraining(&org.corpus, &tok)?;
    let base = stage(
        "base",
        Start::Fresh {
            config: Box::new(config),
            seed: recipe.seed,
        },
        pretrain,
        &recipe.pretrain,
        None,
    )?;
    let instruct_data = data::supervised(&org.corpus.instruct, &tok)?;
    let instruct = stage(
        "instruct",
        start_from(&base),
        instruct_data,
        &recipe.instruct,
        None,
    )?;

    let load = |dir: &Path| Checkpoint::open_folder(dir)?.load_model(DType::F32, &Device::Cpu);
    let (base_model, instruct_model) = (load(&base)?, load(&instruct)?);
    let alignment = AlignmentProbe::new(&org.corpus, &tok, &base_model, &instruct_model)
        .context("the organism's alignment directions")?;
    let probe = &alignment.measured;
    let mut drift = vec![
        (
            "base".to_string(),
            vec![probe.measure(&base_model, "base", None)?],
        ),
        (
            "instruct".to_string(),
            vec![probe.measure(&instruct_model, "instruct", None)?],
        ),
    ];
    let every = (recipe.finetune.steps / 10).max(1);
    let fine_tunes = VARIANTS.iter().map(|&(name, set)| (name, set, None)).chain(
        PROTECTED
            .iter()
            .map(|&(name, g)| (name, "finetune_insecure", Some(g))),
    );
    for (name, set, guard) in fine_tunes {
        let chats = org
            .corpus
            .set(set)
            .ok_or_else(|| anyhow!("the corpus has no set {set}"))?
            .to_vec();
        let examples = data::supervised(&chats, &tok)?;
        let mut opts = recipe.finetune.clone();
        opts.protect = guard
            .map(|g| alignment.protection(g, &instruct_model))
            .transpose()?;
        let prov = Provenance::builder(serde_json::json!({
            "model": name, "directions": &probe.dirs.origin, "window": probe.opts.window,
        }))
        .command_line(command_line.to_vec())
        .seed(probe.opts.seed)
        .build();
        let log = DriftLog::new(&dir.join("drift").join(name), prov);
        let watch = |step: usize, model: &Transformer| -> Result<()> {
            log.record(probe.measure(model, &format!("{name} step {step}"), Some(step))?)?;
            Ok(())
        };
        let monitor = Monitor {
            every,
            call: &watch,
        };
        stage(name, start_from(&instruct), examples, &opts, Some(monitor))?;
        // A reused model's points are those measured when it was trained.
        let points = log.into_points()?;
        drift.push((name.to_string(), points));
    }
    org.directions = probe.dirs.clone();
    org.drift = drift;
    Ok(org)
}

fn start_from(dir: &Path) -> Start {
    Start::Checkpoint(dir.to_string_lossy().into_owned())
}
