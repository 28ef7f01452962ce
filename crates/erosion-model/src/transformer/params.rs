//! The model's weights by their Hugging Face names, and turning chosen ones into `Var`s so
//! gradients reach them.

use super::layers::Linear;
use super::matrix::Matrix;
use super::Transformer;
use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

pub(super) const LINEARS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];
const NAME_HELP: &str = "model.embed_tokens.weight, model.layers.{i}.self_attn.{q,k,v,o}_proj.{weight,bias}, \
model.layers.{i}.mlp.{gate,up,down}_proj.{weight,bias}, model.layers.{i}.{input,post_attention}_layernorm.weight \
(Gemma also {pre,post}_feedforward_layernorm), model.layers.{i}.self_attn.{q,k}_norm.weight (Qwen3, Gemma 3), \
model.norm.weight, lm_head.weight";

/// Where a named weight lives.
#[derive(Debug, Clone, Copy)]
enum Loc {
    Embed,
    Norm,
    LmHead,
    /// Layer, index into `LINEARS`, bias?
    Linear(usize, usize, bool),
    /// Layer, index into the family's `layer_norms` (= the block's `norms()`).
    LayerNorm(usize, usize),
}

impl Transformer {
    /// Every weight's name, in checkpoint order (`lm_head.weight` only when untied).
    pub fn parameter_names(&self) -> Vec<String> {
        let mut names = vec!["model.embed_tokens.weight".to_string()];
        for i in 0..self.n_layers() {
            for (j, n) in LINEARS.iter().enumerate() {
                names.push(format!("model.layers.{i}.{n}.weight"));
                let bias = match &self.stream {
                    None => linear(&self.blocks[i], j).bias.is_some(),
                    Some(s) => s.vb.contains_tensor(&format!("layers.{i}.{n}.bias")),
                };
                if bias {
                    names.push(format!("model.layers.{i}.{n}.bias"));
                }
            }
            names.extend(
                self.norm_names()
                    .iter()
                    .map(|n| format!("model.layers.{i}.{n}.weight")),
            );
        }
        names.push("model.norm.weight".into());
        if self.lm_head.is_some() {
            names.push("lm_head.weight".into());
        }
        names
    }

    /// The weight named `name` (Hugging Face naming). With tied embeddings `lm_head.weight`
    /// is `model.embed_tokens.weight`.
    pub fn parameter(&self, name: &str) -> Result<&Tensor> {
        let loc = self.locate(name)?;
        let t = match loc {
            Loc::Embed | Loc::LmHead => {
                let m = match loc {
                    Loc::Embed => &self.embed_tokens,
                    _ => self.lm_head.as_ref().unwrap_or(&self.embed_tokens),
                };
                return m.held().with_context(|| streamed_matrix(name));
            }
            Loc::Norm => Some(&self.norm.weight),
            Loc::Linear(l, j, false) => Some(linear(self.held(l), j).weight()),
            Loc::Linear(l, j, true) => linear(self.held(l), j).bias.as_ref(),
            Loc::LayerNorm(l, j) => Some(&self.held(l).norms()[j].weight),
        };
        t.with_context(|| {
            format!("the model has no `{name}` (its config gives that layer no bias)")
        })
    }

    /// An error saying the model `cannot` do something when its blocks are streamed.
    pub(super) fn resident(&self, cannot: &str) -> Result<()> {
        if self.is_streamed() {
            bail!(
                "a streamed model {cannot}: its layers are read from the checkpoint as a pass \
                 runs them (load it whole to read, set or train its weights)"
            );
        }
        Ok(())
    }

    /// Whether the model holds the weight `name` in memory ([`Transformer::parameter`] gives
    /// it): always, unless the model is streamed.
    pub fn holds(&self, name: &str) -> bool {
        self.parameter(name).is_ok()
    }

    /// Held block `l` (`locate` has checked that it is held).
    fn held(&self, l: usize) -> &super::Block {
        &self.blocks[self.held_index(l).expect("a located layer is held")]
    }

    fn held_mut(&mut self, l: usize) -> &mut super::Block {
        let i = self.held_index(l).expect("a located layer is held");
        &mut self.blocks[i]
    }

