//! The unit every later stage reads: one example's token ids with its response span.

use std::ops::Range;

use anyhow::{bail, Result};
use erosion_model::chat::TokenizedChat;
use serde::{Deserialize, Serialize};

use crate::short::ShortResponse;

/// A tokenized example: all its token ids, which of them are the response, and where the
/// end-of-turn marker that closes the response sits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    pub ids: Vec<u32>,
    /// Token indices of the response (the final assistant message) in `ids`.
    pub response: Range<usize>,
    /// The end-of-turn token(s), whether or not counted in `response`; `None` when the
    /// format has none or the sequence was not rendered from a chat.
    #[serde(default)]
    pub end_of_turn: Option<Range<usize>>,
}

/// The one place a chat template's output becomes a [`Sequence`]: the chat's byte offsets and
/// boundary flags stay with the model crate's [`TokenizedChat`].
impl From<TokenizedChat> for Sequence {
    fn from(chat: TokenizedChat) -> Self {
        Sequence {
            ids: chat.ids,
            response: chat.response,
            end_of_turn: chat.end_of_turn,
        }
    }
}

impl Sequence {
    /// A sequence whose response is `response` (no end-of-turn marker); errors when the span
    /// is not inside `ids`.
    pub fn new(ids: Vec<u32>, response: Range<usize>) -> Result<Self> {
        let seq = Sequence {
            ids,
            response,
            end_of_turn: None,
        };
        seq.check()?;
        Ok(seq)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn response_len(&self) -> usize {
        self.response.len()
    }

    /// The response tokens, `ids[response]`.
    pub fn response_ids(&self) -> &[u32] {
        &self.ids[self.response.clone()]
    }

    /// Number of tokens before the response.
    pub fn prompt_len(&self) -> usize {
        self.response.start
    }

    /// Errors when `ids` is empty or the response span is not a range inside it.
    pub fn check(&self) -> Result<()> {
        let (r, n) = (&self.response, self.ids.len());
        if n == 0 {
            bail!("the sequence has no tokens");
        }
        if r.start > r.end || r.end > n {
            bail!("response span {r:?} is not inside the sequence's {n} tokens");
        }
        Ok(())
    }

    /// Checks every sequence; the error names the example index.
    pub fn check_all(seqs: &[Sequence]) -> Result<()> {
        for (i, s) in seqs.iter().enumerate() {
            if let Err(e) = s.check() {
                bail!("example {i}: {e}");
            }
        }
        Ok(())
    }

    /// The first `t` response tokens, fewer when the response is shorter:
    /// `response.start .. min(response.start + t, response.end)`.
    pub fn first_response_tokens(&self, t: usize) -> Range<usize> {
        self.response.start..(self.response.start + t).min(self.response.end)
    }

    /// The first `t` response tokens (token positions), or an error naming the example
    /// (`what`) when the response is shorter.
    pub fn window(&self, what: &dyn std::fmt::Display, t: usize) -> Result<Range<usize>> {
        if self.response_len() < t {
            bail!(
                "{what}: the response has {} tokens, fewer than the window of {t} (choose a smaller window, or truncate or skip short responses)",
                self.response_len()
            );
        }
        Ok(self.response.start..self.response.start + t)
    }

    /// The first `t` response tokens under a policy: `None` when skipped.
    pub fn window_with(
        &self,
        what: &dyn std::fmt::Display,
        t: usize,
        policy: ShortResponse,
    ) -> Result<Option<Range<usize>>> {
        policy.check_per_example()?;
        match policy {
            _ if self.response_len() >= t => Ok(Some(self.response.start..self.response.start + t)),
            ShortResponse::Error => self.window(what, t).map(Some),
            ShortResponse::UseAvailable => Ok(Some(self.response.clone())),
            ShortResponse::Skip | ShortResponse::TruncateToShortest => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(ids: Vec<u32>, response: Range<usize>) -> Sequence {
        Sequence {
            ids,
            response,
            end_of_turn: None,
        }
    }

    #[test]
    fn spans_are_checked() {
        assert!(Sequence::new(vec![1, 2, 3], 1..3).is_ok());
        assert!(Sequence::new(vec![1, 2, 3], 2..4).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let bad = 2..1;
        assert!(Sequence::new(vec![1, 2, 3], bad).is_err());
        assert!(Sequence::new(vec![], 0..0).is_err());
        let seqs = vec![seq(vec![1], 0..1), seq(vec![1], 0..5)];
        let e = Sequence::check_all(&seqs).unwrap_err().to_string();
        assert!(e.contains("example 1") && e.contains("0..5"), "{e}");
        assert_eq!(seqs[0].response_ids(), &[1]);
    }

    #[test]
    fn windows_follow_the_policy() {
        let s = seq(vec![1, 2, 3, 4], 1..3);
        assert_eq!(s.first_response_tokens(5), 1..3);
        assert_eq!(s.first_response_tokens(1), 1..2);
        assert_eq!(
            s.window_with(&"x", 2, ShortResponse::Error).unwrap(),
            Some(1..3)
        );
        assert!(s.window_with(&"x", 3, ShortResponse::Error).is_err());
        assert_eq!(s.window_with(&"x", 3, ShortResponse::Skip).unwrap(), None);
        assert_eq!(
            s.window_with(&"x", 3, ShortResponse::UseAvailable).unwrap(),
            Some(1..3)
        );
        assert!(s
            .window_with(&"x", 3, ShortResponse::TruncateToShortest)
            .is_err());
    }
}
