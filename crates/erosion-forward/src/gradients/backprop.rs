//! One example's gradient: the lower blocks without a graph (batched), the upper ones with
//! one (alone), and the unembedding handled in closed form.
//!
//! ```text
//! x_s = Blocks_{0..s}(embed(ids))          Fast kernels, no graph, detached   [b, len, d]
//! h   = norm(Blocks_{s..L}(x_s))[J - 1]    Differentiable, per example        [n_t, d]
//! logits = h W_U^T;  G = d loss / d logits  (closed form, loss.rs)            [n_t, vocab]
//! d loss / d h = G W_U                                                        [n_t, d]
//! backward of  sum(h * stopgrad(d loss / d h))  ->  d loss / d theta   for theta above s
//! d loss / d W_U = G^T h                    only when W_U is chosen           [vocab, d]
//! ```
//! The surrogate `sum(h * g)` has gradient g at h, so backpropagating it gives exactly the
//! loss's gradient upstream of h, without a graph through the vocabulary-sized logits.
//! Only tokens `0..max(J) - 1` are fed (causal attention: later tokens cannot change the
//! hidden states the loss reads).

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};
use erosion_model::transformer::{ForwardOptions, Transformer, WeightVar};
use std::ops::Range;

use super::loss::{cross_entropy, LossSpec};
use super::params::{stage, GradientLayout, ParamSelection, Stage};

/// One example's loss and flattened gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleGradient {
    /// The reduced loss (mean or sum of `per_token`).
    pub loss: f64,
    /// Cross-entropy of each target token, in order. // [n_tokens]
    pub per_token: Vec<f64>,
    /// d loss / d theta in the layout's order. // [layout.dim]
    pub grad: Vec<f32>,
}

/// Computes per-example gradients of a [`LossSpec`] with respect to chosen weights of a model.
///
/// Holds a working copy of the model (its tensors are shared, not copied) in which every
/// weight is detached from any graph and the chosen ones are fresh `Var`s (copies): gradients
/// flow to nothing else, and the caller's model is untouched. A streamed model's copy holds
/// the blocks from the first chosen one on and the unembedding; the lower blocks stay in the
/// files and are read as each batch's lower part runs.
pub struct GradientComputer {
    model: Transformer,
    /// The chosen weights, in layout order.
    vars: Vec<WeightVar>,
    layout: GradientLayout,
    /// Blocks `start..` run with a graph.
    start: usize,
    /// The embedding lookup is differentiated (the embedding matrix is chosen).
    embed_in_graph: bool,
    /// The unembedding matrix (detached) `[vocab, d]`.
    unembed: Tensor,
    /// Index in `vars` of the unembedding matrix when it is chosen (`lm_head.weight`, or the
    /// tied `model.embed_tokens.weight`): its gradient gets the closed-form G^T h term.
    unembed_var: Option<usize>,
    loss: LossSpec,
}

impl GradientComputer {
    pub fn new(model: &Transformer, params: &ParamSelection, loss: LossSpec) -> Result<Self> {
        let names = params.resolve(model)?;
        let first = names.iter().map(|n| stage(n)).min().unwrap_or(Stage::Head);
        let (start, embed_in_graph) = match first {
            Stage::Embed => (0, true),
            Stage::Layer(l) => (l, false),
            Stage::Head => (model.n_layers(), false),
        };
        let tied = !model
            .parameter_names()
            .iter()
            .any(|n| n == "lm_head.weight");
        let unembed_name = if tied {
            "model.embed_tokens.weight"
        } else {
            "lm_head.weight"
        };
        let mut work = model.clone();
        let unembed = work.unembedding()?.detach();
        if work.is_streamed() {
            if embed_in_graph {
                bail!(
                    "a streamed model reads its embedding row by row, so gradients cannot \
                     reach it: load the model whole (no --stream-layers / stream_layers)"
                );
            }
            work.hold_layers_from(start)?;
            if names.iter().any(|n| n == unembed_name) {
                work.set_parameter(unembed_name, unembed.clone())?;
            }
        }
        for name in work.parameter_names() {
            // A VarMap-built model's weights are Vars: detach them all so that only the
            // chosen ones are leaves of the graph. (A streamed model's lower blocks are read
            // from the files, detached.)
            if work.holds(&name) {
                let t = work.parameter(&name)?.detach();
                work.set_parameter(&name, t)?;
            }
        }
        let layout = GradientLayout::new(&work, &names)?;
        let vars = names
            .iter()
            .map(|n| work.var(n))
            .collect::<Result<Vec<_>>>()?;
        let unembed_var = names.iter().position(|n| n == unembed_name);
        Ok(GradientComputer {
            model: work,
            vars,
            layout,
            start,
            embed_in_graph,
            unembed,
            unembed_var,
            loss,
        })
    }

