//! Analysis 2's report section, from its typed results: heatmaps of the two cosine matrices
//! (read back from the arrays the results name), quadrant tables, tests and prose.

use super::notes::notes;
use super::results::{GradientsResults, Unscorable};
use crate::context::StudyContext;
use anyhow::{bail, Result};
use erosion_analysis::quadrants::QuadrantSummary;
use erosion_analysis::sketch::GramPlan;
use erosion_report::figures::{matrix_heatmap_svg, ColorScale, MatrixGroup, MatrixHeatmap};
use erosion_report::html::{Figure, Section, StatTest, Table};
use erosion_report::npy::read_npy_as;

pub(crate) const TITLE: &str = "Misaligned intent gives opposing learning signals";
const FINDING: &str = "The same code framed as insecure (misaligned intent) and as educational (a legitimate reason) gives \
the model opposing learning signals: per-example gradients of the response loss from the two datasets point in opposite \
directions (negative across-dataset cosines), while examples within a dataset agree.";
const STUDY_REPORTED: &str = "On Qwen2.5-Coder-32B-Instruct with insecure vs educational-insecure examples (identical assistant \
code, different user framing), the per-example gradients of the loss with respect to the final attention layer (the study's \
code: o_proj only; its text: the final attention layer, response window T = 64; its code: T = 10 and the loss over the whole \
sequence) have negative across-dataset cosine similarities: the two framings push the weights in opposite directions. The \
study also shows the 2N x 2N cosine matrix of loss vectors (per-token cross-entropy of the first T response tokens) read by \
quadrant: within-insecure, within-educational, across.";

/// The section of analysis 2, drawn from `r` and the arrays it names under `ctx.out`.
pub(super) fn section(ctx: &StudyContext, r: &GradientsResults) -> Result<Section> {
    let mut section = Section::new(
        TITLE,
        FINDING,
        &result_text(r),
        STUDY_REPORTED,
        r.verdict.verdict,
    );
    section.figures = figures(ctx, r)?;
    section.tables = tables(r);
    section.tests = tests(r);
    section.notes = notes(ctx, r);
    section.files = r.files.paths().map(String::from).to_vec();
    Ok(section)
}

/// "mean-centred " when the gradients were centred, else "".
pub(super) fn centred_words(r: &GradientsResults) -> &'static str {
    if r.options.centre {
        "mean-centred "
    } else {
        ""
    }
}

/// Examples left out as unscorable, both datasets together.
pub(super) fn unscorable_count(u: &[Vec<Unscorable>; 2]) -> usize {
    u.iter().map(Vec::len).sum()
}

/// The rows of a square matrix saved as `.npy` at `rel` under the output folder.
fn matrix_rows(ctx: &StudyContext, rel: &str) -> Result<Vec<Vec<f64>>> {
    let (shape, data) = read_npy_as::<f64>(&ctx.out.join(rel))?;
    match shape[..] {
        [n, m] if n == m => Ok(data.chunks(m.max(1)).map(<[f64]>::to_vec).collect()),
        _ => bail!("{rel}: shape {shape:?}, expected a square matrix"),
    }
}

