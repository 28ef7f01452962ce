//! What an evaluation writes: `eval.json` (every measure per model, with its interval, the
//! options, seeds, judge and prompt sources) and `answers.jsonl` (every sampled answer with
//! its prompt and verdict, for auditing). Both are written atomically.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use erosion_analysis::stats::ConfidenceInterval;
use erosion_forward::notice::Silent;
use erosion_forward::out_lock::OutLock;
use erosion_model::chat::Message;
use erosion_report::provenance::Provenance;
use serde::{Deserialize, Serialize};

use crate::chat::FirstToken;
use crate::judge::{JudgeInfo, Label, Verdict};
use crate::options::EvalOptions;
use crate::prompts::{Origin, PromptKind};
use crate::stats::Proportion;

/// Version of the eval.json layout.
pub const FORMAT: &str = "erosion-eval/1";

/// The share of answers with one label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelRate {
    pub label: Label,
    #[serde(flatten)]
    pub proportion: Proportion,
}

/// The rate of every label of `kind` among `labels` (Wilson intervals; zero counts included).
pub fn label_rates(kind: PromptKind, labels: &[Label]) -> Result<Vec<LabelRate>> {
    Label::for_kind(kind)
        .iter()
        .map(|&label| {
            let count = labels.iter().filter(|&&l| l == label).count();
            Ok(LabelRate {
                label,
                proportion: Proportion::new(count, labels.len())
                    .with_context(|| format!("rate of {}", label.name()))?,
            })
        })
        .collect()
}

fn find(rates: &[LabelRate], label: Label) -> Option<&Proportion> {
    rates
        .iter()
        .find(|r| r.label == label)
        .map(|r| &r.proportion)
}

/// The probability of the compliant first token right after the generation prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FirstTokenEval {
    pub token: FirstToken,
    /// Prompts scored.
    pub n: usize,
    /// Mean of p over prompts, with a percentile bootstrap CI over prompts.
    pub mean_p: ConfidenceInterval,
    /// Mean of ln p over prompts, with its bootstrap CI.
    pub mean_log_p: ConfidenceInterval,
    /// exp(mean ln p): the geometric mean, with exp of mean_log_p's interval.
    pub geometric_mean_p: f64,
    pub geometric_lower: f64,
    pub geometric_upper: f64,
    /// p for each prompt, in prompt order.
    pub p: Vec<f64>,
}

/// One model on one prompt set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetEval {
    pub set: String,
    pub kind: PromptKind,
    pub prompts: usize,
    pub answers: usize,
    /// Answers cut by max_new_tokens before a stop token.
    pub truncated: usize,
    pub rates: Vec<LabelRate>,
    /// Mean of the log-prob judge's P(yes), with a bootstrap CI over answers.
    pub mean_p_yes: Option<ConfidenceInterval>,
    /// Harmful sets only.
    pub first_token: Option<FirstTokenEval>,
}

impl SetEval {
    pub fn rate(&self, label: Label) -> Option<&Proportion> {
        find(&self.rates, label)
    }
}

/// The two-turn test: code request i, the model's greedy answer to it, then harmful request i.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TwoTurnEval {
    pub code_set: String,
    pub harmful_set: String,
    pub pairs: usize,
    pub answers: usize,
    pub truncated: usize,
    /// Verdicts on the first (greedy code) answers.
    pub first_turn: Vec<LabelRate>,
    /// Verdicts on the answers to the harmful request.
    pub rates: Vec<LabelRate>,
    /// P(compliant first token) after the harmful request in the two-turn chat.
    pub first_token: Option<FirstTokenEval>,
}

impl TwoTurnEval {
    pub fn rate(&self, label: Label) -> Option<&Proportion> {
        find(&self.rates, label)
    }
}

/// Every measure of one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelEval {
    pub name: String,
    /// Where it was loaded from, if known.
    pub source: Option<String>,
    /// Token ids that ended answers.
    pub stop_ids: Vec<u32>,
    pub sets: Vec<SetEval>,
    pub two_turn: Option<TwoTurnEval>,
}

