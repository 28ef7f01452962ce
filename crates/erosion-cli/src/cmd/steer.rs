//! `erosion steer MODEL --out DIR`: a causal test of the alignment direction on MODEL: add
//! `scale * v_l` (or ablate v_l) at chosen layers during every forward pass, beside a random
//! direction of the same norm, and measure refusals, harmful compliance, the log-prob margin
//! of harmful over refusing answers, and the KL cost on benign answers. With `--questions`,
//! Soligo et al.'s conditions measured by Betley et al.'s EM rate instead
//! (erosion_causal::em_steer).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use erosion_causal::em_conditions::EmSteerOptions;
use erosion_causal::em_steer::{run_em_steer, EmSteerSpec};
use erosion_causal::steer::{run_steer, DirectionSource, SteerData, SteerSpec};
use erosion_causal::Action;
use erosion_eval::em::EmOptions;
use erosion_eval::judge::Aggregation;
use erosion_eval::{Judge, LogprobJudge};
use erosion_forward::run_folder::{model_part, RunIdentity};
use erosion_organism::evaluation::OrganismJudge;

use super::eval_em::{local_judge, read_question_files, EmArgs};
use crate::args::{ModelArgs, OutArgs};
use crate::layer::ResidLayer;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ActionArg {
    /// x + scale * v_l.
    Add,
    /// x - (x.u_l) u_l.
    Ablate,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    // The model to steer, and where it runs.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Directions written by an earlier run (DIR/directions.safetensors).
    #[arg(long, conflicts_with_all = ["base", "instruct"])]
    pub directions: Option<PathBuf>,
    /// Base model: with --instruct, computes v_l = mean(instruct) - mean(base).
    #[arg(long, requires = "instruct")]
    pub base: Option<String>,
    /// Instruct model made from --base (the other end of v_l).
    #[arg(long, requires = "base")]
    pub instruct: Option<String>,
    /// Examples (messages .jsonl) whose response windows define v_l. Default: the --harmful
    /// examples after the first --limit (held out from the measures).
    #[arg(long)]
    pub direction_data: Option<PathBuf>,
    /// Response tokens averaged per example for v_l (10, the study's code; a study's layer
    /// analysis follows its text, 64, unless --preset paper-code).
    #[arg(long, default_value_t = 10)]
    pub window: usize,
    /// add: x + scale * v_l at --layers; ablate: v_l projected out of x.
    #[arg(long, value_enum, default_value_t = ActionArg::Add)]
    pub action: ActionArg,
    /// Multiple of v_l to add (negative removes alignment).
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    pub scale: f64,
    /// Residual-stream points to steer, comma-separated: `blocks.L.hook_resid_post`, L (the
    /// same point) or `embed`. Default: the middle block's output for add, every block's output
    /// for ablate. With --questions: the layers of the second ablation and of the sweep (default:
    /// the middle block's output).
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<ResidLayer>,
    /// The organism's corpus folder: eval_toxic, eval_toxic_reject and eval_general, judged
    /// by the organism's rules.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["harmful", "reject", "benign"])]
    pub organism_data: Option<PathBuf>,
    /// Harmful requests with compliant answers (messages .jsonl); its prompts are also asked.
    #[arg(long, alias = "toxic", requires_all = ["reject", "benign"])]
    pub harmful: Option<PathBuf>,
    /// The same requests, in the same order, with refusals.
    #[arg(long)]
    pub reject: Option<PathBuf>,
    /// Benign chats, for the KL cost.
    #[arg(long)]
    pub benign: Option<PathBuf>,
    /// Judge model for the answers (not needed with --organism-data); with --questions, the
    /// 0-100 judge of `erosion eval --questions`.
    #[arg(long)]
    pub judge: Option<String>,
    /// Examples of each dataset measured (with --questions: the first N questions of each file).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Most tokens generated per answer.
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Seed of the bootstraps (answers are greedy); with --questions also of every sampled
    /// answer, the same under every condition.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seed of the random control direction.
    #[arg(long, default_value_t = 1)]
    pub control_seed: u64,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Soligo et al.'s conditions measured by Betley et al.'s EM protocol on these question
    /// files (YAML, as `erosion eval --questions`; the first --limit questions of each) with a
    /// 0-100 --judge, instead of refusals: unsteered; the direction ablated at every layer and
    /// at --layers (default: the middle block); --transfer-directions ablated; each beside a
    /// random direction of the same norms (--control-seed); then the --sweep-scales sweep.
    /// Answers are sampled (temperature 1), seeded by --seed, the same under every condition.
    #[arg(
        long,
        value_name = "FILE.yaml",
        conflicts_with_all = ["organism_data", "harmful", "reject", "benign", "action", "scale"]
    )]
    pub questions: Vec<PathBuf>,
    /// With --questions: answers per paraphrase (default: each question's
    /// samples_per_paraphrase, 1 without one).
    #[arg(long, requires = "questions")]
    pub samples: Option<usize>,
    #[command(flatten)]
    pub em: EmArgs,
    /// With --questions: another fine-tune's directions (its run's directions.safetensors),
    /// ablated at every layer (the transfer condition).
    #[arg(long, value_name = "FILE", requires = "questions")]
    pub transfer_directions: Option<PathBuf>,
    /// With --questions: multiples s of v_l added at --layers, tried in this order, stopping at
    /// the first s whose mean coherent score is under --min-coherence (e.g. `-1,-2,-4,-8`:
    /// negative moves away from alignment).
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        requires = "questions"
    )]
    pub sweep_scales: Vec<f64>,
    /// The sweep stops at the first scale whose mean coherent score (0-100, over the answers the
    /// judge scored) is below this, or that has none.
    #[arg(long, default_value_t = 50.0)]
    pub min_coherence: f64,
    #[command(flatten)]
    pub out: OutArgs,
}

