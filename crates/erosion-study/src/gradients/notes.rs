//! Analysis 2's notes: what was measured and how, from its typed results.

use super::results::GradientsResults;
use super::section::unscorable_count;
use super::signals::{store_dir, MAX_PASSES};
use super::verdict::ALPHA;
use crate::context::StudyContext;
use erosion_analysis::sketch::GramPlan;
use std::path::Path;

/// The section's notes, in order: examples, loss vectors, gradients, centring, Gram matrix,
/// quadrants, verdict rule, sign, and the examples without a gradient when there are any.
pub(super) fn notes(ctx: &StudyContext, r: &GradientsResults) -> Vec<String> {
    let mut notes = vec![
        examples_note(r),
        loss_vector_note(r),
        gradient_note(r),
        centring_note(r),
        gram_note(ctx, r),
        format!(
            "Quadrants: means over off-diagonal pairs within A, within B, and across; one-sided permutation tests of \
             (within A + within B)/2 \u{2212} across > 0 with {} relabellings (seeds in results.json).",
            r.options.permutations
        ),
        format!(
            "Verdict rule (gradients): Reproduced when within \u{2212} across > 0 with permutation p < {ALPHA} and the across mean is \
             negative beyond the sketch's error bound (0 when exact); Partly when across < within at p < {ALPHA} but the across mean \
             is not negative; else Not reproduced. The loss vectors are reported beside it, without a verdict of their own."
        ),
        "Sign: cosines of loss gradients (the update directions are their negatives, with the same cosines).".into(),
    ];
    let skipped = &r.gradients.skipped;
    if !skipped.is_empty() {
        let reasons: Vec<&str> = skipped.iter().map(|s| s.reason.as_str()).collect();
        notes.push(format!(
            "Examples without a gradient: {}.",
            reasons.join("; ")
        ));
    }
    notes
}

fn examples_note(r: &GradientsResults) -> String {
    let n_text = r
        .options
        .n
        .map(|n| format!("the first {n}"))
        .unwrap_or_else(|| "all".into());
    format!(
        "Model `{}`; datasets A = `{}` and B = `{}`, {n_text} examples of each, {} and {} used ({} without a scorable \
         response left out).",
        r.options.model,
        r.datasets.a,
        r.datasets.b,
        r.examples_used.a.len(),
        r.examples_used.b.len(),
        unscorable_count(&r.unscorable),
    )
}

fn loss_vector_note(r: &GradientsResults) -> String {
    let eot = if r.render.include_end_of_turn {
        "including"
    } else {
        "excluding"
    };
    let lv = &r.loss_vectors;
    format!(
        "Loss vectors: CE_t = \u{2212}ln p(x_t | x_<t) (nats) of the first T response tokens as rendered ({eot} the end-of-turn \
         token); T requested {}, used {}; short responses: {} ({} left out). Loss vectors are not centred: cross-entropies are \
         non-negative, so their cosines are too and only within vs across can be compared.",
        lv.requested_window,
        lv.window,
        lv.policy,
        lv.skipped.len()
    )
}

fn gradient_note(r: &GradientsResults) -> String {
    let gr = &r.gradients;
    let short_rows = gr.rows.iter().filter(|row| row.short).count();
    format!(
        "Gradients: d loss / d theta over {}; loss over {} with {} reduction, short responses {} ({short_rows} examples used \
         fewer tokens than the window, {} skipped). With use_available the loss is the sum over the window's tokens, i.e. the \
         padded mean times T, which no cosine sees. Blocks from layer {} on run with a graph; the blocks below run without one.",
        gr.layout.names().join(", "),
        gr.loss.span,
        gr.loss.reduction,
        gr.loss.short,
        gr.skipped.len(),
        gr.first_differentiable_layer
    )
}

fn centring_note(r: &GradientsResults) -> String {
    if r.options.centre {
        "Gradients are mean-centred (g_i \u{2212} mean_j g_j, applied exactly to the Gram matrix by double centring). Centred cosines \
         average about \u{2212}1/(n\u{2212}1) over all pairs, so some negativity is built in; the permutation test, which compares \
         within with across, is not affected by that."
            .into()
    } else {
        "Gradients are not mean-centred ([gradients] centre = false).".into()
    }
}

/// How the Gram matrix was computed, and the sketch's guarantee when it was sketched.
fn gram_note(ctx: &StudyContext, r: &GradientsResults) -> String {
    let budget_mb = r.options.memory_budget_mb;
    match &r.gradients.gram_plan {
        GramPlan::Exact { block_rows, passes } => format!(
            "Gram matrix: exact, by blocked products over the gradients stored as a flat f32 row file ({}; {block_rows} rows per \
             block, {passes} passes), chosen because two blocks fit the memory budget of {budget_mb} MiB.",
            store_path(ctx, r.gradients.store.as_deref())
        ),
        GramPlan::Sketch { bound } => format!(
            "Gram matrix: the exact one needs more than the memory budget of {budget_mb} MiB for at most {MAX_PASSES} passes, so every \
             gradient is projected on arrival by a seeded k x D matrix of random signs / sqrt(k) (k = {}, seed {}) and the cosines \
             are those of the projections. Guarantee (Johnson-Lindenstrauss, union bound over all pairs): every cosine within {:.4} \
             of the exact one (inner-product epsilon {:.4}) with probability at least {}; typical errors are about 1/sqrt(k) = \
             {:.4}. The verdict requires the across mean below \u{2212}{:.4}.",
            bound.sketch_dim,
            r.seeds.sketch,
            bound.cosine_error,
            bound.inner_product_epsilon,
            1.0 - bound.delta,
            1.0 / (bound.sketch_dim as f64).sqrt(),
            bound.cosine_error
        ),
    }
}

/// The row store's full path: the results hold it relative to the report when it lies under
/// it, so it is rebuilt from the cache folder and the store's file name.
fn store_path(ctx: &StudyContext, store: Option<&str>) -> String {
    store
        .and_then(|s| Path::new(s).file_name())
        .map(|name| store_dir(ctx).join(name).display().to_string())
        .unwrap_or_default()
}
