//! An on-disk cache of activations, so each model's pass over each dataset is computed once,
//! reused across analyses, and a stopped study resumes where it stopped.
//!
//! Layout under the cache folder:
//! ```text
//! <root>/<hash>/manifest.json            the key in full (model, dataset, options), sizes
//! <root>/<hash>/chunk-00000.safetensors  tensors of examples [0, chunk_size)
//! <root>/<hash>/chunk-00000.json         byte length + SHA-256 of the chunk file: written
//!                                        last, so its presence marks the chunk complete
//! ```
//! `hash` is the SHA-256 of the canonical JSON (object keys sorted) of the key, the number of
//! examples, the chunk size and the format version, so changing any of them misses. Every file
//! is written to a temporary name and renamed into place (atomic on POSIX file systems): an
//! interrupted write leaves no file under the final name. A chunk whose sidecar is missing,
//! unreadable, or disagrees with the file's length or hash is recomputed.

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use erosion_model::atomic::write_bytes_atomic;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Version of the on-disk layout; part of every hash.
pub const FORMAT_VERSION: u32 = 1;

/// What identifies a cached computation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheKey {
    /// The model: e.g. its weight files' hashes, the dtype and device it ran in.
    pub model: String,
    /// The dataset: e.g. its file hash and the rendering options (chat template, span options).
    pub dataset: String,
    /// Every option of the computation that changes its result.
    pub options: Value,
}

impl CacheKey {
    pub fn new(
        model: impl Into<String>,
        dataset: impl Into<String>,
        options: &impl Serialize,
    ) -> Result<Self> {
        Ok(CacheKey {
            model: model.into(),
            dataset: dataset.into(),
            options: serde_json::to_value(options).context("cache key options to JSON")?,
        })
    }
}

/// Hex SHA-256 of the canonical JSON of everything that names an entry.
fn entry_hash(key: &CacheKey, n_examples: usize, chunk_size: usize) -> Result<String> {
    let named = serde_json::json!({
        "format": FORMAT_VERSION,
        "key": serde_json::to_value(key)?,
        "n_examples": n_examples,
        "chunk_size": chunk_size,
    });
    Ok(canonical_sha256(&named))
}

/// Hex SHA-256 of `v` as canonical JSON (object keys sorted): the same for the same value,
/// whatever order its maps were built in.
pub fn canonical_sha256(v: &Value) -> String {
    hex(&Sha256::digest(canonical(v).to_string()))
}

/// The same JSON with every object's keys sorted, so key order does not change the hash.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A folder of cache entries.
#[derive(Debug, Clone)]
pub struct DiskCache {
    root: PathBuf,
    /// Chunks computed (not read) through this cache's entries: a merge of shards checks that
    /// it computed none.
    computed: Arc<AtomicUsize>,
}

impl DiskCache {
    /// The cache under `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create the cache folder {}", root.display()))?;
        Ok(DiskCache {
            root,
            computed: Arc::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How many chunks [`CacheEntry::get_or_compute`] computed through this cache (and its
    /// clones) so far.
    pub fn chunks_computed(&self) -> usize {
        self.computed.load(Ordering::Relaxed)
    }

    /// The entry for `key` over `n_examples` examples cached in chunks of `chunk_size`;
    /// creates its folder and manifest when new.
    pub fn entry(
        &self,
        key: &CacheKey,
        n_examples: usize,
        chunk_size: usize,
    ) -> Result<CacheEntry> {
        if chunk_size == 0 {
            bail!("the cache chunk size must be at least 1");
        }
        let hash = entry_hash(key, n_examples, chunk_size)?;
        let dir = self.root.join(&hash[..32]);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the cache entry {}", dir.display()))?;
        let manifest = Manifest {
            format: FORMAT_VERSION,
            hash,
            key: key.clone(),
            n_examples,
            chunk_size,
            written_by: format!("erosion-forward {}", env!("CARGO_PKG_VERSION")),
        };
        let path = dir.join("manifest.json");
        let existing = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok());
        match existing {
            Some(m) if m.hash == manifest.hash && m.key == manifest.key => {}
            Some(m) if m.hash == manifest.hash => bail!(
                "cache entry {} holds another key with the same hash ({:?}); delete the folder",
                dir.display(),
                m.key
            ),
            // Missing, unreadable or stale: (re)write it; chunks are verified on their own.
            _ => write_bytes_atomic(&path, &serde_json::to_vec_pretty(&manifest)?)?,
        }
        Ok(CacheEntry {
            dir,
            manifest,
            computed: self.computed.clone(),
        })
    }
}

/// manifest.json: the full key and sizes of one entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    hash: String,
    key: CacheKey,
    n_examples: usize,
    chunk_size: usize,
    written_by: String,
}

/// chunk-NNNNN.json: what a complete chunk file must be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ChunkInfo {
    examples: Range<usize>,
    bytes: u64,
    sha256: String,
    /// name -> shape
    tensors: BTreeMap<String, Vec<usize>>,
}

