//! Activations at any hook points, over a whole dataset, into `.npy` files: TransformerLens'
//! `run_with_cache`, streamed to disk so memory does not grow with the dataset, and resumable.
//!
//! The output folder:
//! ```text
//! {hook}.npy          f32 [n_rows, ...]  one row per recorded (example, position), e.g.
//!                                        blocks.3.hook_resid_post.npy [n_rows, d_model],
//!                                        blocks.3.attn.hook_z.npy [n_rows, n_heads, d_head]
//! index.npy           i64 [n_rows, 3]    (example, token position, token id) of each row
//! activations.json    what the rows are: hooks, shapes, positions, source; written last
//! ```
//! Rows are in example order, then position order, whatever order the batches ran in.
//! `np.load(path, mmap_mode="r")` reads any of them without loading it whole.
//!
//! Examples run in chunks of [`ActivationOptions::chunk_examples`]; after each chunk every
//! file is synced and `progress.json` records it, so a run that is stopped goes on from the
//! last finished chunk. Files are filled under `*.partial` names and renamed when complete,
//! `activations.json` last: a folder with `activations.json` holds a finished dump.
//!
//! Memory: a batch's selected rows per hook (plus the batch's forward pass), never the
//! dataset's; each sequence runs only up to its last recorded position, and only through the
//! blocks the deepest hook needs. A streamed model
//! ([`Checkpoint::load_streamed`](erosion_model::load::Checkpoint::load_streamed)) runs a chunk
//! layer by layer instead: one block's weights, plus the chunk's residual streams
//! (`chunk_examples x longest x d_model` values) and recorded rows.

mod files;
mod positions;

pub use positions::{TokenPositions, POSITIONS_HELP};

use crate::batch::{pass_groups, plan_batches, Batch, BatchOptions, Progress};
use crate::depth::Depth;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use erosion_data::Sequence;
use erosion_model::hooks::{HookPoint, Positions, Site};
use erosion_model::transformer::Transformer;
use files::{DumpFiles, DumpKey};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What [`dump_activations`] records.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationOptions {
    /// The hook points, each written to its own file.
    pub hooks: Vec<HookPoint>,
    pub positions: TokenPositions,
    pub batch: BatchOptions,
    /// Examples per chunk, the unit a stopped run resumes from.
    pub chunk_examples: usize,
    /// Stop after this many chunks in this call (a time-boxed job: call again to go on).
    pub max_chunks: Option<usize>,
}

impl ActivationOptions {
    pub fn new(hooks: Vec<HookPoint>, positions: TokenPositions) -> Self {
        ActivationOptions {
            hooks,
            positions,
            batch: BatchOptions::default(),
            chunk_examples: 256,
            max_chunks: None,
        }
    }

    /// The hooks, checked against a model of `n_layers` blocks.
    fn check(&self, n_layers: usize) -> Result<()> {
        if self.hooks.is_empty() {
            bail!("name at least one hook point to record");
        }
        if self.chunk_examples == 0 {
            bail!("chunk_examples must be at least 1");
        }
        for (i, h) in self.hooks.iter().enumerate() {
            h.check(n_layers)?;
            if self.hooks[..i].contains(h) {
                bail!("hook `{h}` is named twice");
            }
            if matches!(
                h,
                HookPoint::Block {
                    site: Site::Pattern,
                    ..
                }
            ) {
                bail!(
                    "`{h}` cannot be dumped by rows: its last axis is the sequence length, which \
                     differs between examples (record it per example with the library's Hooks)"
                );
            }
        }
        Ok(())
    }
}

/// What a call of [`dump_activations`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationReport {
    pub n_examples: usize,
    /// Rows in every hook's file.
    pub n_rows: usize,
    /// Examples with no position to record (e.g. an empty prompt under `last-prompt`).
    pub without_rows: Vec<usize>,
    pub n_chunks: usize,
    /// Chunks finished before this call (a resumed run) ...
    pub chunks_before: usize,
    /// ... and after it.
    pub chunks_done: usize,
    /// Every chunk is done and the files have their final names.
    pub complete: bool,
    /// The most activation values the hooks held at once in this call (one batch's rows over
    /// every hook): bounded by the batch options, not by the dataset.
    pub max_values_held: usize,
}

