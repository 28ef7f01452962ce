//! Formatting for analysis 1's report: numbers, CIs, the tables and the tests of the pattern.

use super::results::BehaviourResults;
use super::table::{cell_holds, CellSummary, PatternCell, BOOTSTRAP, STUDY_MODELS, STUDY_TABLE};
use erosion_analysis::stats::ConfidenceInterval;
use erosion_report::format::{fmt_ci_fixed, fmt_fixed};
use erosion_report::html::{Interval, StatTest, Table};
#[cfg(test)]
use serde_json::json;

/// A dataset or model name as part of a file name.
pub(crate) fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(crate) fn interval(ci: &ConfidenceInterval) -> Interval {
    Interval {
        lo: ci.lower,
        hi: ci.upper,
        level: ci.level,
    }
}

/// The paired tests of the ordering pattern, one row per (dataset, fine-tune).
pub(crate) fn pattern_table(pattern: &[PatternCell]) -> Table {
    Table {
        caption: "Paired tests of the study's ordering (positive = the pattern holds); verdict rule in the notes".into(),
        headers: ["dataset", "fine-tune", "n", "LJ(base) \u{2212} LJ(instruct)", "LJ(ft) \u{2212} LJ(instruct)", "|ft\u{2212}instruct| \u{2212} |ft\u{2212}base|", "recovery", "holds (CI)"]
            .map(String::from)
            .to_vec(),
        rows: pattern
            .iter()
            .map(|p| {
                vec![
                    p.dataset.clone(),
                    p.finetuned.clone().unwrap_or_else(|| "-".into()),
                    p.n_examples.to_string(),
                    fmt_ci_fixed(&p.instruct_below_base, 2),
                    p.instruct_below_finetuned.as_ref().map(|x| fmt_ci_fixed(x, 2)).unwrap_or_else(|| "-".into()),
                    p.closer_to_base.as_ref().map(|x| fmt_ci_fixed(x, 2)).unwrap_or_else(|| "-".into()),
                    p.recovery.map(|r| fmt_fixed(r, 2)).unwrap_or_else(|| "-".into()),
                    if cell_holds(p, true) { "yes" } else { "no" }.into(),
                ]
            })
            .collect(),
    }
}

/// The study's own table (Giordani 2025, joint_prob.txt), beside ours.
pub(crate) fn study_table() -> Table {
    Table {
    caption: "The study's table (Giordani 2025, Qwen2.5-Coder-32B; joint_prob.txt): mean log joint (nats) and mean entropy".into(),
    headers: std::iter::once("dataset (study)".to_string())
        .chain(std::iter::once("role".to_string()))
        .chain(STUDY_MODELS.iter().map(|m| format!("LJ {m}")))
        .chain(STUDY_MODELS.iter().map(|m| format!("H {m}")))
        .collect(),
    rows: STUDY_TABLE
        .iter()
        .map(|r| {
            let mut row = vec![r.dataset.to_string(), if r.misaligned_role { "misaligned" } else { "aligned" }.to_string()];
            row.extend(r.log_joint.iter().map(|v| fmt_fixed(*v, 1)));
            row.extend(r.entropy.iter().map(|v| fmt_fixed(*v, 3)));
            row
        })
        .collect(),
}
}

