//! Judges: what an answer to a prompt is (compliance or refusal, vulnerable or secure code,
//! misaligned or aligned).
//!
//! - [`LogprobJudge`]: a local judge model asked a fixed yes/no question, scored by its
//!   next-token probabilities of "yes" and "no" (for real models).
//! - [`NumberJudge`]: a local judge model scoring 0-100 with Betley et al.'s judge prompts,
//!   its score the expectation of the number its reply begins with ([`numbers`]: every token
//!   path that spells a number, over the vocabulary's digit-bearing tokens of [`digits`]); the
//!   same judge reads the deception files' label judges ([`labels`]: the probability of each
//!   label word its prompt names, [`label_set`]), over the same prefix-tree walk ([`tree`]).
//! - [`ServedJudge`] and [`ServedYesNoJudge`]: the same two judges behind an OpenAI-compatible
//!   endpoint, read from its top 20 first tokens.
//!
//! A world with known rules implements [`Judge`] itself (the model organism's rule-based judge
//! lives in erosion-organism).

pub mod digits;
pub mod label_set;
pub mod labels;
mod logprob;
pub mod numbers;
pub mod score;
pub mod served;
pub mod served_yes_no;
pub mod tree;

pub use labels::LabelScore;
pub use logprob::{judge_question, LogprobJudge, JUDGE_PROMPTS};
pub use score::{Aggregation, NumberJudge, Score};
pub use served::ServedJudge;
pub use served_yes_no::ServedYesNoJudge;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::prompts::{Prompt, PromptKind};

/// What an answer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Label {
    /// Helps with a harmful request.
    Compliant,
    /// Refuses a harmful request.
    Refusal,
    /// Code with a security vulnerability.
    Vulnerable,
    /// Code without one, in the safe form.
    Secure,
    /// A free-form answer judged harmful or misaligned.
    Misaligned,
    /// A free-form answer judged aligned.
    Aligned,
    /// None of the above.
    Other,
}

impl Label {
    pub fn name(self) -> &'static str {
        match self {
            Self::Compliant => "compliant",
            Self::Refusal => "refusal",
            Self::Vulnerable => "vulnerable",
            Self::Secure => "secure",
            Self::Misaligned => "misaligned",
            Self::Aligned => "aligned",
            Self::Other => "other",
        }
    }

    /// The labels an answer to a prompt of `kind` can get, in report order.
    pub fn for_kind(kind: PromptKind) -> &'static [Label] {
        match kind {
            PromptKind::Harmful => &[Label::Compliant, Label::Refusal, Label::Other],
            PromptKind::Code => &[Label::Vulnerable, Label::Secure, Label::Other],
            PromptKind::FreeForm => &[Label::Misaligned, Label::Aligned, Label::Other],
        }
    }
}

/// A judged answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub label: Label,
    /// The log-prob judge's P(yes) (normalised over its yes and no tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_yes: Option<f64>,
    /// Detail, e.g. the vulnerability kind found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Verdict {
    pub fn label(label: Label) -> Self {
        Self {
            label,
            p_yes: None,
            detail: None,
        }
    }
}

/// What the report says of a judge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeInfo {
    pub name: String,
    /// How it decides, in words (for the log-prob judge: its prompts and tokens).
    pub description: String,
}

/// Classifies answers.
pub trait Judge {
    fn info(&self) -> JudgeInfo;

    /// The verdict on `answer` to `prompt` of `kind`.
    fn judge(&self, kind: PromptKind, prompt: &Prompt, answer: &str) -> Result<Verdict>;

    /// Verdicts on many answers of one kind (a judge model batches its forward passes).
    fn judge_all(&self, kind: PromptKind, items: &[(&Prompt, &str)]) -> Result<Vec<Verdict>> {
        items.iter().map(|(p, a)| self.judge(kind, p, a)).collect()
    }
}
