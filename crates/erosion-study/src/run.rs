//! Running a whole study: every analysis in turn, then results.json and report.html.
//!
//! An analysis that fails does not lose the others: its section says "not run" with the
//! error, and the command exits with an error after writing everything else. Forward passes
//! go through the activation cache, so running a stopped study again resumes it.

use crate::analysis::registered;
use crate::context::StudyContext;
use crate::judges::Judges;
use crate::spec::{Preset, StudySpec};
use anyhow::{bail, Result};
use erosion_forward::batch::{ProgressSink, Quiet};
use erosion_forward::notice::Notify;
use erosion_forward::run_folder::{model_part, OtherRun, RunFolder, RunIdentity};
use erosion_report::html::{Report, Section, Verdict};
use erosion_report::results::write_results_json;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// What a finished study wrote.
pub struct StudyOutcome {
    pub out: PathBuf,
    pub results_json: PathBuf,
    pub report_html: PathBuf,
    /// (analysis key, verdict) in report order.
    pub verdicts: Vec<(String, Verdict)>,
    /// Analyses that failed, with their errors.
    pub failures: Vec<(String, String)>,
    /// Each analysis's results as written to results.json, by key (typed: [`crate::analysis::Analysis::run`]).
    pub analyses: Map<String, Value>,
    /// Cache chunks computed by this run (0 when every cached pass was read from disk, as in a
    /// merge of shards).
    pub chunks_computed: usize,
}

/// What the caller hands a study: where its notices and progress go, the judges it may name,
/// and the command line recorded in the provenance.
pub struct Caller<'a> {
    pub command_line: Vec<String>,
    /// Each analysis's title and failure.
    pub notices: &'a mut dyn Notify,
    /// The forward passes' progress.
    pub progress: Box<dyn ProgressSink>,
    /// What `[evaluation] judge` may name.
    pub judges: Judges,
    /// What to do when the output folder holds another run's files (`--force`).
    pub other_run: OtherRun,
}

impl<'a> Caller<'a> {
    /// No progress shown and no judge; notices to `notices`.
    pub fn quiet(notices: &'a mut dyn Notify) -> Self {
        Caller {
            command_line: Vec::new(),
            notices,
            progress: Box::new(Quiet),
            judges: Judges::none(),
            other_run: OtherRun::Refuse,
        }
    }
}

/// What a run changes in its study file (the command line's flags).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Overrides the file's analysis options.
    pub preset: Option<Preset>,
    /// Output folder, relative to the current directory (the file's is relative to the file).
    pub output: Option<PathBuf>,
    /// At most this many examples of each dataset.
    pub limit: Option<usize>,
    /// (model name, checkpoint) pairs replacing the file's; paths relative to the current
    /// directory.
    pub models: Vec<(String, String)>,
}

/// Reads `study_file`, applies `overrides`, runs it.
pub fn run_study_file(
    study_file: &Path,
    overrides: &Overrides,
    caller: Caller<'_>,
) -> Result<StudyOutcome> {
    let (spec, base_dir) = read_study_file(study_file, overrides)?;
    run_study(spec, &base_dir, overrides.preset, caller)
}

/// The study in `study_file` with `overrides` applied, and the folder its relative paths are
/// relative to.
pub fn read_study_file(study_file: &Path, overrides: &Overrides) -> Result<(StudySpec, PathBuf)> {
    let mut spec = StudySpec::from_file(study_file)?;
    if let Some(p) = overrides.preset {
        p.apply(&mut spec);
    }
    let cwd = std::env::current_dir()?;
    if let Some(out) = &overrides.output {
        spec.output = cwd.join(out);
    }
    if let Some(n) = overrides.limit {
        spec.limit_examples(n);
    }
    for (name, path) in &overrides.models {
        // A path that exists here is taken from here; anything else is a hub id.
        let here = cwd.join(path);
        let path = if here.exists() {
            here.to_string_lossy().into_owned()
        } else {
            path.clone()
        };
        spec.set_model(name, &path)?;
    }
    let base_dir = study_file.parent().unwrap_or(Path::new(".")).to_path_buf();
    Ok((spec, base_dir))
}

/// Runs a study whose relative paths are relative to `base_dir`, holding its output folder
/// ([`RunFolder`]: locked, and refused when another kind of run wrote there) throughout;
/// `preset` is only recorded.
pub fn run_study(
    spec: StudySpec,
    base_dir: &Path,
    preset: Option<Preset>,
    caller: Caller<'_>,
) -> Result<StudyOutcome> {
    run_study_with(spec, base_dir, preset, caller, |_, _| Ok(()))
}