/// Records `opts.hooks` at `opts.positions` of every sequence into the folder `out` (see the
/// module docs), resuming a stopped dump of the same work. `source` says what the rows come
/// from (the model's and dataset's identities): it is written into `activations.json` and a
/// folder holding a dump of another source, hooks or positions is refused, so it must be the
/// same for the same work (no times in it).
pub fn dump_activations(
    model: &Transformer,
    seqs: &[Sequence],
    opts: &ActivationOptions,
    out: &Path,
    source: &serde_json::Value,
    progress: &mut dyn Progress,
) -> Result<ActivationReport> {
    opts.check(model.n_layers())?;
    Sequence::check_all(seqs)?;
    let counts: Vec<usize> = seqs.iter().map(|s| opts.positions.of(s).len()).collect();
    let n_rows: usize = counts.iter().sum();
    if n_rows == 0 {
        bail!(
            "none of the {} examples has a token at positions `{}`",
            seqs.len(),
            opts.positions
        );
    }
    let key = DumpKey::new(seqs, opts, source, n_rows)?;
    let mut files = DumpFiles::open(out, key)?;
    let n_chunks = seqs.len().div_ceil(opts.chunk_examples);
    let mut report = ActivationReport {
        n_examples: seqs.len(),
        n_rows,
        without_rows: (0..seqs.len()).filter(|&i| counts[i] == 0).collect(),
        n_chunks,
        chunks_before: files.chunks_done(),
        chunks_done: files.chunks_done(),
        complete: false,
        max_values_held: 0,
    };
    // Examples the finished chunks hold.
    let resumed_at = (report.chunks_before * opts.chunk_examples).min(seqs.len());
    progress.set_total(seqs.len());
    progress.advance(resumed_at);
    let plan = RunPlan::new(model.n_layers(), &opts.hooks);
    // Row offset of each chunk's first example.
    let mut first_row: usize = counts[..resumed_at].iter().sum();
    let end = opts
        .max_chunks
        .map_or(n_chunks, |m| (report.chunks_before + m).min(n_chunks));
    for chunk in report.chunks_before..end {
        let examples =
            chunk * opts.chunk_examples..((chunk + 1) * opts.chunk_examples).min(seqs.len());
        let held = run_chunk(
            model,
            seqs,
            examples.clone(),
            first_row,
            opts,
            &plan,
            &mut files,
            progress,
        )
        .with_context(|| format!("examples {examples:?}"))?;
        report.max_values_held = report.max_values_held.max(held);
        first_row += counts[examples].iter().sum::<usize>();
        files.chunk_done(chunk + 1)?;
        report.chunks_done = chunk + 1;
    }
    if report.chunks_done == n_chunks {
        files.finish()?;
        report.complete = true;
    }
    Ok(report)
}

/// Runs the examples of one chunk and writes their rows, the chunk's first row being
/// `first_row`. Returns the most values the hooks held for one batch.
#[allow(clippy::too_many_arguments)]
fn run_chunk(
    model: &Transformer,
    seqs: &[Sequence],
    examples: std::ops::Range<usize>,
    first_row: usize,
    opts: &ActivationOptions,
    plan: &RunPlan,
    files: &mut DumpFiles,
    progress: &mut dyn Progress,
) -> Result<usize> {
    let positions: Vec<Vec<usize>> = examples
        .clone()
        .map(|i| opts.positions.of(&seqs[i]))
        .collect();
    // Row of each example's first position, and the index rows in example order.
    let mut starts = Vec::with_capacity(positions.len());
    let mut index = Vec::new();
    let mut row = first_row;
    for (k, p) in positions.iter().enumerate() {
        starts.push(row);
        row += p.len();
        let i = examples.start + k;
        index.extend(
            p.iter()
                .flat_map(|&t| [i as i64, t as i64, seqs[i].ids[t] as i64]),
        );
    }
    files.write_index(first_row, &index)?;
    // Each sequence runs up to its last recorded position.
    let lens: Vec<usize> = positions
        .iter()
        .map(|p| p.last().map_or(0, |&t| t + 1))
        .collect();
    let batches = (plan_batches(&lens, &opts.batch)?.into_iter())
        .map(|batch| {
            let rows: Vec<&[u32]> = batch
                .iter()
                .map(|&k| &seqs[examples.start + k].ids[..lens[k]])
                .collect();
            Batch::new(batch, &rows, model.device())
        })
        .collect::<Result<Vec<_>>>()?;
    let mut held = 0;
    for group in pass_groups(&batches, model.is_streamed()) {
        for (b, recorded) in group.iter().zip(plan.record(model, group, &positions)?) {
            held = held.max(recorded.iter().map(Tensor::elem_count).sum());
            for (hook, t) in opts.hooks.iter().zip(&recorded) {
                let t = t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?; // [n_rows, ...]
                let mut at = 0;
                for &k in &b.examples {
                    let n = positions[k].len();
                    let data = t.narrow(0, at, n)?.flatten_all()?.to_vec1::<f32>()?;
                    files.write_rows(hook, t.dims(), starts[k], &data)?;
                    at += n;
                }
            }
            progress.advance(b.len());
        }
    }
    // Examples without rows ran in no batch.
    progress.advance(lens.iter().filter(|&&l| l == 0).count());
    Ok(held)
}

/// The hooks a pass records and how far it runs.
struct RunPlan {
    hooks: Vec<HookPoint>,
    depth: Depth,
}

impl RunPlan {
    fn new(n_layers: usize, hooks: &[HookPoint]) -> Self {
        RunPlan {
            hooks: hooks.to_vec(),
            depth: Depth::of(hooks, n_layers),
        }
    }

    /// Runs `batches` (rows = chunk-local example indices into `positions`) and returns, per
    /// batch, each hook's recorded rows, `[sum_k n_positions_k, ...]` in batch order, model
    /// dtype.
    fn record(
        &self,
        model: &Transformer,
        batches: &[Batch],
        positions: &[Vec<usize>],
    ) -> Result<Vec<Vec<Tensor>>> {
        let mut hooks = Vec::with_capacity(batches.len());
        for b in batches {
            let per_example =
                Positions::PerExample(b.examples.iter().map(|&k| positions[k].clone()).collect());
            let mut h = model.hooks();
            for &p in &self.hooks {
                h.record(p, per_example.clone())?;
            }
            hooks.push(h);
        }
        self.depth.run_many(model, batches, &mut hooks)?;
        (hooks.iter_mut())
            .map(|h| {
                let cache = h.take_cache();
                (self.hooks.iter())
                    .map(|p| Ok(cache.tensor(&p.to_string())?.clone()))
                    .collect()
            })
            .collect()
    }
}
