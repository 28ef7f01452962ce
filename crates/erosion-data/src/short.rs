//! What to do when a response is shorter than the window an analysis reads.
//!
//! One policy for every stage: rendering ([`crate::Sequence::window_with`]), recorded
//! activation windows and gradient losses (erosion-forward), and the loss vectors and pooled
//! windows of the analyses (erosion-analysis).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// What to do with a response shorter than the window of T tokens.
///
/// Spelled in TOML and JSON as `error`, `skip`, `use_available`, `truncate_to_shortest`; the
/// older spellings `truncate` and `pad_zeros` (and kebab-case forms) still parse as
/// `use_available`, which is what they meant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShortResponse {
    /// Refuse, naming the example and the counts.
    #[default]
    Error,
    /// Leave the example out (callers list the ones left out).
    Skip,
    /// Use the response tokens there are. Where a fixed length is needed (loss vectors,
    /// flattened windows) the missing positions are zeros; an example with no token at all
    /// is still skipped or refused, as each stage documents.
    #[serde(
        alias = "truncate",
        alias = "pad_zeros",
        alias = "use-available",
        alias = "pad-zeros"
    )]
    UseAvailable,
    /// Cut T to the shortest response of the whole set, so every example has T' tokens. A
    /// policy over a set of examples: stages that see one example at a time refuse it.
    #[serde(alias = "truncate-to-shortest")]
    TruncateToShortest,
}

/// The spelling of STUDY.toml and results.json (`use_available`), for reports and messages.
impl std::fmt::Display for ShortResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ShortResponse::Error => "error",
            ShortResponse::Skip => "skip",
            ShortResponse::UseAvailable => "use_available",
            ShortResponse::TruncateToShortest => "truncate_to_shortest",
        })
    }
}

impl ShortResponse {
    /// Errors for [`ShortResponse::TruncateToShortest`], which needs the whole set: a stage
    /// that reads one example at a time calls this first.
    pub fn check_per_example(self) -> Result<()> {
        if self == ShortResponse::TruncateToShortest {
            bail!(
                "the short-response policy truncate_to_shortest needs every example's length; \
                 here examples are read one at a time (choose error, skip or use_available)"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_as_spelled_in_study_files() {
        for p in [
            ShortResponse::Error,
            ShortResponse::Skip,
            ShortResponse::UseAvailable,
            ShortResponse::TruncateToShortest,
        ] {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{p}\""));
        }
    }

    #[derive(Deserialize)]
    struct Holder {
        short: ShortResponse,
    }

    fn parse(s: &str) -> ShortResponse {
        toml::from_str::<Holder>(&format!("short = \"{s}\""))
            .unwrap()
            .short
    }

    #[test]
    fn every_spelling_in_use_parses() {
        use ShortResponse::*;
        for (s, want) in [
            ("error", Error),
            ("skip", Skip),
            ("use_available", UseAvailable),
            ("truncate", UseAvailable),
            ("pad_zeros", UseAvailable),
            ("pad-zeros", UseAvailable),
            ("truncate_to_shortest", TruncateToShortest),
            ("truncate-to-shortest", TruncateToShortest),
        ] {
            assert_eq!(parse(s), want, "{s}");
        }
        assert_eq!(
            serde_json::to_string(&UseAvailable).unwrap(),
            "\"use_available\""
        );
        assert!(TruncateToShortest.check_per_example().is_err());
        assert!(Skip.check_per_example().is_ok());
    }
}