    pub fn layout(&self) -> &GradientLayout {
        &self.layout
    }
    pub fn dim(&self) -> usize {
        self.layout.dim
    }
    pub fn loss_spec(&self) -> &LossSpec {
        &self.loss
    }
    pub(crate) fn model_vocab(&self) -> usize {
        self.model.config().vocab_size
    }
    /// Blocks from this one on are run with a graph (the model's layer count when only the
    /// final norm or the unembedding is chosen).
    pub fn first_differentiable_layer(&self) -> usize {
        self.start
    }

    /// The lower part for a group of examples, each fed `ids` (already cut to what its loss
    /// needs): right-padded into one batch, run through the embedding and blocks `0..start`
    /// with the fused kernels and no graph. Returns each example's rows `[1, len, d]`, or
    /// `None` when the embedding itself is differentiated.
    pub(crate) fn lower(&self, inputs: &[&[u32]]) -> Result<Option<Vec<Tensor>>> {
        if self.embed_in_graph || inputs.is_empty() {
            return Ok(None);
        }
        let m = &self.model;
        let len = inputs.iter().map(|s| s.len()).max().unwrap_or(0);
        let b = inputs.len();
        let (mut ids, mut mask) = (Vec::with_capacity(b * len), Vec::with_capacity(b * len));
        for s in inputs {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(0u32, len - s.len()));
            mask.extend(std::iter::repeat_n(1u32, s.len()));
            mask.extend(std::iter::repeat_n(0u32, len - s.len()));
        }
        let dev = m.device();
        let ids = Tensor::from_vec(ids, (b, len), dev)?;
        let padded = inputs.iter().any(|s| s.len() < len);
        let mask = Tensor::from_vec(mask, (b, len), dev)?;
        let ctx = m.context(padded.then_some(&mask), b, len)?;
        let mut fast = ForwardOptions::fast();
        let x = m.embed(&ids, &mut fast)?;
        let x = m.run_layers(x, 0..self.start, &ctx, &mut fast)?.detach(); // [b, len, d]
        inputs
            .iter()
            .enumerate()
            .map(|(i, s)| Ok(x.narrow(0, i, 1)?.narrow(1, 0, s.len())?.contiguous()?))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// The gradient of one example whose loss reads target tokens `tokens` of `ids`, from its
    /// lower-part rows `x_lower` `[1, tokens.end - 1, d]` (from [`Self::lower`]; `None` when
    /// the embedding is differentiated).
    pub(crate) fn upper(
        &self,
        ids: &[u32],
        tokens: Range<usize>,
        x_lower: Option<Tensor>,
    ) -> Result<ExampleGradient> {
        let m = &self.model;
        if tokens.start == 0 || tokens.is_empty() || tokens.end > ids.len() {
            bail!(
                "target tokens {tokens:?} of a {}-token example: need 1 <= start < end <= len",
                ids.len()
            );
        }
        let len = tokens.end - 1; // the last target is predicted from tokens 0..len
        let n_t = tokens.len();
        let mut diff = ForwardOptions::differentiable();
        let ctx = m.context(None, 1, len)?;
        let x = self.upper_input(&ids[..len], x_lower, &mut diff)?;
        let x = m.run_layers(x, self.start..m.n_layers(), &ctx, &mut diff)?;
        let x = x.narrow(1, tokens.start - 1, n_t)?; // [1, n_t, d]
        let h = m.final_norm(&x, &mut diff)?.squeeze(0)?; // [n_t, d]
        let h_const = h.detach();
        let raw = h_const.matmul(&self.unembed.t()?)?; // [n_t, vocab]
                                                       // Gemma 2 caps the logits, c tanh(raw / c), whose slope is 1 - tanh^2.
        let (logits, slope) = match m.config().final_logit_softcapping {
            Some(c) => {
                let t = (raw / c)?.tanh()?;
                ((&t * c)?, Some((1.0 - t.sqr()?)?))
            }
            None => (raw, None),
        };
        let ce = cross_entropy(&logits, &ids[tokens.clone()], self.loss.reduction)?;
        if !ce.loss.is_finite() {
            bail!("the loss is {}", ce.loss);
        }
        let g = ce.dlogits.to_dtype(m.dtype())?; // [n_t, vocab], d loss / d raw logits
        let g = match slope {
            Some(slope) => (g * slope)?,
            None => g,
        };
        let dh = g.matmul(&self.unembed)?; // [n_t, d]
        let grads = if h.track_op() {
            Some((h * dh)?.sum_all()?.backward()?)
        } else {
            None // only the unembedding is chosen: nothing upstream of h needs a graph
        };
        Ok(ExampleGradient {
            loss: ce.loss,
            per_token: ce.per_token,
            grad: self.gradient_row(grads.as_ref(), &g, &h_const)?,
        })
    }

