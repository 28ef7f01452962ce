//! Training sequences: token ids and the positions whose next token is predicted with loss.

use anyhow::{bail, Result};
use erosion_data::{RenderedExample, Sequence};
use serde::{Deserialize, Serialize};

/// Which tokens of a chat carry loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossOn {
    /// The assistant's response and its end-of-turn token (supervised fine-tuning).
    #[default]
    Response,
    /// Every token after the first (pre-training).
    All,
}

/// What cutting examples to a length cut.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cut {
    /// Examples longer than the length.
    pub examples: usize,
    /// Tokens of the longest of them.
    pub longest: usize,
    /// Tokens carrying loss that were cut off.
    pub targets_lost: usize,
}

/// One sequence. `target[i]` says whether token `i` is predicted with loss (from the logits
/// at position `i - 1`); `target[0]` is always false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainExample {
    pub ids: Vec<u32>,
    pub target: Vec<bool>,
}

impl TrainExample {
    /// Every token after the first carries loss.
    pub fn all_tokens(ids: Vec<u32>) -> Self {
        let target = (0..ids.len()).map(|i| i > 0).collect();
        Self { ids, target }
    }

    /// A rendered chat: loss on the response and its end-of-turn token(s), or on everything.
    pub fn from_rendered(r: &RenderedExample, on: LossOn) -> Self {
        match on {
            LossOn::All => Self::all_tokens(r.seq.ids.clone()),
            LossOn::Response => Self::response(r.seq.clone()),
        }
    }

    /// Loss on `ids[response]` and on the end-of-turn tokens that close it (so the model
    /// learns to stop).
    pub fn response(seq: Sequence) -> Self {
        let Sequence {
            ids,
            response,
            end_of_turn,
        } = seq;
        let end = end_of_turn.map_or(response.end, |e| e.end.max(response.end));
        let target = (0..ids.len())
            .map(|i| i > 0 && i >= response.start && i < end)
            .collect();
        Self { ids, target }
    }

    /// Tokens that carry loss.
    pub fn n_targets(&self) -> usize {
        self.target.iter().filter(|&&t| t).count()
    }

    /// Cuts the sequence to `max_len` tokens (the loss on the cut tail is lost with it).
    pub fn truncated(mut self, max_len: usize) -> Self {
        self.ids.truncate(max_len);
        self.target.truncate(max_len);
        self
    }

    /// [`Self::truncated`], counting what it cut in `cut` (for the caller to report: a cut
    /// that nobody hears of changes what was trained).
    pub fn truncated_counted(self, max_len: usize, cut: &mut Cut) -> Self {
        if self.ids.len() > max_len {
            cut.examples += 1;
            cut.longest = cut.longest.max(self.ids.len());
            cut.targets_lost += self.target[max_len..].iter().filter(|&&t| t).count();
        }
        self.truncated(max_len)
    }

    pub fn check(&self, what: &str) -> Result<()> {
        if self.ids.len() != self.target.len() {
            bail!(
                "{what}: {} ids but {} target flags",
                self.ids.len(),
                self.target.len()
            );
        }
        if self.n_targets() == 0 {
            bail!("{what}: no token carries loss (an empty response, or cut by max_seq_len?)");
        }
        Ok(())
    }
}

/// Refuses examples longer than `max_len` (the trainer's `max_seq_len`): the trainer does not
/// cut them itself, since a cut loses loss tokens its caller must report
/// ([`TrainExample::truncated_counted`] counts them). Names how many and the longest.
pub fn check_lengths(data: &[TrainExample], max_len: usize) -> Result<()> {
    let long: Vec<(usize, usize)> = data
        .iter()
        .enumerate()
        .filter(|(_, ex)| ex.ids.len() > max_len)
        .map(|(i, ex)| (i, ex.ids.len()))
        .collect();
    if let Some(&(i, len)) = long.iter().max_by_key(|&&(_, len)| len) {
        bail!(
            "{} training examples are longer than max_seq_len = {max_len} (the longest, example \
             {i}, has {len} tokens): cut them first with TrainExample::truncated_counted and \
             report the cut, or raise max_seq_len",
            long.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_past_max_seq_len_are_refused_with_their_count() {
        let data = vec![
            TrainExample::all_tokens(vec![1, 2, 3]),
            TrainExample::all_tokens((0..9).collect()),
            TrainExample::all_tokens((0..6).collect()),
        ];
        assert!(check_lengths(&data, 9).is_ok());
        let msg = check_lengths(&data, 4).unwrap_err().to_string();
        assert!(
            msg.contains("2 training examples are longer than max_seq_len = 4")
                && msg.contains("example 1, has 9 tokens"),
            "{msg}"
        );
    }

    #[test]
    fn cutting_counts_the_examples_and_the_loss_tokens_it_drops() {
        let mut cut = Cut::default();
        let short = TrainExample::all_tokens(vec![1, 2, 3]).truncated_counted(4, &mut cut);
        let long = TrainExample::all_tokens((0..10).collect()).truncated_counted(4, &mut cut);
        assert_eq!((short.ids.len(), long.ids.len()), (3, 4));
        let want = Cut {
            examples: 1,
            longest: 10,
            targets_lost: 6,
        };
        assert_eq!(cut, want);
    }
}