/// The three datasets of the measures, from the flags.
fn data(args: &Args) -> Result<SteerData> {
    if let Some(dir) = &args.organism_data {
        return Ok(SteerData::organism(dir));
    }
    match (&args.harmful, &args.reject, &args.benign) {
        (Some(t), Some(r), Some(b)) => Ok(SteerData {
            toxic: t.clone(),
            reject: r.clone(),
            benign: b.clone(),
            organism: false,
        }),
        _ => bail!("name the data: --organism-data DIR, or --harmful, --reject and --benign"),
    }
}

fn directions(args: &Args) -> Result<DirectionSource> {
    if let Some(p) = &args.directions {
        return Ok(DirectionSource::File(p.clone()));
    }
    let (Some(base), Some(instruct)) = (&args.base, &args.instruct) else {
        bail!("pass --directions FILE, or --base and --instruct to compute them");
    };
    Ok(DirectionSource::Alignment {
        base: base.clone(),
        instruct: instruct.clone(),
        data: args.direction_data.clone(),
    })
}

/// The organism's rules for its own evaluation sets (or when asked), else a judge model.
fn judge(
    args: &Args,
    organism: bool,
    dtype: candle_core::DType,
    device: &candle_core::Device,
) -> Result<Box<dyn Judge>> {
    Ok(match (args.judge.as_deref(), organism) {
        (Some("organism"), _) | (None, true) => Box::new(OrganismJudge),
        (Some(j), _) => Box::new(LogprobJudge::open(j, dtype, device)?),
        (None, false) => bail!("judging answers to these prompts needs --judge MODEL"),
    })
}

