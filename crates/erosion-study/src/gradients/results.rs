//! Analysis 2's typed results: what results.json holds under `gradients`, field for field
//! (field order is the JSON key order).

use crate::spec::{GradientsSpec, RenderSpec};
use erosion_analysis::quadrants::QuadrantSummary;
use erosion_analysis::sketch::{GramBudget, GramPlan};
use erosion_data::ShortResponse;
use erosion_forward::gradients::{GradientLayout, LossSpec};
use erosion_report::html::Verdict;
use serde::{Deserialize, Serialize};

/// Where an example of the concatenation A then B comes from: (group, index in its dataset),
/// group 0 = dataset `a`, 1 = dataset `b`. Serialised as `[group, index]`.
pub type Origin = (usize, usize);

/// Every number analysis 2 computed, with the options that made it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GradientsResults {
    /// The `[gradients]` options as run.
    pub options: GradientsSpec,
    /// How examples were rendered into tokens.
    pub render: RenderSpec,
    /// The dataset names: `a` (first, e.g. insecure) and `b` (second, e.g. educational).
    pub datasets: DatasetPair<String>,
    /// Dataset indices of the examples used per dataset: those with a scorable response among
    /// the first `n`, ascending. Positions in the loss-vector and gradient matrices count these,
    /// A first.
    pub examples_used: DatasetPair<Vec<usize>>,
    /// Examples among the first `n` without a scorable response, per dataset `[a, b]`.
    pub unscorable: [Vec<Unscorable>; 2],
    /// Part a: loss vectors and their cosine matrix read by quadrant.
    pub loss_vectors: LossVectorResults,
    /// Part b: per-example gradients and their cosine matrix read by quadrant.
    pub gradients: GradientPassResults,
    /// Every seed used, derived from the study's seed.
    pub seeds: GradientSeeds,
    /// The arrays saved, as paths relative to the report.
    pub files: GradientFiles,
    /// The verdict on the gradients (the loss vectors have none).
    pub verdict: VerdictRecord,
}

/// One value per dataset of the pair.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetPair<T> {
    pub a: T,
    pub b: T,
}

/// An example left out because its response could not be scored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unscorable {
    /// Index in its dataset.
    pub example: usize,
    pub reason: String,
}

/// Part a: l_i = (CE_1, ..., CE_T), CE_t = -ln p(x_t | x_<t) over the first T response tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LossVectorResults {
    /// The T asked for (`[gradients] window`).
    pub requested_window: usize,
    /// The T used (smaller only under `truncate_to_shortest`).
    pub window: usize,
    /// The short-response policy.
    pub policy: ShortResponse,
    /// The positions read, in words (end-of-turn token included or not).
    pub positions: String,
    /// The examples with a loss vector, in row order (A first). // [n_a + n_b]
    pub kept: Vec<Origin>,
    /// The examples the short-response policy left out.
    pub skipped: Vec<Origin>,
    /// Loss vectors of A (rows 0..n_a) and of B (the rest).
    pub n_a: usize,
    pub n_b: usize,
    /// Always false: cross-entropies are non-negative, so the vectors are used as they are.
    pub centred: bool,
    /// Mean cosine within A, within B, across, and the permutation test of within - across.
    pub quadrants: QuadrantSummary,
}

/// Part b: g_i = d loss_i / d theta over the chosen weights, cosines from the Gram matrix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GradientPassResults {
    /// The weights theta, flattened in this order (row-major); `dim` values per gradient.
    pub layout: GradientLayout,
    /// The loss differentiated: span, reduction and short-response policy.
    pub loss: LossSpec,
    /// Blocks from this one on ran with a graph; those below without one.
    pub first_differentiable_layer: usize,
    /// One row per gradient, in the Gram matrix's row order (A first).
    pub rows: Vec<GradientRow>,
    /// Examples that got no gradient (short-response policy), and why.
    pub skipped: Vec<GradientSkip>,
    /// Gradient rows of A (rows 0..n_a) and of B (the rest).
    pub n_a: usize,
    pub n_b: usize,
    /// Whether the cosines are of mean-centred gradients g_i - mean_j g_j (by double centring
    /// of the Gram matrix).
    pub centred: bool,
    /// How the Gram matrix G = X X^T was computed: exact (blocked) or a seeded sketch.
    pub gram_plan: GramPlan,
    /// The budget the plan was chosen under.
    pub gram_budget: GramBudget,
    /// The limits the plan must respect.
    pub plan_limits: PlanLimits,
    /// The exact route's row store of the gradients (relative to the report when under it;
    /// None for a sketch).
    pub store: Option<String>,
    /// Guaranteed cosine error of the sketch (0 for the exact Gram).
    pub cosine_error_bound: f64,
    /// Mean cosine within A, within B, across, and the permutation test of within - across.
    pub quadrants: QuadrantSummary,
}

/// One example's gradient.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GradientRow {
    /// The dataset's name.
    pub dataset: String,
    /// Index in that dataset.
    pub example: usize,
    /// loss_i, the loss differentiated.
    pub loss: f64,
    /// Target tokens the loss covered.
    pub n_tokens: usize,
    /// The response was shorter than the window and its available tokens were used.
    pub short: bool,
}

/// An example without a gradient.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GradientSkip {
    pub dataset: String,
    pub example: usize,
    pub reason: String,
}

/// The Gram plan's limits: at most `max_passes` sweeps over the stored rows (exact), or every
/// cosine within `max_cosine_error` with probability 1 - `delta` (sketch).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanLimits {
    pub max_passes: usize,
    pub max_cosine_error: f64,
    pub delta: f64,
}

/// The study's seed and those mixed from it for each random step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GradientSeeds {
    pub study: u64,
    /// The loss vectors' permutation test.
    pub loss_vector_permutations: u64,
    /// The gradients' permutation test.
    pub gradient_permutations: u64,
    /// The sketch's random signs (used only by a sketch plan).
    pub sketch: u64,
}

/// The arrays saved under `arrays/` (`.npy`), as paths relative to the report. Origins are
/// `[group, dataset index]` pairs (int64).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GradientFiles {
    /// Loss vectors, f64. // [n_lv, T]
    pub loss_vectors: String,
    /// Their origins. // [n_lv, 2]
    pub loss_vector_examples: String,
    /// Their cosine matrix. // [n_lv, n_lv]
    pub loss_vector_cosine: String,
    /// The gradients' origins. // [n_g, 2]
    pub gradient_examples: String,
    /// loss_i of each gradient. // [n_g]
    pub gradient_losses: String,
    /// G, uncentred (exact, or of the sketch). // [n_g, n_g]
    pub gradient_gram: String,
    /// The gradients' cosine matrix (centred when `centred`). // [n_g, n_g]
    pub gradient_cosine: String,
}

impl GradientFiles {
    /// Every path, in field order.
    pub fn paths(&self) -> [&str; 7] {
        [
            &self.loss_vectors,
            &self.loss_vector_examples,
            &self.loss_vector_cosine,
            &self.gradient_examples,
            &self.gradient_losses,
            &self.gradient_gram,
            &self.gradient_cosine,
        ]
    }
}

/// The verdict, why, and the significance level it used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerdictRecord {
    pub verdict: Verdict,
    pub reason: String,
    pub alpha: f64,
}
