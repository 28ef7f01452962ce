//! What a report holds: sections per finding, each with figures, tables, statistical tests
//! and a verdict. Plain serialisable data; [`super::render`] turns it into HTML.

use serde::{Deserialize, Serialize};

/// How our result compares with what the study reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Reproduced,
    Partly,
    NotReproduced,
    NotRun,
    /// Measured without a claim to test (a standalone evaluation): numbers, no verdict.
    Measured,
}

impl Verdict {
    /// The badge text.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::Partly => "partly reproduced",
            Verdict::NotReproduced => "not reproduced",
            Verdict::NotRun => "not run",
            Verdict::Measured => "measured",
        }
    }

    /// The CSS class of the badge.
    pub(crate) fn class(self) -> &'static str {
        match self {
            Verdict::Reproduced => "v-yes",
            Verdict::Partly => "v-partly",
            Verdict::NotReproduced => "v-no",
            Verdict::NotRun | Verdict::Measured => "v-none",
        }
    }
}

/// An SVG figure, inlined into the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub caption: String,
    /// The SVG document (as the `figures` module returns it).
    pub svg: String,
    /// The figure's file in the output folder, relative to the report, if saved.
    pub file: Option<String>,
}

/// A table of already formatted cells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub caption: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
    /// Confidence level in (0, 1), e.g. 0.95.
    pub level: f64,
}

/// One statistical test of a finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatTest {
    /// The test, e.g. "permutation test of across-quadrant mean cosine".
    pub name: String,
    /// The statistic's name, e.g. "mean cosine (across)".
    pub statistic_name: String,
    pub statistic: f64,
    pub p_value: Option<f64>,
    pub ci: Option<Interval>,
    /// Details: sample sizes, resamples, sidedness, null hypothesis.
    pub detail: String,
}

/// One finding of the study, tested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    pub title: String,
    /// The claim under test, in words.
    pub finding: String,
    /// What we found, in words.
    pub result: String,
    /// What the study reported, in words (quoted beside ours).
    pub study_reported: String,
    pub verdict: Verdict,
    pub figures: Vec<Figure>,
    pub tables: Vec<Table>,
    pub tests: Vec<StatTest>,
    /// Caveats, choices made (window, pooling, sign convention ...).
    pub notes: Vec<String>,
    /// Data files of the section (`.npy`, `.json`), relative to the report.
    pub files: Vec<String>,
}

impl Section {
    /// A section with its texts and verdict; figures, tables, tests, notes and files empty.
    pub fn new(
        title: &str,
        finding: &str,
        result: &str,
        study_reported: &str,
        verdict: Verdict,
    ) -> Self {
        Self {
            title: title.to_string(),
            finding: finding.to_string(),
            result: result.to_string(),
            study_reported: study_reported.to_string(),
            verdict,
            figures: Vec::new(),
            tables: Vec::new(),
            tests: Vec::new(),
            notes: Vec::new(),
            files: Vec::new(),
        }
    }
}
