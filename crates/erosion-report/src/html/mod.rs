//! The self-contained `report.html`: one file with inline CSS and inline SVG figures, no
//! scripts, fonts, style sheets or images loaded from anywhere.
//!
//! ```no_run
//! use erosion_report::html::{Report, Section, Verdict};
//! let report = Report::new("Re-emergent misalignment: Qwen2.5-Coder-32B")
//!     .summary("Three of four findings reproduced.")
//!     .section(Section::new(
//!         "Alignment erodes layer by layer",
//!         "The misaligned model tracks instruct early and falls toward base late.",
//!         "s_l of the misaligned model crosses below base at layer 48.",
//!         "Figure 4: misaligned drops below base in the last layers.",
//!         Verdict::Reproduced,
//!     ));
//! report.write(std::path::Path::new("out/report.html")).unwrap();
//! ```

mod escape;
mod model;
mod options;
mod render;

use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub use escape::{escape, inline_svg};
pub use model::{Figure, Interval, Section, StatTest, Table, Verdict};

use crate::provenance::Provenance;

const CSS: &str = include_str!("report.css");

/// A report: title, summary, one section per finding, then its provenance (folded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub title: String,
    /// Summary paragraphs.
    pub summary: Vec<String>,
    pub provenance: Option<Provenance>,
    pub sections: Vec<Section>,
    /// Why this run cannot support verdicts (a smoke run on a model too small to learn the
    /// behaviours): said at the top, and every badge reads "smoke run" instead of a verdict.
    #[serde(default)]
    pub smoke_run: Option<String>,
}

impl Report {
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_string(),
            summary: Vec::new(),
            provenance: None,
            sections: Vec::new(),
            smoke_run: None,
        }
    }

    /// Marks the run as a smoke run, `why` saying what keeps its verdicts from meaning
    /// anything; the sections keep their verdicts (results.json still has them).
    pub fn smoke_run(mut self, why: &str) -> Self {
        self.smoke_run = Some(why.to_string());
        self
    }

    /// Adds a summary paragraph.
    pub fn summary(mut self, text: &str) -> Self {
        self.summary.push(text.to_string());
        self
    }

    pub fn provenance(mut self, p: Provenance) -> Self {
        self.provenance = Some(p);
        self
    }

    pub fn section(mut self, s: Section) -> Self {
        self.sections.push(s);
        self
    }

    /// The page. Fails on a malformed table or a figure that is not a safe SVG document,
    /// naming it.
    pub fn to_html(&self) -> Result<String> {
        let mut h = String::with_capacity(64 * 1024);
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
             <title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{}</h1>\n",
            escape(&self.title),
            escape(&self.title)
        );
        if let Some(p) = &self.provenance {
            let commit = p
                .tool
                .git_commit
                .as_deref()
                .map(|c| format!(", commit {}", c.chars().take(12).collect::<String>()));
            let _ = writeln!(
                h,
                "<p class=\"meta\">{} {}{} \u{b7} {}</p>",
                escape(&p.tool.name),
                escape(&p.tool.version),
                escape(&commit.unwrap_or_default()),
                escape(&p.created)
            );
        }
        if let Some(why) = &self.smoke_run {
            let _ = writeln!(
                h,
                "<div class=\"smoke\" role=\"note\"><strong>Smoke run: verdicts not meaningful.</strong> {}</div>",
                escape(why)
            );
        }
        h.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n");
        for s in &self.summary {
            h.push_str(&escape::paragraphs(s));
            h.push('\n');
        }
        let smoke = self.smoke_run.is_some();
        if !self.sections.is_empty() {
            h.push_str("<table class=\"verdicts\">\n<thead><tr><th>#</th><th>Finding</th><th>Verdict</th></tr></thead>\n<tbody>\n");
            for (i, s) in self.sections.iter().enumerate() {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td><a href=\"#{}\">{}</a></td><td>{}</td></tr>",
                    i + 1,
                    render::section_id(i),
                    escape(&s.title),
                    render::badge(s.verdict, smoke)
                );
            }
            h.push_str("</tbody>\n</table>\n");
        }
        h.push_str("</section>\n");
        // Results first; provenance last, folded.
        for (i, s) in self.sections.iter().enumerate() {
            let html = render::section(i, s, smoke);
            h.push_str(&html.with_context(|| format!("section {:?}", s.title))?);
        }
        if let Some(p) = &self.provenance {
            h.push_str(&render::provenance(p)?);
        }
        h.push_str("</main>\n</body>\n</html>\n");
        Ok(h)
    }

    /// Writes the page to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let html = self.to_html()?;
        erosion_model::atomic::write_bytes_atomic(path, html.as_bytes())
    }
}
