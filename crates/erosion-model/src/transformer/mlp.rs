//! The gated MLP: `down( silu(gate(x)) * up(x) )`.

use super::layers::Linear;
use super::swiglu::swiglu_fused;
use super::ForwardOptions;
use crate::config::Config;
use crate::hooks::{HookPoint, Site};
use anyhow::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    pub fn new(cfg: &Config, vb: &VarBuilder) -> Result<Self> {
        let (d, f, bias) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Mlp {
            gate_proj: Linear::new(&vb.pp("gate_proj"), d, f, bias)?,
            up_proj: Linear::new(&vb.pp("up_proj"), d, f, bias)?,
            down_proj: Linear::new(&vb.pp("down_proj"), f, d, bias)?,
        })
    }

    /// `[b, s, d_model] -> [b, s, d_model]`, through `[b, s, d_mlp]`.
    pub fn forward(&self, x: &Tensor, layer: usize, opts: &mut ForwardOptions) -> Result<Tensor> {
        let at = |site| HookPoint::Block { layer, site };
        let gate = opts.hook(at(Site::MlpPre), self.gate_proj.forward(x)?)?;
        let up = opts.hook(at(Site::MlpPreLinear), self.up_proj.forward(x)?)?;
        let post = opts.hook(at(Site::MlpPost), swiglu_fused(&gate, &up)?)?;
        self.down_proj.forward(&post)
    }
}