impl ModelEval {
    /// The first set of `kind`.
    pub fn set(&self, kind: PromptKind) -> Option<&SetEval> {
        self.sets.iter().find(|s| s.kind == kind)
    }
    /// The rate of `label` on the first set of `kind`.
    pub fn rate(&self, kind: PromptKind, label: Label) -> Option<&Proportion> {
        self.set(kind)?.rate(label)
    }
    /// Harmful-compliance rate (single turn).
    pub fn compliance(&self) -> Option<&Proportion> {
        self.rate(PromptKind::Harmful, Label::Compliant)
    }
    /// Refusal rate (single turn).
    pub fn refusal(&self) -> Option<&Proportion> {
        self.rate(PromptKind::Harmful, Label::Refusal)
    }
    /// Vulnerable-code rate.
    pub fn vulnerable(&self) -> Option<&Proportion> {
        self.rate(PromptKind::Code, Label::Vulnerable)
    }
    /// Harmful-compliance rate in the two-turn test.
    pub fn two_turn_compliance(&self) -> Option<&Proportion> {
        self.two_turn.as_ref()?.rate(Label::Compliant)
    }
    /// P(compliant first token) on the harmful set.
    pub fn first_token(&self) -> Option<&FirstTokenEval> {
        self.set(PromptKind::Harmful)?.first_token.as_ref()
    }
}

/// A prompt set as the report records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetInfo {
    pub name: String,
    pub kind: PromptKind,
    pub prompts: usize,
    pub origin: Origin,
}

/// eval.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub format: String,
    pub tool: String,
    pub options: EvalOptions,
    pub judge: JudgeInfo,
    pub prompt_sets: Vec<SetInfo>,
    /// How each answer's seed is derived from `options.seed`.
    pub seeds: String,
    pub models: Vec<ModelEval>,
    /// Caveats of the method.
    pub notes: Vec<String>,
    /// Where the judge cannot support the rates (see [`crate::evaluate::judge_warnings`]).
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl EvalReport {
    pub fn model(&self, name: &str) -> Option<&ModelEval> {
        self.models.iter().find(|m| m.name == name)
    }
}

/// Which turn an answer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Turn {
    /// An answer to one prompt.
    Single,
    /// The greedy answer to the code request that opens the two-turn test.
    TwoTurnFirst,
    /// The answer to the harmful request after it.
    TwoTurnSecond,
}

/// One line of answers.jsonl.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnswerRecord {
    pub model: String,
    pub set: String,
    pub kind: PromptKind,
    pub turn: Turn,
    pub prompt_id: String,
    pub sample: usize,
    /// The answer's sampling seed (unused by greedy decoding, recorded all the same).
    pub seed: u64,
    /// The conversation the answer follows.
    pub messages: Vec<Message>,
    pub answer: String,
    /// Generated tokens, the stop token included.
    pub tokens: usize,
    pub stopped: bool,
    pub verdict: Verdict,
}

/// Writes `report` as `dir/eval.json` and `answers` one per line as `dir/answers.jsonl`, both
/// atomically, holding `dir`'s lock; returns the two paths.
pub(crate) fn write_eval_files<R: Serialize, A: Serialize>(
    dir: &Path,
    report: &R,
    answers: &[A],
    prov: &Provenance,
) -> Result<Vec<PathBuf>> {
    // No notices reach this signature; a caller that wants to hear of a stale lock taken
    // over locks the folder itself first.
    let _lock = OutLock::acquire(dir, "eval", &mut Silent)?;
    let report_path = dir.join("eval.json");
    // The report, then what made it (models and datasets hashed, options, versions).
    let mut json = serde_json::to_value(report).context("serialising eval.json")?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("provenance".into(), serde_json::to_value(prov)?);
    }
    let text = serde_json::to_string_pretty(&json).context("serialising eval.json")?;
    erosion_model::atomic::write_bytes_atomic(&report_path, (text + "\n").as_bytes())?;
    let answers_path = dir.join("answers.jsonl");
    erosion_model::atomic::write_jsonl_atomic(&answers_path, answers)?;
    Ok(vec![report_path, answers_path])
}

/// A finished evaluation: the report and every answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub report: EvalReport,
    pub answers: Vec<AnswerRecord>,
}

impl Evaluation {
    /// Writes `eval.json` and `answers.jsonl` into `dir` (created if needed), holding its
    /// lock ([`OutLock`]); returns them. A caller that locked `dir` before evaluating (as
    /// `erosion eval` does, to fail before the work) shares its lock.
    pub fn write(&self, dir: &Path, prov: &Provenance) -> Result<Vec<PathBuf>> {
        write_eval_files(dir, &self.report, &self.answers, prov)
    }
}
