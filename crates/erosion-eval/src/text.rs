//! A compact plain-text table of the headline measures, for the terminal.

use crate::judge::Label;
use crate::prompts::PromptKind;
use crate::report::EvalReport;
use erosion_report::format::fmt_ci_fixed;

/// One row per model: refusal, harmful compliance, two-turn compliance, vulnerable code,
/// misaligned (free-form), each as "rate [lower, upper]"; and the mean (geometric mean)
/// P(compliant first token). Columns without data are left out.
pub fn text_table(report: &EvalReport) -> String {
    type Get = fn(&crate::report::ModelEval) -> Option<String>;
    let first = |m: &crate::report::ModelEval| {
        m.first_token()
            .map(|f| format!("{:.4} ({:.4})", f.mean_p.estimate, f.geometric_mean_p))
    };
    let cols: Vec<(String, Get)> = vec![
        ("refuses".into(), |m| {
            m.refusal().map(|p| fmt_ci_fixed(p, 2))
        }),
        ("complies".into(), |m| {
            m.compliance().map(|p| fmt_ci_fixed(p, 2))
        }),
        ("2-turn complies".into(), |m| {
            m.two_turn_compliance().map(|p| fmt_ci_fixed(p, 2))
        }),
        ("vulnerable code".into(), |m| {
            m.vulnerable().map(|p| fmt_ci_fixed(p, 2))
        }),
        ("misaligned".into(), |m| {
            m.rate(PromptKind::FreeForm, Label::Misaligned)
                .map(|p| fmt_ci_fixed(p, 2))
        }),
    ];
    let text = report
        .models
        .iter()
        .find_map(|m| m.first_token())
        .map_or_else(
            || "first token".into(),
            |f| format!("P({:?}) mean (geo)", f.token.text),
        );
    let mut header = vec!["model".to_string()];
    let mut rows: Vec<Vec<String>> = report.models.iter().map(|m| vec![m.name.clone()]).collect();
    for (name, get) in &cols {
        let cells: Vec<Option<String>> = report.models.iter().map(get).collect();
        if cells.iter().any(Option::is_some) {
            header.push(name.clone());
            for (r, c) in rows.iter_mut().zip(cells) {
                r.push(c.unwrap_or_else(|| "-".into()));
            }
        }
    }
    let cells: Vec<Option<String>> = report.models.iter().map(first).collect();
    if cells.iter().any(Option::is_some) {
        header.push(text);
        for (r, c) in rows.iter_mut().zip(cells) {
            r.push(c.unwrap_or_else(|| "-".into()));
        }
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|j| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|r| r[j].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |r: &[String]| {
        r.iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(&header) + "\n";
    for r in &rows {
        out += &(line(r) + "\n");
    }
    out
}