    /// What the differentiable blocks read, `[1, len, d]` for the `len` fed tokens `fed`:
    /// the lower blocks' output, or the embedding (in the graph) when it is differentiated.
    fn upper_input(
        &self,
        fed: &[u32],
        x_lower: Option<Tensor>,
        diff: &mut ForwardOptions,
    ) -> Result<Tensor> {
        let m = &self.model;
        let len = fed.len();
        let x = match x_lower {
            Some(x) => x,
            None if self.embed_in_graph => {
                let input = Tensor::from_slice(fed, (1, len), m.device())?;
                m.embed(&input, diff)?
            }
            None => bail!("the lower blocks' output is missing"),
        };
        if x.dims() != [1, len, m.config().hidden_size] {
            bail!(
                "lower blocks' output is {:?}, expected [1, {len}, {}]",
                x.dims(),
                m.config().hidden_size
            );
        }
        Ok(x)
    }

    /// The flattened gradient `[layout.dim]`: per chosen weight, what backpropagation
    /// brought (`grads`) plus, for the unembedding, the closed-form G^T h (`g` `[n_t, vocab]`,
    /// `h` `[n_t, d]`). Errors when a weight got no gradient, or a non-finite one.
    fn gradient_row(&self, grads: Option<&GradStore>, g: &Tensor, h: &Tensor) -> Result<Vec<f32>> {
        let mut row = vec![0f32; self.layout.dim];
        for (i, (var, slice)) in self.vars.iter().zip(&self.layout.params).enumerate() {
            let upstream = match grads {
                Some(store) => var.grad(store)?, // in Hugging Face's orientation
                None => None,
            };
            let closed = if self.unembed_var == Some(i) {
                Some(g.t()?.matmul(h)?) // [vocab, d]
            } else {
                None
            };
            let total = match (upstream, closed) {
                (Some(a), Some(b)) => (a + b)?,
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => bail!(
                    "no gradient reached `{}`: an op on its path has no backward pass",
                    slice.name
                ),
            };
            let v = total
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()
                .with_context(|| format!("reading the gradient of `{}`", slice.name))?;
            if v.len() != slice.len {
                bail!(
                    "the gradient of `{}` has {} values, expected {}",
                    slice.name,
                    v.len(),
                    slice.len
                );
            }
            if let Some(j) = v.iter().position(|x| !x.is_finite()) {
                bail!("the gradient of `{}` is {} at {j}", slice.name, v[j]);
            }
            row[slice.offset..slice.offset + slice.len].copy_from_slice(&v);
        }
        Ok(row)
    }
}
