//! Behavioural evaluation (`[evaluation]`): every model, the compared ones included, answers
//! held-out harmful and code requests (the user turns of two of the study's datasets); a judge
//! the caller registered labels the answers; rates with Wilson intervals, P(compliant first
//! token) with bootstrap intervals, the two-turn test ([`erosion_eval`]); and the verdict of
//! [`verdict`]: did instruction tuning take, and does the eroded fine-tune lie above the
//! instruct model and the controls.
//!
//! Without a judge nothing is sampled: the section says that the verdict waits for one (real
//! models need a judge model; the model organism's rules are registered as `organism`).
//! The evaluation runs once per study: protection reads its rates too.

pub mod verdict;

use crate::analysis::{Analysis, Finished};
use crate::context::StudyContext;
use anyhow::{Context, Result};
use erosion_eval::evaluate::assemble;
use erosion_eval::html::eval_section;
use erosion_eval::{evaluate_model, EvalPrompts, EvalReport, Evaluation, PromptKind, PromptSet};
use erosion_report::html::{Section, Verdict};
use serde::Serialize;
use std::rc::Rc;
use verdict::{behaviour_verdict, Roles};

/// The evaluation's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationResults {
    /// None when no judge was registered under the study's name for it.
    pub report: Option<EvalReport>,
    pub roles: Roles,
    /// Why the verdict is what it is, one reading per line.
    pub reasons: Vec<String>,
    pub verdict: Verdict,
    /// The evaluation's files (eval.json, answers.jsonl), relative to the study's output.
    pub files: Vec<String>,
}

pub struct EvaluationAnalysis;

impl Analysis for EvaluationAnalysis {
    const KEY: &'static str = "evaluation";
    const TITLE: &'static str = "Behaviour: refusals, harmful compliance and insecure code";
    type Results = EvaluationResults;

    fn run(ctx: &StudyContext) -> Result<Finished<EvaluationResults>> {
        let roles = ctx.roles()?;
        let shared = ctx.evaluation()?;
        // Borrowed from the shared cache: only the report is copied, not every answer.
        let Some(evaluation) = shared.as_ref() else {
            let why = waiting_for_a_judge(ctx);
            let mut section = Section::new(Self::TITLE, "", &why, "", Verdict::NotRun);
            section.notes.push(why.clone());
            let results = EvaluationResults {
                report: None,
                roles,
                reasons: vec![why],
                verdict: Verdict::NotRun,
                files: Vec::new(),
            };
            return Ok(Finished { results, section });
        };
        let dir = ctx.out.join("evaluation");
        let files = ctx.relative_to_out(&evaluation.write(&dir, &ctx.provenance)?);
        let (verdict, reasons) = behaviour_verdict(&evaluation.report, &roles);
        let mut section = eval_section(&evaluation.report, verdict, &ctx.colors())?;
        section.notes.extend(reasons.iter().cloned());
        let results = EvaluationResults {
            report: Some(evaluation.report.clone()),
            roles,
            reasons,
            verdict,
            files,
        };
        Ok(Finished { results, section })
    }
}

/// What the section says when no answer could be judged.
fn waiting_for_a_judge(ctx: &StudyContext) -> String {
    let registered = ctx.shared.judges.names();
    let have = if registered.is_empty() {
        "none is registered".to_string()
    } else {
        format!("registered: {}", registered.join(", "))
    };
    match &ctx.spec.evaluation.judge {
        None => format!(
            "No answer was sampled: the behaviour verdict waits for a judge (`[evaluation] judge`; {have}). Real models need a judge model; the model organism's rules are registered as `organism`."
        ),
        Some(name) => format!(
            "No answer was sampled: the judge `{name}` of [evaluation] is not registered ({have}); the behaviour verdict waits for it."
        ),
    }
}

impl StudyContext {
    /// Who the verdict compares: `[evaluation] eroded` (default: the first fine-tune) against
    /// `controls` (default: the other fine-tunes).
    pub fn roles(&self) -> Result<Roles> {
        let spec = &self.spec.evaluation;
        let finetuned = self.finetuned();
        let eroded = match &spec.eroded {
            Some(e) => e.clone(),
            None => finetuned
                .first()
                .cloned()
                .context("the evaluation's verdict needs a fine-tuned model")?,
        };
        let controls = spec.controls.clone().unwrap_or_else(|| {
            finetuned
                .iter()
                .filter(|f| **f != eroded)
                .cloned()
                .collect()
        });
        Ok(Roles {
            base: "base".into(),
            instruct: "instruct".into(),
            eroded,
            controls,
        })
    }

    /// The behavioural evaluation of every model (computed on first use); None without a judge.
    pub fn evaluation(&self) -> Result<Rc<Option<Evaluation>>> {
        if let Some(e) = self.shared.evaluation.get() {
            return Ok(e.clone());
        }
        let e = Rc::new(self.evaluate().context("the behavioural evaluation")?);
        Ok(self.shared.evaluation.get_or_init(|| e).clone())
    }

    fn evaluate(&self) -> Result<Option<Evaluation>> {
        let spec = &self.spec.evaluation;
        let Some(judge) = spec
            .judge
            .as_deref()
            .and_then(|j| self.shared.judges.get(j))
        else {
            return Ok(None);
        };
        let prompts = self.eval_prompts()?;
        let mut opts = spec.sampling.clone();
        opts.seed = self.spec.seed;
        let mut results = Vec::new();
        for m in self.models.iter().chain(&self.compared) {
            let loaded = self.loaded_model(&m.name)?;
            let r = evaluate_model(&loaded, &prompts, judge, &opts)
                .with_context(|| format!("model `{}`", m.name))?;
            results.push(r);
        }
        Ok(Some(assemble(results, &prompts, judge.info(), &opts)?))
    }

    /// The first `harmful_prompts` user turns of `[evaluation] harmful` and the first
    /// `code_prompts` of `code`, as the sets `harmful` and `code` (the names seed each answer).
    pub fn eval_prompts(&self) -> Result<EvalPrompts> {
        let spec = &self.spec.evaluation;
        let mut sets = Vec::new();
        let wanted = [
            (PromptKind::Harmful, &spec.harmful, spec.harmful_prompts),
            (PromptKind::Code, &spec.code, spec.code_prompts),
        ];
        for (kind, dataset, n) in wanted {
            let Some(dataset) = dataset else { continue };
            let mut set = PromptSet::from_dataset(kind, self.dataset(dataset)?)?;
            set.name = kind.name().to_string();
            let n = n.unwrap_or(set.prompts.len());
            if set.prompts.len() < n {
                anyhow::bail!(
                    "[evaluation] asks for {n} {} prompts but dataset `{dataset}` has {}",
                    kind.name(),
                    set.prompts.len()
                );
            }
            set.prompts.truncate(n);
            sets.push(set);
        }
        Ok(EvalPrompts::new(sets))
    }
}
