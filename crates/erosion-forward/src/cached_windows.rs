//! [`record_windows`] through the on-disk cache: chunks of examples already on disk are
//! replayed to the sink, missing or damaged ones are computed, stored, then replayed. A study
//! stopped half-way recomputes only the chunks it had not finished.
//!
//! A chunk holds, for the examples it covers (ascending):
//! ```text
//! rows       [n_rows, 2] u32   (example index in the whole dataset, token position)
//! layer.{l}  [n_rows, d_model] f32, one per recorded layer index l
//! ```
//! Memory is bounded by one chunk of records (`chunk_size` examples), not by the dataset.

use crate::batch::{AdvanceOnly, BatchOptions, Progress};
use crate::cache::{CacheEntry, CacheKey, Origin};
use crate::windows::{record_windows, select_all, WindowOptions, WindowRecord, WindowReport};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use erosion_data::Sequence;
use erosion_model::transformer::Transformer;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

/// The cache key of a windows pass: the model's and dataset's identities, and `opts`.
pub fn windows_cache_key(model: &str, dataset: &str, opts: &WindowOptions) -> Result<CacheKey> {
    CacheKey::new(
        model,
        dataset,
        &serde_json::json!({ "pass": "windows", "options": opts }),
    )
}

/// Like [`record_windows`], reading and filling `entry` (made with [`windows_cache_key`] for
/// these `opts`, over `seqs.len()` examples). Sink calls come in example order. The report's
/// `max_values_held` counts the batches computed in this call (0 when all came from disk).
pub fn record_windows_cached(
    model: &Transformer,
    seqs: &[Sequence],
    opts: &WindowOptions,
    batch: &BatchOptions,
    entry: &CacheEntry,
    progress: &mut dyn Progress,
    sink: &mut dyn FnMut(WindowRecord<'_>) -> Result<()>,
) -> Result<WindowReport> {
    check_entry(entry, seqs, opts)?;
    let layers = opts.layer_indices(model.n_layers())?;
    // Fails now, before any work, when the policy is to fail on a short response.
    let (_, skipped) = select_all(seqs, opts)?;
    progress.set_total(seqs.len());
    let mut report = WindowReport {
        skipped,
        ..Default::default()
    };
    for chunk in 0..entry.n_chunks() {
        let mut computed = None;
        let (tensors, origin) = entry.get_or_compute(chunk, |range| {
            let (t, r) = compute_chunk(model, seqs, range, opts, batch, &layers, progress)?;
            computed = Some(r);
            Ok(t)
        })?;
        match computed {
            Some(r) => report.max_values_held = report.max_values_held.max(r.max_values_held),
            None => progress.advance(entry.chunk_examples(chunk).len()),
        }
        report.recorded += replay(&tensors, &layers, sink).with_context(|| {
            format!(
                "cache chunk {chunk} of {} ({origin:?})",
                entry.dir().display()
            )
        })?;
    }
    Ok(report)
}

/// Computes chunk `chunk` of `entry` (made with [`windows_cache_key`] for these `opts`, over
/// `seqs.len()` examples) unless it is already on disk, without handing records anywhere: one
/// shard of a split pass fills its chunks this way. The chunk's bits are those
/// [`record_windows_cached`] would write, since both batch within the chunk alone.
pub fn compute_windows_chunk(
    model: &Transformer,
    seqs: &[Sequence],
    opts: &WindowOptions,
    batch: &BatchOptions,
    entry: &CacheEntry,
    chunk: usize,
    progress: &mut dyn Progress,
) -> Result<Origin> {
    check_entry(entry, seqs, opts)?;
    let layers = opts.layer_indices(model.n_layers())?;
    select_all(seqs, opts)?;
    let (_, origin) = entry.get_or_compute(chunk, |range| {
        Ok(compute_chunk(model, seqs, range, opts, batch, &layers, progress)?.0)
    })?;
    if origin == Origin::Disk {
        progress.advance(entry.chunk_examples(chunk).len());
    }
    Ok(origin)
}

/// An error unless `entry` was made for `opts` over `seqs.len()` examples.
fn check_entry(entry: &CacheEntry, seqs: &[Sequence], opts: &WindowOptions) -> Result<()> {
    let want = windows_cache_key("", "", opts)?.options;
    if entry.key().options != want {
        bail!(
            "cache entry {} was made for options {}, not {}",
            entry.dir().display(),
            entry.key().options,
            want
        );
    }
    if entry.n_examples() != seqs.len() {
        bail!(
            "cache entry {} covers {} examples, the dataset has {}",
            entry.dir().display(),
            entry.n_examples(),
            seqs.len()
        );
    }
    Ok(())
}

/// Runs the examples `range` and gathers their records into chunk tensors.
fn compute_chunk(
    model: &Transformer,
    seqs: &[Sequence],
    range: Range<usize>,
    opts: &WindowOptions,
    batch: &BatchOptions,
    layers: &[usize],
    progress: &mut dyn Progress,
) -> Result<(HashMap<String, Tensor>, WindowReport)> {
    // example -> (positions, one [n, d] tensor per layer, in `layers` order)
    let mut got: BTreeMap<usize, (Vec<usize>, Vec<Tensor>)> = BTreeMap::new();
    let first = range.start;
    let report = record_windows(
        model,
        &seqs[range],
        opts,
        batch,
        &mut AdvanceOnly(progress),
        &mut |r: WindowRecord<'_>| {
            let e = got
                .entry(first + r.example)
                .or_insert_with(|| (r.positions.to_vec(), Vec::new()));
            e.1.push(r.hidden.clone());
            Ok(())
        },
    )?;
    let mut rows: Vec<u32> = Vec::new();
    for (&example, (positions, _)) in &got {
        rows.extend(positions.iter().flat_map(|&p| [example as u32, p as u32]));
    }
    let n_rows = rows.len() / 2;
    let mut tensors = HashMap::new();
    tensors.insert(
        "rows".to_string(),
        Tensor::from_vec(rows, (n_rows, 2), &Device::Cpu)?,
    );
    let d = model.config().hidden_size;
    for (j, &l) in layers.iter().enumerate() {
        let parts: Vec<&Tensor> = got.values().map(|(_, ts)| &ts[j]).collect();
        let t = if parts.is_empty() {
            Tensor::zeros((0, d), DType::F32, &Device::Cpu)?
        } else {
            Tensor::cat(&parts, 0)?
        };
        tensors.insert(format!("layer.{l}"), t);
    }
    Ok((tensors, report))
}

