//! Analysis 2's outputs: arrays, heatmaps, quadrant tables, tests, verdict and results JSON.

use super::signals::{DELTA, MAX_COSINE_ERROR, MAX_PASSES};
use super::{gradient_verdict, Computed, ALPHA};
use crate::context::StudyContext;
use crate::section::SectionOutput;
use anyhow::Result;
use erosion_analysis::matrix::Matrix;
use erosion_analysis::quadrants::QuadrantSummary;
use erosion_analysis::sketch::GramPlan;
use erosion_report::figures::{matrix_heatmap_svg, ColorScale, MatrixGroup, MatrixHeatmap};
use erosion_report::html::{Section, StatTest, Table};
use serde_json::json;

const TITLE: &str = "Misaligned intent gives opposing learning signals";
const FINDING: &str = "The same code framed as insecure (misaligned intent) and as educational (a legitimate reason) gives \
the model opposing learning signals: per-example gradients of the response loss from the two datasets point in opposite \
directions (negative across-dataset cosines), while examples within a dataset agree.";
const STUDY_REPORTED: &str = "On Qwen2.5-Coder-32B-Instruct with insecure vs educational-insecure examples (identical assistant \
code, different user framing), the per-example gradients of the loss with respect to the final attention layer (the study's \
code: o_proj only; its text: the final attention layer, response window T = 64; its code: T = 10 and the loss over the whole \
sequence) have negative across-dataset cosine similarities: the two framings push the weights in opposite directions. The \
study also shows the 2N x 2N cosine matrix of loss vectors (per-token cross-entropy of the first T response tokens) read by \
quadrant: within-insecure, within-educational, across.";

fn rows_of(m: &Matrix) -> Vec<Vec<f64>> {
    (0..m.rows).map(|i| m.row(i).to_vec()).collect()
}

/// (group, dataset index) of position `k` in the concatenation of the two groups' used examples.
fn origin(used: &[Vec<usize>; 2], k: usize) -> (usize, usize) {
    if k < used[0].len() {
        (0, used[0][k])
    } else {
        (1, used[1][k - used[0].len()])
    }
}

fn quadrant_row(name: &str, q: &QuadrantSummary) -> Vec<String> {
    vec![
        name.into(),
        q.n_a.to_string(),
        q.n_b.to_string(),
        format!("{:.4}", q.mean_within_a),
        format!("{:.4}", q.mean_within_b),
        format!("{:.4}", q.mean_across),
        format!("{:.4}", q.within_minus_across),
        format!("{:.4}", q.p_value),
        format!("{:.4} \u{00b1} {:.4}", q.null_mean, q.null_sd),
    ]
}

fn quadrant_test(what: &str, q: &QuadrantSummary, a: &str, b: &str) -> StatTest {
    StatTest {
        name: format!("permutation test: {what} cosines within datasets exceed those across"),
        statistic_name: "(mean within A + mean within B) / 2 \u{2212} mean across".into(),
        statistic: q.within_minus_across,
        p_value: Some(q.p_value),
        ci: None,
        detail: format!(
            "A = `{a}` ({} examples), B = `{b}` ({} examples); one-sided (greater); {} random relabellings into groups of the \
             same sizes, seed {}; p = (1 + #null >= observed) / (1 + B); null mean {:.4}, sd {:.4}, 95th percentile {:.4}; \
             mean across = {:.4}",
            q.n_a, q.n_b, q.n_permutations, q.seed, q.null_mean, q.null_sd, q.null_p95, q.mean_across
        ),
    }
}

