//! What every layer needs besides the residual stream: rotary tables for each token's
//! position and the additive attention bias, both derived from the attention mask.
//!
//! Positions count real tokens: `position = cumsum(mask) - 1` along each row (0 for pads
//! before the first token), so a sequence gets the same positions whether it is padded on
//! the left, on the right, or not at all. Query i may attend to key j when j <= i and key j
//! is a real token; a query also always attends to itself, so the softmax row of a pad query
//! has a finite entry and never turns into NaN (pad rows are meaningless, but finite).
//!
//! Sliding-window layers get their own inputs: key j is visible to query i only when also
//! `position_i - position_j < window` (transformers' `kv_idx > q_idx - sliding_window`), and
//! their rotary tables may use another base (Gemma 3's `rope_local_base_freq`).

use super::rope::{Rope, RopeTables};
use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};

/// Rotary tables and attention bias of one batch.
#[derive(Debug, Clone)]
pub struct BatchContext {
    pub(crate) batch: usize,
    /// Query tokens in this call.
    pub(crate) seq: usize,
    /// Tokens already in the KV cache (0 without one).
    pub(crate) past: usize,
    pub(crate) positions: Vec<u32>,
    /// What full-attention layers read.
    pub(crate) global: AttentionInputs,
    /// What sliding-window layers read, when the model has any.
    pub(crate) local: Option<AttentionInputs>,
}

/// The rotary tables and attention bias one kind of layer reads.
#[derive(Debug, Clone)]
pub struct AttentionInputs {
    pub(crate) rope: RopeTables,
    /// `[batch, 1, seq, past + seq]` in the softmax dtype (f32, or f64 for f64 models): 0 where
    /// attention is allowed, -inf elsewhere.
    pub(crate) bias: Tensor,
}

/// The rotary frequencies and window of a model's sliding-window layers.
#[derive(Debug, Clone)]
pub struct LocalAttention {
    pub rope: Rope,
    pub window: usize,
}

impl BatchContext {
    pub fn batch(&self) -> usize {
        self.batch
    }
    pub fn seq(&self) -> usize {
        self.seq
    }
    /// Tokens already in the KV cache before this call (0 without one).
    pub fn past(&self) -> usize {
        self.past
    }
    /// The rotary position of each query token, row-major `[batch, seq]`.
    pub fn positions(&self) -> &[u32] {
        &self.positions
    }

    /// The inputs of a sliding-window layer (`sliding`) or a full-attention one.
    pub(crate) fn inputs(&self, sliding: bool) -> &AttentionInputs {
        match (&self.local, sliding) {
            (Some(local), true) => local,
            _ => &self.global,
        }
    }

    /// Builds the context for `seq` new tokens after `key_mask[b].len() - seq` cached ones;
    /// `key_mask[b]` covers the cached and the new tokens of example b (1 = token, 0 = pad).
    pub(crate) fn new(
        rope: &Rope,
        local: Option<&LocalAttention>,
        key_mask: &[Vec<u8>],
        seq: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let batch = key_mask.len();
        let total = key_mask.first().map_or(0, Vec::len);
        let past = total - seq;
        // Every key's position, [batch][total]; the queries are the last `seq`.
        let key_positions: Vec<Vec<u32>> = key_mask
            .iter()
            .map(|row| {
                let mut count = 0u32;
                row.iter()
                    .map(|&m| {
                        count += m as u32;
                        count.saturating_sub(1)
                    })
                    .collect()
            })
            .collect();
        let positions: Vec<u32> = key_positions
            .iter()
            .flat_map(|p| p[past..].to_vec())
            .collect();
        let inputs = |rope: &Rope, window: Option<usize>| -> Result<AttentionInputs> {
            let bias = bias(key_mask, &key_positions, past, window);
            Ok(AttentionInputs {
                rope: rope.tables(&positions, batch, seq, dtype, device)?,
                bias: Tensor::from_vec(bias, (batch, 1, seq, total), device)?
                    .to_dtype(softmax_dtype(dtype))?,
            })
        };
        Ok(BatchContext {
            batch,
            seq,
            past,
            global: inputs(rope, None)?,
            local: local.map(|l| inputs(&l.rope, Some(l.window))).transpose()?,
            positions,
        })
    }
}

