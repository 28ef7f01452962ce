//! The typed numbers of analysis 3, exactly as results.json holds them under `layers`.
//!
//! Notation (module docs of [`super`]): s_l^m the mean projection of model m's pooled windows
//! at layer l onto the unit alignment direction v_l / |v_l|, r_l^m its relative position
//! between base (0) and instruct (1). Layers run 0..=L (0 = embeddings), so every per-layer
//! vector has `n_layers` = L + 1 entries. Where a layer has no alignment direction (base and
//! instruct means coincide) its values are `None` (null in JSON).

pub use crate::by_name::ByName;
use crate::spec::{LayerIndexing, Pooling};
use erosion_analysis::stats::ConfidenceInterval;
use erosion_data::ShortResponse;
use erosion_report::html::Verdict;
use serde::{Deserialize, Serialize};

/// Everything analysis 3 measured, with the options that made it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayersResults {
    pub options: LayersOptions,
    /// Every model of the study, in study order: base, instruct, then the fine-tuned models.
    pub models: Vec<String>,
    /// The first fine-tuned model, whose early-vs-deep test gives the verdict (None without one).
    pub model_under_test: Option<String>,
    /// L + 1: the layers measured, 0 (embeddings) to L.
    pub n_layers: usize,
    /// Length of one pooled window z: T x d (flatten) or d (mean).
    pub pooled_dim: usize,
    /// The verdict rule, in words and thresholds.
    pub verdict_rule: VerdictRule,
    /// Per dataset (in the options' order), keyed by dataset name.
    pub datasets: ByName<DatasetLayers>,
    /// Per pair of datasets (a before b in the options' order): the cosine of their v_l.
    /// Empty with fewer than two datasets.
    pub direction_cosines: Vec<DirectionCosines>,
    /// The datasets' verdicts combined: all reproduced -> Reproduced, all not -> NotReproduced,
    /// else Partly (datasets without a test left out).
    pub verdict: Verdict,
}

/// The options of analysis 3 (the study file's `[layers]` table, resolved).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayersOptions {
    /// The datasets measured, in order.
    pub datasets: Vec<String>,
    /// T: response tokens per window.
    pub window: usize,
    /// Response tokens skipped before the window.
    pub offset: usize,
    pub pooling: Pooling,
    /// The short-response policy.
    pub short: ShortResponse,
    pub indexing: LayerIndexing,
    /// Bootstrap resamples of every interval.
    pub bootstrap: usize,
    /// Confidence level of every interval (0.95).
    pub level: f64,
    /// The study's seed, from which each dataset's seed is derived.
    pub study_seed: u64,
}

/// The verdict rule of analysis 3, as results.json states it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerdictRule {
    pub relative_position: String,
    pub early_deep: String,
    /// r(early) must reach this (0.75).
    pub tracks_early_min: f64,
    /// r(deep) must not exceed this (0.5).
    pub deep_max: f64,
    pub reproduced: String,
    pub partly: String,
    pub not_reproduced: String,
    /// How the datasets' verdicts combine.
    pub datasets: String,
}

/// What analysis 3 measured on one dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetLayers {
    /// Examples in the dataset (after its limit).
    pub examples: usize,
    /// Seed of this dataset's bootstraps (the study's seed mixed with the dataset's index).
    pub seed: u64,
    /// Per model: examples whose window was recorded.
    pub recorded: ByName<usize>,
    /// Per model: indices of the examples the short-response policy left out.
    pub skipped_examples: ByName<Vec<usize>>,
    /// `[n_layers]`: whether layer l has an alignment direction (|v_l| not ~ 0).
    pub usable_layers: Vec<bool>,
    /// `[n_layers]`: |v_l| = |mu_l^instruct - mu_l^base|, 0 where unusable.
    pub direction_norms: Vec<f64>,
    /// Per model, `[n_layers]`: s_l^m = mean_i z_{l,i}^m . v_l / |v_l|.
    pub scores: ByName<Vec<Option<f64>>>,
    /// Per model, `[n_layers]`: bootstrap CI of s_l^m over examples, v_l held fixed.
    pub score_ci: ByName<Vec<Option<ConfidenceInterval>>>,
    /// Per fine-tuned model, `[n_layers]`: paired bootstrap CI of
    /// r_l = (s_l^m - s_l^base) / (s_l^instruct - s_l^base) (None also where r is undefined).
    pub relative: ByName<Vec<Option<ConfidenceInterval>>>,
    /// Per fine-tuned model (study order): the early-vs-deep test, or why there is none.
    pub tests: Vec<TestOutcome>,
    /// The verdict of the model under test's test (NotRun without one).
    pub verdict: Verdict,
    /// The `.npy` arrays written for this dataset, relative to the report.
    pub files: Vec<String>,
}

/// The early-vs-deep test of one fine-tuned model on one dataset, or why it did not run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TestOutcome {
    /// Boxed: a test is far larger than the reason it did not run.
    Ran(Box<ErosionTest>),
    NotRun {
        model: String,
        error: String,
    },
}

/// The early-vs-deep comparison of one fine-tuned model on one dataset: mean r over the
/// early and the deep third of the usable block layers, and their difference, each with a
/// paired bootstrap CI (one seed, hence the same resamples, for all three).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErosionTest {
    pub model: String,
    /// The model the verdict is about (the others are controls).
    pub under_test: bool,
    /// The first max(1, floor(n / 3)) usable block layers.
    pub early_layers: Vec<usize>,
    /// The last max(1, floor(n / 3)) usable block layers.
    pub deep_layers: Vec<usize>,
    /// Examples recorded by base, instruct and the model alike.
    pub n_paired: usize,
    /// Mean r_l over the early layers.
    pub early: ConfidenceInterval,
    /// Mean r_l over the deep layers.
    pub deep: ConfidenceInterval,
    /// r(early) - r(deep).
    pub drop: ConfidenceInterval,
    /// r(early) >= tracks_early_min.
    pub tracks_early: bool,
    /// The CI of the drop lies above 0.
    pub drop_significant: bool,
    /// r(deep) <= deep_max.
    pub deep_fell_half_way: bool,
    pub verdict: Verdict,
}

/// The per-layer cosine between the alignment directions found on two datasets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectionCosines {
    pub a: String,
    pub b: String,
    /// `[n_layers]`: cos(v_l on a, v_l on b), signed; None where either has no direction.
    pub cosine: Vec<Option<f64>>,
}
