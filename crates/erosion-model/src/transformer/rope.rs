//! Rotary position embeddings, "rotate half" layout (Hugging Face's, not llama.cpp's
//! interleaved one).
//!
//! For head dimension d and frequency i < d/2, `inv_freq[i] = theta^(-2i/d)`; a token at
//! position p has angle `p * inv_freq[i]`, and
//! `rope(x) = x * cos(angle) + rotate_half(x) * sin(angle)` with
//! `rotate_half([x1, x2]) = [-x2, x1]` over the two halves of the head dimension.
//! Tables are computed in f32, as transformers does, and then cast to the model dtype.
//! `rope_scaling` changes the frequencies: `llama3` (below) or `linear` (all divided by
//! `factor`). Gemma 3's sliding-window layers use base `rope_local_base_freq`, unscaled.

use super::ForwardMode;
use crate::config::{Config, RopeScaling};
use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};

/// The frequencies of one model.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

/// cos / sin of every (example, position) of a batch.
#[derive(Debug, Clone)]
pub struct RopeTables {
    /// `[batch, seq, d/2]`, for the fused kernel.
    cos: Tensor,
    sin: Tensor,
    /// `[batch, 1, seq, d]` (`cat(cos, cos)`), for the composite path.
    cos2: Tensor,
    sin2: Tensor,
}

impl Rope {
    /// The frequencies of full-attention layers: base `rope_theta`, then `rope_scaling`.
    pub fn new(cfg: &Config) -> Self {
        let inv_freq = unscaled(cfg.head_dim(), cfg.rope_theta);
        let mut inv_freq: Vec<f32> = match &cfg.rope_scaling {
            Some(rs) if rs.rope_type == "llama3" => llama3(&inv_freq, rs),
            Some(rs) if rs.rope_type == "linear" => {
                inv_freq.iter().map(|f| f / rs.factor as f32).collect()
            }
            _ => inv_freq,
        };
        // A GGUF's rope_freqs: llama.cpp divides each frequency by its factor.
        for (f, factor) in inv_freq
            .iter_mut()
            .zip(cfg.rope_freq_factors.iter().flatten())
        {
            *f /= factor;
        }
        Rope { inv_freq }
    }

    /// The frequencies of sliding-window layers: [`Rope::new`]'s, unless the config gives them
    /// their own base (`rope_local_base_freq`, unscaled).
    pub fn local(cfg: &Config) -> Self {
        match cfg.rope_local_base_freq {
            Some(base) => Rope {
                inv_freq: unscaled(cfg.head_dim(), base),
            },
            None => Rope::new(cfg),
        }
    }

    /// `theta^(-2i/d)`, after rope scaling.
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// Tables for `positions` (row-major `[batch, seq]`).
    pub fn tables(
        &self,
        positions: &[u32],
        batch: usize,
        seq: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<RopeTables> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in &self.inv_freq {
                // One f32 product, as transformers' f32 matmul of [d/2, 1] x [1, seq].
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (batch, seq, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (batch, seq, half), device)?.to_dtype(dtype)?;
        let full = |t: &Tensor| Tensor::cat(&[t, t], D::Minus1)?.unsqueeze(1);
        Ok(RopeTables {
            cos2: full(&cos)?,
            sin2: full(&sin)?,
            cos,
            sin,
        })
    }
}

/// `theta^(-2i/d)` for i < d/2, in f32 as transformers computes it.
fn unscaled(d: usize, theta: f64) -> Vec<f32> {
    let theta = theta as f32;
    (0..d / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f32 / d as f32))
        .collect()
}

