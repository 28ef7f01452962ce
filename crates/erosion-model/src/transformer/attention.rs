//! Causal self-attention with grouped-query heads and rotary positions.
//!
//! ```text
//! q = x Wq^T (+bq)  [b, s, Hq, d]     k, v = x Wk^T, x Wv^T (+b)  [b, s, Hkv, d]
//! q, k = rmsnorm(q), rmsnorm(k)   over d, per head (Qwen3, Gemma 3 only)
//! q, k = rope(q), rope(k)
//! scores = q k^T * scale           scale = d^-1/2, or query_pre_attn_scalar^-1/2 (Gemma)
//! scores = c tanh(scores / c)      (attn_logit_softcapping c: Gemma 2 only)
//! A = softmax(scores + bias)  [b, Hq, s, s_k]   (query head h reads kv head h / (Hq/Hkv))
//! z = A v  [b, s, Hq, d]              out = z Wo^T (+bo)  [b, s, d_model]
//! ```
//! A sliding-window layer reads the context's local inputs (its window's bias, and its RoPE
//! base where the family has one).
//! The scores and the softmax are computed in f32 for half-precision models (transformers does
//! the same; f64 models stay in f64), then cast back before multiplying the values.
//! On CPU in f32 and f64 (uncapped, pattern not hooked) the same is computed by blocks of
//! queries over only the keys they see, without forming A (block_attention/).

use super::context::{softmax_dtype, BatchContext};
use super::layers::{Linear, RmsNorm};
use super::softmax::attention_softmax;
use super::{block_attention, rope, ForwardOptions};
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
    /// `self_attn.q_norm` / `k_norm` `[head_dim]` (Qwen3, Gemma 3).
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    scale: f64,
    softcap: Option<f64>,
    /// Whether this layer attends within the sliding window.
    sliding: bool,
}

/// Keys (after RoPE) and values of the tokens seen so far, `[b, Hkv, s_past, d]`.
#[derive(Debug, Clone, Default)]
pub struct LayerKv {
    pub(crate) k: Option<Tensor>,
    pub(crate) v: Option<Tensor>,
}

impl Attention {
    /// The attention of a layer; `sliding` when it attends within the sliding window.
    pub fn new(cfg: &Config, vb: &VarBuilder, sliding: bool) -> Result<Self> {
        let (d, hq, hk, hd) = (
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.num_kv_heads(),
            cfg.head_dim(),
        );
        let family = cfg.family()?;
        let qk_norm = |name: &str| {
            family
                .qk_norm
                .then(|| RmsNorm::new(&vb.pp(name), hd, cfg.rms_norm_eps, family.norm_gain))
                .transpose()
        };
        Ok(Attention {
            q_norm: qk_norm("q_norm")?,
            k_norm: qk_norm("k_norm")?,
            scale: cfg.query_pre_attn_scalar.unwrap_or(hd as f64).powf(-0.5),
            softcap: cfg.attn_logit_softcapping,
            sliding,
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
        let (q, k) = match (&self.q_norm, &self.k_norm) {
            (Some(qn), Some(kn)) => (
                opts.hook(at(Site::QNormed), qn.forward(&q, opts.mode)?)?,
                opts.hook(at(Site::KNormed), kn.forward(&k, opts.mode)?)?,
            ),
            _ => (q, k),
        };
        let inputs = ctx.inputs(self.sliding);
        let q = rope::apply(&q.transpose(1, 2)?.contiguous()?, &inputs.rope, opts.mode)?; // [b, Hq, s, d]
        let k = rope::apply(&k.transpose(1, 2)?.contiguous()?, &inputs.rope, opts.mode)?; // [b, Hkv, s, d]
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
        // The block kernel where it applies: scores in the model's dtype and uncapped, no hook
        // on the pattern (it never forms there).
        let blocked = if self.softcap.is_none()
            && softmax_dtype(x.dtype()) == x.dtype()
            && !opts.is_active(at(Site::Pattern))
        {
            block_attention::attend(&q, &k, &v, &inputs.bias, self.scale)?
        } else {
            None
        };
        let z = match blocked {
            Some(z) => z,
            None => self.full(&q, &k, &v, &inputs.bias, layer, opts)?,
        }; // [b, s, Hq, d]
        let z = opts.hook(at(Site::Z), z)?;
        self.o_proj.forward(&z.reshape((b, s, hq * hd))?)
    }

    /// z through the whole `[b, Hq, s, s_k]` pattern (hooked at `attn.hook_pattern`).
    fn full(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: &Tensor,
        layer: usize,
        opts: &mut ForwardOptions,
    ) -> Result<Tensor> {
        let (b, hq, s, hd) = q.dims4()?;
        let (hk, sk) = (k.dim(1)?, k.dim(2)?);
        // Query heads grouped by the kv head they read: [b, Hkv, (Hq/Hkv) * s, d], so keys and
        // values are used as they are instead of being repeated per query head.
        let group = hq / hk;
        let scores = q.reshape((b, hk, group * s, hd))?.matmul(&k.t()?)?;
        let scores = scores.reshape((b, hq, s, sk))?;
        // Half-precision scores are scaled (and capped) before the cast to f32, as
        // transformers does.
        let dtype = q.dtype();
        let (scores, scale) = match (self.softcap, softmax_dtype(dtype)) {
            (None, dt) if dt == dtype => (scores, self.scale),
            (None, dt) => ((scores * self.scale)?.to_dtype(dt)?, 1.0),
            (Some(cap), dt) => {
                let scaled = (scores * (self.scale / cap))?;
                ((scaled.tanh()? * cap)?.to_dtype(dt)?, 1.0)
            }
        };
        let pattern = attention_softmax(&scores, bias, scale, opts.mode)?;
        let at = HookPoint::Block {
            layer,
            site: Site::Pattern,
        };
        let pattern = opts.hook(at, pattern.to_dtype(dtype)?)?; // [b, Hq, s, sk]
        Ok(pattern
            .reshape((b, hk, group * s, sk))?
            .matmul(v)?
            .reshape((b, hq, s, hd))?
            .transpose(1, 2)?
            .contiguous()?)
    }
}