/// The additive bias `[batch, seq, total]`, row-major: 0 where query i (of the last `seq`
/// keys) may see key j, -inf elsewhere (module docs).
fn bias(
    key_mask: &[Vec<u8>],
    positions: &[Vec<u32>],
    past: usize,
    window: Option<usize>,
) -> Vec<f32> {
    let total = key_mask.first().map_or(0, Vec::len);
    let mut bias = Vec::with_capacity(key_mask.len() * (total - past) * total);
    for (row, pos) in key_mask.iter().zip(positions) {
        for i in past..total {
            bias.extend((0..total).map(|j| {
                // j < i first: positions never decrease, so the difference cannot underflow.
                let in_window = || window.is_none_or(|w| ((pos[i] - pos[j]) as usize) < w);
                if j == i || (j < i && row[j] == 1 && in_window()) {
                    0f32
                } else {
                    f32::NEG_INFINITY
                }
            }));
        }
    }
    bias
}

/// Attention scores and softmax run in f32 for f32 and half-precision models (as in
/// transformers), in f64 for f64 models (used for exact gradient checks).
pub(crate) fn softmax_dtype(model_dtype: DType) -> DType {
    if model_dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// The attention mask as rows of 0/1, checked against the `[batch, seq]` of the input ids.
/// `None` means every token is real.
pub(crate) fn mask_rows(mask: Option<&Tensor>, batch: usize, seq: usize) -> Result<Vec<Vec<u8>>> {
    let Some(mask) = mask else {
        return Ok(vec![vec![1u8; seq]; batch]);
    };
    if mask.dims() != [batch, seq] {
        bail!(
            "attention mask has shape {:?} but the input ids are [{batch}, {seq}]",
            mask.dims()
        );
    }
    let rows = mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    rows.into_iter()
        .enumerate()
        .map(|(b, row)| {
            row.into_iter()
                .enumerate()
                .map(|(j, v)| match v {
                    1.0 => Ok(1u8),
                    0.0 => Ok(0u8),
                    v => bail!("attention mask [{b}, {j}] is {v}; it must be 0 (pad) or 1 (token)"),
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn positions_and_bias_from_left_and_right_padding() {
        let cfg: Config = serde_json::from_str(
            r#"{"model_type":"llama","vocab_size":8,"hidden_size":8,"intermediate_size":8,
                "num_hidden_layers":1,"num_attention_heads":2}"#,
        )
        .unwrap();
        let rope = Rope::new(&cfg);
        let rows = vec![vec![0, 0, 1, 1], vec![1, 1, 0, 0]];
        let ctx = BatchContext::new(&rope, None, &rows, 4, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(ctx.positions(), &[0, 0, 0, 1, 0, 1, 1, 1]);
        let bias = ctx
            .global
            .bias
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let allowed: Vec<u8> = bias.iter().map(|&b| (b == 0.0) as u8).collect();
        #[rustfmt::skip]
        let want = [
            1, 0, 0, 0,  0, 1, 0, 0,  0, 0, 1, 0,  0, 0, 1, 1, // left padded: pads see themselves
            1, 0, 0, 0,  1, 1, 0, 0,  1, 1, 1, 0,  1, 1, 0, 1, // right padded
        ];
        assert_eq!(allowed, want);
        // With a cache of 3 tokens and 1 new one, only the last query row is built.
        let ctx = BatchContext::new(
            &rope,
            None,
            &[vec![0, 1, 1, 1]],
            1,
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(ctx.positions(), &[2]);
        assert_eq!(ctx.global.bias.dims(), &[1, 1, 1, 4]);
    }

    #[test]
    fn a_window_counts_real_tokens() {
        // Window 2: a query sees itself and the real token before it. Left padding does not
        // shift the window; pads stay invisible.
        let rows = [vec![1, 1, 1, 1], vec![0, 1, 1, 1]];
        let pos = rows
            .iter()
            .map(|r| {
                let mut c = 0u32;
                r.iter()
                    .map(|&m| {
                        c += m as u32;
                        c.saturating_sub(1)
                    })
                    .collect()
            })
            .collect::<Vec<Vec<u32>>>();
        let allowed: Vec<u8> = bias(&rows, &pos, 0, Some(2))
            .iter()
            .map(|&b| (b == 0.0) as u8)
            .collect();
        #[rustfmt::skip]
        let want = [
            1, 0, 0, 0,  1, 1, 0, 0,  0, 1, 1, 0,  0, 0, 1, 1,
            1, 0, 0, 0,  0, 1, 0, 0,  0, 1, 1, 0,  0, 0, 1, 1,
        ];
        assert_eq!(allowed, want);
    }

    #[test]
    fn mask_must_be_binary_and_shaped_like_the_ids() {
        let m = Tensor::new(&[[1u32, 2]], &Device::Cpu).unwrap();
        assert!(mask_rows(Some(&m), 1, 2)
            .unwrap_err()
            .to_string()
            .contains("[0, 1] is 2"));
        assert!(mask_rows(Some(&m), 2, 1).is_err());
    }
}