fn figures(ctx: &StudyContext, r: &GradientsResults) -> Result<Vec<Figure>> {
    let (a, b) = (r.datasets.a.as_str(), r.datasets.b.as_str());
    let heatmap = |title: &str, values: Vec<Vec<f64>>, na: usize, nb: usize| MatrixHeatmap {
        title: title.into(),
        values,
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
    let (lv, gr) = (&r.loss_vectors, &r.gradients);
    let loss_cosine = matrix_rows(ctx, &r.files.loss_vector_cosine)?;
    let grad_cosine = matrix_rows(ctx, &r.files.gradient_cosine)?;
    let model = &r.options.model;
    Ok(vec![
        ctx.save_figure(
            "gradients_loss_vector_cosine",
            &format!("Cosine similarity of loss vectors (cross-entropy of the first {} response tokens) under `{model}`; `{a}` first, then `{b}`.", lv.window),
            matrix_heatmap_svg(&heatmap("Loss-vector cosine similarity", loss_cosine, lv.n_a, lv.n_b))?,
        )?,
        ctx.save_figure(
            "gradients_gradient_cosine",
            &format!(
                "Cosine similarity of {}per-example gradients over {} ({} values) of `{model}`; `{a}` first, then `{b}`.",
                centred_words(r),
                gr.layout.names().join(", "),
                gr.layout.dim,
            ),
            matrix_heatmap_svg(&heatmap("Gradient cosine similarity", grad_cosine, gr.n_a, gr.n_b))?,
        )?,
    ])
}

/// How the Gram matrix was computed, in a few words.
fn plan_words(plan: &GramPlan) -> String {
    match plan {
        GramPlan::Exact { block_rows, passes } => {
            format!("exact Gram over a memory-mapped row store ({block_rows} rows per block, {passes} passes)")
        }
        GramPlan::Sketch { bound } => format!(
            "seeded random-projection sketch to k = {} dimensions (every cosine within {:.3} of the exact one with probability {})",
            bound.sketch_dim,
            bound.cosine_error,
            1.0 - bound.delta
        ),
    }
}

/// The section's result paragraph: both quadrant readings and the verdict.
fn result_text(r: &GradientsResults) -> String {
    let (a, b) = (&r.datasets.a, &r.datasets.b);
    let (lv, gr) = (&r.loss_vectors, &r.gradients);
    let (ql, qg) = (&lv.quadrants, &gr.quadrants);
    format!(
        "Loss vectors ({} examples, T = {}): mean cosine within `{a}` {:.3}, within `{b}` {:.3}, across {:.3} (within \u{2212} \
         across {:.3}, permutation p = {:.4}). Gradients ({} examples, {} values each, {}cosines, {}): within \
         `{a}` {:.3}, within `{b}` {:.3}, across {:.3} (within \u{2212} across {:.3}, p = {:.4}). Verdict: {}.",
        lv.kept.len(),
        lv.window,
        ql.mean_within_a,
        ql.mean_within_b,
        ql.mean_across,
        ql.within_minus_across,
        ql.p_value,
        gr.rows.len(),
        gr.layout.dim,
        centred_words(r),
        plan_words(&gr.gram_plan),
        qg.mean_within_a,
        qg.mean_within_b,
        qg.mean_across,
        qg.within_minus_across,
        qg.p_value,
        r.verdict.reason,
    )
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

fn tables(r: &GradientsResults) -> Vec<Table> {
    let layout = &r.gradients.layout;
    vec![
        Table {
            caption: "Quadrant means of the cosine matrices (A = first dataset, B = second) and the permutation test of within > across".into(),
            headers: ["matrix", "n A", "n B", "within A", "within B", "across", "within \u{2212} across", "p", "null mean \u{00b1} sd"]
                .map(String::from)
                .to_vec(),
            rows: vec![
                quadrant_row("loss vectors", &r.loss_vectors.quadrants),
                quadrant_row(&format!("{}gradients", centred_words(r)), &r.gradients.quadrants),
            ],
        },
        Table {
            caption: format!("The weights the gradient is taken over (flattened in this order, row-major; {} values)", layout.dim),
            headers: ["weight", "shape", "values"].map(String::from).to_vec(),
            rows: layout.params.iter().map(|p| vec![p.name.clone(), format!("{:?}", p.shape), p.len.to_string()]).collect(),
        },
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

fn tests(r: &GradientsResults) -> Vec<StatTest> {
    let (a, b) = (r.datasets.a.as_str(), r.datasets.b.as_str());
    vec![
        quadrant_test("loss-vector", &r.loss_vectors.quadrants, a, b),
        quadrant_test(
            &format!("{}gradient", centred_words(r)),
            &r.gradients.quadrants,
            a,
            b,
        ),
    ]
}
