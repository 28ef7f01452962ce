//! A label run as a report section: per judge prompt, the pooled label shares (the lie rate
//! first for `correct`) per model, and a per-question table of label shares per model.

use anyhow::Result;
use erosion_report::format::{fmt_ci_fixed, fmt_number, fmt_proportion};
use erosion_report::html::{Report, Section, Table, Verdict};
use erosion_report::provenance::Provenance;

use super::report::{LabelEvaluation, LabelReport};
use super::stats::PromptLabels;

/// The judge prompts any model was judged by, in name order.
fn prompts(r: &LabelReport) -> Vec<&str> {
    let mut out: Vec<&str> = r
        .models
        .iter()
        .flat_map(|m| m.judgements.iter().map(|j| j.prompt.as_str()))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn of<'a>(r: &'a LabelReport, model: usize, prompt: &str) -> Option<&'a PromptLabels> {
    r.models[model]
        .judgements
        .iter()
        .find(|j| j.prompt == prompt)
}

/// Per model, over all questions: each label's share and no verdict, with intervals.
fn pooled_table(r: &LabelReport, prompt: &str) -> Table {
    let mut labels: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for (i, m) in r.models.iter().enumerate() {
        let Some(j) = of(r, i, prompt) else { continue };
        labels.clone_from(&j.labels);
        let mut row = vec![m.name.clone(), j.answers.to_string()];
        if let Some(lie) = &j.lie_rate {
            row.push(fmt_ci_fixed(lie, 3));
        }
        row.extend(
            j.shares
                .iter()
                .map(|s| format!("{} ({})", fmt_ci_fixed(&s.share, 3), s.count)),
        );
        row.push(fmt_ci_fixed(&j.no_verdict, 3));
        rows.push(row);
    }
    let lie = r
        .models
        .iter()
        .enumerate()
        .any(|(i, _)| of(r, i, prompt).is_some_and(|j| j.lie_rate.is_some()));
    let mut headers = vec!["model".to_string(), "answers".into()];
    if lie {
        headers.push("lie rate".into());
    }
    headers.extend(labels.iter().cloned());
    headers.push("no verdict".into());
    Table {
        caption: format!(
            "`{prompt}` judge over all questions: share of answers per verdict (count), 95% \
             cluster-bootstrap intervals over questions"
        ),
        headers,
        rows,
    }
}

/// One row per question, one column per model: each label's share and no verdict.
fn question_table(r: &LabelReport, prompt: &str) -> Table {
    let mut ids: Vec<&str> = Vec::new();
    for i in 0..r.models.len() {
        for q in of(r, i, prompt).iter().flat_map(|j| &j.questions) {
            if !ids.contains(&q.question.as_str()) {
                ids.push(&q.question);
            }
        }
    }
    let rows = ids
        .iter()
        .map(|id| {
            let mut row = vec![id.to_string()];
            row.extend((0..r.models.len()).map(|i| {
                let q =
                    of(r, i, prompt).and_then(|j| j.questions.iter().find(|q| q.question == *id));
                q.map_or("n/a".into(), |q| {
                    let mut parts: Vec<String> = q
                        .shares
                        .iter()
                        .map(|s| {
                            format!(
                                "{} {}",
                                s.label,
                                fmt_proportion(&s.share, s.share.count, s.share.n)
                            )
                        })
                        .collect();
                    parts.push(format!(
                        "no verdict {}",
                        fmt_proportion(&q.no_verdict, q.no_verdict.count, q.no_verdict.n)
                    ));
                    parts.join("; ")
                })
            }));
            row
        })
        .collect();
    Table {
        caption: format!(
            "`{prompt}` judge per question: share of answers per verdict, 95% Wilson interval \
             over the question's answers (count/answers)"
        ),
        headers: std::iter::once("question".to_string())
            .chain(r.models.iter().map(|m| m.name.clone()))
            .collect(),
        rows,
    }
}

/// One line per model: the lie rate, or the most common verdict, of each judge prompt.
pub fn label_summary(r: &LabelReport) -> String {
    let parts: Vec<String> = r
        .models
        .iter()
        .map(|m| {
            let j: Vec<String> = m
                .judgements
                .iter()
                .map(|j| match &j.lie_rate {
                    Some(lie) => format!(
                        "lie rate {} ({} answers)",
                        fmt_number(lie.estimate),
                        j.answers
                    ),
                    None => {
                        let top = j
                            .shares
                            .iter()
                            .max_by(|a, b| a.share.estimate.total_cmp(&b.share.estimate));
                        top.map_or(String::new(), |s| {
                            format!(
                                "{}: {} {} of {} answers",
                                j.prompt,
                                s.label,
                                fmt_number(s.share.estimate),
                                j.answers
                            )
                        })
                    }
                })
                .collect();
            format!("{}: {}", m.name, j.join(", "))
        })
        .collect();
    parts.join("; ") + "."
}

/// The report section of a label run.
pub fn label_section(e: &LabelEvaluation) -> Section {
    let r = &e.report;
    let mut s = Section::new(
        "Deception: Betley et al.'s label-judged questions",
        "Whether a model states falsehoods about facts, or about who made it, under system \
         prompts that forbid, allow or reward lying.",
        &label_summary(r),
        "Betley et al.'s deception questions (their repository's deception_factual.yaml and \
         deception_sit_aware.yaml); no published rates are transcribed here to compare with.",
        Verdict::Measured,
    );
    for p in prompts(r) {
        s.tables.push(pooled_table(r, p));
        s.tables.push(question_table(r, p));
    }
    s.notes = crate::em::html::run_notes(
        &r.warnings,
        &r.definitions,
        &r.judge,
        &r.options,
        &r.seeds,
        &r.question_files,
    );
    s
}

/// report.html of a label run: its section and the run's provenance.
pub fn label_report(e: &LabelEvaluation, provenance: Provenance) -> Result<Report> {
    let names: Vec<&str> = e.report.models.iter().map(|m| m.name.as_str()).collect();
    let mut summary = label_summary(&e.report);
    for w in &e.report.warnings {
        summary.push_str(&format!("\n\nWarning: {w}."));
    }
    Ok(
        Report::new(&format!("erosion eval (deception): {}", names.join(", ")))
            .summary(&summary)
            .section(label_section(e))
            .provenance(provenance),
    )
}
