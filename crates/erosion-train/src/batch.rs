//! A micro-batch: sequences right-padded to one length, and where the loss is read.

use crate::examples::TrainExample;
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};

pub struct MicroBatch {
    /// `[b, s]` u32, pads are 0.
    pub ids: Tensor,
    /// `[b, s]` u32 (1 = token), `None` when no sequence is padded.
    pub mask: Option<Tensor>,
    /// Rows of the flattened `[b * s, ...]` hidden states whose logits predict a target. // [n]
    pub rows: Tensor,
    /// The token each of those rows predicts. // [n]
    pub targets: Vec<u32>,
    /// Real (non-pad) tokens fed.
    pub tokens: usize,
}

impl MicroBatch {
    pub fn new(examples: &[&TrainExample], device: &Device) -> Result<Self> {
        let Some(s) = examples.iter().map(|e| e.ids.len()).max() else {
            bail!("an empty micro-batch");
        };
        let b = examples.len();
        let mut ids = vec![0u32; b * s];
        let mut mask = vec![0u32; b * s];
        let (mut rows, mut targets) = (Vec::new(), Vec::new());
        for (r, ex) in examples.iter().enumerate() {
            ids[r * s..r * s + ex.ids.len()].copy_from_slice(&ex.ids);
            mask[r * s..r * s + ex.ids.len()].fill(1);
            for (i, &t) in ex.target.iter().enumerate().skip(1) {
                if t {
                    rows.push((r * s + i - 1) as u32);
                    targets.push(ex.ids[i]);
                }
            }
        }
        let tokens = examples.iter().map(|e| e.ids.len()).sum();
        let padded = tokens < b * s;
        let n = rows.len();
        Ok(Self {
            ids: Tensor::from_vec(ids, (b, s), device)?,
            mask: padded
                .then(|| Tensor::from_vec(mask, (b, s), device))
                .transpose()?,
            rows: Tensor::from_vec(rows, n, device)?,
            targets,
            tokens,
        })
    }
}