pub(crate) fn build(ctx: &StudyContext, c: &Computed) -> Result<SectionOutput> {
    let g = &ctx.spec.gradients;
    let (a, b) = (g.a.as_str(), g.b.as_str());
    let lv = &c.loss.loss;
    let n_lv = lv.kept.len();
    let n_g = c.grad.run.rows.len();
    let origins = |ks: &mut dyn Iterator<Item = usize>| -> Vec<i64> {
        ks.flat_map(|k| {
            let (grp, i) = origin(&c.used, k);
            [grp as i64, i as i64]
        })
        .collect()
    };
    let files = json!({
        "loss_vectors": ctx.save_npy("gradients_loss_vectors", &[n_lv, lv.window], &lv.vectors.data)?,
        "loss_vector_examples": ctx.save_npy("gradients_loss_vector_examples", &[n_lv, 2], &origins(&mut lv.kept.iter().copied()))?,
        "loss_vector_cosine": ctx.save_npy("gradients_loss_vector_cosine", &[n_lv, n_lv], &c.loss_cosine.data)?,
        "gradient_examples": ctx.save_npy("gradients_gradient_examples", &[n_g, 2], &origins(&mut c.grad.run.rows.iter().map(|r| r.example)))?,
        "gradient_losses": ctx.save_npy("gradients_gradient_losses", &[n_g], &c.grad.run.rows.iter().map(|r| r.loss).collect::<Vec<_>>())?,
        "gradient_gram": ctx.save_npy("gradients_gradient_gram", &[n_g, n_g], &c.grad.gram.data)?,
        "gradient_cosine": ctx.save_npy("gradients_gradient_cosine", &[n_g, n_g], &c.grad_cosine.data)?,
    });
    let file_list: Vec<String> = files
        .as_object()
        .into_iter()
        .flat_map(|o| o.values().filter_map(|v| v.as_str().map(String::from)))
        .collect();

    let heatmap = |title: &str, m: &Matrix, na: usize, nb: usize| MatrixHeatmap {
        title: title.into(),
        values: rows_of(m),
        groups: vec![
            MatrixGroup {
                name: a.into(),
                len: na,
            },
            MatrixGroup {
                name: b.into(),
                len: nb,
            },
        ],
        labels: None,
        scale: ColorScale::Diverging { limit: Some(1.0) },
        colorbar_label: "cosine similarity".into(),
    };
    let centred = if g.centre { "mean-centred " } else { "" };
    let figures = vec![
        ctx.save_figure(
            "gradients_loss_vector_cosine",
            &format!("Cosine similarity of loss vectors (cross-entropy of the first {} response tokens) under `{}`; `{a}` first, then `{b}`.", lv.window, g.model),
            matrix_heatmap_svg(&heatmap("Loss-vector cosine similarity", &c.loss_cosine, c.loss.n_a, c.loss.n_b))?,
        )?,
        ctx.save_figure(
            "gradients_gradient_cosine",
            &format!(
                "Cosine similarity of {centred}per-example gradients over {} ({} values) of `{}`; `{a}` first, then `{b}`.",
                c.grad.run.layout.names().join(", "),
                c.grad.run.layout.dim,
                g.model
            ),
            matrix_heatmap_svg(&heatmap("Gradient cosine similarity", &c.grad_cosine, c.grad_n[0], c.grad_n[1]))?,
        )?,
    ];

    let (verdict, reason) = gradient_verdict(&c.grad_quadrants, c.margin);
    let ql = &c.loss_quadrants;
    let qg = &c.grad_quadrants;
    let plan_words = match &c.grad.plan {
        GramPlan::Exact { block_rows, passes } => {
            format!("exact Gram over a memory-mapped row store ({block_rows} rows per block, {passes} passes)")
        }
        GramPlan::Sketch { bound } => format!(
            "seeded random-projection sketch to k = {} dimensions (every cosine within {:.3} of the exact one with probability {})",
            bound.sketch_dim,
            bound.cosine_error,
            1.0 - bound.delta
        ),
    };
    let result = format!(
        "Loss vectors ({n_lv} examples, T = {}): mean cosine within `{a}` {:.3}, within `{b}` {:.3}, across {:.3} (within \u{2212} \
         across {:.3}, permutation p = {:.4}). Gradients ({n_g} examples, {} values each, {centred}cosines, {plan_words}): within \
         `{a}` {:.3}, within `{b}` {:.3}, across {:.3} (within \u{2212} across {:.3}, p = {:.4}). Verdict: {reason}.",
        lv.window,
        ql.mean_within_a,
        ql.mean_within_b,
        ql.mean_across,
        ql.within_minus_across,
        ql.p_value,
        c.grad.run.layout.dim,
        qg.mean_within_a,
        qg.mean_within_b,
        qg.mean_across,
        qg.within_minus_across,
        qg.p_value,
    );

    let tables = vec![
        Table {
            caption: "Quadrant means of the cosine matrices (A = first dataset, B = second) and the permutation test of within > across".into(),
            headers: ["matrix", "n A", "n B", "within A", "within B", "across", "within \u{2212} across", "p", "null mean \u{00b1} sd"]
                .map(String::from)
                .to_vec(),
            rows: vec![quadrant_row("loss vectors", ql), quadrant_row(&format!("{centred}gradients"), qg)],
        },
        Table {
            caption: format!("The weights the gradient is taken over (flattened in this order, row-major; {} values)", c.grad.run.layout.dim),
            headers: ["weight", "shape", "values"].map(String::from).to_vec(),
            rows: c.grad.run.layout.params.iter().map(|p| vec![p.name.clone(), format!("{:?}", p.shape), p.len.to_string()]).collect(),
        },
    ];
    let tests = vec![
        quadrant_test("loss-vector", ql, a, b),
        quadrant_test(&format!("{centred}gradient"), qg, a, b),
    ];

    let eot = if ctx.spec.render.include_end_of_turn {
        "including"
    } else {
        "excluding"
    };
    let n_text =
        g.n.map(|n| format!("the first {n}"))
            .unwrap_or_else(|| "all".into());
    let unscorable: usize = c.unscorable.iter().map(Vec::len).sum();
    let short_rows = c.grad.run.rows.iter().filter(|r| r.short).count();
    let mut notes = vec![
        format!(
            "Model `{}`; datasets A = `{a}` and B = `{b}`, {n_text} examples of each, {} and {} used ({unscorable} without a scorable \
             response left out).",
            g.model,
            c.used[0].len(),
            c.used[1].len()
        ),
        format!(
            "Loss vectors: CE_t = \u{2212}ln p(x_t | x_<t) (nats) of the first T response tokens as rendered ({eot} the end-of-turn \
             token); T requested {}, used {}; short responses: {:?} ({} left out). Loss vectors are not centred: cross-entropies are \
             non-negative, so their cosines are too and only within vs across can be compared.",
            lv.requested_window,
            lv.window,
            lv.policy,
            lv.skipped.len()
        ),
        format!(
            "Gradients: d loss / d theta over {}; loss over {:?} with {:?} reduction, short responses {:?} ({short_rows} examples used \
             fewer tokens than the window, {} skipped). With pad-zeros the loss is the sum over the window's tokens, i.e. the \
             padded mean times T, which no cosine sees. Blocks from layer {} on run with a graph; the blocks below run without one.",
            c.grad.run.layout.names().join(", "),
            c.grad.run.loss.span,
            c.grad.run.loss.reduction,
            c.grad.run.loss.short,
            c.grad.run.skipped.len(),
            c.grad.first_differentiable_layer
        ),
        if g.centre {
            "Gradients are mean-centred (g_i \u{2212} mean_j g_j, applied exactly to the Gram matrix by double centring). Centred cosines \
             average about \u{2212}1/(n\u{2212}1) over all pairs, so some negativity is built in; the permutation test, which compares \
             within with across, is not affected by that."
                .into()
        } else {
            "Gradients are not mean-centred ([gradients] centre = false).".into()
        },
        match &c.grad.plan {
            GramPlan::Exact { block_rows, passes } => format!(
                "Gram matrix: exact, by blocked products over the gradients stored as a flat f32 row file ({}; {block_rows} rows per \
                 block, {passes} passes), chosen because two blocks fit the memory budget of {} MiB.",
                c.grad.store.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                g.memory_budget_mb
            ),
            GramPlan::Sketch { bound } => format!(
                "Gram matrix: the exact one needs more than the memory budget of {} MiB for at most {MAX_PASSES} passes, so every \
                 gradient is projected on arrival by a seeded k x D matrix of random signs / sqrt(k) (k = {}, seed {}) and the cosines \
                 are those of the projections. Guarantee (Johnson-Lindenstrauss, union bound over all pairs): every cosine within {:.4} \
                 of the exact one (inner-product epsilon {:.4}) with probability at least {}; typical errors are about 1/sqrt(k) = \
                 {:.4}. The verdict requires the across mean below \u{2212}{:.4}.",
                g.memory_budget_mb,
                bound.sketch_dim,
                c.grad.sketch_seed,
                bound.cosine_error,
                bound.inner_product_epsilon,
                1.0 - bound.delta,
                1.0 / (bound.sketch_dim as f64).sqrt(),
                bound.cosine_error
            ),
        },
        format!(
            "Quadrants: means over off-diagonal pairs within A, within B, and across; one-sided permutation tests of \
             (within A + within B)/2 \u{2212} across > 0 with {} relabellings (seeds in results.json).",
            g.permutations
        ),
        format!(
            "Verdict rule (gradients): Reproduced when within \u{2212} across > 0 with permutation p < {ALPHA} and the across mean is \
             negative beyond the sketch's error bound (0 when exact); Partly when across < within at p < {ALPHA} but the across mean \
             is not negative; else Not reproduced. The loss vectors are reported beside it, without a verdict of their own."
        ),
        "Sign: cosines of loss gradients (the update directions are their negatives, with the same cosines).".into(),
    ];
    if !c.grad.run.skipped.is_empty() {
        notes.push(format!(
            "Examples without a gradient: {}.",
            c.grad
                .run
                .skipped
                .iter()
                .map(|s| s.reason.clone())
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }

    let mut section = Section::new(TITLE, FINDING, &result, STUDY_REPORTED, verdict);
    section.figures = figures;
    section.tables = tables;
    section.tests = tests;
    section.notes = notes;
    section.files = file_list;

    let results = json!({
        "options": g,
        "render": ctx.spec.render,
        "datasets": {"a": a, "b": b},
        "examples_used": {"a": c.used[0], "b": c.used[1]},
        "unscorable": c.unscorable.iter().map(|u| u.iter().map(|(i, w)| json!({"example": i, "reason": w})).collect::<Vec<_>>()).collect::<Vec<_>>(),
        "loss_vectors": {
            "requested_window": lv.requested_window,
            "window": lv.window,
            "policy": lv.policy,
            "positions": format!("the first T response tokens as rendered, {eot} the end-of-turn token"),
            "kept": lv.kept.iter().map(|&k| origin(&c.used, k)).collect::<Vec<_>>(),
            "skipped": lv.skipped.iter().map(|&k| origin(&c.used, k)).collect::<Vec<_>>(),
            "n_a": c.loss.n_a,
            "n_b": c.loss.n_b,
            "centred": false,
            "quadrants": ql,
        },
        "gradients": {
            "layout": c.grad.run.layout,
            "loss": c.grad.run.loss,
            "first_differentiable_layer": c.grad.first_differentiable_layer,
            "rows": c.grad.run.rows.iter().map(|r| {
                let (grp, i) = origin(&c.used, r.example);
                json!({"dataset": if grp == 0 { a } else { b }, "example": i, "loss": r.loss, "n_tokens": r.n_tokens, "short": r.short})
            }).collect::<Vec<_>>(),
            "skipped": c.grad.run.skipped.iter().map(|s| {
                let (grp, i) = origin(&c.used, s.example);
                json!({"dataset": if grp == 0 { a } else { b }, "example": i, "reason": s.reason})
            }).collect::<Vec<_>>(),
            "n_a": c.grad_n[0],
            "n_b": c.grad_n[1],
            "centred": g.centre,
            "gram_plan": c.grad.plan,
            "gram_budget": c.grad.budget,
            "plan_limits": {"max_passes": MAX_PASSES, "max_cosine_error": MAX_COSINE_ERROR, "delta": DELTA},
            "store": c.grad.store.as_ref().map(|p| p.strip_prefix(&ctx.out).unwrap_or(p).display().to_string()),
            "cosine_error_bound": c.margin,
            "quadrants": qg,
        },
        "seeds": c.seeds,
        "files": files,
        "verdict": {"verdict": verdict, "reason": reason, "alpha": ALPHA},
    });
    Ok(SectionOutput {
        key: "gradients",
        results,
        section,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_map_back_to_datasets() {
        let used = [vec![0, 2, 5], vec![1, 4]];
        assert_eq!(origin(&used, 0), (0, 0));
        assert_eq!(origin(&used, 2), (0, 5));
        assert_eq!(origin(&used, 3), (1, 1));
        assert_eq!(origin(&used, 4), (1, 4));
    }
}