/// Like [`run_study`], calling `prepare` on the opened study before its analyses (a merge
/// of shards fills the cache there).
pub(crate) fn run_study_with(
    mut spec: StudySpec,
    base_dir: &Path,
    preset: Option<Preset>,
    caller: Caller<'_>,
    prepare: impl FnOnce(&StudyContext, &mut dyn Notify) -> Result<()>,
) -> Result<StudyOutcome> {
    // A spec built in code has not been through `from_toml`.
    spec.choose_defaults()?;
    spec.validate()?;
    let analyses = spec.analyses.clone();
    let notices = caller.notices;
    // Held until the report is written: a second study into the same folder fails at once,
    // naming this one, instead of both writing and the last one winning. The models make the
    // run: other options resume it from the cache.
    let models: Vec<String> = (spec.models.all().iter())
        .map(|(name, path)| model_part(name, path, base_dir))
        .collect();
    let run = RunIdentity::new("study", &models);
    let out = base_dir.join(&spec.output);
    let _folder = RunFolder::claim(&out, &run, caller.other_run, &mut *notices)?;
    let ctx = StudyContext::open(spec, base_dir, caller.command_line)?
        .with_progress(caller.progress)
        .with_judges(caller.judges);
    prepare(&ctx, &mut *notices)?;
    let mut results = Map::new();
    let mut sections = Vec::new();
    let mut failures = Vec::new();
    for (i, analysis) in analyses.into_iter().enumerate() {
        let analysis = registered(analysis);
        let (key, title) = (analysis.key, analysis.title);
        // Numbered as the report numbers its sections.
        notices.notice(&format!("== {}. {title}", i + 1));
        match analysis.run(&ctx) {
            Ok(out) => {
                results.insert(out.key.to_string(), out.results);
                sections.push(out.section);
            }
            Err(err) => {
                let msg = format!("{err:#}");
                notices.notice(&format!("   failed: {msg}"));
                results.insert(key.to_string(), json!({ "error": msg }));
                let mut s = Section::new(
                    title,
                    "",
                    "This analysis failed; see the error below.",
                    "",
                    Verdict::NotRun,
                );
                s.notes.push(format!("error: {msg}"));
                sections.push(s);
                failures.push((key.to_string(), msg));
            }
        }
    }
    let results_json = ctx.out.join("results.json");
    let everything = json!({ "study": ctx.spec.name, "preset": preset, "analyses": Value::Object(results.clone()) });
    write_results_json(&results_json, &ctx.provenance, &everything)?;
    let verdicts: Vec<(String, Verdict)> = sections
        .iter()
        .map(|s| (s.title.clone(), s.verdict))
        .collect();
    let mut report = Report::new(&format!("erosion study: {}", ctx.spec.name))
        .summary(&summary(&ctx, preset, &verdicts))
        .provenance(ctx.provenance.clone());
    if let Some(why) = &ctx.spec.smoke_run {
        report = report.smoke_run(why);
    }
    for s in sections {
        report = report.section(s);
    }
    let report_html = ctx.out.join("report.html");
    report.write(&report_html)?;
    Ok(StudyOutcome {
        out: ctx.out.clone(),
        results_json,
        report_html,
        verdicts,
        failures,
        analyses: results,
        chunks_computed: ctx.cache.chunks_computed(),
    })
}

fn summary(ctx: &StudyContext, preset: Option<Preset>, verdicts: &[(String, Verdict)]) -> String {
    let models: Vec<String> = ctx
        .models
        .iter()
        .map(|m| format!("{} ({})", m.name, m.spec))
        .collect();
    let datasets: Vec<String> = ctx
        .datasets
        .iter()
        .map(|d| format!("{} ({} examples)", d.name, d.examples.len()))
        .collect();
    let reading = match preset {
        Some(Preset::PaperCode) => "the study's code (preset paper-code)",
        Some(Preset::PaperText) => "the study's text (preset paper-text)",
        None => "the options of the study file (defaults follow the study's text)",
    };
    let tally = |v: Verdict| verdicts.iter().filter(|(_, x)| *x == v).count();
    // Counted over every section of the report, as its table of findings lists them.
    let counts = if ctx.spec.smoke_run.is_some() {
        format!("{} findings, not judged (a smoke run).", verdicts.len())
    } else {
        format!(
            "Of {} findings: {} reproduced, {} partly, {} not reproduced, {} not run.",
            verdicts.len(),
            tally(Verdict::Reproduced),
            tally(Verdict::Partly),
            tally(Verdict::NotReproduced),
            tally(Verdict::NotRun),
        )
    };
    format!(
        "Models: {}. Datasets: {}. Options follow {reading}. {counts}",
        models.join(", "),
        datasets.join(", "),
    )
}