/// transformers' `_compute_llama3_parameters`: frequencies whose wavelength exceeds
/// `original_max_position_embeddings / low_freq_factor` are divided by `factor`; those below
/// `... / high_freq_factor` are kept; in between they are interpolated.
fn llama3(inv_freq: &[f32], rs: &RopeScaling) -> Vec<f32> {
    let factor = rs.factor as f32;
    let (low, high) = (rs.low_freq_factor as f32, rs.high_freq_factor as f32);
    let old_ctx = rs.original_max_position_embeddings as f32;
    let (low_freq_wavelen, high_freq_wavelen) = (old_ctx / low, old_ctx / high);
    inv_freq
        .iter()
        .map(|&f| {
            let wavelen = 2.0 * std::f32::consts::PI / f;
            if wavelen < high_freq_wavelen {
                f
            } else if wavelen > low_freq_wavelen {
                f / factor
            } else {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                (1.0 - smooth) * f / factor + smooth * f
            }
        })
        .collect()
}

/// Rotates `x` `[batch, heads, seq, d]` (contiguous). `Fast` uses candle's fused kernel (no
/// backward); `Differentiable` the same formula in plain ops.
pub fn apply(x: &Tensor, t: &RopeTables, mode: ForwardMode) -> Result<Tensor> {
    Ok(match mode {
        ForwardMode::Fast => candle_nn::rotary_emb::rope(&x.contiguous()?, &t.cos, &t.sin)?,
        ForwardMode::Differentiable => {
            let d = x.dim(D::Minus1)?;
            let (x1, x2) = (
                x.narrow(D::Minus1, 0, d / 2)?,
                x.narrow(D::Minus1, d / 2, d / 2)?,
            );
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            (x.broadcast_mul(&t.cos2)? + rotated.broadcast_mul(&t.sin2)?)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_branches_match_hand_values() {
        // head_dim 8, theta 500000: wavelengths 6.28, 167.4, 4461, 118900 tokens.
        let inv: Vec<f32> = (0..4)
            .map(|i| 1.0 / 500000f32.powf(2.0 * i as f32 / 8.0))
            .collect();
        let rs = RopeScaling {
            rope_type: "llama3".into(),
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 256,
        };
        let out = llama3(&inv, &rs);
        assert_eq!(out[0], inv[0]); // short wavelength: kept
        assert!((out[2] - inv[2] / 8.0).abs() < 1e-12 && (out[3] - inv[3] / 8.0).abs() < 1e-12);
        // medium: smooth = (256 / wavelen - 1) / 3 with wavelen = 2 pi / inv[1]
        let s = (256.0 * inv[1] as f64 / (2.0 * std::f64::consts::PI) - 1.0) / 3.0;
        let want = (1.0 - s) * inv[1] as f64 / 8.0 + s * inv[1] as f64;
        assert!(
            (out[1] as f64 - want).abs() < 1e-6 * want,
            "{} vs {want}",
            out[1]
        );
    }

    #[test]
    fn fused_and_composite_agree_and_rotate_by_hand() {
        let rope = Rope {
            inv_freq: vec![1.0, 0.5],
        };
        let dev = Device::Cpu;
        let t = rope
            .tables(&[0, 1, 2, 3, 4, 5], 2, 3, DType::F32, &dev)
            .unwrap();
        let x = Tensor::arange(0f32, 2. * 2. * 3. * 4., &dev)
            .unwrap()
            .reshape((2, 2, 3, 4))
            .unwrap();
        let a = apply(&x, &t, ForwardMode::Fast).unwrap();
        let b = apply(&x, &t, ForwardMode::Differentiable).unwrap();
        let diff = (a.clone() - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
        // example 1, head 0, seq 2 -> position 5; x = [32, 33, 34, 35]; pairs (32, 34), (33, 35)
        let got = a
            .get(1)
            .unwrap()
            .get(0)
            .unwrap()
            .get(2)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let (c0, s0, c1, s1) = (5f32.cos(), 5f32.sin(), 2.5f32.cos(), 2.5f32.sin());
        let want = [
            32. * c0 - 34. * s0,
            33. * c1 - 35. * s1,
            34. * c0 + 32. * s0,
            35. * c1 + 33. * s1,
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-3, "{got:?} vs {want:?}");
        }
    }
}
