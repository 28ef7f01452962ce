//! Glue between the study's options, the activation cache and the analysis crate, shared by
//! analyses 3 and 4: window options, cache entries, a replay of a finished cache entry (no
//! model needed), pooling of one record, seeds and file names.

use crate::context::StudyContext;
use crate::keys::sequences_fingerprint;
use crate::spec::Pooling;
use anyhow::{Context, Result};
use erosion_analysis::layers::{pool_window, WindowSpec};
use erosion_data::Sequence;
use erosion_forward::batch::Progress;
use erosion_forward::cache::{CacheEntry, ChunkStatus};
use erosion_forward::cached_windows::{record_windows_cached, replay_entry, windows_cache_key};
use erosion_forward::windows::{Window, WindowOptions, WindowRecord, WindowReport};

/// The most bytes of hidden states one cache chunk holds (f32). Chunks bound the memory of a
/// windows pass (records of one chunk are gathered before they are stored) and are the unit
/// a stopped study resumes from.
pub(crate) const CHUNK_BYTES: usize = 256 << 20;
/// At most this many examples per chunk, so small models still resume at a fine grain.
pub(crate) const MAX_CHUNK_EXAMPLES: usize = 256;

pub(crate) fn analysis_pooling(p: Pooling) -> erosion_analysis::layers::Pooling {
    match p {
        Pooling::Flatten => erosion_analysis::layers::Pooling::Flatten,
        Pooling::Mean => erosion_analysis::layers::Pooling::Mean,
    }
}

/// Examples per cache chunk for `opts` on a model of `n_layers` blocks and width `d`: as many
/// as fit in [`CHUNK_BYTES`] (at least 1, at most [`MAX_CHUNK_EXAMPLES`]). Depends only on the
/// options and the model's shape, so a resumed study finds the same entry.
pub(crate) fn chunk_size(opts: &WindowOptions, n_layers: usize, d: usize) -> Result<usize> {
    let layers = opts.layer_indices(n_layers)?.len();
    let positions = match opts.window {
        Window::Response { len, .. } => len,
        Window::LastResponseToken | Window::LastToken => 1,
    };
    let per_example = (layers * positions * d * 4).max(1);
    Ok((CHUNK_BYTES / per_example).clamp(1, MAX_CHUNK_EXAMPLES))
}

/// The cache entry of a windows pass of `model` over `dataset`, whose rendered examples are
/// `seqs`. The dataset's identity includes a fingerprint of the token ids and response spans,
/// so any change of rendering (template, end-of-turn policy, plain base) misses the cache.
pub(crate) fn windows_entry(
    ctx: &StudyContext,
    model: &str,
    dataset: &str,
    opts: &WindowOptions,
    seqs: &[Sequence],
) -> Result<CacheEntry> {
    let cfg = &ctx.model(model)?.checkpoint.config;
    let dataset_id = format!(
        "{}|tokens:{}",
        ctx.dataset_identity(dataset)?,
        sequences_fingerprint(seqs)
    );
    let key = windows_cache_key(&ctx.model_identity(model)?, &dataset_id, opts)?;
    let chunk = chunk_size(opts, cfg.num_hidden_layers, cfg.hidden_size)?;
    ctx.cache.entry(&key, seqs.len(), chunk)
}

/// What one windows pass over a dataset gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PassReport {
    /// Examples handed to the sink.
    pub recorded: usize,
    /// Examples the short-response policy left out.
    pub skipped: Vec<usize>,
    /// Every chunk came from the cache, and the model was not loaded.
    pub from_cache: bool,
}

impl From<WindowReport> for PassReport {
    fn from(r: WindowReport) -> Self {
        PassReport {
            recorded: r.recorded,
            skipped: r.skipped.iter().map(|s| s.example).collect(),
            from_cache: false,
        }
    }
}

