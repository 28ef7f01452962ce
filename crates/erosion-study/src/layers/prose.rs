//! Analysis 3's prose: the finding, what the study reported, and its choices in words.

use super::relative::{DEEP_MAX, TRACKS_EARLY_MIN};
use super::results::LayersResults;
use crate::context::StudyContext;
use crate::spec::{LayerIndexing, Pooling};
use erosion_data::ShortResponse;

pub(super) const FINDING: &str = "Projecting each model's response-window hidden states onto the per-layer alignment \
direction v_l = mu_l(instruct) - mu_l(base), the misaligned model tracks the instruct model in early layers \
and falls toward (and below) the base model in deep layers.";
pub(super) const REPORTED: &str = "Giordani 2025: with z = the hidden states of the first T response tokens (the text: \
T = 64 flattened into one vector; the code: T = 10, each token a row, i.e. mean pooling), s_l = mean \
projection onto v_l / |v_l| plotted against the layer for base, instruct and misaligned (Qwen2.5-Coder-32B \
family): the misaligned model tracks instruct in early layers and falls toward, and below, base in deep layers.";

/// Layers as "a-b" when consecutive (three or more), else listed.
pub(super) fn layer_list(l: &[usize]) -> String {
    match (l.first(), l.last()) {
        (Some(a), Some(b)) if l.len() > 2 && b - a + 1 == l.len() => format!("{a}-{b}"),
        _ => l
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The choices of this analysis, in words.
/// The model width d comes from the context (results.json holds only the pooled length), as
/// does the cache's folder.
pub(super) fn notes(ctx: &StudyContext, res: &LayersResults) -> Vec<String> {
    let spec = &res.options;
    let dim = res.pooled_dim;
    let d = ctx.models[0].checkpoint.config.hidden_size;
    let pooling = match spec.pooling {
        Pooling::Flatten => format!("flatten (the study's text): the T x d window concatenated into one vector of {dim} values"),
        Pooling::Mean => format!("mean (the study's code, tokens as rows): the mean of the T token vectors, {dim} values (the mean of per-token projections equals the projection of the mean)"),
    };
    let short = match spec.short {
        ShortResponse::Error => "error: a response shorter than offset + T stops the analysis".to_string(),
        ShortResponse::Skip => "skip: such examples are left out (per model, listed in results.json)".to_string(),
        // Refused by the spec's validation: the layers read one example at a time.
        ShortResponse::TruncateToShortest => "truncate_to_shortest: not supported".to_string(),
        ShortResponse::UseAvailable => match spec.pooling {
            Pooling::Flatten => "truncate: the tokens there are; flatten pooling fills the missing positions with 0, which pulls those coordinates of the means toward 0".to_string(),
            Pooling::Mean => "truncate: the tokens there are are averaged".to_string(),
        },
    };
    let indexing = match spec.indexing {
        LayerIndexing::ResidualStream => "residual stream: layer 0 = token embeddings, layer l = output of block l-1 (the last layer is before the final norm)",
        LayerIndexing::HfHiddenStates => "Hugging Face hidden_states (the study's code): layer 0 = embeddings, layer l = output of block l-1, except the last, taken after the final norm",
    };
    let under_test = res
        .model_under_test
        .as_ref()
        .map_or("none (no fine-tuned model)".to_string(), |m| {
            format!("`{m}` (the first fine-tuned model of the study file)")
        });
    vec![
        format!(
            "Window: the first T = {} response tokens after skipping {} (the hidden state at each token's own position, i.e. after reading it); d = {d}.",
            spec.window, spec.offset
        ),
        format!("Pooling: {pooling}."),
        format!("Short responses: {short}."),
        format!("Layer indexing: {indexing}; every layer 0..=L is measured."),
        format!(
            "Confidence bands: percentile bootstrap of the mean of per-example projections onto v_l / |v_l| (erosion_analysis::layers::score_ci; {} resamples at {:.0}%), conditional on v_l. \
             The projections come from a second pass that replays the cached windows from disk once v_l is known. The alternative that also re-estimates v_l in every resample \
             (paired_bootstrap) needs n x n Gram matrices of all pooled vectors per layer and model, which this streaming design does not hold; the bands therefore leave out \
             the sampling error of v_l itself and are somewhat narrow, and since v_l is estimated on the same examples, s_instruct - s_base = |v_l| is biased upward when n is small against the dimension.",
            spec.bootstrap, spec.level * 100.0
        ),
        format!(
            "Relative position r_l = (s_l - s_l base) / (s_l instruct - s_l base): 0 = base, 1 = instruct; its CIs resample examples jointly for base, instruct and the model (paired: only examples all three recorded). \
             Model under test: {under_test}; the other fine-tuned models are controls, shown beside it."
        ),
        format!(
            "Verdict rule (per dataset, on the model under test): early layers = the first third, deep layers = the last third of the usable block layers 1..=L \
             (max(1, floor(n/3)) each; layer 0, the embedding table, is left out: a fine-tune of the instruct model keeps its embeddings nearly unchanged, which would make early tracking trivial). \
             Reproduced if r(early) >= {TRACKS_EARLY_MIN}, the {:.0}% CI of r(early) - r(deep) lies above 0, and r(deep) <= {DEEP_MAX} (at least half way back to base, or below it); \
             Partly if the fall is significant but one of the other two fails; Not reproduced if the CI of the fall reaches 0. Over datasets: reproduced if every dataset reproduces it, \
             not reproduced if none does even partly, partly otherwise.",
            spec.level * 100.0
        ),
        format!(
            "Activations: each model's windows on each dataset are cached ({}), keyed by the model's weights, the dataset, its rendering and these window options; a stopped study resumes from the cache.",
            ctx.cache.root().display()
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use erosion_report::format::fmt_sig4;

    #[test]
    fn numbers_and_layer_lists() {
        assert_eq!(fmt_sig4(0.12345), "0.1235");
        assert_eq!(fmt_sig4(52.94), "52.94");
        assert_eq!(fmt_sig4(-3.8), "-3.800");
        assert_eq!(fmt_sig4(12346.0), "1.235e4");
        assert_eq!(fmt_sig4(f64::NAN), "n/a");
        assert_eq!(fmt_sig4(0.0), "0.000");
        assert_eq!(layer_list(&[1, 2, 3, 4]), "1-4");
        assert_eq!(layer_list(&[3]), "3");
        assert_eq!(layer_list(&[1, 2]), "1, 2");
        assert_eq!(layer_list(&[1, 5, 9]), "1, 5, 9");
    }
}
