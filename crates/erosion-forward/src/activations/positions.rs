//! Which token positions of each example an activation dump records, as a user names them on
//! the command line (`response:10`, `last-prompt`, ...).

use anyhow::{bail, Result};
use erosion_data::Sequence;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The positions recorded in each example. A position is a token index into the rendered
/// sequence (prompt and response together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TokenPositions {
    /// `all`: every token.
    All,
    /// `prompt`: every token before the response.
    Prompt,
    /// `response`: every response token.
    Response,
    /// `response:N`: the first N response tokens (fewer when the response is shorter; the
    /// index says which rows exist).
    ResponseFirst(usize),
    /// `last`: the last token of the sequence.
    Last,
    /// `last-prompt`: the last token before the response, whose state predicts the
    /// response's first token (the usual place for a refusal probe).
    LastPrompt,
    /// `last-response`: the last response token.
    LastResponse,
}

/// The accepted spellings, for help texts and errors.
pub const POSITIONS_HELP: &str =
    "all, prompt, response, response:N (first N response tokens), last, last-prompt, last-response";

impl TokenPositions {
    /// The positions of `seq`, ascending; empty when it has none (an empty prompt for
    /// `prompt`/`last-prompt`, an empty response for the response forms).
    pub fn of(self, seq: &Sequence) -> Vec<usize> {
        let r = &seq.response;
        match self {
            TokenPositions::All => (0..seq.len()).collect(),
            TokenPositions::Prompt => (0..r.start).collect(),
            TokenPositions::Response => r.clone().collect(),
            TokenPositions::ResponseFirst(n) => (r.start..r.end.min(r.start + n)).collect(),
            TokenPositions::Last => seq.len().checked_sub(1).into_iter().collect(),
            TokenPositions::LastPrompt => r.start.checked_sub(1).into_iter().collect(),
            TokenPositions::LastResponse if r.is_empty() => Vec::new(),
            TokenPositions::LastResponse => vec![r.end - 1],
        }
    }
}

impl FromStr for TokenPositions {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "all" => TokenPositions::All,
            "prompt" => TokenPositions::Prompt,
            "response" => TokenPositions::Response,
            "last" => TokenPositions::Last,
            "last-prompt" => TokenPositions::LastPrompt,
            "last-response" => TokenPositions::LastResponse,
            other => match other.strip_prefix("response:").map(str::parse::<usize>) {
                Some(Ok(n)) if n > 0 => TokenPositions::ResponseFirst(n),
                _ => bail!("`{other}` names no token positions: use {POSITIONS_HELP}"),
            },
        })
    }
}

impl fmt::Display for TokenPositions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenPositions::All => f.write_str("all"),
            TokenPositions::Prompt => f.write_str("prompt"),
            TokenPositions::Response => f.write_str("response"),
            TokenPositions::ResponseFirst(n) => write!(f, "response:{n}"),
            TokenPositions::Last => f.write_str("last"),
            TokenPositions::LastPrompt => f.write_str("last-prompt"),
            TokenPositions::LastResponse => f.write_str("last-response"),
        }
    }
}

impl TryFrom<String> for TokenPositions {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<TokenPositions> for String {
    fn from(p: TokenPositions) -> String {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_selects_its_positions_and_reads_back_from_its_name() {
        // 3 prompt tokens, 4 response tokens, 1 end-of-turn token.
        let seq = Sequence::new((0..8).collect(), 3..7).unwrap();
        let cases = [
            ("all", (0..8).collect::<Vec<_>>()),
            ("prompt", vec![0, 1, 2]),
            ("response", vec![3, 4, 5, 6]),
            ("response:2", vec![3, 4]),
            ("response:10", vec![3, 4, 5, 6]),
            ("last", vec![7]),
            ("last-prompt", vec![2]),
            ("last-response", vec![6]),
        ];
        for (name, want) in cases {
            let p: TokenPositions = name.parse().unwrap();
            assert_eq!(p.of(&seq), want, "{name}");
            assert_eq!(p.to_string(), name);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<TokenPositions>(&json).unwrap(), p);
        }
        let no_prompt = Sequence::new(vec![1, 2], 0..2).unwrap();
        assert!(TokenPositions::LastPrompt.of(&no_prompt).is_empty());
        for bad in ["response:0", "response:x", "first", ""] {
            let err = bad.parse::<TokenPositions>().unwrap_err().to_string();
            assert!(err.contains("last-prompt"), "{bad}: {err}");
        }
    }
}