/// Whether every chunk of `entry` is on disk and intact (each is read and hashed).
pub(crate) fn entry_complete(entry: &CacheEntry) -> bool {
    (0..entry.n_chunks()).all(|c| entry.status(c) == ChunkStatus::Complete)
}

/// The windows of `model` on `dataset` (rendered as `seqs`), handed to `sink` in example
/// order: replayed from the cache when every chunk is there, so a resumed study does not load
/// the model's weights again; otherwise computed (the model loaded through the context, one in
/// memory at a time) with the missing chunks written to the cache.
pub(crate) fn windows_pass(
    ctx: &StudyContext,
    model: &str,
    dataset: &str,
    opts: &WindowOptions,
    seqs: &[Sequence],
    label: &str,
    sink: &mut dyn FnMut(WindowRecord<'_>) -> Result<()>,
) -> Result<PassReport> {
    let entry = windows_entry(ctx, model, dataset, opts, seqs)?;
    let mut bar = ctx.progress(format!("{label}: {model} on {dataset}"));
    if entry_complete(&entry) {
        let n_layers = ctx.model(model)?.checkpoint.config.num_hidden_layers;
        let mut skipped = Vec::new();
        for (i, s) in seqs.iter().enumerate() {
            if opts.positions(i, s)?.is_none() {
                skipped.push(i);
            }
        }
        bar.set_total(seqs.len());
        let recorded = replay_entry(&entry, &opts.layer_indices(n_layers)?, sink)?;
        bar.advance(seqs.len());
        return Ok(PassReport {
            recorded,
            skipped,
            from_cache: true,
        });
    }
    let t = ctx.pass_transformer(model)?;
    Ok(record_windows_cached(&t, seqs, opts, &ctx.batch_options(), &entry, &mut bar, sink)?.into())
}

/// One record pooled into z (`spec.offset` must be 0: the record already starts at the
/// window's offset). `None` only under the skip policy. // hidden [n_pos, d] -> [T * d] or [d]
pub(crate) fn pool_record(r: &WindowRecord<'_>, spec: &WindowSpec) -> Result<Option<Vec<f64>>> {
    let (n_pos, d) = r.hidden.dims2()?;
    let flat = r.flat()?;
    pool_window(&flat, n_pos, d, 0..n_pos, spec)
        .with_context(|| format!("pooling example {} at layer {}", r.example, r.layer))
}

/// A name usable in a file path: letters, digits, `-` and `_` kept, anything else `_`.
pub(crate) fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use erosion_data::ShortResponse;
    use erosion_forward::windows::{LayerConvention, Layers};

    #[test]
    fn chunk_size_fits_the_byte_budget() {
        let opts = |len| WindowOptions {
            layers: Layers::All,
            convention: LayerConvention::ResidualStream,
            window: Window::Response { offset: 0, len },
            short: ShortResponse::Skip,
        };
        // Qwen2.5-32B, T = 64 flattened at 65 layers: 65 * 64 * 5120 * 4 = 85 MB per example.
        assert_eq!(chunk_size(&opts(64), 64, 5120).unwrap(), 3);
        // T = 10: 13.3 MB per example -> 20 examples (256 MiB / 13_312_000 B = 20.2).
        assert_eq!(chunk_size(&opts(10), 64, 5120).unwrap(), 20);
        // A tiny model hits the example cap.
        assert_eq!(chunk_size(&opts(4), 2, 32).unwrap(), MAX_CHUNK_EXAMPLES);
        // One layer, last token, a huge model: still one example at least.
        let last = WindowOptions {
            layers: Layers::List(vec![2]),
            window: Window::LastToken,
            ..opts(1)
        };
        assert_eq!(chunk_size(&last, 2, 1 << 30).unwrap(), 1);
    }

    #[test]
    fn seeds_and_stems() {
        assert_eq!(file_stem("toxic reject/v2"), "toxic_reject_v2");
        assert_eq!(file_stem(""), "_");
    }
}
