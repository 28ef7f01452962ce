//! One micro-batch's loss and gradients, holding one block's graph at a time:
//!
//! ```text
//! forward:   x_0 = embed(ids);  x_{l+1} = block_l(x_l)      keep each x_l, drop each graph
//! top:       backward of sum(unembed(norm(x_L))[rows] * stopgrad(G))  ->  dθ_top, g_L = d/dx_L
//! block l:   recompute block_l(x_l), backward of sum(x_{l+1} * stopgrad(g_{l+1}))
//!                                                        ->  dθ_l, g_l = d/dx_l      l = L-1..0
//! embedding: backward of sum(x_0 * stopgrad(g_0))  (when the embedding trains)
//! ```
//!
//! candle keeps every intermediate of a graph until its backward pass ends: for a whole model
//! that was 3.3 GB of activations for two sequences of 618 tokens of a 135M model (plus as much
//! again during backward), where this keeps one block's graph and the L + 1 block inputs
//! `[b, s, d_model]`. The price is a second forward pass through the blocks (about a third more
//! work). The gradients are the same sums in another order: equal to rounding.

use crate::batch::MicroBatch;
use crate::surrogate::surrogate;
use crate::trainer::add_into;
use anyhow::{Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use erosion_forward::gradients::{cross_entropy, Reduction};
use erosion_model::transformer::{ForwardOptions, Transformer, WeightVar};

/// The micro-batch's loss (times `weight`) and the gradient of `weight * CE_sum` for each of
/// `params`, or `None` when this micro-batch does not reach it.
pub(crate) fn loss_and_grads(
    model: &Transformer,
    mb: &MicroBatch,
    weight: f64,
    params: &[(String, WeightVar)],
) -> Result<(f64, Vec<Option<Tensor>>)> {
    let mut grads: Vec<Option<Tensor>> = vec![None; params.len()];
    let mut collect = |store: &GradStore| -> Result<()> {
        for ((_, var), slot) in params.iter().zip(grads.iter_mut()) {
            add_into(slot, store.get(var.var()).cloned())?;
        }
        Ok(())
    };
    let mut fo = ForwardOptions::differentiable();
    let (b, s) = mb.ids.dims2()?;
    let ctx = model.context(mb.mask.as_ref(), b, s)?;
    let embedded = model.embed(&mb.ids, &mut fo)?; // [b, s, d]; a graph only if it trains
                                                   // Each block's input as a Var of its own (a copy, detached), so that its gradient can be
                                                   // read after the block's backward pass.
    let mut inputs: Vec<Var> = Vec::with_capacity(model.n_layers() + 1);
    inputs.push(Var::from_tensor(&embedded.detach())?);
    for l in 0..model.n_layers() {
        let x = inputs[l].as_tensor();
        let y = model.run_layers(x.clone(), l..l + 1, &ctx, &mut fo)?;
        inputs.push(Var::from_tensor(&y.detach())?);
    }

    let top = inputs.last().context("a model without layers")?;
    let h = model.final_norm(top.as_tensor(), &mut fo)?; // [b, s, d]
    let d = h.dim(2)?;
    let h = h.reshape((b * s, d))?.index_select(&mb.rows, 0)?; // [n, d]
    let logits = model.unembed(&h, &mut fo)?; // [n, vocab]
    let ce = cross_entropy(&logits, &mb.targets, Reduction::Sum)?;
    let store = surrogate(&logits, &(ce.dlogits * weight)?)?.backward()?;
    collect(&store)?;
    let mut g = store
        .get(top.as_tensor())
        .context("the loss does not reach the last block")?
        .clone();
    drop(store);

    for l in (0..model.n_layers()).rev() {
        let x = inputs[l].as_tensor();
        let y = model.run_layers(x.clone(), l..l + 1, &ctx, &mut fo)?;
        let store = surrogate(&y, &g)?.backward()?;
        collect(&store)?;
        g = store
            .get(x)
            .with_context(|| format!("the loss does not reach block {l}"))?
            .clone();
    }
    if embedded.track_op() {
        collect(&surrogate(&embedded, &g)?.backward()?)?;
    }
    Ok((ce.loss * weight, grads))
}
