//! The gated MLP: `down( act(gate(x)) * up(x) )`, with `act` SiLU (SwiGLU: Qwen, Llama) or
//! GELU's tanh approximation (GeGLU: Gemma).

use super::layers::Linear;
use super::swiglu::swiglu_fused;
use super::{ForwardMode, ForwardOptions};
use crate::config::{Activation, Config};
use crate::hooks::{HookPoint, Site};
use anyhow::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
    act: Activation,
}

impl Mlp {
    pub fn new(cfg: &Config, vb: &VarBuilder) -> Result<Self> {
        let (d, f, bias) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Mlp {
            gate_proj: Linear::new(&vb.pp("gate_proj"), d, f, bias)?,
            up_proj: Linear::new(&vb.pp("up_proj"), d, f, bias)?,
            down_proj: Linear::new(&vb.pp("down_proj"), f, d, bias)?,
            act: cfg.activation()?,
        })
    }

    /// `[b, s, d_model] -> [b, s, d_model]`, through `[b, s, d_mlp]`.
    pub fn forward(&self, x: &Tensor, layer: usize, opts: &mut ForwardOptions) -> Result<Tensor> {
        let at = |site| HookPoint::Block { layer, site };
        let gate = opts.hook(at(Site::MlpPre), self.gate_proj.forward(x)?)?;
        let up = opts.hook(at(Site::MlpPreLinear), self.up_proj.forward(x)?)?;
        let post = match self.act {
            Activation::Silu => swiglu_fused(&gate, &up)?,
            Activation::GeluTanh => (gelu_tanh(&gate, opts.mode)? * up)?,
        };
        let post = opts.hook(at(Site::MlpPost), post)?;
        self.down_proj.forward(&post)
    }
}

/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` (PyTorch's `gelu(approximate="tanh")`).
/// Fast: candle's unary op (same formula). Differentiable: plain ops, because candle's own
/// backward for it uses 6-digit constants (a gradient off by about 1e-6 relative).
pub fn gelu_tanh(x: &Tensor, mode: ForwardMode) -> Result<Tensor> {
    Ok(match mode {
        ForwardMode::Fast => x.gelu()?,
        ForwardMode::Differentiable => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let cube = (x.sqr()? * x)?;
            let inner = ((x + (cube * 0.044715)?)? * c)?;
            ((x * 0.5)? * (inner.tanh()? + 1.0)?)?
        }
    })
}