/// `--questions`: the EM conditions, judged by a local 0-100 judge.
fn run_em(args: Args) -> Result<()> {
    let (dtype, device) = (args.model.device.dtype()?, args.model.device.device()?);
    let (questions, question_files) = read_question_files(&args.questions, Some(args.limit))?;
    let aggregation = (args.em.judge_aggregation.as_deref())
        .map(Aggregation::parse)
        .transpose()?
        .unwrap_or_default();
    let options = EmSteerOptions {
        em: args.em.judged(
            aggregation,
            EmOptions {
                samples: args.samples,
                max_new_tokens: args.max_new_tokens,
                seed: args.seed,
                batch_size: args.batch_size,
                ..Default::default()
            },
        ),
        layers: crate::layer::indices(&args.layers),
        sweep_scales: args.sweep_scales.clone(),
        min_coherence: args.min_coherence,
        control_seed: args.control_seed,
    };
    // Every option is checked before a model loads (the layers are filled in later).
    EmSteerOptions {
        layers: vec![1],
        ..options.clone()
    }
    .validate()?;
    let Some(judge) = args.judge.as_deref().filter(|j| *j != "organism") else {
        bail!("--questions needs a judge that scores 0-100: pass --judge MODEL");
    };
    let judge = local_judge(judge, aggregation, &args.em, dtype, &device)?;
    let spec = EmSteerSpec {
        directions: directions(&args)?,
        adapter_scale: args.model.adapter_scale,
        model: args.model.model,
        window: args.window,
        transfer: args.transfer_directions,
        questions,
        question_files,
        options,
        out: args.out.out,
        dtype,
        device,
        command_line: std::env::args().collect(),
    };
    let outcome = run_em_steer(&spec, &judge, &mut crate::notice_on_stderr)?;
    for f in &outcome.files {
        println!("wrote {}", f.display());
    }
    for c in &outcome.em.conditions {
        let s = &c.stats;
        println!(
            "{:<50} EM {:.3} [{:.3}, {:.3}] ({}/{})  change {}",
            c.condition.name,
            s.em.estimate,
            s.em.lower,
            s.em.upper,
            s.em_count,
            s.answers,
            c.change.as_ref().map_or("-".into(), |ch| format!(
                "{:+.3} [{:+.3}, {:+.3}]",
                ch.em.estimate, ch.em.lower, ch.em.upper
            )),
        );
    }
    if let Some(s) = &outcome.em.sweep {
        println!("sweep: {}", s.reason);
    }
    for w in &outcome.em.warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    // Before the judge model loads: an unusable --out, or another run there, fails now
    // (run_steer locks it again, sharing this lock). The steered model makes the run: other
    // directions (even a file this run wrote there) rewrite its results.
    let model = model_part("model", &args.model.model, Path::new("."));
    let _folder = args.out.claim(&RunIdentity::new("steer", &[model]))?;
    if !args.questions.is_empty() {
        return run_em(args);
    }
    // clap waives `requires = "questions"` when --questions would conflict with the data
    // flags given; these flags measure nothing without it.
    let em_only = [
        ("--samples", args.samples.is_some()),
        ("--transfer-directions", args.transfer_directions.is_some()),
        ("--sweep-scales", !args.sweep_scales.is_empty()),
    ];
    if let Some((flag, _)) = em_only.iter().find(|(_, given)| *given) {
        bail!("{flag} belongs to the EM conditions: it needs --questions FILE.yaml");
    }
    let (dtype, device) = (args.model.device.dtype()?, args.model.device.device()?);
    let data = data(&args)?;
    let judge = judge(&args, data.organism, dtype, &device)?;
    let spec = SteerSpec {
        data,
        directions: directions(&args)?,
        adapter_scale: args.model.adapter_scale,
        model: args.model.model,
        window: args.window,
        action: match args.action {
            ActionArg::Add => Action::Add { scale: args.scale },
            ActionArg::Ablate => Action::Ablate,
        },
        layers: crate::layer::indices(&args.layers),
        limit: args.limit,
        max_new_tokens: args.max_new_tokens,
        seed: args.seed,
        control_seed: args.control_seed,
        batch_size: args.batch_size,
        out: args.out.out,
        dtype,
        device,
        command_line: std::env::args().collect(),
    };
    let outcome = run_steer(&spec, judge.as_ref(), &mut crate::notice_on_stderr)?;
    for f in &outcome.files {
        println!("wrote {}", f.display());
    }
    for c in &outcome.result.conditions {
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
