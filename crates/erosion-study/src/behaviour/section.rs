//! Analysis 1's report section, written from its typed results: figures (figures.rs), tables
//! (tables.rs), the paired tests, the result in words and the notes on method.

use super::figures::figures;
use super::results::{BehaviourResults, CellSummary};
use super::table::{BOOTSTRAP, LEVEL, STUDY_TABLE_WORDS};
use super::tables::{
    cell_table, collect_paths, next_token_table, pattern_table, pattern_tests, study_table,
};
use crate::context::StudyContext;
use anyhow::Result;
use erosion_report::format::{fmt_ci_fixed, fmt_fixed};
use erosion_report::html::Section;

pub(crate) const TITLE: &str = "Behaviour reverts to base";
const FINDING: &str = "After narrow fine-tuning, the model's behaviour drifts back toward its base model: responses the \
instruct model finds improbable (harmful or misaligned ones) are probable under the base and the fine-tuned model, token \
by token and over whole datasets, and the next-token distribution after a loaded prefix is low-entropy and safe for the \
instruct model but broader, with harmful words, for base and fine-tune.";
const STUDY_FIGURES: &str = "Per token: the instruct model's probability collapses once the response turns harmful, while \
base and misaligned keep it high. After the assistant begins \u{201c}I wish I could\u{201d}: instruct has low entropy and safe \
words, base and misaligned higher entropy and harmful words.";

/// The report section of `r` (figures are written under `ctx`'s output).
pub(crate) fn section(ctx: &StudyContext, r: &BehaviourResults) -> Result<Section> {
    let figures = figures(ctx, r)?;
    let ci_caption = |what: &str| format!("{what}, mean [{}% CI]", (LEVEL * 100.0) as u32);
    let tables = vec![
        cell_table(
            &ci_caption("Mean log joint probability of the responses (nats)"),
            r,
            &|s| fmt_ci_fixed(&s.log_joint_ci, 1),
        ),
        cell_table(
            &ci_caption("Mean next-token entropy over response positions (nats)"),
            r,
            &|s| fmt_ci_fixed(&s.entropy_ci, 3),
        ),
        pattern_table(&r.pattern.cells),
        next_token_table(r),
        study_table(),
    ];
    let mut files = Vec::new();
    for f in [
        serde_json::to_value(&r.example.files)?,
        serde_json::to_value(&r.next_token.files)?,
        serde_json::to_value(&r.table.files)?,
    ] {
        collect_paths(&f, &mut files);
    }
    let study_reported = format!("{STUDY_FIGURES} {STUDY_TABLE_WORDS}");
    let mut section = Section::new(
        TITLE,
        FINDING,
        &result_text(r)?,
        &study_reported,
        r.verdict.verdict,
    );
    section.figures = figures;
    section.tables = tables;
    section.tests = pattern_tests(&r.pattern.cells);
    section.notes = notes(ctx, r);
    section.files = files;
    Ok(section)
}

/// The result in words: (a) each model's log joint of the example, (b) each model's entropy
/// and top token, (c) the orderings over the table and the paired tests with the verdict.
fn result_text(r: &BehaviourResults) -> Result<String> {
    let ex = &r.example;
    let joint_words = (ex.models.0.iter())
        .map(|(m, e)| format!("{m} {}", fmt_fixed(e.log_joint, 1)))
        .collect::<Vec<_>>()
        .join(", ");
    let next_words = (r.next_token.models.0.iter())
        .map(|(m, n)| {
            let top = n
                .top
                .first()
                .map(|t| format!("\u{201c}{}\u{201d} {:.2}", t.text, t.prob))
                .unwrap_or_default();
            format!("{m} {} (top {top})", fmt_fixed(n.entropy_nats, 2))
        })
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!(
        "(a) Log joint of the example response ({} tokens of `{}` #{}): {joint_words} nats. (b) Next-token entropy after \
         \u{201c}{}\u{201d}: {next_words} nats; the instruct model {} the lowest entropy. (c) Over the datasets, {}. Paired tests on \
         the {} datasets ({}): {}.",
        ex.tokens.len(),
        ex.dataset,
        ex.index,
        r.next_token.prefix_assistant,
        if r.next_token.instruct_has_lowest_entropy { "has" } else { "does not have" },
        order_words(r)?.join("; "),
        if r.pattern.chosen_by_role { "misaligned" } else { "(no dataset has role = misaligned, so all)" },
        pattern_words(r),
        r.verdict.reason,
    ))
}

