//! Analysis 1's typed results: every number it computed, as results.json holds them under
//! `behaviour` (field order = key order). Arrays saved under `arrays/` are named by their
//! path relative to the report, with their shapes in the field docs (`M` models in
//! [`TableResults::models`] order, `D` datasets, `T` response tokens of the example, `K` top
//! tokens, `N_d` the common examples of dataset `d`).

pub use super::prompt::PrefixPrompt;
pub use super::table::{CellSummary, PatternCell};
pub use crate::by_name::ByName;
use crate::spec::{BehaviourSpec, RenderSpec};
use erosion_report::html::Verdict;
use serde::{Deserialize, Serialize};

/// Everything analysis 1 computed, with the options that made it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BehaviourResults {
    /// `[behaviour]` of STUDY.toml as run.
    pub options: BehaviourSpec,
    /// `[render]`: how examples became tokens.
    pub render: RenderSpec,
    /// Which positions are scored: "response tokens as rendered, including|excluding the
    /// end-of-turn token".
    pub positions: String,
    /// Unit of every log-probability and entropy: "nats".
    pub units: String,
    /// (a) One response, token by token.
    pub example: ExampleResults,
    /// (b) The next-token distribution after the prefix.
    pub next_token: NextTokenResults,
    /// (c) Per dataset and model: mean log joint and entropy with bootstrap CIs.
    pub table: TableResults,
    /// The paired tests of the study's ordering that decide the verdict.
    pub pattern: PatternResults,
    /// The study's own table (Giordani 2025, `joint_prob.txt`), for comparison.
    pub study_table: Vec<StudyTableRow>,
    pub verdict: BehaviourVerdict,
}

/// (a) The example response under every model, on the instruct rendering's response tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExampleResults {
    pub dataset: String,
    /// Example index within the dataset.
    pub index: usize,
    /// "[behaviour] example", or the default rule that chose it.
    pub chosen_by: String,
    /// The `T` response tokens, decoded one by one with the instruct tokenizer.
    pub tokens: Vec<TokenLabel>,
    /// Per model (study order).
    pub models: ByName<ExampleModel>,
    pub files: ExampleFiles,
}

/// A token id with its text label.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenLabel {
    pub id: u32,
    pub text: String,
}

/// The example under one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExampleModel {
    /// lp_t = ln p(x_t | x_<t), `[T]`.
    pub logprobs: Vec<f64>,
    /// J_t = sum_{s<=t} lp_s, `[T]`.
    pub running_log_joint: Vec<f64>,
    /// Entropy of the distribution x_t was drawn from, `[T]`.
    pub entropy: Vec<f64>,
    /// J_T, the response's log joint probability (0 for no tokens).
    pub log_joint: f64,
    /// The model's own rendering tokenizes the response differently from the instruct one.
    pub own_tokenization_differs: bool,
}

/// The example's arrays.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExampleFiles {
    /// u32 `[T]`.
    pub token_ids: String,
    /// f64 `[M, T]`.
    pub logprobs: String,
    /// f64 `[M, T]`.
    pub running_log_joint: String,
    /// f64 `[M, T]`.
    pub entropy: String,
}

/// (b) The token after `[user, assistant-prefix]` with the assistant's turn open.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NextTokenResults {
    pub prefix_user: String,
    pub prefix_assistant: String,
    pub top_k: usize,
    /// Per model (study order).
    pub models: ByName<NextTokenModel>,
    /// The instruct model's entropy is below every other model's.
    pub instruct_has_lowest_entropy: bool,
    pub files: NextTokenFiles,
}

/// The next-token distribution of one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NextTokenModel {
    pub prompt: PrefixPrompt,
    /// H = -sum_v p_v ln p_v over the whole vocabulary.
    pub entropy_nats: f64,
    /// The `top_k` most likely tokens, most likely first.
    pub top: Vec<TopToken>,
}

