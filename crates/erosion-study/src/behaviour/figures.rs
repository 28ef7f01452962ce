//! Analysis 1's figures, drawn from its typed results.

use super::results::{BehaviourResults, CellSummary};
use crate::context::StudyContext;
use anyhow::Result;
use erosion_report::figures::{
    annotated_matrix_svg, next_token_svg, token_logprob_svg, AnnotatedMatrix, ColorScale,
    NextTokenBars, NextTokenPanel, TokenLogprobs,
};
use erosion_report::html::Figure;

/// Most response tokens drawn in the per-token heatmap.
const FIGURE_TOKENS: usize = 64;

/// Every figure, in report order: (a), (b), then the table's two heatmaps.
pub(crate) fn figures(ctx: &StudyContext, r: &BehaviourResults) -> Result<Vec<Figure>> {
    Ok(vec![
        example_figure(ctx, r)?,
        next_token_figure(ctx, r)?,
        table_figure(
            ctx,
            r,
            "behaviour_table_log_joint",
            "Mean log joint probability of each dataset's responses under each model (nats; higher = more probable).",
            "Mean log joint probability (nats)",
            &|s| s.log_joint_ci.estimate,
            1,
        )?,
        table_figure(
            ctx,
            r,
            "behaviour_table_entropy",
            "Mean next-token entropy over each dataset's response positions, per model (nats).",
            "Mean next-token entropy (nats)",
            &|s| s.entropy_ci.estimate,
            3,
        )?,
    ])
}

/// (a) Token x model heatmap of the example's log-probabilities.
fn example_figure(ctx: &StudyContext, r: &BehaviourResults) -> Result<Figure> {
    let ex = &r.example;
    let nt = ex.tokens.len();
    let title = format!(
        "Per-token log-probability of example {} of `{}` under each model",
        ex.index, ex.dataset
    );
    // A long response would make an unreadable strip: the figure shows the first tokens, the
    // arrays and JSON keep all of them.
    let shown = nt.min(FIGURE_TOKENS);
    let cut = if shown < nt {
        format!(" First {shown} of {nt} response tokens shown; the arrays hold all.")
    } else {
        String::new()
    };
    ctx.save_figure(
        "behaviour_example",
        &format!("{title} (nats; bottom: running log joint probability). Tokens as the instruct model's tokenizer renders the response.{cut}"),
        token_logprob_svg(&TokenLogprobs {
            title,
            tokens: ex.tokens[..shown].iter().map(|t| t.text.clone()).collect(),
            models: r.table.models.clone(),
            logprobs: ex.models.values().map(|m| m.logprobs[..shown].to_vec()).collect(),
            colors: ctx.colors(),
        })?,
    )
}

/// (b) The top tokens after the prefix, one panel per model.
fn next_token_figure(ctx: &StudyContext, r: &BehaviourResults) -> Result<Figure> {
    let nt = &r.next_token;
    ctx.save_figure(
        "behaviour_next_token",
        &format!("Top-{} next tokens after the assistant begins \u{201c}{}\u{201d}, per model; entropy of the whole distribution in nats.", nt.top_k, nt.prefix_assistant),
        next_token_svg(&NextTokenBars {
            title: "Next-token distribution after the prefix".into(),
            prefix: Some(nt.prefix_assistant.clone()),
            entropy_unit: "nats".into(),
            panels: nt
                .models
                .0
                .iter()
                .map(|(m, n)| NextTokenPanel {
                    model: m.clone(),
                    tokens: n.top.iter().map(|t| t.text.clone()).collect(),
                    probs: n.top.iter().map(|t| t.prob as f64).collect(),
                    entropy: n.entropy_nats,
                })
                .collect(),
            colors: ctx.colors(),
        })?,
    )
}

/// (c) A datasets x models heatmap of one statistic of the table's cells.
fn table_figure(
    ctx: &StudyContext,
    r: &BehaviourResults,
    name: &str,
    caption: &str,
    title: &str,
    value: &dyn Fn(&CellSummary) -> f64,
    decimals: usize,
) -> Result<Figure> {
    let t = &r.table;
    let matrix = AnnotatedMatrix {
        title: title.into(),
        row_labels: t.datasets.clone(),
        col_labels: t.models.clone(),
        row_title: "dataset".into(),
        col_title: "model".into(),
        values: t
            .cells
            .chunks(t.models.len())
            .map(|row| row.iter().map(value).collect())
            .collect(),
        scale: ColorScale::Sequential {
            min: None,
            max: None,
        },
        decimals,
        colorbar_label: "nats".into(),
        note: Some("mean over each dataset's responses; response tokens as rendered".into()),
    };
    ctx.save_figure(name, caption, annotated_matrix_svg(&matrix)?)
}
