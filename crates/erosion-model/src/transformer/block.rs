//! One decoder layer (pre-norm):
//! `mid = x + attn(ln1(x))`, `out = mid + mlp(ln2(mid))`.

use super::attention::{Attention, LayerKv};
use super::context::BatchContext;
use super::layers::RmsNorm;
use super::mlp::Mlp;
use super::ForwardOptions;
use crate::config::Config;
use crate::hooks::{HookPoint, Site};
use anyhow::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct Block {
    /// `input_layernorm`
    pub ln1: RmsNorm,
    /// `self_attn`
    pub attn: Attention,
    /// `post_attention_layernorm`
    pub ln2: RmsNorm,
    pub mlp: Mlp,
}

impl Block {
    pub fn new(cfg: &Config, vb: &VarBuilder) -> Result<Self> {
        Ok(Block {
            ln1: RmsNorm::new(&vb.pp("input_layernorm"), cfg.hidden_size, cfg.rms_norm_eps)?,
            attn: Attention::new(cfg, &vb.pp("self_attn"))?,
            ln2: RmsNorm::new(
                &vb.pp("post_attention_layernorm"),
                cfg.hidden_size,
                cfg.rms_norm_eps,
            )?,
            mlp: Mlp::new(cfg, &vb.pp("mlp"))?,
        })
    }

    /// `[b, s, d_model] -> [b, s, d_model]`
    pub fn forward(
        &self,
        x: Tensor,
        ctx: &BatchContext,
        layer: usize,
        opts: &mut ForwardOptions,
        kv: Option<&mut LayerKv>,
    ) -> Result<Tensor> {
        let at = |site| HookPoint::Block { layer, site };
        let x = opts.hook(at(Site::ResidPre), x)?;
        let h = opts.hook(at(Site::Ln1Normalized), self.ln1.forward(&x, opts.mode)?)?;
        let attn = self.attn.forward(&h, ctx, layer, opts, kv)?;
        let attn = opts.hook(at(Site::AttnOut), attn)?;
        let mid = opts.hook(at(Site::ResidMid), (x + attn)?)?;
        let h = opts.hook(at(Site::Ln2Normalized), self.ln2.forward(&mid, opts.mode)?)?;
        let mlp = self.mlp.forward(&h, layer, opts)?;
        let mlp = opts.hook(at(Site::MlpOut), mlp)?;
        opts.hook(at(Site::ResidPost), (mid + mlp)?)
    }
}
