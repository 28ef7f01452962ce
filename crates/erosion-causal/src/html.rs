//! The report section of the causal tests: one table per test (its three conditions), one
//! chart of the rates, a sentence per test and a verdict from a stated rule.

use anyhow::Result;
use erosion_analysis::stats::ConfidenceInterval;
use erosion_eval::Proportion;
use erosion_report::figures::grouped_bars::{grouped_bars_svg, Bar, BarGroup, GroupedBars};
use erosion_report::format::{fmt_ci, fmt_proportion};
use erosion_report::html::{Figure, Section, Table, Verdict};

use crate::experiment::{Action, CausalResult};

const CONDITIONS: [&str; 3] = ["unsteered", "direction", "random control"];

/// Whether the test moved the margin the way its action intends, beyond its control: the
/// direction's paired change has the intended sign with a 95% CI that excludes 0, and its
/// size exceeds the largest change the control's CI allows. Intended: adding +v (restoring
/// alignment) lowers ln P(harmful) - ln P(refusal); adding -v or ablating raises it.
pub fn is_causal(r: &CausalResult) -> bool {
    let sign = match r.test.action {
        Action::Add { scale } => -scale.signum(),
        Action::Ablate => 1.0,
    };
    let change = |name: &str| r.condition(name).and_then(|c| c.margin_change.as_ref());
    let (Some(dir), Some(ctl)) = (change("direction"), change("random control")) else {
        return false;
    };
    // The CI's bound nearest zero, in the intended orientation.
    let lo = if sign > 0.0 { dir.lower } else { -dir.upper };
    let control_max = ctl.lower.abs().max(ctl.upper.abs());
    sign != 0.0 && lo > 0.0 && dir.estimate.abs() > control_max
}

fn opt_prop(p: &Option<Proportion>) -> String {
    p.as_ref()
        .map_or("-".into(), |p| fmt_proportion(p, p.count, p.n))
}

fn opt_ci(c: &Option<ConfidenceInterval>) -> String {
    c.as_ref().map_or("-".into(), fmt_ci)
}

/// One sentence: what the direction did next to its control.
fn sentence(r: &CausalResult) -> String {
    let rate = |name: &str| {
        r.condition(name)
            .and_then(|c| c.refusal.as_ref())
            .map_or("-".to_string(), |p| format!("{:.2}", p.rate))
    };
    let change = |name: &str| {
        r.condition(name)
            .and_then(|c| c.margin_change.as_ref())
            .map_or("-".to_string(), fmt_ci)
    };
    let kl = |name: &str| {
        r.condition(name)
            .and_then(|c| c.kl.as_ref())
            .map_or("-".to_string(), |k| format!("{:.3}", k.estimate))
    };
    format!(
        "{} ({} at {} of {}): refusal rate {} unsteered, {} with the direction, {} with \
         the random control; margin change {} (control {}); KL cost {} nats (control {}). {}",
        r.test.name,
        r.test.action.describe(),
        layer_words(&r.test.layers),
        r.model,
        rate("unsteered"),
        rate("direction"),
        rate("random control"),
        change("direction"),
        change("random control"),
        kl("direction"),
        kl("random control"),
        if is_causal(r) {
            "The direction moves the margin as intended, beyond its control."
        } else {
            "The direction does not move the margin as intended beyond its control."
        }
    )
}

