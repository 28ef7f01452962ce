//! One decoder layer (pre-norm), with Gemma's post-norms where the family has them:
//!
//! ```text
//! mid = x + post1(attn(ln1(x)))        post1 = ln1_post (Gemma) or identity
//! out = mid + post2(mlp(ln2(mid)))     post2 = ln2_post (Gemma) or identity
//! ```
//! Hugging Face names the norms by family: Llama/Qwen call ln2 `post_attention_layernorm`;
//! Gemma calls ln1_post that, and ln2 / ln2_post `pre_feedforward_layernorm` /
//! `post_feedforward_layernorm` ([`Norms::names`]).

use super::attention::{Attention, LayerKv};
use super::context::BatchContext;
use super::layers::RmsNorm;
use super::mlp::Mlp;
use super::ForwardOptions;
use crate::config::Config;
use crate::family::Norms;
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
    /// Gemma's `post_attention_layernorm`, on the attention output.
    pub ln1_post: Option<RmsNorm>,
    /// The norm before the MLP: `post_attention_layernorm` (Llama, Qwen) or
    /// `pre_feedforward_layernorm` (Gemma).
    pub ln2: RmsNorm,
    pub mlp: Mlp,
    /// Gemma's `post_feedforward_layernorm`, on the MLP output.
    pub ln2_post: Option<RmsNorm>,
}

impl Block {
    /// Layer `vb` (`model.layers.{i}`); `sliding` when its attention is windowed.
    pub fn new(cfg: &Config, vb: &VarBuilder, sliding: bool) -> Result<Self> {
        let family = cfg.family()?;
        let norm = |name: &str| {
            RmsNorm::new(
                &vb.pp(name),
                cfg.hidden_size,
                cfg.rms_norm_eps,
                family.norm_gain,
            )
        };
        let names = family.norms.names();
        let (ln1_post, ln2, ln2_post) = match family.norms {
            Norms::PreOnly => (None, norm(names[1])?, None),
            Norms::Sandwich => (
                Some(norm(names[1])?),
                norm(names[2])?,
                Some(norm(names[3])?),
            ),
        };
        Ok(Block {
            ln1: norm(names[0])?,
            attn: Attention::new(cfg, &vb.pp("self_attn"), sliding)?,
            ln1_post,
            ln2,
            mlp: Mlp::new(cfg, &vb.pp("mlp"))?,
            ln2_post,
        })
    }

    /// The block's RMS norms under their Hugging Face names (relative to the layer), in the
    /// order of [`Family::layer_norms`](crate::family::Family::layer_norms).
    pub fn norms(&self) -> Vec<&RmsNorm> {
        let mut norms = vec![&self.ln1];
        norms.extend(&self.ln1_post);
        norms.push(&self.ln2);
        norms.extend(&self.ln2_post);
        norms.extend(&self.attn.q_norm);
        norms.extend(&self.attn.k_norm);
        norms
    }

    /// [`Block::norms`], mutable.
    pub fn norms_mut(&mut self) -> Vec<&mut RmsNorm> {
        let mut norms = vec![&mut self.ln1];
        norms.extend(&mut self.ln1_post);
        norms.push(&mut self.ln2);
        norms.extend(&mut self.ln2_post);
        norms.extend(&mut self.attn.q_norm);
        norms.extend(&mut self.attn.k_norm);
        norms
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
        let attn = post_norm(&self.ln1_post, attn, at(Site::Ln1PostNormalized), opts)?;
        let attn = opts.hook(at(Site::AttnOut), attn)?;
        let mid = opts.hook(at(Site::ResidMid), (x + attn)?)?;
        let h = opts.hook(at(Site::Ln2Normalized), self.ln2.forward(&mid, opts.mode)?)?;
        let mlp = self.mlp.forward(&h, layer, opts)?;
        let mlp = post_norm(&self.ln2_post, mlp, at(Site::Ln2PostNormalized), opts)?;
        let mlp = opts.hook(at(Site::MlpOut), mlp)?;
        opts.hook(at(Site::ResidPost), (mid + mlp)?)
    }
}

/// A post-norm (hooked at `point`), or `x` itself when the family has none.
fn post_norm(
    norm: &Option<RmsNorm>,
    x: Tensor,
    point: HookPoint,
    opts: &mut ForwardOptions,
) -> Result<Tensor> {
    match norm {
        Some(norm) => opts.hook(point, norm.forward(&x, opts.mode)?),
        None => Ok(x),
    }
}
