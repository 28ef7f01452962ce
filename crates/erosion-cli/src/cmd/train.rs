//! `erosion train MODEL DATASET --out DIR`: supervised fine-tuning (full or LoRA) into a
//! Hugging Face folder; rerunning the command resumes from the last checkpoint in DIR.

use crate::args::{DatasetArgs, ModelArgs, OutArgs};
use crate::layer::ResidLayer;
use crate::probe::ProbeArgs;
use anyhow::{bail, Context, Result};
use erosion_causal::data::chat_sequences;
use erosion_causal::drift_series::TrainingMonitor;
use erosion_causal::export::read_safetensors;
use erosion_data::{render_example, RenderOptions};
use erosion_forward::batch::{ProgressSink, Quiet};
use erosion_forward::out_lock::OutLock;
use erosion_model::chat::{ChatFormat, PlainFormat};
use erosion_model::load::Checkpoint;
use erosion_model::transformer::LoraConfig;
use erosion_train::adamw::AdamWConfig;
use erosion_train::examples::Cut;
use erosion_train::run::{train, Monitor, Outcome, RunSpec, Start};
use erosion_train::{
    LossOn, Method, ProbeExample, ProtectMethod, Protection, TrainExample, TrainOptions,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    // The checkpoint to start from; the chat datasets; the folder of the final model and of
    // the checkpoints while training.
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DatasetArgs,
    #[command(flatten)]
    pub out: OutArgs,
    /// Optimizer steps (default: from --epochs).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Passes over the dataset (fractions allowed; ignored with --steps).
    #[arg(long, default_value_t = 1.0)]
    pub epochs: f64,
    /// Examples per micro-batch.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Micro-batches accumulated per optimizer step (effective batch = batch size x this).
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Peak learning rate of AdamW, after warm-up.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Warm-up steps (default: 5% of the steps).
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// Learning rate at the end of the cosine decay, as a fraction of --lr.
    #[arg(long, default_value_t = 0.0)]
    pub min_lr_ratio: f64,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Clip the global gradient norm (0 = no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Longest example in tokens; longer ones are cut and counted.
    #[arg(long, default_value_t = 1024)]
    pub max_seq_len: usize,
    /// Loss on the response (with its end-of-turn token) or on all tokens.
    #[arg(long, value_enum, default_value = "response")]
    pub loss_on: LossOnArg,
    /// Train LoRA adapters of this rank instead of every weight.
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// LoRA's scale numerator: the update is (alpha / rank) B A.
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// Comma-separated projections to adapt.
    #[arg(long, default_value = "q_proj,k_proj,v_proj,o_proj")]
    pub lora_targets: String,
    /// Write a resumable checkpoint every N steps.
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Render without the chat template (as for a base model).
    #[arg(long)]
    pub plain: bool,
    /// Seed of the initialisation of LoRA adapters and of the batch order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads sharing each step on CPU (default: the cores available). The weights
    /// depend on this number, so pass it to reproduce a run made elsewhere.
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Every N steps (and at the start and end), measure a probe set's projection on the
    /// alignment directions and its margin (needs --directions, --harmful, --reject); written to
    /// OUT/monitor/drift.json and report.html as training goes.
    #[arg(long, value_name = "N", requires_all = ["directions", "harmful", "reject"])]
    pub monitor: Option<usize>,
    /// Keep the alignment directions of --directions: `updates` projects them out of every
    /// update of the weights that write into the residual stream; `penalty` adds
    /// --protect-weight x the squared drift of the --harmful probe's projections to the loss.
    #[arg(long, value_enum, requires = "directions")]
    pub protect: Option<ProtectArg>,
    /// Residual-stream points to protect, comma-separated: `blocks.L.hook_resid_post`, L (the
    /// same point) or `embed` (default: every block output with a direction).
    #[arg(long, value_delimiter = ',')]
    pub protect_layers: Vec<ResidLayer>,
    /// Weight of the drift penalty of --protect penalty.
    #[arg(long, default_value_t = 10.0)]
    pub protect_weight: f64,
    #[command(flatten)]
    pub probe: ProbeArgs,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum ProtectArg {
    Updates,
    Penalty,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum LossOnArg {
    Response,
    All,
}

impl From<LossOnArg> for LossOn {
    fn from(arg: LossOnArg) -> Self {
        match arg {
            LossOnArg::Response => LossOn::Response,
            LossOnArg::All => LossOn::All,
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    // The run reopens its start by name (to resume, and in its records): a scale would be lost.
    if args.model.adapter_scale.is_some_and(|k| k != 1.0) {
        bail!("--adapter-scale: training starts from an adapter as trained, not scaled");
    }
    let ck = args.model.open()?;
    check_flags(&args, &ck)?;
    let out = &args.out.out;
    // Before any work: an unusable --out, or another run writing there, fails now.
    let _lock = OutLock::acquire(out, "train", &mut crate::notice_on_stderr)
        .with_context(|| format!("--out {}", out.display()))?;
    let data = examples(&args, &ck)?;
    let opts = options(&args, &ck, data.len())?;
    let probe = match args.monitor {
        Some(_) => Some(TrainingMonitor::new(
            &args.probe.spec()?,
            &ck.tokenizer,
            &out.join("monitor"),
            std::env::args().collect(),
        )?),
        None => None,
    };
    let watch = |step: usize, model: &erosion_model::transformer::Transformer| -> Result<()> {
        let p = probe.as_ref().expect("the monitor runs only with a probe");
        p.watch(step, model)
    };
    let progress: &dyn ProgressSink = if args.quiet {
        &Quiet
    } else {
        &crate::progress::Bars
    };
    let spec = RunSpec {
        start: Start::Checkpoint(args.model.model.clone()),
        tokenizer: &ck.tokenizer,
        generation: ck.generation_config.as_ref(),
        dtype: args.model.device.dtype()?,
        device: args.model.device.device()?,
        progress,
        stop_after: None,
        other_run: args.out.other_run(),
        monitor: args.monitor.map(|every| Monitor {
            every,
            call: &watch,
        }),
    };
    eprintln!(
        "training {} on {} examples: {} steps of {} sequences",
        args.model.model,
        data.len(),
        opts.steps,
        opts.sequences_per_step()
    );
    let outcome = train(&spec, &data, &opts, out, &mut crate::notice_on_stderr)
        .with_context(|| format!("training into {}", out.display()))?;
    print_outcome(&outcome);
    Ok(())
}

/// Every example of the datasets, rendered (with the chat template unless --plain), its loss
/// tokens marked, cut to --max-seq-len (how many were cut is said on stderr).
fn examples(args: &Args, ck: &Checkpoint) -> Result<Vec<TrainExample>> {
    let (specs, base_dir) = args.data.specs()?;
    let mut render = RenderOptions::default();
    if args.plain {
        render.format = ChatFormat::Plain(PlainFormat::default());
    }
    let mut data = Vec::new();
    let mut cut = Cut::default();
    for spec in specs {
        let dataset = spec.load(&base_dir)?;
        for ex in &dataset.examples {
            let r = render_example(&ck.tokenizer, ex, &render)?;
            let t = TrainExample::from_rendered(&r, args.loss_on.into())
                .truncated_counted(args.max_seq_len, &mut cut);
            t.check(&ex.source.to_string())?;
            data.push(t);
        }
    }
    if cut.examples > 0 {
        eprintln!(
            "{} of {} examples are longer than --max-seq-len {} (the longest: {} tokens) and were cut; {} loss tokens went with their tails",
            cut.examples,
            data.len(),
            args.max_seq_len,
            cut.longest,
            cut.targets_lost
        );
    }
    Ok(data)
}

/// The flags, checked before any work: numbers finite and in range, LoRA against the model.
fn check_flags(args: &Args, ck: &Checkpoint) -> Result<()> {
    // 0 or NaN epochs would otherwise train one step.
    if !(args.epochs.is_finite() && args.epochs > 0.0) {
        bail!("--epochs must be a positive number, not {}", args.epochs);
    }
    if !(args.max_grad_norm.is_finite() && args.max_grad_norm >= 0.0) {
        bail!(
            "--max-grad-norm must be 0 (no clipping) or positive, not {}",
            args.max_grad_norm
        );
    }
    if !(args.protect_weight.is_finite() && args.protect_weight >= 0.0) {
        bail!(
            "--protect-weight must be 0 or more, not {}",
            args.protect_weight
        );
    }
    let opts = plain_options(args, args.steps.unwrap_or(1))?;
    opts.validate()
        .and_then(|_| opts.check_model(&ck.config))
        .with_context(|| format!("checking the flags against {}", args.model.model))
}

/// The run's options from the flags; without --steps, the steps of --epochs over `n_examples`.
fn options(args: &Args, ck: &Checkpoint, n_examples: usize) -> Result<TrainOptions> {
    let mut opts = plain_options(args, 1)?;
    opts.steps = match args.steps {
        Some(s) => s,
        None => opts
            .steps_for_epochs(args.epochs, n_examples)
            .context("--epochs")?,
    };
    opts.warmup_steps = args.warmup_steps.unwrap_or(opts.steps / 20);
    opts.protect = protection(args, ck)?;
    Ok(opts)
}

/// The options of the flags with `steps` steps, without the protection (which loads the model).
fn plain_options(args: &Args, steps: usize) -> Result<TrainOptions> {
    let method = match args.lora_rank {
        None => Method::Full,
        Some(rank) => Method::Lora(LoraConfig {
            rank,
            alpha: args.lora_alpha,
            targets: args
                .lora_targets
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            seed: args.seed,
        }),
    };
    Ok(TrainOptions {
        steps,
        batch_size: args.batch_size,
        grad_accum: args.grad_accum,
        lr: args.lr,
        min_lr_ratio: args.min_lr_ratio,
        adamw: AdamWConfig {
            weight_decay: args.weight_decay,
            ..AdamWConfig::default()
        },
        max_grad_norm: (args.max_grad_norm > 0.0).then_some(args.max_grad_norm),
        max_seq_len: args.max_seq_len,
        loss_on: args.loss_on.into(),
        method,
        seed: args.seed,
        threads: match args.model.device.device()? {
            candle_core::Device::Cpu => args
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            _ => 1,
        },
        save_every: args.save_every,
        ..TrainOptions::default()
    })
}

/// What the run left in its folder.
fn print_outcome(outcome: &Outcome) {
    let last = outcome.state.history.last();
    match (outcome.reused, last) {
        (true, _) => println!("{} already holds this run's model", outcome.dir.display()),
        (false, Some(s)) => println!(
            "saved {} (step {}, loss {:.4}{})",
            outcome.dir.display(),
            s.step,
            s.loss,
            outcome
                .resumed_from
                .map(|r| format!(", resumed from step {r}"))
                .unwrap_or_default()
        ),
        (false, None) => println!("saved {}", outcome.dir.display()),
    }
}

/// The protection `--protect` asks for: the chosen directions, and for the penalty the probe
/// (the --harmful examples' response windows) with its projections under the starting model.
fn protection(args: &Args, ck: &Checkpoint) -> Result<Option<Protection>> {
    let Some(kind) = args.protect else {
        return Ok(None);
    };
    let dirs = read_safetensors(
        args.probe
            .directions
            .as_deref()
            .context("--protect needs --directions")?,
    )?;
    let layers: Vec<usize> = if args.protect_layers.is_empty() {
        dirs.available().into_iter().filter(|&l| l > 0).collect()
    } else {
        crate::layer::indices(&args.protect_layers)
    };
    let directions = layers
        .iter()
        .map(|&l| match dirs.layers.get(l) {
            Some(Some(v)) => Ok((l, v.clone())),
            _ => anyhow::bail!(
                "--protect-layers: {} has no direction in the --directions file",
                ResidLayer(l)
            ),
        })
        .collect::<Result<Vec<_>>>()?;
    let mut p = Protection {
        method: ProtectMethod::ProjectUpdates,
        directions,
        probe: Vec::new(),
    };
    if let ProtectArg::Penalty = kind {
        let harmful = args
            .probe
            .harmful
            .as_deref()
            .context("--protect penalty needs its probe: --harmful FILE")?;
        p.probe = chat_sequences(harmful, &ck.tokenizer, 0..args.probe.probe_size)?
            .iter()
            .map(|s| ProbeExample::first_response_tokens(s, args.probe.window))
            .collect();
        let start = ck.load_model(candle_core::DType::F32, &args.model.device.device()?)?;
        let reference = erosion_train::protect::reference_projections(&start, &p)?;
        p.method = ProtectMethod::Penalty {
            weight: args.protect_weight,
            reference,
        };
    }
    Ok(Some(p))
}
