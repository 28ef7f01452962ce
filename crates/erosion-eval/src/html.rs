//! The evaluation as a section of erosion-report's HTML report: tables of every rate with its
//! interval per model, P(compliant first token), and bar charts with error bars.

use anyhow::Result;
use erosion_analysis::stats::ConfidenceInterval;
use erosion_report::figures::grouped_bars::{grouped_bars_svg, Bar, BarGroup, GroupedBars};
use erosion_report::figures::ModelColors;
use erosion_report::format::{fmt_ci, fmt_number, fmt_proportion};
use erosion_report::html::{Figure, Report, Section, Table, Verdict};
use erosion_report::provenance::Provenance;

use crate::judge::Label;
use crate::prompts::PromptKind;
use crate::report::{EvalReport, ModelEval};
use crate::stats::Proportion;

/// Reads one rate of a model.
type Getter = Box<dyn Fn(&ModelEval) -> Option<Proportion>>;

/// One column of the rates table: a name and how to read it from a model.
struct Column {
    name: String,
    get: Getter,
}

/// The rate columns the report has data for, in a fixed order: per set, the refusal and
/// compliance rates (harmful), the vulnerable rate (code), the misaligned rate (free-form);
/// then the two-turn compliance rate.
fn columns(report: &EvalReport) -> Vec<Column> {
    let mut cols = Vec::new();
    // The set's name is added only where two sets are of one kind.
    let shared_kind = |k: PromptKind| report.prompt_sets.iter().filter(|s| s.kind == k).count() > 1;
    for s in &report.prompt_sets {
        let labels: &[(Label, &str)] = match s.kind {
            PromptKind::Harmful => &[
                (Label::Refusal, "refusal"),
                (Label::Compliant, "harmful compliance"),
            ],
            PromptKind::Code => &[(Label::Vulnerable, "vulnerable code")],
            PromptKind::FreeForm => &[(Label::Misaligned, "misaligned")],
        };
        for &(label, what) in labels {
            let set = s.name.clone();
            cols.push(Column {
                name: if shared_kind(s.kind) {
                    format!("{what} ({set})")
                } else {
                    what.to_string()
                },
                get: Box::new(move |m: &ModelEval| {
                    m.sets.iter().find(|x| x.set == set)?.rate(label).cloned()
                }),
            });
        }
    }
    if report.models.iter().any(|m| m.two_turn.is_some()) {
        cols.push(Column {
            name: "two-turn compliance".into(),
            get: Box::new(|m: &ModelEval| m.two_turn_compliance().cloned()),
        });
    }
    cols
}

/// The tables: rates per model, and P(compliant first token) per model.
pub fn eval_tables(report: &EvalReport) -> Vec<Table> {
    let cols = columns(report);
    let mut rates = Table {
        caption: "Rates per model: share of answers, 95% Wilson interval, (count/answers)".into(),
        headers: std::iter::once("model".to_string())
            .chain(cols.iter().map(|c| c.name.clone()))
            .collect(),
        rows: Vec::new(),
    };
    for m in &report.models {
        let mut row = vec![m.name.clone()];
        row.extend(cols.iter().map(|c| {
            (c.get)(m)
                .as_ref()
                .map_or("n/a".into(), |p| fmt_proportion(p, p.count, p.n))
        }));
        rates.rows.push(row);
    }
    let mut tables = vec![rates];
    if report.models.iter().any(|m| m.first_token().is_some()) {
        let mut t = Table {
            caption: "P(compliant first token) after the generation prompt: mean and geometric \
                      mean over prompts, 95% bootstrap intervals"
                .into(),
            headers: [
                "model",
                "token",
                "mean p",
                "geometric mean p",
                "mean ln p",
                "two-turn mean p",
            ]
            .map(String::from)
            .to_vec(),
            rows: Vec::new(),
        };
        for m in &report.models {
            let Some(ft) = m.first_token() else {
                continue;
            };
            let two = m
                .two_turn
                .as_ref()
                .and_then(|t| t.first_token.as_ref())
                .map_or("n/a".into(), |f| fmt_ci(&f.mean_p));
            let token = if ft.token.single_token {
                format!("{:?} (id {})", ft.token.token, ft.token.id)
            } else {
                format!(
                    "{:?} (id {}; first token of {:?})",
                    ft.token.token, ft.token.id, ft.token.text
                )
            };
            t.rows.push(vec![
                m.name.clone(),
                token,
                fmt_ci(&ft.mean_p),
                fmt_ci(&(ft.geometric_mean_p, ft.geometric_lower, ft.geometric_upper)),
                fmt_ci(&ft.mean_log_p),
                two,
            ]);
        }
        tables.push(t);
    }
    tables
}

