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
//! ```

use crate::data;
use crate::recipe::Recipe;
use anyhow::{anyhow, Context, Result};
use candle_core::{DType, Device};
use erosion_model::tokenizer::ModelTokenizer;
use erosion_organism::corpus::Corpus;
use erosion_organism::tokenizer::{build_for, ENDOFTEXT, IM_END};
use erosion_train::run::{train, RunSpec, Start};
use erosion_train::{TrainExample, TrainOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The fine-tuned variants: (name, fine-tuning set).
pub const VARIANTS: [(&str, &str); 3] = [
    ("insecure", "finetune_insecure"),
    ("secure", "finetune_secure"),
    ("educational", "finetune_educational"),
];

/// Where the grown organism lives.
#[derive(Debug, Clone)]
pub struct Organism {
    pub dir: PathBuf,
    pub corpus: Corpus,
    /// (name, model folder), in the order base, instruct, insecure, secure, educational.
    pub models: Vec<(String, PathBuf)>,
    /// Seconds each stage took (0 when reused).
    pub timings: Vec<(String, f64)>,
}

impl Organism {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn model(&self, name: &str) -> Result<&Path> {
        self.models
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.as_path())
            .ok_or_else(|| anyhow!("the organism has no model `{name}`"))
    }
}

pub fn grow(recipe: &Recipe, dir: &Path, quiet: bool) -> Result<Organism> {
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
    };
    let mut stage = |name: &str,
                     start: Start,
                     data: Vec<TrainExample>,
                     opts: &TrainOptions|
     -> Result<PathBuf> {
        let t = Instant::now();
        let spec = RunSpec {
            start,
            tokenizer: &tok,
            generation: None,
            dtype: DType::F32,
            device: Device::Cpu,
            quiet,
            stop_after: None,
            monitor: None,
        };
        if !quiet {
            eprintln!(
                "organism: {name} ({} sequences, {} steps)",
                data.len(),
                opts.steps
            );
        }
        let out = models.join(name);
        let outcome = train(&spec, &data, opts, &out)
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
    )?;
    let instruct_data = data::supervised(&org.corpus.instruct, &tok)?;
    let instruct = stage(
        "instruct",
        start_from(&base),
        instruct_data,
        &recipe.instruct,
    )?;
    for (name, set) in VARIANTS {
        let chats = org
            .corpus
            .set(set)
            .ok_or_else(|| anyhow!("the corpus has no set {set}"))?
            .to_vec();
        let examples = data::supervised(&chats, &tok)?;
        stage(name, start_from(&instruct), examples, &recipe.finetune)?;
    }
    Ok(org)
}

fn start_from(dir: &Path) -> Start {
    Start::Checkpoint(dir.to_string_lossy().into_owned())
}
