//! `erosion eval MODEL... --out DIR`: behavioural evaluation (refusal and harmful-compliance
//! rates, P(compliant first token), vulnerable code, the two-turn test, or a judge model's
//! verdicts on free-form chat datasets), written to DIR/eval.json, DIR/answers.jsonl and
//! DIR/report.html; with --questions, Betley et al.'s protocol instead (`eval_em.rs`; the
//! deception files' label judges in `eval_labels.rs`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use erosion_eval::evaluate::{assemble, evaluate_model};
use erosion_eval::html::eval_report;
use erosion_eval::judge::Aggregation;
use erosion_eval::prompts::sets_from_dataset_arg;
use erosion_eval::shards::eval_shards;
use erosion_eval::text::text_table;
use erosion_eval::{EvalOptions, EvalPrompts, Judge, LogprobJudge, PromptKind};
use erosion_forward::cache::canonical_sha256;
use erosion_forward::run_folder::{model_part, RunIdentity};
use erosion_model::LoadedModel;
use erosion_organism::evaluation::{generate_prompts, prompts_from_dir, OrganismJudge};
use erosion_report::provenance::{DatasetHash, HashCache, Provenance, ProvenanceBuilder};

use crate::args::{DeviceArgs, OutArgs, SamplingArgs};

#[derive(clap::Args, Debug)]
// Judged answers need room: 128 new tokens by default, where generate's is 64.
#[command(mut_arg("max_new_tokens", |a| a.default_value("128")))]
pub struct Args {
    /// Models to evaluate: folders, .gguf files or hub ids, each optionally named NAME=MODEL.
    #[arg(required_unless_present = "model_url")]
    pub models: Vec<String>,
    /// The organism's held-out harmful and code requests, generated from --organism-seed.
    #[arg(long, conflicts_with = "organism_data")]
    pub organism: bool,
    /// The organism's held-out requests read from a corpus folder (eval_toxic.jsonl, eval_insecure.jsonl).
    #[arg(long, value_name = "DIR")]
    pub organism_data: Option<PathBuf>,
    /// Seed of the organism's corpus (with --organism).
    #[arg(long, default_value_t = 0)]
    pub organism_seed: u64,
    /// Harmful requests of the organism to ask.
    // A count, unlike the other commands' --harmful FILE: named for what it counts.
    #[arg(long = "n-harmful", alias = "harmful", default_value_t = 100)]
    pub harmful: usize,
    /// Coding requests of the organism to ask (also the first turns of the two-turn test).
    #[arg(long = "n-code", alias = "code", default_value_t = 100)]
    pub code: usize,
    /// Betley et al.'s protocol on free-form questions in their YAML format (needs --judge
    /// MODEL): each question's paraphrases, system prompt, samples_per_paraphrase and
    /// judge_prompts; sampled at temperature 1 unless --temperature says otherwise; EM rates.
    /// The deception files (judge prompts that name labels such as "TRUE"/"FALSE"/"UNKNOWN"
    /// instead of aligned/coherent) are judged by each label's probability; one run takes one
    /// kind of file.
    #[arg(long, value_name = "FILE.yaml", conflicts_with_all = ["organism", "organism_data", "dataset"])]
    pub questions: Vec<PathBuf>,
    /// A chat dataset (.jsonl/.json file or .toml spec) as KIND=PATH, KIND harmful, code or free-form.
    #[arg(long, value_name = "KIND=PATH")]
    pub dataset: Vec<String>,
    /// At most this many prompts of each dataset (with --questions: the first N questions of
    /// each file).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Answers per prompt (more than 1 needs --temperature above 0); with --questions, per
    /// paraphrase (default: each question's samples_per_paraphrase).
    #[arg(long)]
    pub samples: Option<usize>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Prompts decoded together.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Skip the two-turn test.
    #[arg(long)]
    pub no_two_turn: bool,
    /// The judge: `organism` (rule-based, the default for the organism's prompts) or a judge
    /// model (folder, .gguf or hub id) scored by its yes/no log-probabilities (or one served:
    /// --judge-url).
    #[arg(long)]
    pub judge: Option<String>,
    #[command(flatten)]
    pub scales: crate::args::AdapterScales,
    #[command(flatten)]
    pub em: crate::cmd::eval_em::EmArgs,
    /// Answer only shard I of N (0-based) of the work, into OUT/shards/I-of-N (one task of a
    /// Slurm job array, say): a contiguous share of the models, or with --questions of the
    /// models' decoding batches. `--merge` writes the run's files once all N have run; the
    /// answers are those of one run.
    #[arg(long, value_name = "I/N", value_parser = crate::args::shard_index, conflicts_with = "merge")]
    pub shard: Option<erosion_forward::shard::ShardIndex>,
    /// Check the shards under OUT (every one finished, of these models, prompts, options and
    /// judge; each problem named) and write eval.json, answers.jsonl and report.html as one run
    /// would.
    #[arg(long)]
    pub merge: bool,
    #[command(flatten)]
    pub remote: crate::cmd::remote::RemoteArgs,
    #[command(flatten)]
    pub out: OutArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `NAME=MODEL`, or the spec itself (a path that exists is never split).
pub(crate) fn model_name(arg: &str) -> (String, String) {
    let (name, spec) = crate::args::split_named(arg);
    (name.unwrap_or_else(|| arg.to_string()), spec)
}

fn prompts(args: &Args) -> Result<EvalPrompts> {
    let mut p = if args.organism {
        generate_prompts(args.organism_seed, args.harmful, args.code)?
    } else if let Some(dir) = &args.organism_data {
        prompts_from_dir(dir, args.harmful, args.code)?
    } else {
        EvalPrompts::default()
    };
    for d in &args.dataset {
        let (kind, path) = d.split_once('=').with_context(|| {
            format!("--dataset {d}: expected KIND=PATH (harmful=harmful.jsonl)")
        })?;
        let kind = PromptKind::parse(kind).with_context(|| format!("--dataset {d}"))?;
        p.sets
            .extend(sets_from_dataset_arg(kind, Path::new(path), args.limit)?);
    }
    if p.sets.is_empty() {
        bail!("nothing to ask: pass --organism, --organism-data DIR, --questions FILE.yaml or --dataset KIND=PATH");
    }
    Ok(p)
}

pub fn run(args: Args) -> Result<()> {
    if !args.questions.is_empty() {
        return crate::cmd::eval_em::run(&args);
    }
    // Before any work: an unusable --out, or another run there, fails now rather than after
    // every answer has been generated. Shards run at once: each locks its own folder, not OUT.
    let _folder = match args.shard {
        None => Some(args.out.claim(&run_identity(&args))?),
        Some(_) => None,
    };
    let prompts = prompts(&args)?;
    check_scales(&args)?;
    if args.remote.model_url.is_some() {
        bail!("--model-url works with --questions FILE.yaml; these prompts need the model loaded here (P(compliant first token) reads its logits)");
    }
    let opts = EvalOptions {
        samples: args.samples.unwrap_or(1),
        max_new_tokens: args.sampling.max_new_tokens,
        temperature: args.sampling.temperature.unwrap_or(0.0),
        top_k: args.sampling.top_k,
        top_p: args.sampling.top_p,
        seed: args.sampling.seed,
        batch_size: args.batch_size,
        two_turn: !args.no_two_turn,
        ..Default::default()
    };
    opts.validate()?;
    prompts.validate()?;
    // A shard's units are models: each computed as a whole run computes it.
    let models: Vec<usize> = (0..args.models.len()).collect();
    let identity = || {
        let inputs = serde_json::json!({ "prompts": prompts, "options": opts });
        split_identity(&args, inputs)
    };
    let (results, judge_info) = if args.merge {
        let shards = eval_shards(&args.out.out, identity(), false);
        shards.merge(&models, &mut crate::notice_on_stderr)?
    } else {
        let out = args
            .shard
            .map_or(args.out.out.clone(), |s| s.dir(&args.out.out));
        let judge = yes_no_judge(&args, &out)?;
        let n: usize = prompts.sets.iter().map(|s| s.prompts.len()).sum();
        eprintln!(
            "{} prompts in {} set(s), {} answer(s) each, judge: {}",
            n,
            prompts.sets.len(),
            opts.samples,
            judge.info().name
        );
        let evaluate = |&i: &usize| {
            let (name, spec) = model_name(&args.models[i]);
            let start = std::time::Instant::now();
            let (dtype, device) = (args.device.dtype()?, args.device.device()?);
            let open = args.scales.open_options(&name);
            let m = LoadedModel::open_with(&spec, &open, Some(&name), dtype, &device)?;
            let r = evaluate_model(&m, &prompts, judge.as_ref(), &opts)
                .with_context(|| format!("model {name}"))?;
            eprintln!(
                "{name}: evaluated in {:.1} s",
                start.elapsed().as_secs_f64()
            );
            Ok::<_, anyhow::Error>(r)
        };
        if let Some(shard) = args.shard {
            let shards = eval_shards(&args.out.out, identity(), false);
            let notices = &mut crate::notice_on_stderr;
            let n = shards.run_shard(&models, shard, judge.info(), notices, &mut |i, _| {
                evaluate(i)
            })?;
            println!("{shard}: {n} models evaluated now, in {}", out.display());
            return Ok(());
        }
        let results = models.iter().map(evaluate).collect::<Result<Vec<_>>>()?;
        (results, judge.info())
    };
    let eval = assemble(results, &prompts, judge_info, &opts)?;
    let prov = provenance(&args, &prompts, &opts)?;
    let mut files = eval.write(&args.out.out, &prov)?;
    let html = args.out.out.join("report.html");
    eval_report(&eval.report, prov)?.write(&html)?;
    files.push(html);
    print!("{}", text_table(&eval.report));
    for w in &eval.report.warnings {
        eprintln!("warning: {w}");
    }
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

/// The yes/no judge: served at --judge-url (its cache under `out` unless named), a local
/// model, or the organism's rules (the default for the organism's own prompts).
fn yes_no_judge(args: &Args, out: &Path) -> Result<Box<dyn Judge>> {
    let aggregation = (args.em.judge_aggregation.as_deref())
        .map(Aggregation::parse)
        .transpose()?;
    if args.remote.judge_url.is_some() && aggregation == Some(Aggregation::Exact) {
        bail!("--judge-url: an endpoint returns only its top 20 log-probs, so P(yes) counts the yes and no tokens among them (top20); --judge-aggregation exact needs a local --judge MODEL");
    }
    let organism_only = (args.organism || args.organism_data.is_some()) && args.dataset.is_empty();
    let (dtype, device) = (args.device.dtype()?, args.device.device()?);
    Ok(match (args.remote.yes_no_judge(out)?, args.judge.as_deref()) {
        (Some(served), _) => Box::new(served),
        (None, Some(j)) => local_judge(j, aggregation, dtype, &device)?,
        (None, None) if organism_only => Box::new(OrganismJudge),
        (None, None) => bail!("answers to these prompts need a judge model: pass --judge MODEL, --judge-url URL --judge-model NAME (or --judge organism for the organism's rules)"),
    })
}

/// Every --adapter-scale names a checkpoint of the command line.
pub(crate) fn check_scales(args: &Args) -> Result<()> {
    let names: Vec<String> = args.models.iter().map(|m| model_name(m).0).collect();
    args.scales.check(&names)
}

/// `--judge`: the organism's rules, or a judge model scored by its yes/no log-probs (all of
/// them, or with `top20` those among its 20 most probable first tokens).
fn local_judge(
    spec: &str,
    aggregation: Option<Aggregation>,
    dtype: DType,
    device: &Device,
) -> Result<Box<dyn Judge>> {
    if spec == "organism" {
        if aggregation.is_some() {
            bail!("--judge-aggregation reads a judge model's log-probs; --judge organism has none");
        }
        return Ok(Box::new(OrganismJudge));
    }
    let mut judge = LogprobJudge::open(spec, dtype, device)?;
    judge.aggregation = aggregation.unwrap_or_default();
    Ok(Box::new(judge))
}

/// What decides a split evaluation's results: `inputs` (the prompts or questions, the
/// options), the models as named, the served model and judge, and the dtype (not the device:
/// shards may run on different machines).
pub(crate) fn split_identity(args: &Args, inputs: serde_json::Value) -> String {
    let r = &args.remote;
    canonical_sha256(&serde_json::json!({
        "inputs": inputs, "models": args.models,
        "model_url": r.model_url, "model_name": r.model_name, "model_steering": r.model_steering,
        "judge": args.judge, "judge_url": r.judge_url, "judge_model": r.judge_model,
        "judge_aggregation": args.em.judge_aggregation, "dtype": args.device.dtype,
        "adapter_scales": args.scales.adapter_scales,
    }))
}

/// What makes two evaluations the same run: the models, as named (and a served one).
pub(crate) fn run_identity(args: &Args) -> RunIdentity {
    let mut models: Vec<String> = args
        .models
        .iter()
        .map(|arg| {
            let (name, spec) = model_name(arg);
            model_part(&name, &spec, Path::new("."))
        })
        .collect();
    if let Some(url) = &args.remote.model_url {
        let name = args.remote.model_name.as_deref().unwrap_or("");
        models.push(format!("{name}={url}"));
    }
    RunIdentity::new("eval", &models)
}

/// A provenance with `options`, the command line, `seed` and the models as named (their files
/// hashed); the caller adds its prompt sets.
pub(crate) fn models_provenance(
    args: &Args,
    options: serde_json::Value,
    seed: u64,
) -> Result<ProvenanceBuilder> {
    let mut cache = HashCache::in_memory();
    let mut options = options;
    options["adapter_scales"] = serde_json::json!(args.scales.adapter_scales);
    let mut b = Provenance::builder(options)
        .command_line(std::env::args().collect())
        .seed(seed);
    for arg in &args.models {
        let (name, spec) = model_name(arg);
        b = b.model_at(&name, &spec, &mut cache)?;
    }
    Ok(b)
}

/// The report's provenance: the models as named (their files hashed), the prompt sets with the
/// files they came from, the options and the command line.
fn provenance(args: &Args, prompts: &EvalPrompts, opts: &EvalOptions) -> Result<Provenance> {
    let judge = args.remote.judge_label(args.judge.as_deref());
    let options = serde_json::json!({
        "eval": opts,
        "judge": judge,
        "judge_aggregation": args.em.judge_aggregation,
        "models": args.models,
    });
    let b = models_provenance(args, options, opts.seed)?;
    let datasets = prompts.sets.iter().map(|s| {
        let o = &s.origin;
        let path = o.path.as_ref().map(|p| p.display().to_string());
        DatasetHash {
            name: s.name.clone(),
            // A generated set has no file: its origin in words, and the hash of its JSONL.
            path: path.unwrap_or_else(|| o.description.clone()),
            sha256: o.sha256.clone().unwrap_or_default(),
            bytes: o
                .path
                .as_ref()
                .and_then(|p| std::fs::metadata(p).ok())
                .map_or(0, |m| m.len()),
            n_examples: s.prompts.len(),
            selection: format!("{} of {} records", s.prompts.len(), o.records),
        }
    });
    Ok(b.datasets(datasets.collect::<Vec<_>>()).build())
}