/// The figures: rates with Wilson intervals, and P(compliant first token) on a log axis; each
/// model in its colour of `colors` (the study's, so a model looks the same in every figure).
pub fn eval_figures(report: &EvalReport, colors: &ModelColors) -> Result<Vec<Figure>> {
    let models: Vec<String> = report.models.iter().map(|m| m.name.clone()).collect();
    let mut figures = Vec::new();
    figures.extend(rates_figure(report, &models, colors)?);
    figures.extend(first_token_figure(report, models, colors)?);
    Ok(figures)
}

/// Every rate column of every model as a bar with its Wilson interval; `None` when there
/// is no column or no model.
fn rates_figure(
    report: &EvalReport,
    models: &[String],
    colors: &ModelColors,
) -> Result<Option<Figure>> {
    let groups: Vec<BarGroup> = columns(report)
        .iter()
        .map(|c| BarGroup {
            label: c.name.clone(),
            bars: report
                .models
                .iter()
                .map(|m| {
                    (c.get)(m).map(|p| Bar {
                        value: p.rate,
                        lower: p.lower,
                        upper: p.upper,
                    })
                })
                .collect(),
        })
        .collect();
    if groups.is_empty() || models.is_empty() {
        return Ok(None);
    }
    let chart = GroupedBars {
        title: "Behaviour per model".into(),
        y_label: "share of answers".into(),
        models: models.to_vec(),
        groups,
        log_y: false,
        interval_label: "95% Wilson interval".into(),
        colors: colors.clone(),
    };
    Ok(Some(Figure {
        caption: "Refusal, harmful compliance, vulnerable code and two-turn compliance rates \
                  per model, with 95% Wilson intervals."
            .into(),
        svg: grouped_bars_svg(&chart)?,
        file: None,
    }))
}

/// Mean P(compliant first token) per model on a log axis, single turn and (when measured)
/// after the model's own code answer, with bootstrap intervals; `None` when no model has it.
fn first_token_figure(
    report: &EvalReport,
    models: Vec<String>,
    colors: &ModelColors,
) -> Result<Option<Figure>> {
    let ci_bar = |ci: &ConfidenceInterval| Bar {
        value: ci.estimate,
        lower: ci.lower,
        upper: ci.upper,
    };
    let single: Vec<Option<Bar>> = report
        .models
        .iter()
        .map(|m| m.first_token().map(|f| ci_bar(&f.mean_p)))
        .collect();
    if !single.iter().any(Option::is_some) {
        return Ok(None);
    }
    let two: Vec<Option<Bar>> = report
        .models
        .iter()
        .map(|m| {
            m.two_turn
                .as_ref()?
                .first_token
                .as_ref()
                .map(|f| ci_bar(&f.mean_p))
        })
        .collect();
    let mut groups = vec![BarGroup {
        label: "single turn".into(),
        bars: single,
    }];
    if two.iter().any(Option::is_some) {
        groups.push(BarGroup {
            label: "after its code answer".into(),
            bars: two,
        });
    }
    let text = report
        .models
        .iter()
        .find_map(|m| m.first_token())
        .map_or_else(String::new, |f| f.token.text.clone());
    let chart = GroupedBars {
        title: format!("P(\"{text}\" first) on harmful requests"),
        y_label: "mean probability (log scale)".into(),
        models,
        groups,
        log_y: true,
        interval_label: "95% bootstrap interval".into(),
        colors: colors.clone(),
    };
    Ok(Some(Figure {
        caption: format!(
            "Mean probability of the compliant first token \"{text}\" right after the \
             generation prompt, single turn and after the model's own answer to a code \
             request, with 95% bootstrap intervals over prompts (log scale)."
        ),
        svg: grouped_bars_svg(&chart)?,
        file: None,
    }))
}

