//! The cached forward passes an analysis reads, named before any of them runs, so a sharded
//! study ([`crate::shard`]) can split them over processes: each pass is a cache entry whose
//! chunks are the units of work.

use crate::behaviour::shared::{logprobs_chunk, logprobs_entry};
use crate::context::StudyContext;
use crate::layers::stream::windows_entry;
use anyhow::{Context, Result};
use erosion_data::Sequence;
use erosion_forward::batch::Progress;
use erosion_forward::cache::{CacheEntry, Origin};
use erosion_forward::cached_windows::compute_windows_chunk;
use erosion_forward::windows::WindowOptions;
use std::ops::Range;

/// One cached forward pass of a model over a dataset (as rendered for that model).
#[derive(Debug, Clone)]
pub enum Pass {
    /// Hidden-state windows (analyses 3 and 4): `layers::stream::windows_pass`.
    Windows {
        model: String,
        dataset: String,
        opts: WindowOptions,
    },
    /// Response log-probs of the first `limit` examples (all when `None`): the behaviour
    /// analysis and the gradients analysis's loss vectors.
    Logprobs {
        model: String,
        dataset: String,
        limit: Option<usize>,
    },
}

impl Pass {
    pub fn model(&self) -> &str {
        match self {
            Pass::Windows { model, .. } | Pass::Logprobs { model, .. } => model,
        }
    }

    pub fn dataset(&self) -> &str {
        match self {
            Pass::Windows { dataset, .. } | Pass::Logprobs { dataset, .. } => dataset,
        }
    }

    /// e.g. "windows of `base` on `insecure`".
    pub fn label(&self) -> String {
        let what = match self {
            Pass::Windows { .. } => "windows",
            Pass::Logprobs { .. } => "log-probs",
        };
        format!("{what} of `{}` on `{}`", self.model(), self.dataset())
    }

    /// The pass opened in `ctx`'s cache: its entry, the sequences it runs, and the examples it
    /// needs (a prefix of the dataset).
    pub fn open(&self, ctx: &StudyContext) -> Result<OpenPass> {
        let seqs = ctx.sequences(self.model(), self.dataset())?;
        let (entry, wanted) = match self {
            Pass::Windows {
                model,
                dataset,
                opts,
            } => (windows_entry(ctx, model, dataset, opts, &seqs)?, seqs.len()),
            Pass::Logprobs {
                model,
                dataset,
                limit,
            } => {
                let n = limit.unwrap_or(seqs.len()).min(seqs.len());
                (logprobs_entry(ctx, model, dataset, &seqs)?, n)
            }
        };
        Ok(OpenPass {
            pass: self.clone(),
            entry,
            seqs,
            wanted,
        })
    }
}

/// A pass with its cache entry and inputs.
pub struct OpenPass {
    pub pass: Pass,
    pub entry: CacheEntry,
    pub seqs: Vec<Sequence>,
    /// Examples `0..wanted` are read by the analyses.
    pub wanted: usize,
}

impl OpenPass {
    /// The chunks the analyses read: those that start below `wanted`.
    pub fn chunks(&self) -> Range<usize> {
        let n = (0..self.entry.n_chunks())
            .take_while(|&c| self.entry.chunk_examples(c).start < self.wanted)
            .count();
        0..n
    }

    /// Tokens in chunk `chunk`'s examples: the weight of its work.
    pub fn tokens(&self, chunk: usize) -> usize {
        self.seqs[self.entry.chunk_examples(chunk)]
            .iter()
            .map(|s| s.ids.len())
            .sum()
    }

    /// Computes chunk `chunk` into the cache unless it is there already, loading the pass's
    /// model through `ctx` (one model in memory at a time). The bits are those the analysis
    /// itself would write: both batch within the chunk alone.
    pub fn compute(
        &self,
        ctx: &StudyContext,
        chunk: usize,
        bar: &mut dyn Progress,
    ) -> Result<Origin> {
        let what = || format!("chunk {chunk} of the {}", self.pass.label());
        let model = ctx.pass_transformer(self.pass.model()).with_context(what)?;
        match &self.pass {
            Pass::Windows { opts, .. } => compute_windows_chunk(
                &model,
                &self.seqs,
                opts,
                &ctx.batch_options(),
                &self.entry,
                chunk,
                bar,
            ),
            Pass::Logprobs { .. } => {
                let (_, origin) = self.entry.get_or_compute(chunk, |range| {
                    logprobs_chunk(ctx, &model, &self.seqs[range], bar)
                })?;
                if origin == Origin::Disk {
                    bar.advance(self.entry.chunk_examples(chunk).len());
                }
                Ok(origin)
            }
        }
        .with_context(what)
    }
}
