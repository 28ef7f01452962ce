//! The unit of work: one tokenized example with its response span.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// A tokenized example: all its token ids and which of them are the response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    pub ids: Vec<u32>,
    /// Token indices of the response (the assistant message) in `ids`.
    pub response: Range<usize>,
}

impl From<erosion_model::chat::TokenizedChat> for Sequence {
    fn from(chat: erosion_model::chat::TokenizedChat) -> Self {
        Sequence {
            ids: chat.ids,
            response: chat.response,
        }
    }
}

impl Sequence {
    /// A sequence whose response is `response`; errors when the span is not inside `ids`.
    pub fn new(ids: Vec<u32>, response: Range<usize>) -> Result<Self> {
        let seq = Sequence { ids, response };
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

    /// The response tokens, `ids[response]`.
    pub fn response_ids(&self) -> &[u32] {
        &self.ids[self.response.clone()]
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
}

/// Checks every sequence; the error names the example index.
pub(crate) fn check_all(seqs: &[Sequence]) -> Result<()> {
    for (i, s) in seqs.iter().enumerate() {
        if let Err(e) = s.check() {
            bail!("example {i}: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_checked() {
        assert!(Sequence::new(vec![1, 2, 3], 1..3).is_ok());
        assert!(Sequence::new(vec![1, 2, 3], 2..4).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let bad = 2..1;
        assert!(Sequence::new(vec![1, 2, 3], bad).is_err());
        assert!(Sequence::new(vec![], 0..0).is_err());
        let seqs = vec![
            Sequence {
                ids: vec![1],
                response: 0..1,
            },
            Sequence {
                ids: vec![1],
                response: 0..5,
            },
        ];
        let e = check_all(&seqs).unwrap_err().to_string();
        assert!(e.contains("example 1") && e.contains("0..5"), "{e}");
        assert_eq!(seqs[0].response_ids(), &[1]);
    }
}
