//! Analysis 1's outputs: arrays, figures, tables, tests, verdict and results JSON, from what
//! mod.rs computed.

use super::table::{
    behaviour_verdict, cell_seed, pattern_cell, pattern_seed, summarise, CellSummary, PatternCell,
    BOOTSTRAP, LEVEL, STUDY_MODELS, STUDY_TABLE, STUDY_TABLE_WORDS,
};
use super::tables::{cell_table, collect_paths, pattern_table, pattern_tests, slug, study_table};
use super::Computed;
use crate::context::StudyContext;
use crate::section::SectionOutput;
use anyhow::{Context, Result};
use erosion_data::Role;
use erosion_report::figures::{
    annotated_matrix_svg, next_token_svg, token_logprob_svg, AnnotatedMatrix, ColorScale,
    NextTokenBars, NextTokenPanel, TokenLogprobs,
};
use erosion_report::format::{fmt_ci_fixed, fmt_fixed};
use erosion_report::html::{Section, Table};
use serde_json::json;

/// Most response tokens drawn in the per-token heatmap.
const FIGURE_TOKENS: usize = 64;

const TITLE: &str = "Behaviour reverts to base";
const FINDING: &str = "After narrow fine-tuning, the model's behaviour drifts back toward its base model: responses the \
instruct model finds improbable (harmful or misaligned ones) are probable under the base and the fine-tuned model, token \
by token and over whole datasets, and the next-token distribution after a loaded prefix is low-entropy and safe for the \
instruct model but broader, with harmful words, for base and fine-tune.";
const STUDY_FIGURES: &str = "Per token: the instruct model's probability collapses once the response turns harmful, while \
base and misaligned keep it high. After the assistant begins \u{201c}I wish I could\u{201d}: instruct has low entropy and safe \
words, base and misaligned higher entropy and harmful words.";