/// Replays a complete entry to the sink without a model (a second pass over activations
/// already computed costs a disk read). `layers` must be among the entry's recorded layers. A
/// chunk that is missing or damaged is an error: the pass that writes it has not finished.
/// Returns the number of examples replayed.
pub fn replay_entry(
    entry: &CacheEntry,
    layers: &[usize],
    sink: &mut dyn FnMut(WindowRecord<'_>) -> Result<()>,
) -> Result<usize> {
    let mut examples = 0;
    for chunk in 0..entry.n_chunks() {
        let (tensors, _) = entry
            .get_or_compute(chunk, |range| {
                bail!(
                    "chunk {chunk} (examples {range:?}) of {} is not on disk or is damaged: \
                     the windows pass that writes it has not finished",
                    entry.dir().display()
                )
            })
            .with_context(|| format!("replaying cache entry {}", entry.dir().display()))?;
        examples += replay(&tensors, layers, sink)
            .with_context(|| format!("chunk {chunk} of {}", entry.dir().display()))?;
    }
    Ok(examples)
}

/// Hands a chunk's records to the sink, example by example; returns the number of examples.
fn replay(
    tensors: &HashMap<String, Tensor>,
    layers: &[usize],
    sink: &mut dyn FnMut(WindowRecord<'_>) -> Result<()>,
) -> Result<usize> {
    let get = |name: &str| {
        tensors
            .get(name)
            .with_context(|| format!("the chunk has no tensor `{name}`"))
    };
    let rows = get("rows")?;
    let n_rows = rows.dim(0)?;
    let rows: Vec<u32> = rows.flatten_all()?.to_vec1()?;
    let per_layer = layers
        .iter()
        .map(|l| {
            let t = get(&format!("layer.{l}"))?.to_dtype(DType::F32)?;
            if t.dim(0)? != n_rows {
                bail!("layer.{l} has {} rows, `rows` has {n_rows}", t.dim(0)?);
            }
            Ok(t)
        })
        .collect::<Result<Vec<_>>>()?;
    let (mut start, mut examples) = (0, 0);
    while start < n_rows {
        let example = rows[2 * start];
        let mut end = start;
        while end < n_rows && rows[2 * end] == example {
            end += 1;
        }
        let positions: Vec<usize> = (start..end).map(|r| rows[2 * r + 1] as usize).collect();
        for (&layer, t) in layers.iter().zip(&per_layer) {
            let hidden = t.narrow(0, start, end - start)?.copy()?;
            sink(WindowRecord {
                example: example as usize,
                layer,
                positions: &positions,
                hidden: &hidden,
            })
            .with_context(|| format!("sink for example {example}, layer {layer}"))?;
        }
        examples += 1;
        start = end;
    }
    Ok(examples)
}
