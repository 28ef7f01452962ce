//! Analysis 4's notes: how rows, directions, signs, the baseline, stability and the verdict
//! were made, and which datasets were compared.

use super::results::DirectionsResults;
use super::verdict::{ALPHA, LARGE_COS};
use super::MAX_WRITTEN_RESIDUALS;
use crate::context::StudyContext;
use crate::spec::{LayerIndexing, TokenChoice};

/// The notes of the section, before any dataset's bootstrap failure.
pub(crate) fn notes(ctx: &StudyContext, r: &DirectionsResults) -> Vec<String> {
    let o = &r.options;
    let dim = r.dim;
    let n_layers = ctx.models[0].checkpoint.config.num_hidden_layers;
    let token = match o.token {
        TokenChoice::Last => "the last token of the sequence (the study's code)".to_string(),
        TokenChoice::WindowMean => format!(
            "the mean over the first T = {} response tokens (a shorter response: the mean of the tokens there are)",
            o.window
        ),
        TokenChoice::WindowFlatten => format!(
            "the first T = {} response tokens concatenated (a shorter response is left out, so every row has T x d values)",
            o.window
        ),
    };
    let indexing = match o.indexing {
        LayerIndexing::ResidualStream => "residual stream (the last layer is before the final norm)",
        LayerIndexing::HfHiddenStates => "Hugging Face hidden_states (the last layer is after the final norm, as in the study's code)",
    };
    // The residual matrix R [rows, dim] is written exactly when it is this small.
    let written = if r
        .datasets
        .iter()
        .all(|(_, d)| d.rows * dim <= MAX_WRITTEN_RESIDUALS)
    {
        "The residual matrices are written as residuals.npy (f32).".to_string()
    } else {
        format!("Residual matrices above {MAX_WRITTEN_RESIDUALS} values are not written (they can be rebuilt from the activation cache).")
    };
    vec![
        format!(
            "Rows: h_l(instruct) - h_l(base) at layer {} of 0..={n_layers} (the spec's {}; 0 = embeddings; {indexing}), at {token}; {dim} values per row.",
            o.layer_index, o.layer
        ),
        format!(
            "Directions: the residual matrix is column-centred and its top k = {} right singular vectors are kept (thin SVD with faer, or the Gram route when 2n <= dim); \
             a dataset needs at least k + 1 usable examples. {written}",
            o.k
        ),
        "Sign convention: each direction is flipped so that it points along the dataset's mean residual (v . m > 0: toward instruct); when v . m is ~0 the largest \
         component is made positive (listed per component). The verdict and the baseline use |cos|, which does not depend on signs; the signed heatmap is shown beside it."
            .into(),
        format!(
            "Chance baseline: the largest |cos| between the first dataset's k directions and a uniformly random k-dimensional subspace of R^{dim} ({} Monte Carlo draws), and \
             the same for the top canonical cosine. Real activations are anisotropic (they concentrate in few directions), so isotropic random subspaces are a lenient null: \
             a cosine above it says the two domains share more than chance in R^{dim}, not that the direction is specific to alignment.",
            o.baseline_samples
        ),
        format!(
            "Stability: examples are resampled with replacement {} times, the directions recomputed, and |cos| with the original taken for the same component and for the best \
             match among the k (components of close singular values may swap order). Small datasets can fail here (a resample repeats examples and can have rank < k).",
            o.bootstrap
        ),
        format!(
            "Verdict rule (first pair of datasets): Reproduced if the largest |cos| exceeds the random-subspace 95th percentile with p < {ALPHA} and is at least {LARGE_COS}; \
             Partly if above chance but below {LARGE_COS}; Not reproduced if not above chance. Later pairs are reported beside it."
        ),
        format!(
            "Datasets: {} ({}).",
            o.datasets.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", "),
            if ctx.spec.directions.datasets.is_some() { "as the study file names them" } else { "by default the first two misaligned datasets, else the first two" }
        ),
    ]
}