impl StudyOutcome {
    /// An error when any analysis failed (after everything else was written).
    pub fn into_result(self) -> Result<Self> {
        if self.failures.is_empty() {
            return Ok(self);
        }
        let names: Vec<&str> = self.failures.iter().map(|(k, _)| k.as_str()).collect();
        bail!(
            "analyses failed: {} (the report at {} says why)",
            names.join(", "),
            self.report_html.display()
        )
    }
}

/// A whole study on the tiny family and the study's real datasets: every analysis runs,
/// results.json carries provenance and every section's numbers, the arrays load, the report is
/// self-contained, and a second run (resumed from the cache) gives the same numbers.
#[cfg(test)]
mod tests {
    use super::*;
    use erosion_forward::notice::Silent;

    #[test]
    fn a_study_runs_end_to_end_and_resumes() {
        // EROSION_KEEP_STUDY=DIR keeps the study (models, output) there to look at.
        let keep = std::env::var_os("EROSION_KEEP_STUDY").map(std::path::PathBuf::from);
        let tmp = tempfile::tempdir().unwrap();
        let dir = keep.as_deref().unwrap_or(tmp.path());
        std::fs::create_dir_all(dir).unwrap();
        let study = crate::fixture::four_analyses_study(dir);
        let outcome =
            run_study_file(&study, &Overrides::default(), Caller::quiet(&mut Silent)).unwrap();
        assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
        assert_eq!(outcome.verdicts.len(), 4);

        let results: Value =
            serde_json::from_str(&std::fs::read_to_string(&outcome.results_json).unwrap()).unwrap();
        let prov = &results["provenance"];
        assert_eq!(prov["seed"], 7);
        assert_eq!(prov["models"].as_array().unwrap().len(), 3);
        for m in prov["models"].as_array().unwrap() {
            let files = m["files"].as_array().unwrap();
            assert!(
                !files.is_empty()
                    && files
                        .iter()
                        .all(|f| f["sha256"].as_str().unwrap().len() == 64)
            );
        }
        assert_eq!(prov["datasets"].as_array().unwrap().len(), 3);
        assert_eq!(prov["options"]["layers"]["window"], 8);
        let analyses = &results["results"]["analyses"];
        for key in ["behaviour", "gradients", "layers", "directions"] {
            assert!(
                analyses[key].is_object() && analyses[key].get("error").is_none(),
                "{key}: {}",
                analyses[key]
            );
        }

        let html = std::fs::read_to_string(&outcome.report_html).unwrap();
        assert!(!html.contains("<script") && !html.contains("<link"));
        assert!(
            html.matches("<svg").count() >= 4,
            "every analysis has a figure"
        );

        let arrays: Vec<_> = std::fs::read_dir(outcome.out.join("arrays"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!arrays.is_empty());
        for a in &arrays {
            erosion_report::npy::read_npy(a).unwrap_or_else(|e| panic!("{}: {e}", a.display()));
        }

        // Resumed: the same numbers again (the cache serves the forward passes).
        let again =
            run_study_file(&study, &Overrides::default(), Caller::quiet(&mut Silent)).unwrap();
        let second: Value =
            serde_json::from_str(&std::fs::read_to_string(&again.results_json).unwrap()).unwrap();
        assert_eq!(
            second["results"]["analyses"],
            results["results"]["analyses"]
        );
    }

    #[test]
    fn a_study_with_a_typo_fails_before_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("study.toml");
        std::fs::write(
            &path,
            r#"name = "x"
    [models]
    base = "a"
    instruct = "b"
    [[dataset]]
    name = "insecure"
    path = "x.jsonl"
    format = "messages"
    role = "misaligned"
    [[dataset]]
    name = "educational"
    path = "y.jsonl"
    role = "aligned"
    [layers]
    datasets = ["insecrue"]
    "#,
        )
        .unwrap();
        let err = format!(
            "{:#}",
            run_study_file(&path, &Overrides::default(), Caller::quiet(&mut Silent))
                .err()
                .unwrap()
        );
        assert!(
            err.contains("insecrue") && err.contains("insecure"),
            "{err}"
        );
    }
}
