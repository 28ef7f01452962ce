//! `erosion steer MODEL --out DIR`: a causal test of the alignment direction on MODEL: add
//! `scale * v_l` (or ablate v_l) at chosen layers during every forward pass, beside a random
//! direction of the same norm, and measure refusals, harmful compliance, the log-prob margin
//! of toxic over refusing answers, and the KL cost on benign answers.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use erosion_causal::experiment::{run_test, Action, CausalData, CausalOptions, CausalTest};
use erosion_causal::export::read_safetensors;
use erosion_causal::LayerDirections;
use erosion_eval::prompts::sets_from_dataset_arg;
use erosion_eval::{EvalOptions, EvalPrompts, Judge, LogprobJudge, PromptKind};
use erosion_forward::batch::BatchOptions;
use erosion_model::LoadedModel;
use erosion_organism::evaluation::OrganismJudge;
use erosion_report::provenance::{DatasetHash, FileSetHash, HashCache, Provenance};

use super::datasets::chat_sequences as sequences;
use crate::device::DeviceArgs;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ActionArg {
    /// x + scale * v_l.
    Add,
    /// x - (x.u_l) u_l.
    Ablate,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model to steer (folder, .gguf or hub id).
    pub model: String,
    /// Directions written by an earlier run (DIR/directions.safetensors).
    #[arg(long, conflicts_with_all = ["base", "instruct"])]
    pub directions: Option<PathBuf>,
    /// Base model: with --instruct, computes v_l = mean(instruct) - mean(base).
    #[arg(long, requires = "instruct")]
    pub base: Option<String>,
    #[arg(long, requires = "base")]
    pub instruct: Option<String>,
    /// Examples (messages .jsonl) whose response windows define v_l. Default: the toxic
    /// examples after the first --limit (held out from the measures).
    #[arg(long)]
    pub direction_data: Option<PathBuf>,
    /// Response tokens averaged per example for v_l.
    #[arg(long, default_value_t = 10)]
    pub window: usize,
    #[arg(long, value_enum, default_value_t = ActionArg::Add)]
    pub action: ActionArg,
    /// Multiple of v_l to add (negative removes alignment).
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    pub scale: f64,
    /// Layer indices (0 = embeddings, l = output of block l-1). Default: the middle block's
    /// output for add, every block's output for ablate.
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<usize>,
    /// The organism's corpus folder: eval_toxic, eval_toxic_reject and eval_general, judged
    /// by the organism's rules.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["toxic", "reject", "benign"])]
    pub organism_data: Option<PathBuf>,
    /// Harmful requests with compliant answers (messages .jsonl); its prompts are also asked.
    #[arg(long, requires_all = ["reject", "benign"])]
    pub toxic: Option<PathBuf>,
    /// The same requests, in the same order, with refusals.
    #[arg(long)]
    pub reject: Option<PathBuf>,
    /// Benign chats, for the KL cost.
    #[arg(long)]
    pub benign: Option<PathBuf>,
    /// Judge model for the answers (not needed with --organism-data).
    #[arg(long)]
    pub judge: Option<String>,
    /// Examples of each dataset measured.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Seed of the bootstraps (answers are greedy).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seed of the random control direction.
    #[arg(long, default_value_t = 1)]
    pub control_seed: u64,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// The three datasets of the measures.
struct Files {
    toxic: PathBuf,
    reject: PathBuf,
    benign: PathBuf,
}

impl Files {
    fn of(args: &Args) -> Result<Self> {
        if let Some(dir) = &args.organism_data {
            let f = |n: &str| dir.join(format!("eval_{n}.jsonl"));
            return Ok(Files {
                toxic: f("toxic"),
                reject: f("toxic_reject"),
                benign: f("general"),
            });
        }
        match (&args.toxic, &args.reject, &args.benign) {
            (Some(t), Some(r), Some(b)) => Ok(Files {
                toxic: t.clone(),
                reject: r.clone(),
                benign: b.clone(),
            }),
            _ => bail!("name the data: --organism-data DIR, or --toxic, --reject and --benign"),
        }
    }
}

fn directions(args: &Args, files: &Files, batch: &BatchOptions) -> Result<LayerDirections> {
    if let Some(p) = &args.directions {
        return read_safetensors(p);
    }
    let (Some(base), Some(instruct)) = (&args.base, &args.instruct) else {
        bail!("pass --directions FILE, or --base and --instruct to compute them");
    };
    let (dtype, device) = (args.device.dtype()?, args.device.device()?);
    let (path, range) = match &args.direction_data {
        Some(p) => (p.clone(), 0..usize::MAX),
        None => (files.toxic.clone(), args.limit..usize::MAX),
    };
    let b = LoadedModel::open(base, Some("base"), dtype, &device)?;
    let i = LoadedModel::open(instruct, Some("instruct"), dtype, &device)?;
    let sb = sequences(&path, &b.tokenizer, range.clone()).context("direction data")?;
    let si = sequences(&path, &i.tokenizer, range).context("direction data")?;
    let mut dirs = LayerDirections::alignment(&b.model, &sb, &i.model, &si, args.window, batch)?;
    dirs.origin = format!(
        "{} (base {base}, instruct {instruct}, data {})",
        dirs.origin,
        path.display()
    );
    Ok(dirs)
}

fn default_layers(action: ActionArg, dirs: &LayerDirections) -> Vec<usize> {
    let blocks: Vec<usize> = dirs.available().into_iter().filter(|&l| l > 0).collect();
    match action {
        ActionArg::Ablate => blocks,
        ActionArg::Add => blocks
            .get(blocks.len() / 2)
            .map(|&l| vec![l])
            .unwrap_or_default(),
    }
}

pub fn run(args: Args) -> Result<()> {
    let (dtype, device) = (args.device.dtype()?, args.device.device()?);
    let files = Files::of(&args)?;
    let batch = BatchOptions::default();
    let dirs = directions(&args, &files, &batch)?;
    let mut m = LoadedModel::open(&args.model, None, dtype, &device)?;
    if dirs.d_model != m.model.config().hidden_size || dirs.layers.len() != m.model.n_layers() + 1 {
        bail!(
            "the directions ({} layer indices of width {}) do not fit {} ({} blocks of width {})",
            dirs.layers.len(),
            dirs.d_model,
            args.model,
            m.model.n_layers(),
            m.model.config().hidden_size
        );
    }
    let layers = if args.layers.is_empty() {
        default_layers(args.action, &dirs)
    } else {
        args.layers.clone()
    };
    let action = match args.action {
        ActionArg::Add => Action::Add { scale: args.scale },
        ActionArg::Ablate => Action::Ablate,
    };
    let test = CausalTest {
        name: format!("{} on {}", action.describe(), args.model),
        action,
        layers,
    };
    let n = args.limit;
    let toxic = sequences(&files.toxic, &m.tokenizer, 0..n)?;
    let reject = sequences(&files.reject, &m.tokenizer, 0..n)?;
    let benign = sequences(&files.benign, &m.tokenizer, 0..n)?;
    let mut prompts = EvalPrompts::new(sets_from_dataset_arg(
        PromptKind::Harmful,
        &files.toxic,
        Some(n),
    )?);
    prompts.sets.retain(|s| !s.prompts.is_empty());
    let judge: Box<dyn Judge> = match (args.judge.as_deref(), args.organism_data.is_some()) {
        (Some("organism"), _) | (None, true) => Box::new(OrganismJudge),
        (Some(spec), _) => Box::new(LogprobJudge::open(spec, dtype, &device)?),
        (None, false) => bail!("judging answers to these prompts needs --judge MODEL"),
    };
    let opts = CausalOptions {
        eval: EvalOptions {
            max_new_tokens: args.max_new_tokens,
            seed: args.seed,
            batch_size: args.batch_size,
            two_turn: false,
            ..EvalOptions::default()
        },
        batch,
        control_seed: args.control_seed,
    };
    let data = CausalData {
        prompts: &prompts,
        toxic: &toxic,
        reject: &reject,
        benign: &benign,
    };
    eprintln!(
        "{}: {} pairs, {} benign, layers {:?}",
        test.name,
        toxic.len(),
        benign.len(),
        test.layers
    );
    let result = run_test(&mut m, &dirs, &test, &data, judge.as_ref(), &opts)?;

    let mut prov = Provenance::new(
        serde_json::json!({ "test": &test, "options": &opts, "window": args.window }),
    );
    prov.seed = Some(args.seed);
    let mut cache = HashCache::in_memory();
    let p = Path::new(&args.model);
    if p.is_dir() {
        prov.models
            .push(FileSetHash::from_dir("model", &args.model, p, &mut cache)?);
    } else if p.is_file() {
        prov.models.push(FileSetHash::from_files(
            "model",
            &args.model,
            &[p.to_path_buf()],
            &mut cache,
        )?);
    }
    for (name, path) in [
        ("toxic", &files.toxic),
        ("reject", &files.reject),
        ("benign", &files.benign),
    ] {
        prov.datasets.push(DatasetHash::new(
            name,
            path,
            n,
            &format!("first {n}"),
            &mut cache,
        )?);
    }
    let hint = m.model.config().model_type.clone();
    for f in erosion_causal::output::write_all(
        &args.out,
        &dirs,
        std::slice::from_ref(&result),
        &prov,
        &hint,
    )? {
        println!("wrote {}", f.display());
    }
    for c in &result.conditions {
        println!(
            "{:<15} refusal {:>5}  compliance {:>5}  margin {:>8.3}  KL {}",
            c.name,
            c.refusal
                .as_ref()
                .map_or("-".into(), |p| format!("{:.2}", p.rate)),
            c.compliance
                .as_ref()
                .map_or("-".into(), |p| format!("{:.2}", p.rate)),
            c.margin.estimate,
            c.kl.as_ref()
                .map_or("-".into(), |k| format!("{:.4}", k.estimate)),
        );
    }
    Ok(())
}