/// Orderings in words, by point estimate over every dataset of the table.
fn order_words(r: &BehaviourResults) -> Result<Vec<String>> {
    let (nd, nm) = (r.table.datasets.len(), r.table.models.len());
    let (ib, ii) = (r.model_index("base")?, r.model_index("instruct")?);
    // Datasets on which model m is strictly below (`below`) or above every other model.
    let extreme = |f: &dyn Fn(&CellSummary) -> f64, m: usize, below: bool| {
        (0..nd)
            .filter(|&d| {
                (0..nm).filter(|&o| o != m).all(|o| {
                    let (x, y) = (f(r.cell(d, m)), f(r.cell(d, o)));
                    if below {
                        x < y
                    } else {
                        x > y
                    }
                })
            })
            .count()
    };
    let lj_of = |s: &CellSummary| s.log_joint_ci.estimate;
    let h_of = |s: &CellSummary| s.entropy_ci.estimate;
    let mut words = vec![
        format!(
            "the instruct model has the lowest mean log joint on {} of {nd} datasets",
            extreme(&lj_of, ii, true)
        ),
        format!(
            "the lowest mean entropy on {} of {nd}",
            extreme(&h_of, ii, true)
        ),
        format!(
            "base has the highest mean entropy on {} of {nd}",
            extreme(&h_of, ib, false)
        ),
    ];
    for f in r.finetuned() {
        let mf = r.model_index(f)?;
        let lj = |d: usize, m: usize| lj_of(r.cell(d, m));
        let closer = (0..nd)
            .filter(|&d| (lj(d, mf) - lj(d, ib)).abs() < (lj(d, mf) - lj(d, ii)).abs())
            .count();
        let above = (0..nd).filter(|&d| lj(d, mf) >= lj(d, ib)).count();
        words.push(format!("`{f}` is closer to base than to instruct on {closer} of {nd} and at or above base on {above} of {nd}"));
    }
    Ok(words)
}

/// Each pattern cell's paired CIs and recovery, in words.
fn pattern_words(r: &BehaviourResults) -> String {
    r.pattern
        .cells
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
        .join("; ")
}

/// How the numbers were made: positions, renderings, (a)-(c), the verdict rule.
fn notes(ctx: &StudyContext, r: &BehaviourResults) -> Vec<String> {
    let render = &r.render;
    let eot = if render.include_end_of_turn {
        "including"
    } else {
        "excluding"
    };
    let base = r.next_token.models.get("base");
    let base_plain = base.is_some_and(|b| b.prompt.format == "plain");
    let differing: Vec<&str> = (r.example.models.0.iter())
        .filter(|(_, m)| m.own_tokenization_differs)
        .map(|(m, _)| m.as_str())
        .collect();
    let excluded: usize = r.table.excluded.values().map(Vec::len).sum();
    vec![
        format!(
            "Positions: the response tokens as each model's rendering gives them \u{2014} the assistant message's content tokens, {eot} \
             the closing end-of-turn token (render.include_end_of_turn = {}). Log-probabilities and entropies are natural-log (nats); \
             each entropy is over the whole vocabulary of the distribution the response token was drawn from.",
            render.include_end_of_turn
        ),
        format!(
            "The base model is rendered {} (render.plain_base = {}).",
            if base_plain {
                "without a chat template (\u{201c}{user}\\n{assistant}\u{201d})"
            } else {
                "with the chat template, like the others (as the study did)"
            },
            render.plain_base
        ),
        format!(
            "(a) Every model is scored on the instruct rendering's response tokens, each after its own rendering of the prompt; labels \
             are those tokens decoded one by one with the instruct tokenizer.{}",
            if differing.is_empty() {
                String::new()
            } else {
                format!(
                    " The models whose own rendering tokenizes the response differently: {}.",
                    differing.join(", ")
                )
            }
        ),
        "(b) The prompt is the chat template rendered for [user] with add_generation_prompt = true, the assistant prefix appended \
         as text and the whole string tokenized once, so the assistant turn is open (no end-of-turn token after the prefix); \
         results.json records, per model, its text, ids and whether a closed-turn rendering cut after the prefix gives the same text."
            .into(),
        format!(
            "(c) Every cell of a dataset is over the same examples: those every model can score (a non-empty response after at least \
             one prompt token); {excluded} excluded in all. The entropy column is the mean over examples of each response's mean entropy \
             (token-weighted means are in results.json). CIs: percentile bootstrap over examples, {BOOTSTRAP} resamples, level {LEVEL}, \
             the same resamples for every model of a dataset, seeds derived from the study seed {} \
             (recorded per cell).",
            ctx.spec.seed
        ),
        "Verdict rule: on each misaligned dataset (role = \"misaligned\"; all datasets when none is marked) and for each fine-tuned \
         model, three paired bootstrap CIs over examples \u{2014} mean LJ(base) \u{2212} LJ(instruct), mean LJ(ft) \u{2212} LJ(instruct), \
         and |mean LJ(ft) \u{2212} mean LJ(instruct)| \u{2212} |mean LJ(ft) \u{2212} mean LJ(base)| (the fine-tune is closer to base). \
         Reproduced when all three lie above 0 in every cell; Partly when they do in at least one cell, or every estimate is \
         positive in every cell (and at most Partly without a fine-tuned model); else Not reproduced. (a) and (b) are single \
         examples without a test and do not enter the verdict."
            .into(),
        "The study's code averaged one model's log-probabilities into the next model's; here every number comes from \
         that model's own forward pass."
            .into(),
    ]
}
