//! Causal self-attention with grouped-query heads and rotary positions.
//!
//! ```text
//! q = x Wq^T (+bq)  [b, s, Hq, d]     k, v = x Wk^T, x Wv^T (+b)  [b, s, Hkv, d]
//! q, k = rope(q), rope(k)
//! A = softmax(q k^T / sqrt(d) + bias)  [b, Hq, s, s_k]   (query head h reads kv head h / (Hq/Hkv))
//! z = A v  [b, s, Hq, d]              out = z Wo^T (+bo)  [b, s, d_model]
//! ```
//! The scores and the softmax are computed in f32 for half-precision models (transformers does
//! the same; f64 models stay in f64), then cast back before multiplying the values.

use super::context::{softmax_dtype, BatchContext};
use super::layers::Linear;
use super::softmax::attention_softmax;
use super::{rope, ForwardOptions};
use crate::config::Config;
use crate::hooks::{HookPoint, Site};
use anyhow::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

/// Keys (after RoPE) and values of the tokens seen so far, `[b, Hkv, s_past, d]`.
#[derive(Debug, Clone, Default)]
pub struct LayerKv {
    pub(crate) k: Option<Tensor>,
    pub(crate) v: Option<Tensor>,
}

impl Attention {
    pub fn new(cfg: &Config, vb: &VarBuilder) -> Result<Self> {
        let (d, hq, hk, hd) = (
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.num_kv_heads(),
            cfg.head_dim(),
        );
        Ok(Attention {
            q_proj: Linear::new(&vb.pp("q_proj"), d, hq * hd, cfg.qkv_bias())?,
            k_proj: Linear::new(&vb.pp("k_proj"), d, hk * hd, cfg.qkv_bias())?,
            v_proj: Linear::new(&vb.pp("v_proj"), d, hk * hd, cfg.qkv_bias())?,
            o_proj: Linear::new(&vb.pp("o_proj"), hq * hd, d, cfg.o_bias())?,
            n_heads: hq,
            n_kv_heads: hk,
            head_dim: hd,
        })
    }

    /// `x` `[b, s, d_model]` -> `[b, s, d_model]`. With `kv`, the new keys and values are
    /// appended to it and the queries attend to everything cached.
    pub fn forward(
        &self,
        x: &Tensor,
        ctx: &BatchContext,
        layer: usize,
        opts: &mut ForwardOptions,
        kv: Option<&mut LayerKv>,
    ) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let (hq, hk, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let at = |site| HookPoint::Block { layer, site };
        let q = opts.hook(
            at(Site::Q),
            self.q_proj.forward(x)?.reshape((b, s, hq, hd))?,
        )?;
        let k = opts.hook(
            at(Site::K),
            self.k_proj.forward(x)?.reshape((b, s, hk, hd))?,
        )?;
        let v = opts.hook(
            at(Site::V),
            self.v_proj.forward(x)?.reshape((b, s, hk, hd))?,
        )?;
        let q = rope::apply(&q.transpose(1, 2)?.contiguous()?, &ctx.rope, opts.mode)?; // [b, Hq, s, d]
        let k = rope::apply(&k.transpose(1, 2)?.contiguous()?, &ctx.rope, opts.mode)?; // [b, Hkv, s, d]
        let v = v.transpose(1, 2)?.contiguous()?;
        // The rotated views are hooked in the [b, s, H, d] layout of the other per-head hooks.
        let q = opts.hook_transposed(at(Site::RotQ), q)?;
        let k = opts.hook_transposed(at(Site::RotK), k)?;

        let (k, v) = match kv {
            None => (k, v),
            Some(cache) => {
                let (k, v) = match (&cache.k, &cache.v) {
                    (Some(pk), Some(pv)) => {
                        (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?)
                    }
                    _ => (k, v),
                };
                cache.k = Some(k.clone());
                cache.v = Some(v.clone());
                (k, v)
            }
        };
        let sk = k.dim(2)?;

        // Query heads grouped by the kv head they read: [b, Hkv, (Hq/Hkv) * s, d], so keys and
        // values are used as they are instead of being repeated per query head.
        let group = hq / hk;
        let scores = q.reshape((b, hk, group * s, hd))?.matmul(&k.t()?)?;
        let scale = (hd as f64).powf(-0.5);
        let scores = scores.reshape((b, hq, s, sk))?;
        // Half-precision scores are scaled before the cast to f32, as transformers does.
        let (scores, scale) = match softmax_dtype(x.dtype()) {
            dt if dt == x.dtype() => (scores, scale),
            dt => ((scores * scale)?.to_dtype(dt)?, 1.0),
        };
        let pattern = attention_softmax(&scores, &ctx.bias, scale, opts.mode)?;
        let pattern = opts.hook(at(Site::Pattern), pattern.to_dtype(x.dtype())?)?; // [b, Hq, s, sk]
        let z = pattern
            .reshape((b, hk, group * s, sk))?
            .matmul(&v)?
            .reshape((b, hq, s, hd))?
            .transpose(1, 2)?
            .contiguous()?; // [b, s, Hq, d]
        let z = opts.hook(at(Site::Z), z)?;
        self.o_proj.forward(&z.reshape((b, s, hq * hd))?)
    }
}