/// The state of one chunk on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkStatus {
    Missing,
    Complete,
    /// Present but not usable (partial, corrupt, or written for another layout): why.
    Invalid(String),
}

/// Where [`CacheEntry::get_or_compute`] got a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Read and verified from disk.
    Disk,
    /// Computed now (the chunk was missing) and stored.
    Computed,
    /// Computed now and stored because the file on disk was invalid: why.
    Recomputed(String),
}

/// One cache entry: a computation over a dataset, stored chunk by chunk.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    dir: PathBuf,
    manifest: Manifest,
    computed: Arc<AtomicUsize>,
}

impl CacheEntry {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry's folder name: the same in every cache for the same key and sizes.
    pub fn name(&self) -> &str {
        &self.manifest.hash[..32]
    }

    pub fn key(&self) -> &CacheKey {
        &self.manifest.key
    }

    pub fn n_examples(&self) -> usize {
        self.manifest.n_examples
    }

    pub fn chunk_size(&self) -> usize {
        self.manifest.chunk_size
    }

    pub fn n_chunks(&self) -> usize {
        self.manifest.n_examples.div_ceil(self.manifest.chunk_size)
    }

    /// The examples chunk `chunk` covers.
    pub fn chunk_examples(&self, chunk: usize) -> Range<usize> {
        let c = self.manifest.chunk_size;
        (chunk * c).min(self.manifest.n_examples)..((chunk + 1) * c).min(self.manifest.n_examples)
    }