    /// The names of a layer's norms, relative to `model.layers.{i}.`.
    fn norm_names(&self) -> Vec<&'static str> {
        self.family
            .layer_norms(&self.cfg)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    fn parameter_mut(&mut self, name: &str) -> Result<&mut Tensor> {
        let loc = self.locate(name)?;
        let t = match loc {
            Loc::Embed | Loc::LmHead => {
                return (self.matrix_mut(loc).and_then(Matrix::held_mut))
                    .with_context(|| streamed_matrix(name));
            }
            Loc::Norm => Some(&mut self.norm.weight),
            Loc::Linear(_, _, false) => {
                unreachable!("a linear map's weight is set through `Linear`")
            }
            Loc::Linear(l, j, true) => linear_mut(self.held_mut(l), j).bias.as_mut(),
            Loc::LayerNorm(l, j) => Some(&mut self.held_mut(l).norms_mut().swap_remove(j).weight),
        };
        t.with_context(|| {
            format!("the model has no `{name}` (its config gives that layer no bias)")
        })
    }

    /// The embedding or unembedding matrix at `loc` (the embedding when tied).
    fn matrix_mut(&mut self, loc: Loc) -> Option<&mut Matrix> {
        match loc {
            Loc::Embed => Some(&mut self.embed_tokens),
            Loc::LmHead => Some(self.lm_head.as_mut().unwrap_or(&mut self.embed_tokens)),
            _ => None,
        }
    }

    /// Replaces a weight by a tensor of the same shape and dtype (moved to the model's device).
    /// A streamed model's embedding or unembedding so replaced (an adapter's `modules_to_save`)
    /// is held from then on.
    pub fn set_parameter(&mut self, name: &str, value: Tensor) -> Result<()> {
        let device = self.device.clone();
        let dtype = self.dtype;
        let loc = self.locate(name)?;
        let streamed = match self.matrix_mut(loc) {
            Some(Matrix::Streamed { rows, cols, .. }) => Some((*rows, *cols)),
            _ => None,
        };
        if let Some((rows, cols)) = streamed {
            if value.dims() != [rows, cols] || value.dtype() != dtype {
                bail!(
                    "`{name}` is [{rows}, {cols}] {dtype:?}; cannot set it to {:?} {:?}",
                    value.dims(),
                    value.dtype()
                );
            }
            let held = Matrix::Held(value.to_device(&device)?);
            *self.matrix_mut(loc).expect("located above") = held;
            return Ok(());
        }
        let slot = self.parameter(name)?;
        if value.dims() != slot.dims() || value.dtype() != slot.dtype() {
            bail!(
                "`{name}` is {:?} {:?}; cannot set it to {:?} {:?}",
                slot.dims(),
                slot.dtype(),
                value.dims(),
                value.dtype()
            );
        }
        let value = value.to_device(&device)?;
        if let Loc::Linear(l, j, false) = loc {
            return linear_mut(self.held_mut(l), j).set_weight(&value);
        }
        *self.parameter_mut(name)? = value;
        Ok(())
    }

    /// Makes the weight `name` a `Var` (a leaf of the autograd graph; a copy unless it already
    /// is one, e.g. when the model was built from a `VarMap`) and returns it. Gradients of a
    /// differentiable forward then reach it: `w.grad(&loss.backward()?)`. `w.set(..)`
    /// changes the model's weight in place.
    pub fn var(&mut self, name: &str) -> Result<WeightVar> {
        if let Loc::Linear(l, j, false) = self.locate(name)? {
            let var = linear_mut(self.held_mut(l), j).train_weight()?;
            return Ok(WeightVar {
                var,
                transposed: true,
            });
        }
        let slot = self.parameter_mut(name)?;
        let var = Var::from_tensor(slot)?;
        *slot = var.as_tensor().clone();
        Ok(WeightVar::plain(var))
    }

