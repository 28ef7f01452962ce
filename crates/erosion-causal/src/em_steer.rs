//! A whole `erosion steer --questions` run: the directions (and another fine-tune's, for the
//! transfer), the model, Soligo et al.'s conditions measured by Betley et al.'s EM rate
//! ([`crate::em_conditions`]), and the run's files ([`crate::output::write_run`]).

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use erosion_eval::em::report::{definitions, small_judge_warning};
use erosion_eval::em::ScoreJudge;
use erosion_eval::prompts::Origin;
use erosion_eval::questions::Question;
use erosion_forward::batch::BatchOptions;
use erosion_forward::notice::Notify;
use erosion_forward::out_lock::OutLock;
use erosion_report::provenance::{DatasetHash, HashCache, Provenance};

use crate::em_conditions::{
    published, run_em_conditions, EmDirections, EmSteer, EmSteerOptions, FORMAT,
};
use crate::experiment::Action;
use crate::export::read_safetensors;
use crate::steer::{check_fit, default_layers, load_directions, open_model, DirectionSource};

/// One `erosion steer --questions` run.
#[derive(Debug, Clone)]
pub struct EmSteerSpec {
    /// The model to steer (folder, .gguf, hub id or BASE+ADAPTER).
    pub model: String,
    /// k for the model's adapter (`None`: as trained).
    pub adapter_scale: Option<f64>,
    pub directions: DirectionSource,
    /// Response tokens averaged per example for computed directions.
    pub window: usize,
    /// Another fine-tune's `directions.safetensors`, ablated as the transfer condition.
    pub transfer: Option<PathBuf>,
    pub questions: Vec<Question>,
    pub question_files: Vec<Origin>,
    /// `options.layers` empty: the middle block (as `--action add` steers by default).
    pub options: EmSteerOptions,
    pub out: PathBuf,
    pub dtype: DType,
    pub device: Device,
    /// Recorded in the provenance.
    pub command_line: Vec<String>,
}

/// What the run measured and wrote.
#[derive(Debug, Clone)]
pub struct EmSteerOutcome {
    pub em: EmSteer,
    pub files: Vec<PathBuf>,
}

/// The options, the model, the question files and the transfer directions (hashed).
fn provenance(spec: &EmSteerSpec, opts: &EmSteerOptions, judge: &str) -> Result<Provenance> {
    let mut cache = HashCache::in_memory();
    let config = serde_json::json!({
        "em_conditions": opts, "judge": judge, "window": spec.window,
        "transfer_directions": spec.transfer,
    });
    let prov = Provenance::builder(config)
        .command_line(spec.command_line.clone())
        .seed(opts.em.seed)
        .model_at("model", &spec.model, &mut cache)?;
    let mut datasets = Vec::new();
    for o in &spec.question_files {
        if let Some(path) = &o.path {
            let selection = format!("{} questions in the file", o.records);
            datasets.push(DatasetHash::new(
                "questions",
                path,
                o.records,
                &selection,
                &mut cache,
            )?);
        }
    }
    if let Some(t) = &spec.transfer {
        datasets.push(DatasetHash::new(
            "transfer directions",
            t,
            1,
            "all",
            &mut cache,
        )?);
    }
    Ok(prov.datasets(datasets).build())
}

/// Runs the conditions of `spec`, judged by `judge`, and writes the files into `spec.out`,
/// whose lock it holds from the start.
pub fn run_em_steer(
    spec: &EmSteerSpec,
    judge: &dyn ScoreJudge,
    notices: &mut dyn Notify,
) -> Result<EmSteerOutcome> {
    let _lock = OutLock::acquire(&spec.out, "steer", notices)?;
    spec.options.em.validate()?;
    let batch = BatchOptions::default();
    let dirs = load_directions(
        &spec.directions,
        spec.window,
        None,
        (spec.dtype, &spec.device),
        &batch,
    )?;
    let transfer = spec
        .transfer
        .as_ref()
        .map(|p| {
            read_safetensors(p).with_context(|| format!("--transfer-directions {}", p.display()))
        })
        .transpose()?;
    let mut m = open_model(&spec.model, spec.adapter_scale, (spec.dtype, &spec.device))?;
    check_fit(&dirs, &m, &spec.model)?;
    if let Some(t) = &transfer {
        check_fit(t, &m, &spec.model).context("--transfer-directions")?;
    }
    let mut options = spec.options.clone();
    if options.layers.is_empty() {
        options.layers = default_layers(Action::Add { scale: 1.0 }, &dirs);
    }
    let d = EmDirections {
        direction: &dirs,
        transfer: transfer.as_ref(),
    };
    let run = run_em_conditions(&mut m, &d, &spec.questions, judge, &options, notices)?;
    let described = judge.describe();
    let mut warnings = Vec::new();
    if described.is_small() {
        warnings.push(small_judge_warning(&described));
    }
    let mut defs = definitions(&options.em);
    defs.push(format!(
        "change against unsteered: answer i is drawn with the same seed under every condition; \
         EM change = mean_i (em_i(condition) - em_i(unsteered)) (the difference of the EM \
         rates), relative EM change = EM change / unsteered EM rate, aligned and coherent \
         changes over the answers scored under both; 95% paired cluster-bootstrap intervals \
         over questions ({} resamples)",
        options.em.bootstrap_resamples
    ));
    defs.push(format!(
        "sweep: add s x v_l at layers {:?} for s in the order given, stopped at the first s whose \
         mean coherent score (over the answers the judge scored) is below {} or that has no \
         coherent score; the stopping scale is measured and recorded",
        options.layers, options.min_coherence
    ));
    let em = EmSteer {
        format: FORMAT.into(),
        model: m.name.clone(),
        protocol: "Betley et al. (2025) emergent misalignment, free-form questions, under \
                   Soligo et al.'s (2025) causal conditions"
            .into(),
        definitions: defs,
        judge: described,
        question_files: spec.question_files.clone(),
        seeds: "answer j to paraphrase k of question q under every condition: \
                ChaCha8Rng::seed_from_u64(seed::for_stream(options.em.seed, \"em/<q>\", k, j)); \
                bootstraps: seed::for_stream(options.em.seed, \"bootstrap/em/all\", 0, 0) and \
                (paired) \"bootstrap/em/paired\"; random controls: \
                LayerDirections::random_like(options.control_seed), the transfer's \
                random_like(seed::for_stream(options.control_seed, \"transfer control\", 0, 0))"
            .into(),
        directions: run.directions,
        options,
        conditions: run.conditions,
        sweep: run.sweep,
        published: published(),
        warnings,
    };
    let prov = provenance(spec, &em.options, &em.judge.name)?;
    let hint = m.model.config().model_type.clone();
    let files = crate::output::write_run(
        &spec.out,
        &dirs,
        &[],
        Some((&em, &run.answers)),
        (&prov, None),
        &hint,
        notices,
    )?;
    Ok(EmSteerOutcome { em, files })
}