/// One of the most likely next tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopToken {
    pub id: u32,
    /// Decoded with the instruct tokenizer.
    pub text: String,
    pub prob: f32,
    /// ln prob.
    pub logprob: f32,
}

/// The next-token arrays (`K` = the fewest top tokens any model has).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NextTokenFiles {
    /// u32 `[M, K]`.
    pub top_ids: String,
    /// f64 `[M, K]`.
    pub top_probs: String,
    /// f64 `[M]`.
    pub entropy: String,
}

/// (c) The datasets x models table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableResults {
    pub datasets: Vec<String>,
    pub models: Vec<String>,
    /// Per dataset: "misaligned", "aligned" or "-".
    pub roles: Vec<String>,
    /// Per dataset: the examples every model can score.
    pub n_examples: Vec<usize>,
    /// Per dataset: the examples left out, and why.
    pub excluded: ByName<Vec<Excluded>>,
    /// What the entropy CI is a mean of.
    pub entropy_column: String,
    /// `D x M` cells, dataset-major.
    pub cells: Vec<CellSummary>,
    pub bootstrap: BootstrapOptions,
    pub files: TableFiles,
}

/// An example left out of a dataset's table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Excluded {
    pub example: usize,
    /// Per model that cannot score it: "model: why", joined by "; ".
    pub reason: String,
}

/// How every CI of the table was taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootstrapOptions {
    pub resamples: usize,
    pub level: f64,
    pub method: String,
}

/// The table's arrays.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableFiles {
    /// Mean log joint, f64 `[D, M]`.
    pub log_joint: String,
    /// Its CI (lower, upper), f64 `[D, M, 2]`.
    pub log_joint_ci: String,
    /// Mean of the responses' mean entropies, f64 `[D, M]`.
    pub entropy: String,
    /// Its CI (lower, upper), f64 `[D, M, 2]`.
    pub entropy_ci: String,
    /// Per dataset: the per-example values.
    pub per_dataset: ByName<DatasetFiles>,
}

/// One dataset's per-example arrays.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetFiles {
    /// Each response's log joint, f64 `[M, N_d]`.
    pub log_joint: String,
    /// Each response's mean entropy, f64 `[M, N_d]`.
    pub mean_entropy: String,
    /// The example indices, i64 `[N_d]`.
    pub examples: String,
}

/// The paired tests of the ordering (the verdict rule is in the report's notes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatternResults {
    /// The misaligned datasets, or all when none has that role.
    pub tested_datasets: Vec<String>,
    /// Some dataset has role = misaligned.
    pub chosen_by_role: bool,
    /// One per (tested dataset, fine-tune), or per tested dataset without a fine-tune.
    pub cells: Vec<PatternCell>,
}

/// One row of the study's own table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyTableRow {
    pub dataset: String,
    /// "misaligned" or "aligned".
    pub role: String,
    /// Mean log joint (nats) by the study's model names.
    pub log_joint: ByName<f64>,
    /// Mean entropy (nats) by the study's model names.
    pub entropy: ByName<f64>,
}

/// The verdict and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BehaviourVerdict {
    pub verdict: Verdict,
    pub reason: String,
}

impl BehaviourResults {
    /// The table's cell of dataset `d` and model `m` (indices into its names).
    pub fn cell(&self, d: usize, m: usize) -> &CellSummary {
        &self.table.cells[d * self.table.models.len() + m]
    }

    /// The fine-tuned models: every model but base and instruct, in study order.
    pub fn finetuned(&self) -> impl Iterator<Item = &str> {
        (self.table.models.iter())
            .map(String::as_str)
            .filter(|m| !matches!(*m, "base" | "instruct"))
    }

    /// The index of model `name` in the table.
    pub fn model_index(&self, name: &str) -> anyhow::Result<usize> {
        use anyhow::Context;
        self.table
            .models
            .iter()
            .position(|m| m == name)
            .with_context(|| format!("the study has no model `{name}`"))
    }
}