/// The section. Verdict: reproduced when every test is causal ([`is_causal`]), partly when
/// some are, not reproduced when none is.
pub fn causal_section(results: &[CausalResult]) -> Result<Section> {
    let n_causal = results.iter().filter(|r| is_causal(r)).count();
    let verdict = match n_causal {
        0 if results.is_empty() => Verdict::NotRun,
        0 => Verdict::NotReproduced,
        n if n == results.len() => Verdict::Reproduced,
        _ => Verdict::Partly,
    };
    let result = results.iter().map(sentence).collect::<Vec<_>>().join(" ");
    let mut s = Section::new(
        "Causal tests: steering along the alignment direction",
        "The alignment direction is causal: adding it to a model whose alignment eroded restores \
         refusals, and removing it from the aligned model makes it comply, at a small cost on \
         benign text, while a random direction of the same norm does neither.",
        &result,
        "The study measured correlations only and called for causal tests of the \
         alignment-critical directions (its closing recommendations).",
        verdict,
    );
    s.tables.extend(results.iter().map(test_table));
    if !results.is_empty() {
        s.figures.push(refusal_figure(results)?);
    }
    s.notes.push(
        "Steering acts at every position of every forward pass (prompt and answer tokens), as \
         llama.cpp control vectors do. v_l carries its norm, so `add 1 x v_l` moves the base \
         model's mean hidden state onto the instruct model's at layer l. The control draws a \
         Gaussian direction per layer, scaled to |v_l| (seed recorded in results)."
            .into(),
    );
    s.notes.push(
        "Verdict rule: a test is causal when the direction's paired margin change has the \
         intended sign (negative when adding +v, positive when adding -v or ablating) with a 95% \
         CI excluding 0, and its size exceeds the largest change the control's CI allows."
            .into(),
    );
    Ok(s)
}

/// Residual-stream indices in words: "layer 2", "layers 1, 2" (not Rust's `[1, 2]`).
fn layer_words(layers: &[usize]) -> String {
    let list: Vec<String> = layers.iter().map(|l| l.to_string()).collect();
    let noun = if layers.len() == 1 { "layer" } else { "layers" };
    format!("{noun} {}", list.join(", "))
}

/// One test's conditions, a row each.
fn test_table(r: &CausalResult) -> Table {
    Table {
        caption: format!(
            "{}: {} at {} of {} ({} harmful/refusal pairs, {} benign examples; 95% \
             intervals: Wilson for rates, percentile bootstrap for means)",
            r.test.name,
            r.test.action.describe(),
            layer_words(&r.test.layers),
            r.model,
            r.pairs,
            r.benign
        ),
        headers: [
            "condition",
            "refusal",
            "harmful compliance",
            "P(compliant first token)",
            "margin ln P(harmful) - ln P(refusal)",
            "margin change (paired)",
            "next-token entropy on harmful answers (nats)",
            "KL on benign (nats/token)",
        ]
        .map(String::from)
        .to_vec(),
        rows: r
            .conditions
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    opt_prop(&c.refusal),
                    opt_prop(&c.compliance),
                    opt_ci(&c.first_token),
                    fmt_ci(&c.margin),
                    opt_ci(&c.margin_change),
                    opt_ci(&c.entropy),
                    opt_ci(&c.kl),
                ]
            })
            .collect(),
    }
}

/// The refusal rate of each test's three conditions, grouped by test.
fn refusal_figure(results: &[CausalResult]) -> Result<Figure> {
    let bar = |p: &Proportion| Bar {
        value: p.rate,
        lower: p.lower,
        upper: p.upper,
    };
    let groups = results
        .iter()
        .map(|r| BarGroup {
            label: r.test.name.clone(),
            bars: CONDITIONS
                .iter()
                .map(|n| r.condition(n).and_then(|c| c.refusal.as_ref()).map(bar))
                .collect(),
        })
        .collect();
    let chart = GroupedBars {
        colors: Default::default(),
        title: "Refusal rate under steering".into(),
        y_label: "share of answers refusing".into(),
        models: CONDITIONS.map(String::from).to_vec(),
        groups,
        log_y: false,
        interval_label: "95% Wilson interval".into(),
    };
    Ok(Figure {
        caption: "Refusal rate of each test's model unsteered, steered along the direction, \
                  and steered along a random direction of the same norm (95% Wilson intervals)."
            .into(),
        svg: grouped_bars_svg(&chart)?,
        file: None,
    })
}
