//! Per-example gradients of the response loss with respect to chosen weights (finding 2b:
//! "misaligned intent gives opposing learning signals").
//!
//! For each example i: g_i = d loss_i / d theta, theta = the chosen weights ([`ParamSelection`]:
//! the last layer's `o_proj` as in the study's code, its q/k/v/o as in its text, or any named
//! weights), loss_i = the cross-entropy over a span of its tokens ([`LossSpec`]). Each g_i is
//! flattened into one f32 row ([`GradientLayout`]: weights in checkpoint order, each
//! row-major) and streamed into a [`RowSink`] (memory, or a memory-mapped file for the 26M
//! values per example of a 32B model's `o_proj`), so memory does not grow with the dataset.
//!
//! Only what the gradient needs is differentiated (backprop.rs): blocks below the lowest
//! chosen weight run batched with the fused kernels and no graph; the rest runs per example
//! with a graph. Per-example losses are never summed across examples: each example gets its
//! own backward pass.
//!
//! Cost per example (s = first differentiable block, L blocks, n_t target tokens, len =
//! tokens fed = last target index):
//! - blocks 0..s: one fast forward over len tokens, shared in batches of `batch` examples
//!   (right-padded to the longest in the batch);
//! - blocks s..L and the final norm: one differentiable forward (composite kernels, about 2-3x
//!   the fused attention and norms) and one backward. candle's backward computes the gradient
//!   of every matmul operand in the graph, frozen weights included, so the backward costs
//!   about twice the forward and briefly holds one weight-sized buffer per matmul of those
//!   blocks;
//! - the unembedding: two n_t x d x vocab matmuls (logits, and d loss / d h), no graph, plus
//!   G^T h only when the unembedding matrix is chosen.

mod backprop;
mod loss;
mod params;

pub use backprop::{ExampleGradient, GradientComputer};
pub use loss::{cross_entropy, CrossEntropy, LossSpan, LossSpec, Reduction, Targets};
pub use params::{GradientLayout, ParamSelection, ParamSlice};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::row_store::RowSink;
use erosion_data::Sequence;

/// What a run wrote for one example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradientRow {
    /// Index of the example in the input.
    pub example: usize,
    pub loss: f64,
    /// Target tokens the loss covered.
    pub n_tokens: usize,
    /// The response was shorter than the window and its available tokens were used.
    pub short: bool,
}

/// An example that got no row, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedExample {
    pub example: usize,
    pub reason: String,
}

/// The record of a run: row k of the sink is `rows[k]`'s example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradientRun {
    pub layout: GradientLayout,
    pub loss: LossSpec,
    pub rows: Vec<GradientRow>,
    pub skipped: Vec<SkippedExample>,
}

impl GradientComputer {
    /// The gradient of one example alone (`index` names it in errors); `None` when the
    /// short-response policy skips it.
    pub fn example(&self, index: usize, seq: &Sequence) -> Result<Option<ExampleGradient>> {
        match self.loss_spec().targets(index, seq)? {
            Targets::Skip(_) => Ok(None),
            Targets::Use { tokens, .. } => {
                let input = &seq.ids[..tokens.end - 1];
                let lower = self.lower(&[input])?.map(|mut v| v.remove(0));
                self.upper(&seq.ids, tokens, lower)
                    .with_context(|| format!("gradient of example {index}"))
                    .map(Some)
            }
        }
    }

    /// Gradients of every example, in order, pushed into `sink` (one row per example that is
    /// not skipped). The lower blocks run `batch` examples at a time; the result does not
    /// depend on `batch` beyond rounding. All examples' spans are checked before any is
    /// computed. `progress` is called with the number of examples done.
    pub fn run(
        &self,
        seqs: &[Sequence],
        batch: usize,
        sink: &mut dyn RowSink,
        progress: &mut dyn FnMut(usize),
    ) -> Result<GradientRun> {
        if batch == 0 {
            bail!("the batch size must be at least 1");
        }
        if sink.dim() != self.dim() {
            bail!(
                "the row sink takes rows of {} values but the gradient over {} has {}",
                sink.dim(),
                self.layout().names().join(", "),
                self.dim()
            );
        }
        let vocab = self.model_vocab();
        let mut todo = Vec::new();
        let mut run = GradientRun {
            layout: self.layout().clone(),
            loss: *self.loss_spec(),
            rows: Vec::new(),
            skipped: Vec::new(),
        };
        for (i, seq) in seqs.iter().enumerate() {
            if let Some(&t) = seq.ids.iter().find(|&&t| t as usize >= vocab) {
                bail!("example {i}: token id {t} is outside the vocabulary ({vocab})");
            }
            match self.loss_spec().targets(i, seq)? {
                Targets::Use { tokens, short } => todo.push((i, tokens, short)),
                Targets::Skip(reason) => run.skipped.push(SkippedExample { example: i, reason }),
            }
        }
        let mut done = run.skipped.len();
        for group in todo.chunks(batch) {
            let inputs: Vec<&[u32]> = group
                .iter()
                .map(|(i, t, _)| &seqs[*i].ids[..t.end - 1])
                .collect();
            let lower = self.lower(&inputs).with_context(|| {
                format!(
                    "lower blocks of examples {}..={}",
                    group[0].0,
                    group[group.len() - 1].0
                )
            })?;
            let mut lower = lower.map(Vec::into_iter);
            for (i, tokens, short) in group {
                let x = lower.as_mut().and_then(Iterator::next);
                let g = self
                    .upper(&seqs[*i].ids, tokens.clone(), x)
                    .with_context(|| format!("gradient of example {i}"))?;
                sink.push_row(&g.grad)
                    .with_context(|| format!("storing the gradient of example {i}"))?;
                run.rows.push(GradientRow {
                    example: *i,
                    loss: g.loss,
                    n_tokens: tokens.len(),
                    short: *short,
                });
                done += 1;
                progress(done);
            }
        }
        Ok(run)
    }
}