    fn paths(&self, chunk: usize) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("chunk-{chunk:05}.safetensors")),
            self.dir.join(format!("chunk-{chunk:05}.json")),
        )
    }

    /// Whether chunk `chunk` is on disk and intact (reads and hashes the file).
    pub fn status(&self, chunk: usize) -> ChunkStatus {
        match self.read(chunk) {
            Ok(None) => ChunkStatus::Missing,
            Ok(Some(_)) => ChunkStatus::Complete,
            Err(e) => ChunkStatus::Invalid(format!("{e:#}")),
        }
    }

    /// The tensors of chunk `chunk` (on the CPU), verified; `Ok(None)` when not written yet.
    fn read(&self, chunk: usize) -> Result<Option<HashMap<String, Tensor>>> {
        let Some((_, bytes)) = self.verified(chunk)? else {
            return Ok(None);
        };
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .with_context(|| format!("cannot parse {}", self.paths(chunk).0.display()))?;
        Ok(Some(tensors))
    }

    /// Chunk `chunk`'s record and bytes, checked against each other (examples, length,
    /// SHA-256); `Ok(None)` when not written yet.
    fn verified(&self, chunk: usize) -> Result<Option<(ChunkInfo, Vec<u8>)>> {
        self.check_chunk(chunk)?;
        let (data, side) = self.paths(chunk);
        if !side.exists() {
            return Ok(None);
        }
        let info: ChunkInfo = serde_json::from_slice(
            &std::fs::read(&side).with_context(|| format!("cannot read {}", side.display()))?,
        )
        .with_context(|| format!("{} is not a chunk record", side.display()))?;
        if info.examples != self.chunk_examples(chunk) {
            bail!(
                "{} covers examples {:?}, expected {:?}",
                side.display(),
                info.examples,
                self.chunk_examples(chunk)
            );
        }
        let bytes =
            std::fs::read(&data).with_context(|| format!("cannot read {}", data.display()))?;
        if bytes.len() as u64 != info.bytes {
            bail!(
                "{} has {} bytes, {} were written (partial file)",
                data.display(),
                bytes.len(),
                info.bytes
            );
        }
        let sha = hex(&Sha256::digest(&bytes));
        if sha != info.sha256 {
            bail!(
                "{} has SHA-256 {sha}, {} was written (corrupt file)",
                data.display(),
                info.sha256
            );
        }
        Ok(Some((info, bytes)))
    }

    fn check_chunk(&self, chunk: usize) -> Result<()> {
        if chunk >= self.n_chunks() {
            bail!(
                "chunk {chunk} does not exist: the entry has {} chunks",
                self.n_chunks()
            );
        }
        Ok(())
    }

    /// Writes chunk `chunk` (tensors moved to the CPU), file first, then its sidecar.
    pub fn store(&self, chunk: usize, tensors: &HashMap<String, Tensor>) -> Result<()> {
        self.check_chunk(chunk)?;
        let (data, side) = self.paths(chunk);
        let cpu: BTreeMap<&String, Tensor> = tensors
            .iter()
            .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?.contiguous()?)))
            .collect::<Result<_>>()?;
        let examples = self.chunk_examples(chunk);
        let meta = HashMap::from([(
            "examples".to_string(),
            format!("{}..{}", examples.start, examples.end),
        )]);
        let bytes = safetensors::serialize(cpu.iter().map(|(k, t)| (k.as_str(), t)), Some(meta))
            .with_context(|| format!("cannot serialise chunk {chunk}"))?;
        let info = ChunkInfo {
            examples,
            bytes: bytes.len() as u64,
            sha256: hex(&Sha256::digest(&bytes)),
            tensors: cpu
                .iter()
                .map(|(k, t)| (k.to_string(), t.dims().to_vec()))
                .collect(),
        };
        // A stale sidecar must not vouch for the new file while it is being replaced.
        if side.exists() {
            std::fs::remove_file(&side)
                .with_context(|| format!("cannot remove {}", side.display()))?;
        }
        write_bytes_atomic(&data, &bytes)?;
        write_bytes_atomic(&side, &serde_json::to_vec_pretty(&info)?)
    }

    /// The SHA-256 of chunk `chunk`'s file when it is complete (read and verified), `None`
    /// when it is not written yet; an error when it is damaged.
    pub fn chunk_sha256(&self, chunk: usize) -> Result<Option<String>> {
        Ok(self.verified(chunk)?.map(|(info, _)| info.sha256))
    }

    /// The SHA-256 chunk `chunk`'s record states, unverified: for a chunk that
    /// [`CacheEntry::get_or_compute`] has just written or verified.
    pub fn recorded_sha256(&self, chunk: usize) -> Result<String> {
        self.check_chunk(chunk)?;
        let (_, side) = self.paths(chunk);
        let info: ChunkInfo = serde_json::from_slice(
            &std::fs::read(&side).with_context(|| format!("cannot read {}", side.display()))?,
        )
        .with_context(|| format!("{} is not a chunk record", side.display()))?;
        Ok(info.sha256)
    }

    /// Copies chunk `chunk` of `from` (an entry of the same key and sizes in another cache),
    /// verified and, when `expected` is given, refused unless its SHA-256 is that, into this
    /// entry (a hard link where the file system allows): file first, then its sidecar, each
    /// atomically. Returns its SHA-256. Nothing is copied when this entry already holds the
    /// same bytes.
    pub fn copy_chunk_from(
        &self,
        from: &CacheEntry,
        chunk: usize,
        expected: Option<&str>,
    ) -> Result<String> {
        if from.manifest.hash != self.manifest.hash {
            bail!(
                "{} and {} are entries of different computations",
                from.dir.display(),
                self.dir.display()
            );
        }
        let (info, bytes) = from
            .verified(chunk)?
            .with_context(|| format!("chunk {chunk} of {} is not written", from.dir.display()))?;
        let sha = info.sha256;
        if let Some(want) = expected.filter(|&w| w != sha) {
            bail!(
                "chunk {chunk} of {} has SHA-256 {sha}, not the {want} recorded for it",
                from.dir.display()
            );
        }
        if matches!(self.chunk_sha256(chunk), Ok(Some(s)) if s == sha) {
            return Ok(sha);
        }
        let ((src, src_side), (data, side)) = (from.paths(chunk), self.paths(chunk));
        if side.exists() {
            std::fs::remove_file(&side)
                .with_context(|| format!("cannot remove {}", side.display()))?;
        }
        // A hard link where the file system allows it: a merge of shards then needs no second
        // copy of the activations (both names are later replaced, never written through).
        let link = data.with_extension("safetensors.link");
        let _ = std::fs::remove_file(&link);
        let linked = std::fs::hard_link(&src, &link).and_then(|_| std::fs::rename(&link, &data));
        if linked.is_err() {
            let _ = std::fs::remove_file(&link);
            write_bytes_atomic(&data, &bytes)?;
        }
        let info = std::fs::read(&src_side)
            .with_context(|| format!("cannot read {}", src_side.display()))?;
        write_bytes_atomic(&side, &info)?;
        Ok(sha)
    }

    /// Chunk `chunk` from disk when it is complete; otherwise `compute(examples)` (the
    /// example range of the chunk), stored, then returned. Tensors come back on the CPU.
    pub fn get_or_compute(
        &self,
        chunk: usize,
        compute: impl FnOnce(Range<usize>) -> Result<HashMap<String, Tensor>>,
    ) -> Result<(HashMap<String, Tensor>, Origin)> {
        let origin = match self.read(chunk) {
            Ok(Some(t)) => return Ok((t, Origin::Disk)),
            Ok(None) => Origin::Computed,
            Err(e) => {
                self.check_chunk(chunk)?;
                Origin::Recomputed(format!("{e:#}"))
            }
        };
        let range = self.chunk_examples(chunk);
        let tensors = compute(range.clone())
            .with_context(|| format!("computing cache chunk {chunk} (examples {range:?})"))?;
        self.store(chunk, &tensors)?;
        self.computed.fetch_add(1, Ordering::Relaxed);
        let cpu = tensors
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        Ok((cpu, origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_ignores_key_order() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, {"q": 2, "p": 3}], "x": 0}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a": {"x": 0, "y": [1, {"p": 3, "q": 2}]}, "b": 1}"#).unwrap();
        assert_eq!(canonical(&a).to_string(), canonical(&b).to_string());
        let ka = CacheKey {
            model: "m".into(),
            dataset: "d".into(),
            options: a,
        };
        let kb = CacheKey {
            model: "m".into(),
            dataset: "d".into(),
            options: b,
        };
        assert_eq!(
            entry_hash(&ka, 3, 2).unwrap(),
            entry_hash(&kb, 3, 2).unwrap()
        );
        assert_ne!(
            entry_hash(&ka, 3, 2).unwrap(),
            entry_hash(&ka, 4, 2).unwrap()
        );
        assert_ne!(
            entry_hash(&ka, 3, 2).unwrap(),
            entry_hash(&ka, 3, 1).unwrap()
        );
    }
}
