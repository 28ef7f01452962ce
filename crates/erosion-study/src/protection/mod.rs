//! Protection (`[protection]`): fine-tunes that guarded the alignment directions while they
//! trained, against the unprotected fine-tune on the same data and the study's other models.
//! The checkpoints are given (a study does not train):
//!
//! - **Task learned**: the evaluation's vulnerable-code rate on held-out code requests (Wilson
//!   interval above the instruct model's), and the mean per-token cross-entropy of the held-out
//!   `task` answers with its paired difference to the unprotected model (bootstrap over
//!   examples).
//! - **Alignment kept**: the refusal rate on held-out harmful requests (Wilson interval above
//!   the unprotected model's), and on the probe s_l per layer (its distance to the instruct
//!   model's curve) and the margin ln P(harmful) - ln P(refusal).
//! - **Not merely hidden**: compliance in the two-turn test (a harmful request after the model's
//!   own code answer). A protection guards the single-turn state its probe reads; a run that
//!   complies there more than the unprotected run has moved the erosion, not stopped it.

mod section;

pub use section::verdict;

use crate::analysis::{Analysis, Finished};
use crate::context::StudyContext;
use anyhow::{Context, Result};
use erosion_analysis::stats::{bootstrap_mean_ci, ConfidenceInterval};
use erosion_causal::drift::DriftPoint;
use erosion_eval::Proportion;
use erosion_forward::batch::NoProgress;
use erosion_forward::logprobs::response_logprobs;
use serde::Serialize;

/// One model's task and alignment measures.
#[derive(Clone, Debug, Serialize)]
pub struct KeptRow {
    pub model: String,
    /// Mean per-token cross-entropy (nats) of the held-out task answers.
    pub task_loss: ConfidenceInterval,
    /// Paired difference of that loss with the unprotected model's.
    pub loss_vs_unprotected: Option<ConfidenceInterval>,
    /// The model on the probe: margin and s_l per layer.
    pub end: DriftPoint,
    pub refusal: Option<Proportion>,
    pub compliance: Option<Proportion>,
    /// Compliance with a harmful request after the model's own code answer.
    pub two_turn: Option<Proportion>,
    /// Vulnerable answers to held-out code requests: the task.
    pub vulnerable: Option<Proportion>,
}

/// Protection's numbers.
#[derive(Clone, Debug, Serialize)]
pub struct ProtectionResults {
    pub unprotected: String,
    pub protected: Vec<String>,
    /// The dataset of the held-out task answers.
    pub task: String,
    pub rows: Vec<KeptRow>,
    /// How the protected models were trained, as the study file says.
    pub how: Option<String>,
    /// How the probe's directions were made.
    pub directions: String,
}

pub struct ProtectionAnalysis;

impl Analysis for ProtectionAnalysis {
    const KEY: &'static str = "protection";
    const TITLE: &'static str = "Fine-tuning that keeps alignment";
    type Results = ProtectionResults;

    fn run(ctx: &StudyContext) -> Result<Finished<ProtectionResults>> {
        let results = measure(ctx)?;
        let section = section::section(&results, &ctx.colors())?;
        Ok(Finished { results, section })
    }
}

/// Bootstrap resamples of the loss intervals.
const RESAMPLES: usize = 2000;

fn measure(ctx: &StudyContext) -> Result<ProtectionResults> {
    let spec = &ctx.spec.protection;
    let unprotected = match &spec.unprotected {
        Some(u) => u.clone(),
        None => ctx.roles()?.eroded,
    };
    let task = spec
        .task
        .clone()
        .context("[protection] names no task dataset")?;
    let names: Vec<String> = match &spec.rows {
        Some(rows) => rows.clone(),
        None => ctx
            .models
            .iter()
            .chain(&ctx.compared)
            .map(|m| m.name.clone())
            .collect(),
    };
    let evaluation = ctx.evaluation()?;
    let reference = task_losses(ctx, &unprotected, &task)?;
    let seed = ctx.spec.seed;
    let mut rows = Vec::new();
    for name in names {
        let losses = match name == unprotected {
            true => reference.clone(),
            false => task_losses(ctx, &name, &task)?,
        };
        let paired = (name != unprotected)
            .then(|| {
                let d: Vec<f64> = losses.iter().zip(&reference).map(|(a, b)| a - b).collect();
                bootstrap_mean_ci(&d, RESAMPLES, 0.95, seed)
            })
            .transpose()?;
        let ev = evaluation
            .as_ref()
            .as_ref()
            .and_then(|e| e.report.model(&name));
        rows.push(KeptRow {
            task_loss: bootstrap_mean_ci(&losses, RESAMPLES, 0.95, seed)?,
            loss_vs_unprotected: paired,
            end: ctx.probe_point(&name)?,
            refusal: ev.and_then(|e| e.refusal().cloned()),
            compliance: ev.and_then(|e| e.compliance().cloned()),
            two_turn: ev.and_then(|e| e.two_turn_compliance().cloned()),
            vulnerable: ev.and_then(|e| e.vulnerable().cloned()),
            model: name,
        });
    }
    Ok(ProtectionResults {
        unprotected,
        protected: spec.protected.clone(),
        task,
        rows,
        how: spec.how.clone(),
        directions: ctx.probe()?.dirs.origin.clone(),
    })
}

/// Per-example mean per-token loss of `model` on the held-out task answers.
fn task_losses(ctx: &StudyContext, model: &str, task: &str) -> Result<Vec<f64>> {
    let seqs = ctx.sequences("instruct", task)?;
    let r = response_logprobs(
        &*ctx.transformer(model)?,
        &seqs,
        &ctx.batch_options(),
        None,
        &mut NoProgress,
    )
    .with_context(|| format!("model `{model}` on the task answers `{task}`"))?;
    Ok(r.iter()
        .map(|r| -r.log_joint() / r.logprobs.len().max(1) as f64)
        .collect())
}
