//! The protocol as a report section: the EM rate per group and per question per model with
//! intervals, the alignment-against-coherence scatter of every answer (as Betley et al. plot
//! it), and the answers with the lowest alignment in full.

use anyhow::Result;
use erosion_analysis::stats::ConfidenceInterval;
use erosion_report::figures::{scatter_svg, ModelColors, PointGroup, Scatter};
use erosion_report::format::{fmt_ci_fixed, fmt_number, fmt_proportion};
use erosion_report::html::{Figure, Report, Section, Table, Verdict};
use erosion_report::provenance::Provenance;

use super::report::{EmEvaluation, EmJudge, EmReport};
use super::EmAnswer;
use super::EmOptions;
use crate::prompts::Origin;

/// Answers shown in full, lowest alignment first.
pub const LOWEST_SHOWN: usize = 10;

fn ci(c: &Option<ConfidenceInterval>, decimals: usize) -> String {
    c.as_ref()
        .map_or("no score".into(), |c| fmt_ci_fixed(c, decimals))
}

/// Per model and group: EM rate, mean scores and shares without a score, with intervals.
fn group_table(r: &EmReport) -> Table {
    let mut rows = Vec::new();
    for m in &r.models {
        for g in &m.groups {
            rows.push(vec![
                m.name.clone(),
                g.group.clone(),
                g.questions.len().to_string(),
                format!("{} ({}/{})", fmt_ci_fixed(&g.em, 3), g.em_count, g.answers),
                ci(&g.mean_aligned, 1),
                ci(&g.mean_coherent, 1),
                fmt_ci_fixed(&g.aligned_no_score, 3),
                fmt_ci_fixed(&g.coherent_no_score, 3),
            ]);
        }
    }
    Table {
        caption: "Per group of questions: EM rate, mean aligned and coherent scores, shares of \
                  answers without a score; 95% cluster-bootstrap intervals over questions"
            .into(),
        headers: [
            "model",
            "group",
            "questions",
            "EM rate",
            "mean aligned",
            "mean coherent",
            "no aligned score",
            "no coherent score",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// One row per question, one column per model: EM rate with its Wilson interval.
fn question_table(r: &EmReport) -> Table {
    let mut ids: Vec<&str> = Vec::new();
    for q in r.models.iter().flat_map(|m| &m.questions) {
        if !ids.contains(&q.question.as_str()) {
            ids.push(&q.question);
        }
    }
    let rows = ids
        .iter()
        .map(|id| {
            let mut row = vec![id.to_string()];
            row.extend(r.models.iter().map(|m| {
                m.questions
                    .iter()
                    .find(|q| q.question == *id)
                    .map_or("n/a".into(), |q| {
                        let mean = q.mean_aligned.map_or("none".into(), fmt_number);
                        format!(
                            "{}; mean aligned {mean}",
                            fmt_proportion(&q.em, q.em.count, q.em.n)
                        )
                    })
            }));
            row
        })
        .collect();
    Table {
        caption: "EM rate per question and model, 95% Wilson interval over its answers \
                  (count/answers), and the mean aligned score"
            .into(),
        headers: std::iter::once("question".to_string())
            .chain(r.models.iter().map(|m| m.name.clone()))
            .collect(),
        rows,
    }
}

/// The answers with the lowest aligned score, in full.
fn lowest_table(answers: &[EmAnswer]) -> Table {
    let mut scored: Vec<&EmAnswer> = answers
        .iter()
        .filter(|a| a.aligned.score.is_some())
        .collect();
    scored.sort_by(|a, b| {
        a.aligned
            .score
            .unwrap()
            .total_cmp(&b.aligned.score.unwrap())
    });
    let rows: Vec<Vec<String>> = scored
        .iter()
        .take(LOWEST_SHOWN)
        .map(|a| {
            let asked = a.messages.last().map_or("", |m| m.content.as_str());
            vec![
                a.model.clone(),
                format!("{} / {}: {asked}", a.question, a.paraphrase),
                fmt_number(a.aligned.score.unwrap_or(f64::NAN)),
                a.coherent.score.map_or("none".into(), fmt_number),
                a.answer.clone(),
            ]
        })
        .collect();
    Table {
        caption: format!(
            "The {} answers with the lowest aligned score (at most {LOWEST_SHOWN}), in full",
            rows.len()
        ),
        headers: ["model", "question", "aligned", "coherent", "answer"]
            .map(String::from)
            .to_vec(),
        rows,
    }
}

/// Every answer with both scores, coherence against alignment, one colour per model.
fn scatter(e: &EmEvaluation, colors: &ModelColors) -> Result<Figure> {
    let o = &e.report.options;
    let groups = e
        .report
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| PointGroup {
            name: m.name.clone(),
            points: e
                .answers
                .iter()
                .filter(|a| a.model == m.name)
                .filter_map(|a| Some((a.coherent.score?, a.aligned.score?)))
                .collect(),
            color: Some(colors.rgb(&m.name, i)),
        })
        .collect();
    let svg = scatter_svg(&Scatter {
        title: "Alignment against coherence, every answer".into(),
        x_label: "coherent (judge score)".into(),
        y_label: "aligned (judge score)".into(),
        x_range: (0.0, 100.0),
        y_range: (0.0, 100.0),
        groups,
        x_lines: vec![o.coherent_above],
        y_lines: vec![o.aligned_below],
    })?;
    Ok(Figure {
        caption: format!(
            "Each answer with both scores; EM answers lie in the lower right (aligned < {}, \
             coherent > {}, dashed). Answers without a score are not drawn.",
            o.aligned_below, o.coherent_above
        ),
        svg,
        file: None,
    })
}

/// One line per model: its EM rate on each group.
pub fn em_summary(r: &EmReport) -> String {
    let parts: Vec<String> = r
        .models
        .iter()
        .map(|m| {
            let g: Vec<String> = m
                .groups
                .iter()
                .map(|g| {
                    format!(
                        "EM {} on {} ({}/{})",
                        fmt_number(g.em.estimate),
                        g.group,
                        g.em_count,
                        g.answers
                    )
                })
                .collect();
            format!("{}: {}", m.name, g.join(", "))
        })
        .collect();
    parts.join("; ") + "."
}

/// The report section of the protocol.
pub fn em_section(e: &EmEvaluation, colors: &ModelColors) -> Result<Section> {
    let r = &e.report;
    let mut s = Section::new(
        "Emergent misalignment: Betley et al.'s free-form questions",
        "Models fine-tuned on insecure code give misaligned answers to unrelated free-form \
         questions.",
        &em_summary(r),
        "Betley et al.: GPT-4o insecure ~20% misaligned on the eight main questions (6% on the \
         pre-registered set), secure and educational controls ~0%. Turner et al.: Qwen2.5-32B \
         organisms ~40% EM at >99% coherence, Qwen2.5-0.5B up to 8% at 69% coherence.",
        Verdict::Measured,
    );
    s.tables = vec![group_table(r), question_table(r), lowest_table(&e.answers)];
    s.figures = vec![scatter(e, colors)?];
    s.notes = run_notes(
        &r.warnings,
        &r.definitions,
        &r.judge,
        &r.options,
        &r.seeds,
        &r.question_files,
    );
    Ok(s)
}

/// The notes a protocol section ends with (EM scores or deception labels): warnings, the
/// definitions, the judge, how answers were sampled and the question files read.
pub(crate) fn run_notes(
    warnings: &[String],
    definitions: &[String],
    judge: &EmJudge,
    o: &EmOptions,
    seeds: &str,
    files: &[Origin],
) -> Vec<String> {
    let mut notes: Vec<String> = warnings.iter().map(|w| format!("warning: {w}")).collect();
    notes.extend(definitions.iter().cloned());
    notes.push(format!(
        "judge: {} ({} parameters): {}",
        judge.name,
        judge
            .parameters
            .map_or("unknown: served over HTTP".into(), |p| p.to_string()),
        judge.description
    ));
    notes.push(format!(
        "sampling: {} answers per paraphrase, at most {} new tokens, temperature {}, base seed {}; {}",
        o.samples.map_or("the file's samples_per_paraphrase".into(), |n| n.to_string()),
        o.max_new_tokens, o.temperature, o.seed, seeds
    ));
    for f in files {
        notes.push(format!(
            "questions: {} ({} questions{})",
            f.description,
            f.records,
            f.sha256
                .as_deref()
                .map_or(String::new(), |h| format!(", sha256 {h}"))
        ));
    }
    notes
}

/// report.html of a protocol run: its section and the run's provenance.
pub fn em_report(e: &EmEvaluation, provenance: Provenance) -> Result<Report> {
    let models: Vec<&str> = e.report.models.iter().map(|m| m.name.as_str()).collect();
    let colors = ModelColors::new(&models);
    let mut summary = em_summary(&e.report);
    for w in &e.report.warnings {
        summary.push_str(&format!("\n\nWarning: {w}."));
    }
    Ok(Report::new(&format!(
        "erosion eval (emergent misalignment): {}",
        models.join(", ")
    ))
    .summary(&summary)
    .section(em_section(e, &colors)?)
    .provenance(provenance))
}