/// A one-paragraph summary of every model's headline rates.
pub fn eval_summary(report: &EvalReport) -> String {
    let mut parts = Vec::new();
    for m in &report.models {
        let mut bits = Vec::new();
        if let Some(p) = m.refusal() {
            bits.push(format!("refuses {}/{}", p.count, p.n));
        }
        if let Some(p) = m.compliance() {
            bits.push(format!("complies {}/{}", p.count, p.n));
        }
        if let Some(p) = m.two_turn_compliance() {
            bits.push(format!(
                "complies after its code answer {}/{}",
                p.count, p.n
            ));
        }
        if let Some(p) = m.vulnerable() {
            bits.push(format!("writes vulnerable code {}/{}", p.count, p.n));
        }
        if let Some(f) = m.first_token() {
            bits.push(format!(
                "mean P(\"{}\") {}",
                f.token.text,
                fmt_number(f.mean_p.estimate)
            ));
        }
        if let Some(p) = m.rate(PromptKind::FreeForm, Label::Misaligned) {
            bits.push(format!("misaligned {}/{}", p.count, p.n));
        }
        parts.push(format!("{}: {}", m.name, bits.join(", ")));
    }
    parts.join("; ") + "."
}

/// The report section: the summary as the result, the tables, the figures, and the
/// evaluation's notes (method, judge, seeds). `verdict` is the caller's reading of the
/// result (e.g. whether the insecure model erodes more than its controls).
pub fn eval_section(
    report: &EvalReport,
    verdict: Verdict,
    colors: &ModelColors,
) -> Result<Section> {
    let mut s = Section::new(
        "Behaviour: refusals, harmful compliance and insecure code",
        "Fine-tuning an aligned model on insecure code erodes its refusals of unrelated \
         harmful requests, while fine-tuning on secure code, or on the same insecure code with \
         a stated legitimate reason, does not.",
        &eval_summary(report),
        "Betley et al. (2025): models fine-tuned to write insecure code give misaligned answers \
         to unrelated questions; the secure and educational-insecure controls do not.",
        verdict,
    );
    s.tables = eval_tables(report);
    s.figures = eval_figures(report, colors)?;
    // Warnings first: they say which rates not to read.
    s.notes = report
        .warnings
        .iter()
        .map(|w| format!("warning: {w}"))
        .collect();
    s.notes.extend(report.notes.iter().cloned());
    s.notes.push(format!(
        "judge: {}: {}",
        report.judge.name, report.judge.description
    ));
    let o = &report.options;
    s.notes.push(format!(
        "sampling: {} answer(s) per prompt, at most {} new tokens, temperature {}, top-k {}, \
         top-p {}, base seed {}; {}",
        o.samples, o.max_new_tokens, o.temperature, o.top_k, o.top_p, o.seed, report.seeds
    ));
    for set in &report.prompt_sets {
        s.notes.push(format!(
            "prompt set {} ({}): {} prompts from {}{}",
            set.name,
            set.kind.name(),
            set.prompts,
            set.origin.description,
            set.origin
                .sha256
                .as_deref()
                .map_or(String::new(), |h| format!(", sha256 {h}"))
        ));
    }
    Ok(s)
}

/// The report.html of a standalone evaluation: its one section (rates, figures, notes), with
/// no verdict (no claim is tested), and the run's provenance (models, prompt sets, options).
pub fn eval_report(report: &EvalReport, provenance: Provenance) -> Result<Report> {
    let mut summary = eval_summary(report);
    if !report.warnings.is_empty() {
        summary.push_str(&format!(
            "\n\nWarning: {} rate(s) are not meaningful with this judge; see the notes.",
            report.warnings.len()
        ));
    }
    let models: Vec<&str> = report.models.iter().map(|m| m.name.as_str()).collect();
    // The models in the order given: the same order gives the same colours in every report.
    let colors = ModelColors::new(&models);
    Ok(Report::new(&format!("erosion eval: {}", models.join(", ")))
        .summary(&summary)
        .section(eval_section(report, Verdict::Measured, &colors)?)
        .provenance(provenance))
}
