//! The whole demo: grow (or reuse) the organism, evaluate its behaviour, test the alignment
//! direction causally, compare the protected fine-tunes, run the study on it, and write one
//! report.

use crate::grow::{grow, Organism};
use crate::recipe::Recipe;
use crate::verdict::behaviour_verdict;
use anyhow::{Context, Result};
use candle_core::{DType, Device};
use erosion_eval::html::eval_section;
use erosion_eval::{evaluate, EvalOptions};
use erosion_forward::batch::ProgressSink;
use erosion_forward::notice::Notify;
use erosion_model::LoadedModel;
use erosion_organism::evaluation::{prompts_from_corpus, OrganismJudge};
use erosion_report::html::Verdict;
use erosion_study::run::{run_study_with, ExtraSection, StudyOutcome};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct DemoOptions {
    pub recipe: Recipe,
    /// Where the organism is grown and cached.
    pub cache: PathBuf,
    /// Where the report goes.
    pub out: PathBuf,
    /// Held-out harmful and code requests of the behavioural evaluation.
    pub harmful_prompts: usize,
    pub code_prompts: usize,
    /// No notices of the demo's own stages (the study's still come); the caller's progress sink
    /// decides about bars (the CLI passes `Quiet` with `--quiet`).
    pub quiet: bool,
    /// Recorded in the provenance of every file written.
    pub command_line: Vec<String>,
}

pub struct DemoOutcome {
    pub organism: Organism,
    pub study: StudyOutcome,
    pub behaviour: (Verdict, Vec<String>),
    /// (section title, verdict) of the causal tests and the protected fine-tunes.
    pub beyond: Vec<(String, Verdict)>,
    pub seconds: f64,
}

/// The whole demo; each stage starting is a notice (unless `quiet`), the organism's training
/// and the study's forward passes report to `progress`.
pub fn run(
    opts: &DemoOptions,
    notices: &mut dyn Notify,
    progress: Box<dyn ProgressSink>,
) -> Result<DemoOutcome> {
    let start = Instant::now();
    let cl = &opts.command_line;
    let org = grow(
        &opts.recipe,
        &opts.cache,
        opts.quiet,
        cl,
        notices,
        &*progress,
    )
    .context("growing the organism")?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    // Absolute, so that study.toml can be rerun from anywhere.
    let out = opts.out.canonicalize()?;

    if !opts.quiet {
        notices.notice("== behavioural evaluation");
    }
    let prompts = prompts_from_corpus(&org.corpus, opts.harmful_prompts, opts.code_prompts)?;
    let mut models = org
        .models
        .iter()
        .map(|(name, dir)| {
            LoadedModel::open(&dir.to_string_lossy(), Some(name), DType::F32, &Device::Cpu)
        })
        .collect::<Result<Vec<_>>>()?;
    let eval_opts = EvalOptions {
        seed: opts.recipe.seed,
        ..EvalOptions::default()
    };
    let evaluation = evaluate(&models, &prompts, &OrganismJudge, &eval_opts)?;
    evaluation.write(&out.join("eval"))?;
    let behaviour = behaviour_verdict(&evaluation.report);
    let mut section = eval_section(&evaluation.report, behaviour.0)?;
    section.notes.extend(behaviour.1.iter().cloned());

    if !opts.quiet {
        notices.notice("== causal tests");
    }
    // Half of the held-out harmful requests: each test decodes them under three conditions.
    let n_causal = opts.harmful_prompts.min(org.corpus.sizes.eval / 2);
    let seed = opts.recipe.seed;
    let causal = crate::causal::causal_tests(&org, &mut models, &out, n_causal, seed, cl, notices)
        .context("causal tests")?;
    if !opts.quiet {
        notices.notice("== protected fine-tunes");
    }
    let protect =
        crate::protect::protect_section(&org, &models, &evaluation.report, opts.recipe.seed)
            .context("protected fine-tunes")?;

    let spec = crate::study::spec(&org, &out, opts.recipe.seed)?;
    let toml_path = out.join("study.toml");
    erosion_model::atomic::write_bytes_atomic(
        &toml_path,
        toml::to_string_pretty(&spec)?.as_bytes(),
    )?;
    let extra = ExtraSection {
        key: "behavioural_evaluation".into(),
        results: serde_json::to_value(&evaluation.report)?,
        section,
    };
    let beyond = [&causal, &protect]
        .iter()
        .map(|x| (x.section.title.clone(), x.section.verdict))
        .collect();
    let extra = vec![extra, causal, protect];
    let study = run_study_with(
        spec,
        Path::new("."),
        None,
        extra,
        cl.clone(),
        notices,
        progress,
    )?;
    Ok(DemoOutcome {
        organism: org,
        study,
        behaviour,
        beyond,
        seconds: start.elapsed().as_secs_f64(),
    })
}