/// One test per statistic of each pattern cell: its paired bootstrap CI.
pub(crate) fn pattern_tests(pattern: &[PatternCell]) -> Vec<StatTest> {
    let mut tests = Vec::new();
    for p in pattern {
        let detail = |what: &str| {
            format!(
                "{what}; paired percentile bootstrap over the {} examples every model scores ({BOOTSTRAP} resamples, seed {}); \
                 the pattern needs the CI above 0",
                p.n_examples, p.instruct_below_base.seed
            )
        };
        tests.push(StatTest {
            name: format!("instruct below base on `{}`", p.dataset),
            statistic_name: "mean LJ(base) \u{2212} LJ(instruct) (nats)".into(),
            statistic: p.instruct_below_base.estimate,
            p_value: None,
            ci: Some(interval(&p.instruct_below_base)),
            detail: detail("mean over examples of the difference in log joint probability"),
        });
        if let (Some(f), Some(b), Some(cl)) =
            (&p.finetuned, &p.instruct_below_finetuned, &p.closer_to_base)
        {
            tests.push(StatTest {
                name: format!("instruct below `{f}` on `{}`", p.dataset),
                statistic_name: format!("mean LJ({f}) \u{2212} LJ(instruct) (nats)"),
                statistic: b.estimate,
                p_value: None,
                ci: Some(interval(b)),
                detail: detail("mean over examples of the difference in log joint probability"),
            });
            tests.push(StatTest {
                name: format!("`{f}` closer to base than to instruct on `{}`", p.dataset),
                statistic_name: "|mean LJ(ft) \u{2212} mean LJ(instruct)| \u{2212} |mean LJ(ft) \u{2212} mean LJ(base)| (nats)".into(),
                statistic: cl.estimate,
                p_value: None,
                ci: Some(interval(cl)),
                detail: detail("examples resampled jointly for the three models"),
            });
        }
    }

    tests
}

/// Every string leaf of a JSON tree of file paths.
pub(crate) fn collect_paths(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_paths(x, out)),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_paths(x, out)),
        _ => {}
    }
}

/// A datasets x models table of formatted cells.
pub(crate) fn cell_table(
    caption: &str,
    r: &BehaviourResults,
    cell: &dyn Fn(&CellSummary) -> String,
) -> Table {
    let t = &r.table;
    Table {
        caption: caption.into(),
        headers: ["dataset", "role", "n"]
            .iter()
            .map(|s| s.to_string())
            .chain(t.models.iter().cloned())
            .collect(),
        rows: t
            .cells
            .chunks(t.models.len())
            .enumerate()
            .map(|(d, row)| {
                let mut cols = vec![
                    t.datasets[d].clone(),
                    t.roles[d].clone(),
                    t.n_examples[d].to_string(),
                ];
                cols.extend(row.iter().map(cell));
                cols
            })
            .collect(),
    }
}

/// (b) per model: entropy, prompt length and the top tokens with their probabilities.
pub(crate) fn next_token_table(r: &BehaviourResults) -> Table {
    // The header counts the fewest top tokens any model has.
    let k = r
        .next_token
        .models
        .values()
        .map(|n| n.top.len())
        .min()
        .unwrap_or(0);
    Table {
        caption: "Next-token distribution after the prefix: entropy and most likely tokens".into(),
        headers: vec![
            "model".into(),
            "entropy (nats)".into(),
            "prompt tokens".into(),
            format!("top {k} (probability)"),
        ],
        rows: r
            .next_token
            .models
            .0
            .iter()
            .map(|(m, n)| {
                vec![
                    m.clone(),
                    fmt_fixed(n.entropy_nats, 3),
                    n.prompt.ids.len().to_string(),
                    n.top
                        .iter()
                        .map(|t| format!("{:?} {:.3}", t.text, t.prob))
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_numbers() {
        assert_eq!(slug("insecure code/v2"), "insecure_code_v2");
        assert_eq!(fmt_fixed(-1.23456, 2), "-1.23");
        assert_eq!(fmt_fixed(f64::NAN, 2), "NaN");
        let ci = ConfidenceInterval {
            estimate: 1.0,
            lower: 0.5,
            upper: 1.25,
            level: 0.95,
            n_resamples: 2,
            seed: 0,
            method: "x".into(),
        };
        assert_eq!(fmt_ci_fixed(&ci, 2), "1.00 [0.50, 1.25]");
        let mut out = Vec::new();
        collect_paths(
            &json!({"a": "x.npy", "b": {"c": "y.npy"}, "n": 3}),
            &mut out,
        );
        assert_eq!(out, vec!["x.npy", "y.npy"]);
    }
}
