//! Which token positions a hook records or changes.
//!
//! Positions are columns of the input as passed to the forward call (after padding: with left
//! padding the first real token of a short example is not column 0). In the KV-cache path they
//! are columns of the tokens of that call.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Positions {
    /// Every position of every example.
    #[default]
    All,
    /// The same positions in every example.
    Same(Vec<usize>),
    /// Example i: the positions `per_example[i]` (lists may differ in length).
    PerExample(Vec<Vec<usize>>),
}

impl Positions {
    /// Positions `range` in every example.
    pub fn range(range: Range<usize>) -> Self {
        Positions::Same(range.collect())
    }

    /// Example i: the positions in `windows[i]` (e.g. each example's response window).
    pub fn windows(windows: &[Range<usize>]) -> Self {
        Positions::PerExample(windows.iter().map(|r| r.clone().collect()).collect())
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Positions::All)
    }

    /// The selected `(example, position)` pairs, example-major; `None` for `All`.
    /// Errors when a position is past `seq` or the number of lists is not `batch`.
    pub fn rows(&self, batch: usize, seq: usize) -> Result<Option<Vec<(usize, usize)>>> {
        let rows: Vec<(usize, usize)> = match self {
            Positions::All => return Ok(None),
            Positions::Same(ps) => (0..batch)
                .flat_map(|b| ps.iter().map(move |&p| (b, p)))
                .collect(),
            Positions::PerExample(lists) => {
                if lists.len() != batch {
                    bail!(
                        "positions are given for {} examples but the batch has {batch}",
                        lists.len()
                    );
                }
                lists
                    .iter()
                    .enumerate()
                    .flat_map(|(b, ps)| ps.iter().map(move |&p| (b, p)))
                    .collect()
            }
        };
        if let Some(&(b, p)) = rows.iter().find(|&&(_, p)| p >= seq) {
            bail!("position {p} of example {b} is past the sequence length {seq}");
        }
        Ok(Some(rows))
    }

    /// A `[batch, seq]` u8 mask, 1 at the selected positions; `None` for `All`.
    pub fn mask(&self, batch: usize, seq: usize, device: &Device) -> Result<Option<Tensor>> {
        let Some(rows) = self.rows(batch, seq)? else {
            return Ok(None);
        };
        let mut m = vec![0u8; batch * seq];
        for (b, p) in rows {
            m[b * seq + p] = 1;
        }
        Ok(Some(Tensor::from_vec(m, (batch, seq), device)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_masks() {
        let p = Positions::windows(&[1..3, 0..1]);
        assert_eq!(p.rows(2, 4).unwrap().unwrap(), vec![(0, 1), (0, 2), (1, 0)]);
        let m = p.mask(2, 4, &Device::Cpu).unwrap().unwrap();
        assert_eq!(
            m.to_vec2::<u8>().unwrap(),
            vec![vec![0, 1, 1, 0], vec![1, 0, 0, 0]]
        );
        assert_eq!(Positions::range(2..4).rows(2, 4).unwrap().unwrap().len(), 4);
        assert!(Positions::All.rows(2, 4).unwrap().is_none());
        assert!(Positions::range(3..5).rows(1, 4).is_err());
        assert!(p.rows(3, 4).is_err());
    }
}
