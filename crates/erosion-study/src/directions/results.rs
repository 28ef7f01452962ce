//! The typed results of analysis 4, exactly as results.json holds them under `directions`.
//!
//! Shapes: k = `options.k` directions per dataset, `dim` values per residual row (d, or T * d
//! for `window-flatten`). Every `files` entry is a `.npy` path relative to the report.

pub use crate::by_name::ByName;
use crate::spec::{LayerIndexing, TokenChoice};
use erosion_analysis::directions::{CosineMode, DirectionStability, SignConvention, SvdMethod};
use erosion_analysis::subspace::SubspaceBaseline;
use erosion_report::html::Verdict;
use serde::{Deserialize, Serialize};

/// Everything analysis 4 computed, with the options that made it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectionsResults {
    pub options: DirectionsOptions,
    /// Values per residual row: d for `last` and `window-mean`, T * d for `window-flatten`.
    pub dim: usize,
    /// How the verdict is read from the first pair, in words and thresholds.
    pub verdict_rule: VerdictRule,
    /// Per dataset, in the order compared: its residual matrix's directions.
    pub datasets: ByName<DatasetResults>,
    /// Every pair (a, b) of compared datasets with a before b, in order: (0, 1), (0, 2), ...
    pub pairs: Vec<PairResults>,
    /// The first pair's verdict (`not_run` with a single dataset).
    pub verdict: Verdict,
}

/// The options of the run, resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectionsOptions {
    /// The datasets compared, in order (the spec's, else the default choice).
    pub datasets: Vec<String>,
    /// The spec's layer (negative counts from the end: -1 = the last).
    pub layer: i64,
    /// That layer as 0..=L (0 = embeddings).
    pub layer_index: usize,
    pub indexing: LayerIndexing,
    /// Which token state(s) make a row.
    pub token: TokenChoice,
    /// T, the response window of the `window-*` token choices.
    pub window: usize,
    /// Directions kept per dataset.
    pub k: usize,
    /// Monte Carlo draws of the random-subspace baseline.
    pub baseline_samples: usize,
    /// Bootstrap resamples of the stability intervals.
    pub bootstrap: usize,
    /// Confidence level of the stability intervals.
    pub level: f64,
    pub study_seed: u64,
    /// Each direction points along its dataset's mean residual (v . m > 0).
    pub sign_convention: SignConvention,
    /// The verdict reads |cos|, which needs no sign convention.
    pub cosine_mode_of_the_verdict: CosineMode,
}

/// The verdict rule, as stated in results.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerdictRule {
    pub statistic: String,
    /// "observed > null 95th percentile and p < ALPHA".
    pub above_chance: String,
    /// A shared direction counts as large from this |cos| on.
    pub large_cos: f64,
    pub reproduced: String,
    pub partly: String,
    pub not_reproduced: String,
}

/// One dataset's residual matrix R `[rows, dim]` (R_i = z_i^instruct - z_i^base) and its top-k
/// directions (right singular vectors of the column-centred R).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetResults {
    /// Examples loaded.
    pub examples: usize,
    /// Rows of R: examples recorded by both models.
    pub rows: usize,
    /// Examples the window policy left out, per model.
    pub skipped_examples: SkippedExamples,
    /// Seed of the bootstrap resamples.
    pub seed: u64,
    /// The route taken: thin SVD or the Gram matrix.
    pub method: SvdMethod,
    pub sign_convention: SignConvention,
    /// Per component: true where v . m was ~0 and the largest component fixed the sign. `[k]`
    pub sign_fallback: Vec<bool>,
    /// Singular values of the centred R. `[k]`
    pub singular_values: Vec<f64>,
    /// s_i^2 / (rows - 1). `[k]`
    pub explained_variance: Vec<f64>,
    /// explained_variance / total_variance. `[k]`
    pub explained_variance_ratio: Vec<f64>,
    /// |A|_F^2 / (rows - 1) of the centred R = A.
    pub total_variance: f64,
    /// Bootstrap stability per direction, or why it could not be computed.
    pub stability: Stability,
    /// The `.npy` arrays: vectors `[k, dim]`, singular values, explained variance (and ratio)
    /// `[k]`, column mean `[dim]`, row example indices `[rows]`, residuals `[rows, dim]` (f32, when
    /// small enough), stability `[k, 6]` (when computed).
    pub files: Vec<String>,
}

/// Examples left out by the window policy (example indices in the dataset).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkippedExamples {
    pub base: Vec<usize>,
    pub instruct: Vec<usize>,
}

/// The bootstrap stability of a dataset's directions: one entry per component (a JSON array),
/// or the error that stopped it (`{"error": ...}`; a resample can have rank below k).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stability {
    Computed(Vec<DirectionStability>),
    Failed { error: String },
}

/// Two datasets' directions compared: C_ij = cos(v_i^a, v_j^b), a k x k matrix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairResults {
    pub a: String,
    pub b: String,
    /// |C_ij|, rows = components of a. `[k, k]`
    pub cosines_abs: Vec<Vec<f64>>,
    /// C_ij with the mean-residual sign convention. `[k, k]`
    pub cosines_signed: Vec<Vec<f64>>,
    /// The brightest cell of `cosines_abs` (the first of ties in row-major order).
    pub max_abs_cos: MaxCell,
    /// |C_10|, the study's cell when a is insecure code and b toxic (None when k < 2).
    pub study_cell_1_0: Option<f64>,
    /// The largest |C_ij| and the top canonical cosine against random k-dim subspaces of R^dim.
    pub baseline: SubspaceBaseline,
    pub verdict: Verdict,
    /// The `.npy` arrays: |cos|, signed cosines and per-entry p-values, each `[k, k]`.
    pub files: Vec<String>,
}

/// max_ij |C_ij| and where it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaxCell {
    pub value: f64,
    pub row: usize,
    pub col: usize,
}
