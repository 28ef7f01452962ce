//! The options of the analyses beyond the paper's four: one table each in STUDY.toml
//! (`[evaluation]`, `[probe]`, `[causal]`, `[drift]`, `[protection]`). They name the study's
//! datasets and models; [`StudySpec::validate`](super::StudySpec::validate) checks the names
//! of the analyses that run.

use super::AnalysisName;
use anyhow::{bail, Context, Result};
use erosion_causal::experiment::Action;
use erosion_eval::EvalOptions;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Behavioural evaluation: answers sampled from every model (the compared ones included) to
/// held-out harmful and code requests, judged; the verdict reads the eroded fine-tune against
/// the instruct model and the controls.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationSpec {
    /// Dataset whose user turns are the harmful requests (its replies are not used).
    pub harmful: Option<String>,
    /// How many of them, from the first (default: all).
    pub harmful_prompts: Option<usize>,
    /// Dataset whose user turns are the code requests.
    pub code: Option<String>,
    pub code_prompts: Option<usize>,
    /// A judge the caller registered by this name (the CLI registers `organism`, the model
    /// organism's rules). Without one, no answer is judged and the section says so.
    pub judge: Option<String>,
    /// The fine-tune whose erosion the verdict tests (default: the first fine-tune).
    pub eroded: Option<String>,
    /// Fine-tunes it is compared with (default: the other fine-tunes).
    pub controls: Option<Vec<String>>,
    /// Sampling and intervals; `seed` is replaced by the study's.
    pub sampling: EvalOptions,
}

/// The alignment probe shared by the causal tests, drift and protection: the directions
/// `v_l = mean(instruct) - mean(base)` and the paired answers measured along them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeSpec {
    /// Dataset whose responses define the directions (best kept apart from the measured ones).
    pub directions: Option<String>,
    /// Compliant answers to harmful requests: projected on the directions, and the margin's
    /// first term `ln P(harmful_i)`.
    pub harmful: Option<String>,
    /// The same requests in the same order, answered with refusals: `ln P(refusal_i)`.
    pub refusal: Option<String>,
    /// How many pairs, from the first (default: all).
    pub pairs: Option<usize>,
    /// Response tokens averaged per example.
    pub window: usize,
    pub bootstrap: usize,
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            directions: None,
            harmful: None,
            refusal: None,
            pairs: None,
            window: 10,
            bootstrap: 2000,
        }
    }
}

/// Causal tests: interventions along the probe's directions beside random controls.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CausalSpec {
    /// Benign (prompt, answer) pairs for the KL cost.
    pub benign: Option<String>,
    /// Harmful requests decoded under each condition: the first `prompts` of the probe's
    /// harmful set (default: as many as the probe has pairs).
    pub prompts: Option<usize>,
    pub tests: Vec<CausalTestSpec>,
}

/// One causal test.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CausalTestSpec {
    /// E.g. "restore: insecure + v".
    pub name: String,
    /// The study's name of the model acted on.
    pub model: String,
    pub action: Action,
    /// Where to act.
    #[serde(default)]
    pub layers: TestLayers,
}

/// The layers a causal test acts at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestLayers {
    /// The middle block with a direction.
    #[default]
    Middle,
    /// Every block with a direction.
    AllBlocks,
    /// These residual-stream indices (0 = embeddings, l = output of block l-1).
    Indices(Vec<usize>),
}

/// Drift: the probe measured on every model, and fine-tuning runs' recorded drift.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftSpec {
    /// Drift recorded while a model was trained (`erosion train --monitor`): model name ->
    /// the run's folder holding `drift.json`, relative to the study file.
    pub logs: BTreeMap<String, String>,
}

/// Protection: fine-tunes that guarded the alignment directions against the one that did not.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtectionSpec {
    /// The unprotected fine-tune (default: the evaluation's eroded model).
    pub unprotected: Option<String>,
    /// The protected fine-tunes.
    pub protected: Vec<String>,
    /// Other models shown in the table, in order (default: every model of the study).
    pub rows: Option<Vec<String>>,
    /// Held-out examples of the fine-tuning task: its per-token loss says the task was learned.
    pub task: Option<String>,
    /// How the protected models were trained, for the report.
    pub how: Option<String>,
}

impl super::StudySpec {
    /// The names the analyses beyond the paper's four use, checked when they run.
    pub(super) fn validate_beyond(&self, datasets: &[&str], models: &[String]) -> Result<()> {
        let runs = |a: AnalysisName| self.analyses.contains(&a);
        let dataset = |name: &Option<String>, what: &str, needed: bool| -> Result<()> {
            match name {
                Some(n) if !datasets.iter().any(|d| d == n) => bail!(
                    "{what} names dataset `{n}`, which the study does not define (it has: {})",
                    datasets.join(", ")
                ),
                None if needed => bail!("{what} must name a dataset"),
                _ => Ok(()),
            }
        };
        let model = |n: &str, what: &str| -> Result<()> {
            if models.iter().any(|m| m == n) {
                Ok(())
            } else {
                bail!(
                    "{what} names model `{n}`, which is not one of the study's ({})",
                    models.join(", ")
                )
            }
        };
        let e = &self.evaluation;
        if runs(AnalysisName::Evaluation) || runs(AnalysisName::Protection) {
            dataset(&e.harmful, "[evaluation] harmful", e.code.is_none())?;
            dataset(&e.code, "[evaluation] code", false)?;
            let named = e.eroded.iter().chain(e.controls.iter().flatten());
            for n in named {
                model(n, "[evaluation]")?;
            }
            e.sampling.validate().context("[evaluation.sampling]")?;
        }
        let probe_used = [
            AnalysisName::Causal,
            AnalysisName::Drift,
            AnalysisName::Protection,
        ]
        .into_iter()
        .any(runs);
        if probe_used {
            let p = &self.probe;
            dataset(&p.directions, "[probe] directions", true)?;
            dataset(&p.harmful, "[probe] harmful", true)?;
            dataset(&p.refusal, "[probe] refusal", true)?;
            if p.window == 0 || p.pairs == Some(0) {
                bail!("[probe] window and pairs must be positive");
            }
        }
        if runs(AnalysisName::Causal) {
            dataset(&self.causal.benign, "[causal] benign", true)?;
            if self.causal.tests.is_empty() {
                bail!("[causal] names no test (`tests = [{{ name, model, action }}]`)");
            }
            for t in &self.causal.tests {
                model(&t.model, &format!("[causal] test `{}`", t.name))?;
            }
        }
        if runs(AnalysisName::Drift) {
            for n in self.drift.logs.keys() {
                model(n, "[drift] logs")?;
            }
        }
        if runs(AnalysisName::Protection) {
            let p = &self.protection;
            if p.protected.is_empty() {
                bail!("[protection] names no protected model");
            }
            let named = p.protected.iter().chain(&p.unprotected);
            for n in named.chain(p.rows.iter().flatten()) {
                model(n, "[protection]")?;
            }
            dataset(&p.task, "[protection] task", true)?;
        }
        Ok(())
    }
}
