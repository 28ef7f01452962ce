//! Streamed layers, for models larger than memory: the blocks' weights stay in the checkpoint's
//! files and each block is read (converted to the model's dtype, an adapter put on it) when a
//! pass reaches it, then dropped. [`Transformer::run_layers_layer_major`] runs many batches
//! through block l before reading block l+1, so a pass over a dataset reads each weight once
//! and holds one block at a time, plus the batches' residual streams.

use super::block::Block;
use super::context::BatchContext;
use super::lora::LoraAdapter;
use super::params::{linear_mut, LINEARS};
use super::{check_finite, ForwardOptions, Transformer};
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

/// Where a streamed model's blocks come from.
#[derive(Clone)]
pub(super) struct BlockStream {
    /// `model` of the checkpoint, read per tensor (see `load::per_tensor`).
    pub vb: VarBuilder<'static>,
    /// Whether each layer's attention is windowed.
    pub sliding: Vec<bool>,
    /// Adapters to put on a block when it is read: (layer, index into `LINEARS`) -> adapter.
    pub loras: BTreeMap<(usize, usize), LoraAdapter>,
    /// Blocks from this layer on are held in the model's `blocks` ([`Transformer::hold_layers_from`]).
    pub held_from: usize,
}

impl BlockStream {
    pub fn new(vb: VarBuilder<'static>, sliding: Vec<bool>) -> Self {
        BlockStream {
            vb,
            held_from: sliding.len(),
            sliding,
            loras: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for BlockStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockStream")
            .field("layers", &self.sliding.len())
            .field("adapted", &self.loras.keys().collect::<Vec<_>>())
            .field("held_from", &self.held_from)
            .finish()
    }
}

impl Transformer {
    /// Whether the blocks are read from the files as they run ([`Checkpoint::load_streamed`]
    /// (crate::load::Checkpoint::load_streamed)): their weights cannot be read, set or trained.
    pub fn is_streamed(&self) -> bool {
        self.stream.is_some()
    }

    /// Where block `l` is in `blocks`, when the model holds it.
    pub(super) fn held_index(&self, l: usize) -> Option<usize> {
        match &self.stream {
            None => Some(l),
            Some(s) => l.checked_sub(s.held_from),
        }
    }

    /// Block `l`: the model's own, or for a streamed model read from the files now.
    pub fn block(&self, l: usize) -> Result<Cow<'_, Block>> {
        if let Some(i) = self.held_index(l) {
            return Ok(Cow::Borrowed(&self.blocks[i]));
        }
        let Some(stream) = &self.stream else {
            unreachable!("a model without a stream holds every block")
        };
        let mut block = Block::new(
            &self.cfg,
            &stream.vb.pp(format!("layers.{l}")),
            stream.sliding[l],
        )
        .with_context(|| format!("reading layer {l}"))?;
        for (&(_, j), lora) in stream.loras.range((l, 0)..(l + 1, 0)) {
            let module = format!("model.layers.{l}.{}", LINEARS[j]);
            super::lora::fit(linear_mut(&mut block, j), &module, lora.clone())?;
        }
        Ok(Cow::Owned(block))
    }

    /// Reads blocks `from..` of a streamed model into memory, so that their weights can be
    /// read, set and made `Var`s (gradients through the upper blocks) while the lower blocks
    /// stay in the files. A model loaded whole holds every block already.
    pub fn hold_layers_from(&mut self, from: usize) -> Result<()> {
        let Some(held_from) = self.stream.as_ref().map(|s| s.held_from) else {
            return Ok(());
        };
        if from > self.n_layers() {
            bail!(
                "layer {from} is past the model's {} layers",
                self.n_layers()
            );
        }
        let mut blocks = (from..held_from)
            .map(|l| Ok(self.block(l)?.into_owned()))
            .collect::<Result<Vec<_>>>()?;
        blocks.append(&mut self.blocks);
        self.blocks = blocks;
        if let Some(s) = &mut self.stream {
            s.held_from = s.held_from.min(from);
        }
        Ok(())
    }

    /// Runs blocks `layers` on several batches, layer by layer: each block is read once (from
    /// the files when the model is streamed) and runs every batch before the next is read.
    /// `xs[i]` `[b_i, s_i, d_model]` is batch i's residual stream, `ctxs[i]` its context and
    /// `opts[i]` its options (its hooks); each batch computes exactly what
    /// [`Transformer::run_layers`] computes for it alone.
    pub fn run_layers_layer_major(
        &self,
        mut xs: Vec<Tensor>,
        layers: Range<usize>,
        ctxs: &[&BatchContext],
        opts: &mut [ForwardOptions],
    ) -> Result<Vec<Tensor>> {
        if xs.len() != ctxs.len() || xs.len() != opts.len() {
            bail!(
                "{} residual streams, {} contexts and {} options: one of each per batch",
                xs.len(),
                ctxs.len(),
                opts.len()
            );
        }
        self.check_layers(&layers)?;
        for o in opts.iter() {
            o.check(self.n_layers())?;
        }
        for l in layers.clone() {
            let block = self.block(l)?;
            for ((x, ctx), o) in xs.iter_mut().zip(ctxs).zip(opts.iter_mut()) {
                *x = block.forward(x.clone(), ctx, l, o, None)?;
            }
        }
        for x in &xs {
            check_finite(x, layers.clone())?;
        }
        Ok(xs)
    }

    /// The residual streams `[b_i, s_i, d_model]` after blocks `0..depth` of several batches
    /// (`inputs[i]` = ids `[b_i, s_i]` and mask, `opts[i]` its options): layer by layer when
    /// the model is streamed (each block read once for all of them), batch by batch otherwise.
    /// Either way batch i computes what it would alone.
    pub fn run_batches(
        &self,
        inputs: &[(&Tensor, Option<&Tensor>)],
        depth: usize,
        opts: &mut [ForwardOptions],
    ) -> Result<Vec<Tensor>> {
        if inputs.len() != opts.len() {
            bail!("{} batches but {} options", inputs.len(), opts.len());
        }
        let mut ctxs = Vec::with_capacity(inputs.len());
        let mut xs = Vec::with_capacity(inputs.len());
        for (&(ids, mask), o) in inputs.iter().zip(opts.iter_mut()) {
            let (b, s) = ids.dims2().context("input ids must be [batch, seq]")?;
            ctxs.push(self.context(mask, b, s)?);
            xs.push(self.embed(ids, o)?);
        }
        if self.is_streamed() {
            let ctxs: Vec<&BatchContext> = ctxs.iter().collect();
            return self.run_layers_layer_major(xs, 0..depth, &ctxs, opts);
        }
        (xs.into_iter().zip(&ctxs).zip(opts.iter_mut()))
            .map(|((x, ctx), o)| self.run_layers(x, 0..depth, ctx, o))
            .collect()
    }
}
