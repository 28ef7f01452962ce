//! Provenance: what produced a result (tool, command, options, seed) and from which inputs
//! (model files and datasets, identified by SHA-256).
//!
//! Model checkpoints can be tens of gigabytes: files are hashed as a stream, and a
//! [`HashCache`] remembers the hash of a file by (path, size, modification time) so a
//! checkpoint is hashed once, not on every run.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use erosion_model::atomic::write_bytes_atomic;

mod builder;
pub use builder::ProvenanceBuilder;

/// The program that produced a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
    /// The git commit the program was built from, when it was built from a git checkout.
    pub git_commit: Option<String>,
}

impl ToolInfo {
    /// `erosion` at this workspace's version and build commit.
    pub fn erosion() -> Self {
        Self {
            name: "erosion".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: option_env!("EROSION_GIT_COMMIT").map(str::to_string),
        }
    }
}

/// One hashed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHash {
    pub path: String,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub bytes: u64,
}

/// The files that make up one model (weights, config, tokenizer, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSetHash {
    /// The name the study gives the model (`base`, `instruct`, `insecure`, ...).
    pub name: String,
    /// Where it came from, as the user named it (a folder, a hub id, a GGUF file).
    pub source: String,
    pub files: Vec<FileHash>,
}

impl FileSetHash {
    /// Hashes the given files (in the given order).
    pub fn from_files(
        name: &str,
        source: &str,
        paths: &[PathBuf],
        cache: &mut HashCache,
    ) -> Result<Self> {
        let files = paths
            .iter()
            .map(|p| cache.hash(p))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("hashing the files of model {name:?}"))?;
        Ok(Self {
            name: name.to_string(),
            source: source.to_string(),
            files,
        })
    }

    /// Hashes every regular file under `dir` (recursively, following symbolic links as the
    /// hub cache's snapshot folders need; hidden entries skipped), in sorted path order.
    pub fn from_dir(name: &str, source: &str, dir: &Path, cache: &mut HashCache) -> Result<Self> {
        let mut paths = Vec::new();
        collect_files(dir, &mut paths)
            .with_context(|| format!("listing the files of model {name:?} in {}", dir.display()))?;
        paths.sort();
        Self::from_files(name, source, &paths, cache)
    }

    /// One SHA-256 over the set: of the lines `"{sha256}  {file name}\n"` in file order.
    /// Two sets with equal digests hold the same bytes under the same file names.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for f in &self.files {
            let file_name = Path::new(&f.path)
                .file_name()
                .map_or(f.path.clone(), |n| n.to_string_lossy().into_owned());
            h.update(format!("{}  {}\n", f.sha256, file_name).as_bytes());
        }
        hex(&h.finalize())
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // `metadata` follows symbolic links (hub snapshots link into blobs/).
        let meta = std::fs::metadata(&path).with_context(|| format!("{}", path.display()))?;
        if meta.is_dir() {
            collect_files(&path, out)?;
        } else if meta.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// A dataset as an analysis used it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetHash {
    pub name: String,
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    /// How many examples the analysis used.
    pub n_examples: usize,
    /// Which examples, in words (`"first 200"`, `"200 sampled with seed 7"`, `"all"`).
    pub selection: String,
}

impl DatasetHash {
    pub fn new(
        name: &str,
        path: &Path,
        n_examples: usize,
        selection: &str,
        cache: &mut HashCache,
    ) -> Result<Self> {
        let f = cache
            .hash(path)
            .with_context(|| format!("hashing dataset {name:?}"))?;
        Ok(Self {
            name: name.to_string(),
            path: f.path,
            sha256: f.sha256,
            bytes: f.bytes,
            n_examples,
            selection: selection.to_string(),
        })
    }
}

/// Everything needed to know how a result was produced; assembled by [`Provenance::builder`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub tool: ToolInfo,
    /// UTC time the run started, RFC 3339 (`2026-11-03T14:05:09Z`).
    pub created: String,
    /// The program's arguments, the program itself first.
    pub command_line: Vec<String>,
    /// The seed of every random choice, if the run made any.
    pub seed: Option<u64>,
    /// Every option, defaults included, as the run resolved them.
    pub options: serde_json::Value,
    pub models: Vec<FileSetHash>,
    pub datasets: Vec<DatasetHash>,
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// SHA-256 of a file, streamed in 1 MiB blocks; returns (hex digest, size in bytes).
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex(&h.finalize()), n))
}

/// The current UTC time as RFC 3339 with whole seconds.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs as i64)
}

/// Seconds since 1970-01-01T00:00:00Z as RFC 3339 (`YYYY-MM-DDThh:mm:ssZ`).
pub fn format_utc(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let sod = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm:
/// shift the year to start in March so the leap day is last, then split into 400-year
/// eras of 146097 days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheEntry {
    bytes: u64,
    mtime_ns: u64,
    sha256: String,
}

/// Remembers file hashes by (canonical path, size, modification time in ns).
///
/// A file rewritten in place with the same size within the file system's time resolution
/// would be missed; checkpoints are written once, so this is the usual trade-off (as in
/// build tools). The cache file is JSON; an unreadable one is treated as empty, since the
/// cache only saves time.
#[derive(Debug, Default)]
pub struct HashCache {
    file: Option<PathBuf>,
    entries: BTreeMap<String, CacheEntry>,
    dirty: bool,
    /// How many hashes were computed (not taken from the cache) since creation.
    pub computed: usize,
}

impl HashCache {
    /// A cache that lives only in memory.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A cache kept in `file` (read now if it exists, written by [`HashCache::save`]).
    pub fn open(file: &Path) -> Self {
        let entries = std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            file: Some(file.to_path_buf()),
            entries,
            dirty: false,
            computed: 0,
        }
    }

    /// The hash of `path`, from the cache when its size and mtime are unchanged.
    pub fn hash(&mut self, path: &Path) -> Result<FileHash> {
        let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        let bytes = meta.len();
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        let key = std::fs::canonicalize(path)
            .with_context(|| format!("{}", path.display()))?
            .to_string_lossy()
            .into_owned();
        let shown = path.display().to_string();
        if let Some(e) = self.entries.get(&key) {
            if e.bytes == bytes && e.mtime_ns == mtime_ns && mtime_ns != 0 {
                return Ok(FileHash {
                    path: shown,
                    sha256: e.sha256.clone(),
                    bytes,
                });
            }
        }
        let (sha256, n) = sha256_file(path)?;
        self.computed += 1;
        self.entries.insert(
            key,
            CacheEntry {
                bytes: n,
                mtime_ns,
                sha256: sha256.clone(),
            },
        );
        self.dirty = true;
        Ok(FileHash {
            path: shown,
            sha256,
            bytes: n,
        })
    }

    /// Writes the cache file (atomically) if anything was added.
    pub fn save(&mut self) -> Result<()> {
        if let (Some(file), true) = (&self.file, self.dirty) {
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let json = serde_json::to_vec_pretty(&self.entries)?;
            write_bytes_atomic(file, &json)?;
            self.dirty = false;
        }
        Ok(())
    }
}