    fn locate(&self, name: &str) -> Result<Loc> {
        let loc = match name {
            "model.embed_tokens.weight" => Some(Loc::Embed),
            "model.norm.weight" => Some(Loc::Norm),
            "lm_head.weight" => Some(Loc::LmHead),
            _ => name.strip_prefix("model.layers.").and_then(|rest| {
                let (layer, leaf) = rest.split_once('.')?;
                let layer: usize = layer.parse().ok()?;
                if let Some(n) = leaf.strip_suffix(".weight") {
                    if let Some(j) = self.norm_names().iter().position(|&x| x == n) {
                        return Some(Loc::LayerNorm(layer, j));
                    }
                    return LINEARS
                        .iter()
                        .position(|&x| x == n)
                        .map(|j| Loc::Linear(layer, j, false));
                }
                let n = leaf.strip_suffix(".bias")?;
                LINEARS
                    .iter()
                    .position(|&x| x == n)
                    .map(|j| Loc::Linear(layer, j, true))
            }),
        };
        match loc {
            None => bail!("unknown weight `{name}`; weights are named {NAME_HELP}"),
            Some(Loc::Linear(l, ..) | Loc::LayerNorm(l, _)) if l >= self.n_layers() => {
                bail!("weight `{name}`: the model has {} layers", self.n_layers())
            }
            Some(loc @ (Loc::Linear(l, ..) | Loc::LayerNorm(l, _))) => {
                if self.held_index(l).is_none() {
                    self.resident(&format!("cannot give its layer weight `{name}`"))?;
                }
                Ok(loc)
            }
            Some(loc) => Ok(loc),
        }
    }
}

pub(super) fn linear(b: &super::Block, j: usize) -> &Linear {
    [
        &b.attn.q_proj,
        &b.attn.k_proj,
        &b.attn.v_proj,
        &b.attn.o_proj,
        &b.mlp.gate_proj,
        &b.mlp.up_proj,
        &b.mlp.down_proj,
    ][j]
}

pub(super) fn linear_mut(b: &mut super::Block, j: usize) -> &mut Linear {
    match j {
        0 => &mut b.attn.q_proj,
        1 => &mut b.attn.k_proj,
        2 => &mut b.attn.v_proj,
        3 => &mut b.attn.o_proj,
        4 => &mut b.mlp.gate_proj,
        5 => &mut b.mlp.up_proj,
        _ => &mut b.mlp.down_proj,
    }
}

/// Why a streamed model's embedding or unembedding `name` cannot be given.
fn streamed_matrix(name: &str) -> String {
    format!(
        "a streamed model reads `{name}` from the checkpoint as a pass needs it (load it whole \
         to read, set or train its weights)"
    )
}

/// A weight made a leaf of the autograd graph by [`Transformer::var`]: its `Var`, which holds it
/// as the model computes with it (a linear map's weight as W^T `[in, out]`, see
/// [`Linear`]), and the way back to Hugging Face's orientation.
#[derive(Debug, Clone)]
pub struct WeightVar {
    var: Var,
    transposed: bool,
}

impl WeightVar {
    /// A `Var` held as Hugging Face orients it (a LoRA factor, a norm's gain).
    pub fn plain(var: Var) -> Self {
        WeightVar {
            var,
            transposed: false,
        }
    }

    /// The `Var` itself, in the model's layout: what an element-wise optimizer updates.
    pub fn var(&self) -> &Var {
        &self.var
    }

    /// `t`, given in the `Var`'s layout, in Hugging Face's orientation (a view), or the other
    /// way round: the map is its own inverse.
    pub fn oriented(&self, t: &Tensor) -> Result<Tensor> {
        Ok(if self.transposed { t.t()? } else { t.clone() })
    }

    /// The weight, in Hugging Face's orientation.
    pub fn value(&self) -> Result<Tensor> {
        self.oriented(self.var.as_tensor())
    }

    /// Its gradient in `grads`, in Hugging Face's orientation.
    pub fn grad(&self, grads: &GradStore) -> Result<Option<Tensor>> {
        grads.get(&self.var).map(|g| self.oriented(g)).transpose()
    }

    /// Sets the weight (in place) to `value`, given in Hugging Face's orientation.
    pub fn set(&self, value: &Tensor) -> Result<()> {
        Ok(self.var.set(&self.oriented(value)?)?)
    }
}