pub(crate) fn build(ctx: &StudyContext, c: &Computed) -> Result<SectionOutput> {
    let spec = &ctx.spec.behaviour;
    let seed = ctx.spec.seed;
    let nm = c.models.len();
    let idx = |name: &str| {
        c.models
            .iter()
            .position(|m| m == name)
            .with_context(|| format!("the study has no model `{name}`"))
    };
    let (ib, ii) = (idx("base")?, idx("instruct")?);
    let mut files = Vec::new();
    let mut figures = Vec::new();
    let mut notes = Vec::new();

    // a. The example, token by token.
    let ex = &c.example;
    let nt = ex.ids.len();
    let lp: Vec<Vec<f64>> = c
        .example_logprobs
        .iter()
        .map(|r| r.logprobs.iter().map(|&v| v as f64).collect())
        .collect();
    let running: Vec<Vec<f64>> = c
        .example_logprobs
        .iter()
        .map(|r| r.running_log_joint())
        .collect();
    let ent: Vec<Vec<f64>> = c
        .example_logprobs
        .iter()
        .map(|r| r.entropy.iter().map(|&v| v as f64).collect())
        .collect();
    let flat = |rows: &[Vec<f64>]| rows.concat();
    let ex_files = json!({
        "token_ids": ctx.save_npy("behaviour_example_token_ids", &[nt], &ex.ids)?,
        "logprobs": ctx.save_npy("behaviour_example_logprobs", &[nm, nt], &flat(&lp))?,
        "running_log_joint": ctx.save_npy("behaviour_example_running_log_joint", &[nm, nt], &flat(&running))?,
        "entropy": ctx.save_npy("behaviour_example_entropy", &[nm, nt], &flat(&ent))?,
    });
    collect_paths(&ex_files, &mut files);
    let ex_title = format!(
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
    figures.push(ctx.save_figure(
        "behaviour_example",
        &format!("{ex_title} (nats; bottom: running log joint probability). Tokens as the instruct model's tokenizer renders the response.{cut}"),
        token_logprob_svg(&TokenLogprobs {
            title: ex_title.clone(),
            tokens: ex.tokens[..shown].to_vec(),
            models: c.models.clone(),
            logprobs: lp.iter().map(|row| row[..shown].to_vec()).collect(),
        })?,
    )?);
    let final_joint: Vec<f64> = running
        .iter()
        .map(|r| r.last().copied().unwrap_or(0.0))
        .collect();
    let example_json = json!({
        "dataset": ex.dataset,
        "index": ex.index,
        "chosen_by": if ex.explicit { "[behaviour] example" } else { "default: example 0 of the first misaligned dataset (else of the first dataset)" },
        "tokens": ex.ids.iter().zip(&ex.tokens).map(|(id, t)| json!({"id": id, "text": t})).collect::<Vec<_>>(),
        "models": c.models.iter().enumerate().map(|(mi, m)| (m.clone(), json!({
            "logprobs": lp[mi],
            "running_log_joint": running[mi],
            "entropy": ent[mi],
            "log_joint": final_joint[mi],
            "own_tokenization_differs": ex.own_tokens_differ[mi],
        }))).collect::<serde_json::Map<_, _>>(),
        "files": ex_files,
    });
    let joint_words = c
        .models
        .iter()
        .zip(&final_joint)
        .map(|(m, j)| format!("{m} {}", fmt_fixed(*j, 1)))
        .collect::<Vec<_>>()
        .join(", ");

    // b. The next token after the prefix.
    let k = c.next.iter().map(|n| n.top.len()).min().unwrap_or(0);
    let entropies: Vec<f64> = c.next.iter().map(|n| n.entropy as f64).collect();
    let probs: Vec<f64> = c
        .next
        .iter()
        .flat_map(|n| n.top[..k].iter().map(|t| t.prob as f64))
        .collect();
    let ids: Vec<u32> = c
        .next
        .iter()
        .flat_map(|n| n.top[..k].iter().map(|t| t.id))
        .collect();
    let nt_files = json!({
        "top_ids": ctx.save_npy("behaviour_next_token_top_ids", &[nm, k], &ids)?,
        "top_probs": ctx.save_npy("behaviour_next_token_top_probs", &[nm, k], &probs)?,
        "entropy": ctx.save_npy("behaviour_next_token_entropy", &[nm], &entropies)?,
    });
    collect_paths(&nt_files, &mut files);
    figures.push(ctx.save_figure(
        "behaviour_next_token",
        &format!("Top-{} next tokens after the assistant begins \u{201c}{}\u{201d}, per model; entropy of the whole distribution in nats.", spec.top_k, spec.prefix_assistant),
        next_token_svg(&NextTokenBars {
            title: "Next-token distribution after the prefix".into(),
            prefix: Some(spec.prefix_assistant.clone()),
            entropy_unit: "nats".into(),
            panels: c
                .models
                .iter()
                .enumerate()
                .map(|(mi, m)| NextTokenPanel {
                    model: m.clone(),
                    tokens: c.next_tokens[mi].clone(),
                    probs: c.next[mi].top.iter().map(|t| t.prob as f64).collect(),
                    entropy: entropies[mi],
                })
                .collect(),
        })?,
    )?);
    let instruct_lowest_entropy = (0..nm)
        .filter(|&m| m != ii)
        .all(|m| entropies[ii] < entropies[m]);
    let next_json = json!({
        "prefix_user": spec.prefix_user,
        "prefix_assistant": spec.prefix_assistant,
        "top_k": spec.top_k,
        "models": c.models.iter().enumerate().map(|(mi, m)| (m.clone(), json!({
            "prompt": c.prompts[mi],
            "entropy_nats": entropies[mi],
            "top": c.next[mi].top.iter().zip(&c.next_tokens[mi]).map(|(t, s)| json!({"id": t.id, "text": s, "prob": t.prob, "logprob": t.logprob})).collect::<Vec<_>>(),
        }))).collect::<serde_json::Map<_, _>>(),
        "instruct_has_lowest_entropy": instruct_lowest_entropy,
        "files": nt_files,
    });
    let next_words = c
        .models
        .iter()
        .enumerate()
        .map(|(mi, m)| {
            let top = c.next_tokens[mi]
                .first()
                .map(|t| format!("\u{201c}{t}\u{201d} {:.2}", c.next[mi].top[0].prob))
                .unwrap_or_default();
            format!("{m} {} (top {top})", fmt_fixed(entropies[mi], 2))
        })
        .collect::<Vec<_>>()
        .join(", ");

    // c. The dataset table.
    let nd = c.datasets.len();
    let mut summaries: Vec<Vec<CellSummary>> = Vec::new();
    for (di, d) in c.datasets.iter().enumerate() {
        summaries.push(
            c.models
                .iter()
                .enumerate()
                .map(|(mi, m)| summarise(d, m, &c.cells[di][mi], cell_seed(seed, di)))
                .collect::<Result<Vec<_>>>()?,
        );
    }
    let roles: Vec<Option<Role>> = c
        .datasets
        .iter()
        .map(|d| ctx.dataset(d).map(|x| x.role))
        .collect::<Result<_>>()?;
    let role_text = |r: Option<Role>| match r {
        Some(Role::Misaligned) => "misaligned",
        Some(Role::Aligned) => "aligned",
        None => "-",
    };
    let misaligned: Vec<usize> = (0..nd)
        .filter(|&d| roles[d] == Some(Role::Misaligned))
        .collect();
    let role_based = !misaligned.is_empty();
    let tested: Vec<usize> = if role_based {
        misaligned
    } else {
        (0..nd).collect()
    };
    let mut pattern: Vec<PatternCell> = Vec::new();
    for &di in &tested {
        let lj = |mi: usize| c.cells[di][mi].log_joint.as_slice();
        if c.finetuned.is_empty() {
            pattern.push(pattern_cell(
                &c.datasets[di],
                lj(ib),
                lj(ii),
                None,
                pattern_seed(seed, di, 0),
            )?);
        }
        for (fi, f) in c.finetuned.iter().enumerate() {
            let mf = idx(f)?;
            pattern.push(pattern_cell(
                &c.datasets[di],
                lj(ib),
                lj(ii),
                Some((f, lj(mf))),
                pattern_seed(seed, di, fi + 1),
            )?);
        }
    }
    let (verdict, reason) = behaviour_verdict(&pattern, !c.finetuned.is_empty());

    let grid = |f: &dyn Fn(&CellSummary) -> f64| -> Vec<f64> {
        summaries.iter().flat_map(|row| row.iter().map(f)).collect()
    };
    let mut table_files = json!({
        "log_joint": ctx.save_npy("behaviour_table_log_joint", &[nd, nm], &grid(&|s| s.log_joint_ci.estimate))?,
        "log_joint_ci": ctx.save_npy("behaviour_table_log_joint_ci", &[nd, nm, 2], &summaries.iter().flat_map(|r| r.iter().flat_map(|s| [s.log_joint_ci.lower, s.log_joint_ci.upper])).collect::<Vec<_>>())?,
        "entropy": ctx.save_npy("behaviour_table_entropy", &[nd, nm], &grid(&|s| s.entropy_ci.estimate))?,
        "entropy_ci": ctx.save_npy("behaviour_table_entropy_ci", &[nd, nm, 2], &summaries.iter().flat_map(|r| r.iter().flat_map(|s| [s.entropy_ci.lower, s.entropy_ci.upper])).collect::<Vec<_>>())?,
    });
    let mut per_example = serde_json::Map::new();
    for (di, d) in c.datasets.iter().enumerate() {
        let n = c.common[di].len();
        let lj: Vec<f64> = (0..nm)
            .flat_map(|mi| c.cells[di][mi].log_joint.iter().copied())
            .collect();
        let h: Vec<f64> = (0..nm)
            .flat_map(|mi| c.cells[di][mi].mean_entropy.iter().copied())
            .collect();
        per_example.insert(
            d.clone(),
            json!({
                "log_joint": ctx.save_npy(&format!("behaviour_log_joint_{}", slug(d)), &[nm, n], &lj)?,
                "mean_entropy": ctx.save_npy(&format!("behaviour_mean_entropy_{}", slug(d)), &[nm, n], &h)?,
                "examples": ctx.save_npy(&format!("behaviour_examples_{}", slug(d)), &[n], &c.common[di].iter().map(|&i| i as i64).collect::<Vec<_>>())?,
            }),
        );
    }
    table_files["per_dataset"] = serde_json::Value::Object(per_example);
    collect_paths(&table_files, &mut files);

    let annotated = |title: &str, f: &dyn Fn(&CellSummary) -> f64, decimals: usize, label: &str| {
        AnnotatedMatrix {
            title: title.into(),
            row_labels: c.datasets.clone(),
            col_labels: c.models.clone(),
            row_title: "dataset".into(),
            col_title: "model".into(),
            values: summaries
                .iter()
                .map(|r| r.iter().map(f).collect())
                .collect(),
            scale: ColorScale::Sequential {
                min: None,
                max: None,
            },
            decimals,
            colorbar_label: label.into(),
            note: Some("mean over each dataset's responses; response tokens as rendered".into()),
        }
    };
    figures.push(ctx.save_figure(
        "behaviour_table_log_joint",
        "Mean log joint probability of each dataset's responses under each model (nats; higher = more probable).",
        annotated_matrix_svg(&annotated("Mean log joint probability (nats)", &|s| s.log_joint_ci.estimate, 1, "nats"))?,
    )?);
    figures.push(ctx.save_figure(
        "behaviour_table_entropy",
        "Mean next-token entropy over each dataset's response positions, per model (nats).",
        annotated_matrix_svg(&annotated(
            "Mean next-token entropy (nats)",
            &|s| s.entropy_ci.estimate,
            3,
            "nats",
        ))?,
    )?);

    // Orderings in words, by point estimate over every dataset of the table.
    let lowest = |f: &dyn Fn(&CellSummary) -> f64, m: usize| {
        (0..nd)
            .filter(|&d| {
                (0..nm)
                    .filter(|&o| o != m)
                    .all(|o| f(&summaries[d][m]) < f(&summaries[d][o]))
            })
            .count()
    };
    let highest = |f: &dyn Fn(&CellSummary) -> f64, m: usize| {
        (0..nd)
            .filter(|&d| {
                (0..nm)
                    .filter(|&o| o != m)
                    .all(|o| f(&summaries[d][m]) > f(&summaries[d][o]))
            })
            .count()
    };
    let lj_of = |s: &CellSummary| s.log_joint_ci.estimate;
    let h_of = |s: &CellSummary| s.entropy_ci.estimate;
    let mut order_words = vec![
        format!(
            "the instruct model has the lowest mean log joint on {} of {nd} datasets",
            lowest(&lj_of, ii)
        ),
        format!("the lowest mean entropy on {} of {nd}", lowest(&h_of, ii)),
        format!(
            "base has the highest mean entropy on {} of {nd}",
            highest(&h_of, ib)
        ),
    ];
    for f in &c.finetuned {
        let mf = idx(f)?;
        let closer = (0..nd)
            .filter(|&d| {
                let (x, b, i) = (
                    lj_of(&summaries[d][mf]),
                    lj_of(&summaries[d][ib]),
                    lj_of(&summaries[d][ii]),
                );
                (x - b).abs() < (x - i).abs()
            })
            .count();
        let above = (0..nd)
            .filter(|&d| lj_of(&summaries[d][mf]) >= lj_of(&summaries[d][ib]))
            .count();
        order_words.push(format!("`{f}` is closer to base than to instruct on {closer} of {nd} and at or above base on {above} of {nd}"));
    }
    let pattern_words = pattern
        .iter()
        .map(|p| {
            let ft = p
                .finetuned
                .as_deref()
                .map(|f| format!(", {f}"))
                .unwrap_or_default();
            let rec = p
                .recovery
                .map(|r| format!(", recovery {}", fmt_fixed(r, 2)))
                .unwrap_or_default();
            format!(
                "{}{ft}: LJ(base)\u{2212}LJ(instruct) {}{}{rec}",
                p.dataset,
                fmt_ci_fixed(&p.instruct_below_base, 1),
                p.instruct_below_finetuned
                    .as_ref()
                    .map(|x| format!(", LJ(ft)\u{2212}LJ(instruct) {}", fmt_ci_fixed(x, 1)))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");

    let result = format!(
        "(a) Log joint of the example response ({} tokens of `{}` #{}): {joint_words} nats. (b) Next-token entropy after \
         \u{201c}{}\u{201d}: {next_words} nats; the instruct model {} the lowest entropy. (c) Over the datasets, {}. Paired tests on \
         the {} datasets ({pattern_words}): {reason}.",
        nt,
        ex.dataset,
        ex.index,
        spec.prefix_assistant,
        if instruct_lowest_entropy { "has" } else { "does not have" },
        order_words.join("; "),
        if role_based { "misaligned" } else { "(no dataset has role = misaligned, so all)" },
    );
    let study_reported = format!("{STUDY_FIGURES} {STUDY_TABLE_WORDS}");

    let mut tables = vec![
        cell_table(
            &format!(
                "Mean log joint probability of the responses (nats), mean [{}% CI]",
                (LEVEL * 100.0) as u32
            ),
            c,
            &summaries,
            &roles,
            &role_text,
            &|s| fmt_ci_fixed(&s.log_joint_ci, 1),
        ),
        cell_table(
            &format!(
                "Mean next-token entropy over response positions (nats), mean [{}% CI]",
                (LEVEL * 100.0) as u32
            ),
            c,
            &summaries,
            &roles,
            &role_text,
            &|s| fmt_ci_fixed(&s.entropy_ci, 3),
        ),
        pattern_table(&pattern),
        Table {
            caption: "Next-token distribution after the prefix: entropy and most likely tokens"
                .into(),
            headers: vec![
                "model".into(),
                "entropy (nats)".into(),
                "prompt tokens".into(),
                format!("top {k} (probability)"),
            ],
            rows: c
                .models
                .iter()
                .enumerate()
                .map(|(mi, m)| {
                    vec![
                        m.clone(),
                        fmt_fixed(entropies[mi], 3),
                        c.prompts[mi].ids.len().to_string(),
                        c.next_tokens[mi]
                            .iter()
                            .zip(&c.next[mi].top)
                            .map(|(t, p)| format!("{t:?} {:.3}", p.prob))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ]
                })
                .collect(),
        },
    ];
    tables.push(study_table());

    let tests = pattern_tests(&pattern);

    let eot = if ctx.spec.render.include_end_of_turn {
        "including"
    } else {
        "excluding"
    };
    let base_plain = c.prompts[ib].format == "plain";
    notes.push(format!(
        "Positions: the response tokens as each model's rendering gives them \u{2014} the assistant message's content tokens, {eot} \
         the closing end-of-turn token (render.include_end_of_turn = {}). Log-probabilities and entropies are natural-log (nats); \
         each entropy is over the whole vocabulary of the distribution the response token was drawn from.",
        ctx.spec.render.include_end_of_turn
    ));
    notes.push(format!(
        "The base model is rendered {} (render.plain_base = {}).",
        if base_plain {
            "without a chat template (\u{201c}{user}\\n{assistant}\u{201d})"
        } else {
            "with the chat template, like the others (as the study did)"
        },
        ctx.spec.render.plain_base
    ));
    notes.push(format!(
        "(a) Every model is scored on the instruct rendering's response tokens, each after its own rendering of the prompt; labels \
         are those tokens decoded one by one with the instruct tokenizer.{}",
        if ex.own_tokens_differ.iter().any(|&d| d) {
            format!(
                " The models whose own rendering tokenizes the response differently: {}.",
                c.models.iter().zip(&ex.own_tokens_differ).filter(|(_, d)| **d).map(|(m, _)| m.as_str()).collect::<Vec<_>>().join(", ")
            )
        } else {
            String::new()
        }
    ));
    notes.push(
        "(b) The prompt is the chat template rendered for [user] with add_generation_prompt = true, the assistant prefix appended \
         as text and the whole string tokenized once, so the assistant turn is open (no end-of-turn token after the prefix); \
         results.json records, per model, its text, ids and whether a closed-turn rendering cut after the prefix gives the same text."
            .into(),
    );
    notes.push(format!(
        "(c) Every cell of a dataset is over the same examples: those every model can score (a non-empty response after at least \
         one prompt token); {} excluded in all. The entropy column is the mean over examples of each response's mean entropy \
         (token-weighted means are in results.json). CIs: percentile bootstrap over examples, {BOOTSTRAP} resamples, level {LEVEL}, \
         the same resamples for every model of a dataset, seeds derived from the study seed {seed} \
         (recorded per cell).",
        c.excluded.iter().map(Vec::len).sum::<usize>()
    ));
    notes.push(
        "Verdict rule: on each misaligned dataset (role = \"misaligned\"; all datasets when none is marked) and for each fine-tuned \
         model, three paired bootstrap CIs over examples \u{2014} mean LJ(base) \u{2212} LJ(instruct), mean LJ(ft) \u{2212} LJ(instruct), \
         and |mean LJ(ft) \u{2212} mean LJ(instruct)| \u{2212} |mean LJ(ft) \u{2212} mean LJ(base)| (the fine-tune is closer to base). \
         Reproduced when all three lie above 0 in every cell; Partly when they do in at least one cell, or every estimate is \
         positive in every cell (and at most Partly without a fine-tuned model); else Not reproduced. (a) and (b) are single \
         examples without a test and do not enter the verdict."
            .into(),
    );
    notes.push(
        "The study's code averaged one model's log-probabilities into the next model's; here every number comes from \
         that model's own forward pass."
            .into(),
    );

    let mut section = Section::new(TITLE, FINDING, &result, &study_reported, verdict);
    section.figures = figures;
    section.tables = tables;
    section.tests = tests;
    section.notes = notes;
    section.files = files;

    let results = json!({
        "options": spec,
        "render": ctx.spec.render,
        "positions": format!("response tokens as rendered, {eot} the end-of-turn token"),
        "units": "nats",
        "example": example_json,
        "next_token": next_json,
        "table": {
            "datasets": c.datasets,
            "models": c.models,
            "roles": roles.iter().map(|r| role_text(*r)).collect::<Vec<_>>(),
            "n_examples": c.common.iter().map(Vec::len).collect::<Vec<_>>(),
            "excluded": c.excluded.iter().zip(&c.datasets).map(|(e, d)| (d.clone(), json!(e.iter().map(|(i, w)| json!({"example": i, "reason": w})).collect::<Vec<_>>()))).collect::<serde_json::Map<_, _>>(),
            "entropy_column": "mean over examples of each response's mean next-token entropy",
            "cells": summaries.iter().flatten().collect::<Vec<_>>(),
            "bootstrap": {"resamples": BOOTSTRAP, "level": LEVEL, "method": "percentile bootstrap over examples"},
            "files": table_files,
        },
        "pattern": {
            "tested_datasets": tested.iter().map(|&d| c.datasets[d].clone()).collect::<Vec<_>>(),
            "chosen_by_role": role_based,
            "cells": pattern,
        },
        "study_table": STUDY_TABLE.iter().map(|r| json!({
            "dataset": r.dataset,
            "role": if r.misaligned_role { "misaligned" } else { "aligned" },
            "log_joint": STUDY_MODELS.iter().zip(r.log_joint).map(|(m, v)| (m.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "entropy": STUDY_MODELS.iter().zip(r.entropy).map(|(m, v)| (m.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
        "verdict": {"verdict": verdict, "reason": reason},
    });
    Ok(SectionOutput {
        key: "behaviour",
        results,
        section,
    })
}
