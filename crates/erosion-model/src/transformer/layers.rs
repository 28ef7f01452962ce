//! The two building blocks with weights: linear maps and RMS norms.

use super::frozen_product::{self, FrozenProduct};
use super::ForwardMode;
use crate::family::NormGain;
use anyhow::{Context, Result};
use candle_core::{DType, Tensor, Var, D};
use candle_nn::{Init, VarBuilder};

/// Hugging Face's initialisation for a fresh model (`initializer_range` 0.02); ignored when the
/// weights come from a checkpoint.
const INIT_WEIGHT: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

/// `y = x W^T + b (+ s (x A^T) B^T` with a LoRA adapter), W `[out, in]` as stored by
/// Hugging Face.
///
/// W is held as the transposed view of a contiguous W^T `[in, out]`, so `x W^T` reads W^T row
/// by row and gemm multiplies it without first repacking W (2-3x faster at the few rows of a
/// decoding batch, a few percent at hundreds of rows). Training makes W^T the `Var`
/// ([`Linear::train_weight`]), so the trained model and its reloaded checkpoint run the same
/// kernel on the same layout and compute the same bits.
#[derive(Debug, Clone)]
pub struct Linear {
    /// W `[out, in]`: a view of W^T `[in, out]` contiguous.
    weight: Tensor,
    pub bias: Option<Tensor>,
    /// A low-rank update trained beside the frozen weight (see `lora.rs`).
    pub lora: Option<super::LoraAdapter>,
}

impl Linear {
    pub fn new(vb: &VarBuilder, d_in: usize, d_out: usize, bias: bool) -> Result<Self> {
        let weight = vb
            .get_with_hints((d_out, d_in), "weight", INIT_WEIGHT)
            .with_context(|| format!("weight {}.weight", vb.prefix()))?;
        let bias = bias
            .then(|| vb.get_with_hints(d_out, "bias", Init::Const(0.0)))
            .transpose()
            .with_context(|| format!("weight {}.bias", vb.prefix()))?;
        Ok(Linear {
            weight: transposed_view(&weight)?,
            bias,
            lora: None,
        })
    }

    /// W `[out, in]` (a strided view).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Replaces W by `w` `[out, in]` (copied into the W^T layout).
    pub fn set_weight(&mut self, w: &Tensor) -> Result<()> {
        self.weight = transposed_view(w)?;
        Ok(())
    }

    /// Makes W^T `[in, out]` a `Var` (a copy) that the layer computes with, and returns it.
    pub fn train_weight(&mut self) -> Result<Var> {
        let var = Var::from_tensor(&self.weight.t()?)?;
        self.weight = var.as_tensor().t()?;
        Ok(var)
    }

    /// `[..., in] -> [..., out]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        let d_in = dims.pop().context("linear layer on a scalar")?;
        let x = x.contiguous()?.reshape(((), d_in))?; // [n, in]
        let wt = self.weight.t()?; // [in, out], contiguous
        let y = if frozen_product::applies(&x, &wt) {
            x.apply_op1(FrozenProduct { wt })?
        } else {
            x.matmul(&wt)?
        }; // [n, out]
        let y = match &self.lora {
            Some(lora) => (y + lora.forward(&x)?)?,
            None => y,
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        dims.push(y.dim(1)?);
        Ok(y.reshape(dims)?)
    }
}

/// `w` `[out, in]` as the transposed view of a contiguous `[in, out]` copy.
fn transposed_view(w: &Tensor) -> Result<Tensor> {
    Ok(w.t()?.contiguous()?.t()?)
}

/// `y = n * w` with `n = x / sqrt(mean(x^2) + eps)` over the last dimension
/// ([`NormGain::Weight`]: as in transformers, `n` is computed in f32 for half-precision inputs
/// and cast back before the gain), or `y = n * (1 + w)` all in f32, then cast
/// ([`NormGain::OnePlusWeight`], Gemma).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub weight: Tensor,
    eps: f64,
    gain: NormGain,
    /// f32 ones: the fused kernel's gain when it normalises a half-precision input in f32.
    ones: Tensor,
}

impl RmsNorm {
    pub fn new(vb: &VarBuilder, size: usize, eps: f64, gain: NormGain) -> Result<Self> {
        // A fresh Gemma norm starts at gain 1 too: its weight is the offset from 1.
        let init = match gain {
            NormGain::Weight => 1.0,
            NormGain::OnePlusWeight => 0.0,
        };
        let weight = vb
            .get_with_hints(size, "weight", Init::Const(init))
            .with_context(|| format!("weight {}.weight", vb.prefix()))?;
        let ones = Tensor::ones(size, DType::F32, vb.device())?;
        Ok(RmsNorm {
            weight,
            eps,
            gain,
            ones,
        })
    }

    /// `[..., size] -> [..., size]`
    pub fn forward(&self, x: &Tensor, mode: ForwardMode) -> Result<Tensor> {
        let dtype = x.dtype();
        let fused = mode == ForwardMode::Fast && dtype != DType::F64; // the kernel sums in f32
        let inner = if dtype == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        if self.gain == NormGain::OnePlusWeight {
            let gain = (self.weight.to_dtype(inner)? + 1.0)?;
            let xf = x.to_dtype(inner)?.contiguous()?;
            let y = if fused {
                candle_nn::ops::rms_norm(&xf, &gain, self.eps as f32)?
            } else {
                normalized(&xf, self.eps)?.broadcast_mul(&gain)?
            };
            return Ok(y.to_dtype(dtype)?);
        }
        Ok(match (fused, dtype) {
            (true, DType::F32) => {
                candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps as f32)?
            }
            (true, _) => candle_nn::ops::rms_norm(
                &x.to_dtype(DType::F32)?.contiguous()?,
                &self.ones,
                self.eps as f32,
            )?
            .to_dtype(dtype)?
            .broadcast_mul(&self.weight)?,
            (false, _) => normalized(&x.to_dtype(inner)?, self.eps)?
                .to_dtype(dtype)?
                .broadcast_mul(&self.weight)?,
        })
    }
}

/// `x / sqrt(mean(x^2) + eps)` over the last dimension, in plain ops (with a backward pass).
fn normalized(x: &Tensor, eps: f64) -> Result<Tensor> {
    let rms = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?;
    Ok(x.broadcast_div(&rms)?)
}
