//! The whole demo: grow (or reuse) the organism, then run its study (`study.toml`): the
//! behavioural evaluation, the causal tests, drift, the protected fine-tunes and the four
//! analyses, into one report.

use crate::grow::{grow, Organism};
use crate::recipe::Recipe;
use anyhow::{Context, Result};
use erosion_forward::batch::ProgressSink;
use erosion_forward::notice::Notify;
use erosion_forward::out_lock::OutLock;
use erosion_forward::run_folder::OtherRun;
use erosion_organism::evaluation::OrganismJudge;
use erosion_report::html::Verdict;
use erosion_study::judges::Judges;
use erosion_study::run::{run_study, Caller, StudyOutcome};
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
    /// The behavioural verdict and the readings that justify it.
    pub behaviour: (Verdict, Vec<String>),
    pub seconds: f64,
}

/// The judge the demo's study names: the organism's rules.
pub const JUDGE: &str = "organism";

/// The whole demo, holding the lock of `opts.out` ([`OutLock`]); each stage starting is a
/// notice (unless `quiet`), the organism's training and the study's forward passes report to
/// `progress`.
pub fn run(
    opts: &DemoOptions,
    notices: &mut dyn Notify,
    progress: Box<dyn ProgressSink>,
) -> Result<DemoOutcome> {
    let start = Instant::now();
    // Held throughout, before the minutes of growing: a second demo into the same folder
    // fails at once (the study below, on the same folder, shares the lock).
    let _lock = OutLock::acquire(&opts.out, "demo", notices)?;
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
    // Absolute, so that study.toml can be rerun from anywhere.
    let out = opts.out.canonicalize()?;
    let spec = crate::study::spec(&org, &out, opts)?;
    let toml_path = out.join("study.toml");
    erosion_model::atomic::write_bytes_atomic(
        &toml_path,
        toml::to_string_pretty(&spec)?.as_bytes(),
    )?;
    let caller = Caller {
        command_line: cl.clone(),
        notices,
        progress,
        judges: Judges::none().with(JUDGE, Box::new(OrganismJudge)),
        // The study runs inside the demo's folder and lock: it checks nothing there.
        other_run: OtherRun::Refuse,
    };
    let study = run_study(spec, Path::new("."), None, caller)?;
    let behaviour = behaviour_of(&study);
    Ok(DemoOutcome {
        organism: org,
        study,
        behaviour,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The evaluation's verdict and reasons, as the study wrote them (not run if it failed).
fn behaviour_of(study: &StudyOutcome) -> (Verdict, Vec<String>) {
    let evaluation = study.analyses.get("evaluation");
    let field = |name: &str| evaluation.and_then(|e| e.get(name)).cloned();
    let verdict = field("verdict").and_then(|v| serde_json::from_value(v).ok());
    let reasons = field("reasons").and_then(|v| serde_json::from_value(v).ok());
    (
        verdict.unwrap_or(Verdict::NotRun),
        reasons.unwrap_or_default(),
    )
}
