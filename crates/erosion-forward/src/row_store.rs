//! Where per-example rows (flattened gradients) go: a [`RowSink`] that receives one row per
//! example, an in-memory sink ([`MemoryRows`]), and a file-backed store written append-only
//! ([`RowStoreWriter`]) and read memory-mapped ([`RowStore`]).
//!
//! File format (two files):
//! ```text
//! PATH        n_rows * dim little-endian f32, row-major, no header: row i at byte 4 * i * dim
//! PATH.json   {"format": "erosion-rows", "version": 1, "dtype": "f32", "byte_order": "little",
//!              "n_rows": n, "dim": d, "meta": {...}}
//! ```
//! The data file is headerless so any flat-f32 reader (numpy `np.memmap(PATH, "<f4")`, the
//! analysis crate's `MmapRows`) reads it directly. Finalisation is atomic: rows are appended to
//! `PATH.partial`; [`RowStoreWriter::finish`] syncs it, removes a stale `PATH.json`, renames the
//! data into place, then writes the header atomically ([`erosion_model::atomic`]). A header
//! therefore only ever describes a complete data file; a store without one was not finished.
//!
//! Rows a gigabyte long are fine: the writer holds one row at a time, and the reader maps the
//! file, so reading rows pages in only those rows.

use anyhow::{bail, Context, Result};
use erosion_model::atomic::write_atomic;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Receives one row of `dim` values per call, in order.
pub trait RowSink {
    /// Length every row must have.
    fn dim(&self) -> usize;
    /// Rows received so far.
    fn n_rows(&self) -> usize;
    /// Appends a row. // row: [dim]
    fn push_row(&mut self, row: &[f32]) -> Result<()>;
}

fn check_row(what: &dyn Fn() -> String, n: usize, dim: usize, row: &[f32]) -> Result<()> {
    if row.len() != dim {
        bail!(
            "{}: row {n} has {} values, expected {dim}",
            what(),
            row.len()
        );
    }
    if let Some(j) = row.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: row {n} has a non-finite value {} at column {j}",
            what(),
            row[j]
        );
    }
    Ok(())
}

fn check_range(what: &dyn Fn() -> String, n: usize, range: &Range<usize>) -> Result<()> {
    if range.start > range.end || range.end > n {
        bail!("{}: rows {range:?} are outside the {n} rows stored", what());
    }
    Ok(())
}

/// Rows kept in memory, row-major. // [n_rows, dim]
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryRows {
    dim: usize,
    data: Vec<f32>,
}

impl MemoryRows {
    pub fn new(dim: usize) -> Result<Self> {
        if dim == 0 {
            bail!("in-memory rows: the row length must be positive");
        }
        Ok(MemoryRows {
            dim,
            data: Vec::new(),
        })
    }

    pub fn n_rows(&self) -> usize {
        self.data.len() / self.dim
    }
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i`. // [dim]
    pub fn row(&self, i: usize) -> Result<&[f32]> {
        self.rows(i..i.saturating_add(1))
    }

    /// Rows `range`, contiguous. // [range.len() * dim]
    pub fn rows(&self, range: Range<usize>) -> Result<&[f32]> {
        check_range(&|| "in-memory rows".into(), self.n_rows(), &range)?;
        Ok(&self.data[range.start * self.dim..range.end * self.dim])
    }

    /// All rows. // [n_rows * dim]
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
}

impl RowSink for MemoryRows {
    fn dim(&self) -> usize {
        self.dim
    }
    fn n_rows(&self) -> usize {
        MemoryRows::n_rows(self)
    }
    fn push_row(&mut self, row: &[f32]) -> Result<()> {
        check_row(&|| "in-memory rows".into(), self.n_rows(), self.dim, row)?;
        self.data.extend_from_slice(row);
        Ok(())
    }
}

const FORMAT: &str = "erosion-rows";
const VERSION: u32 = 1;

/// The JSON header next to a row file (`PATH.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowStoreHeader {
    /// Always `"erosion-rows"`.
    pub format: String,
    pub version: u32,
    /// Always `"f32"`.
    pub dtype: String,
    /// Always `"little"`.
    pub byte_order: String,
    pub n_rows: usize,
    pub dim: usize,
    /// What the rows are (e.g. the gradient layout and loss options); free-form.
    #[serde(default)]
    pub meta: serde_json::Value,
}

/// `PATH.json`, the header of the row file at `PATH`.
pub fn header_path(path: &Path) -> PathBuf {
    suffixed(path, ".json")
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes rows append-only to `PATH.partial`; [`RowStoreWriter::finish`] makes the store
/// appear at `PATH` atomically. Dropped unfinished, it deletes its partial file.
pub struct RowStoreWriter {
    path: PathBuf,
    partial: PathBuf,
    out: Option<BufWriter<File>>,
    dim: usize,
    n: usize,
    meta: serde_json::Value,
    bytes: Vec<u8>,
}

impl RowStoreWriter {
    /// Starts a store of rows of `dim` values at `path` (data) and `path.json` (header), with
    /// `meta` recorded in the header. An existing store at `path` stays readable until `finish`.
    pub fn create(path: impl AsRef<Path>, dim: usize, meta: serde_json::Value) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if dim == 0 {
            bail!("{}: the row length must be positive", path.display());
        }
        let partial = suffixed(&path, ".partial");
        let file =
            File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
        Ok(RowStoreWriter {
            path,
            partial,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            dim,
            n: 0,
            meta,
            bytes: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes and syncs the rows, moves them to `PATH` and writes `PATH.json`; returns the
    /// header. Until this returns, readers see the previous store at `PATH` (or none).
    pub fn finish(mut self) -> Result<RowStoreHeader> {
        let out = self.out.take().context("row store already finished")?;
        let file = out
            .into_inner()
            .map_err(|e| anyhow::anyhow!("flushing {}: {}", self.partial.display(), e.error()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", self.partial.display()))?;
        let len = file.metadata()?.len();
        let want = (self.n * self.dim * 4) as u64;
        if len != want {
            bail!(
                "{}: {len} bytes written, expected {want} for {} rows of {}",
                self.partial.display(),
                self.n,
                self.dim
            );
        }
        drop(file);
        let header = RowStoreHeader {
            format: FORMAT.into(),
            version: VERSION,
            dtype: "f32".into(),
            byte_order: "little".into(),
            n_rows: self.n,
            dim: self.dim,
            meta: std::mem::take(&mut self.meta),
        };
        let hpath = header_path(&self.path);
        // No moment where a header describes data it was not written for.
        match fs::remove_file(&hpath) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing the old {}", hpath.display()))
            }
            _ => {}
        }
        fs::rename(&self.partial, &self.path).with_context(|| {
            format!(
                "moving {} to {}",
                self.partial.display(),
                self.path.display()
            )
        })?;
        // The header, atomically; its directory sync also makes the data rename durable.
        write_atomic(&hpath, |w| {
            serde_json::to_writer_pretty(&mut *w, &header)?;
            w.write_all(b"\n")?;
            Ok(())
        })?;
        Ok(header)
    }
}

impl RowSink for RowStoreWriter {
    fn dim(&self) -> usize {
        self.dim
    }
    fn n_rows(&self) -> usize {
        self.n
    }
    fn push_row(&mut self, row: &[f32]) -> Result<()> {
        let partial = &self.partial;
        check_row(&|| partial.display().to_string(), self.n, self.dim, row)?;
        let out = self.out.as_mut().context("row store already finished")?;
        self.bytes.clear();
        self.bytes.reserve(row.len() * 4);
        for v in row {
            self.bytes.extend_from_slice(&v.to_le_bytes());
        }
        out.write_all(&self.bytes)
            .with_context(|| format!("writing row {} to {}", self.n, self.partial.display()))?;
        self.n += 1;
        Ok(())
    }
}

impl Drop for RowStoreWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.partial);
        }
    }
}

/// A finished row store, memory-mapped: rows are borrowed straight from the map.
pub struct RowStore {
    path: PathBuf,
    header: RowStoreHeader,
    /// `None` for a store with no values (an empty file cannot be mapped everywhere).
    map: Option<memmap2::Mmap>,
}

impl std::fmt::Debug for RowStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowStore")
            .field("path", &self.path)
            .field("n_rows", &self.header.n_rows)
            .field("dim", &self.header.dim)
            .finish()
    }
}

impl RowStore {
    /// Opens the store whose data is at `path` and header at `path.json`, checking the header
    /// against the data file's size.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if cfg!(target_endian = "big") {
            bail!(
                "{}: row stores are little-endian and are read in place; this machine is big-endian",
                path.display()
            );
        }
        let hpath = header_path(&path);
        let text = fs::read_to_string(&hpath).with_context(|| {
            format!(
                "reading {} (a row store without its header was not finished)",
                hpath.display()
            )
        })?;
        let header: RowStoreHeader = serde_json::from_str(&text)
            .with_context(|| format!("parsing the row store header {}", hpath.display()))?;
        if header.format != FORMAT || header.version != VERSION {
            bail!(
                "{}: format {:?} version {}, expected {FORMAT:?} version {VERSION}",
                hpath.display(),
                header.format,
                header.version
            );
        }
        if header.dtype != "f32" || header.byte_order != "little" || header.dim == 0 {
            bail!(
                "{}: dtype {:?}, byte order {:?}, dim {}: only little-endian f32 rows of positive length are supported",
                hpath.display(),
                header.dtype,
                header.byte_order,
                header.dim
            );
        }
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("stat {}", path.display()))?
            .len();
        let want = header
            .n_rows
            .checked_mul(header.dim)
            .and_then(|v| v.checked_mul(4))
            .with_context(|| format!("{}: n_rows * dim overflows", hpath.display()))?;
        if len != want as u64 {
            bail!(
                "{}: {len} bytes, but its header says {} rows of {} f32 ({want} bytes)",
                path.display(),
                header.n_rows,
                header.dim
            );
        }
        let map = if want == 0 {
            None
        } else {
            // SAFETY: read-only map of a finished store; the contract (module docs) is that a
            // finished data file is never modified in place (a new store replaces it by rename,
            // which leaves this mapping on the old inode).
            Some(
                unsafe { memmap2::Mmap::map(&file) }
                    .with_context(|| format!("memory-mapping {}", path.display()))?,
            )
        };
        let store = RowStore { path, header, map };
        // The map is page-aligned; check anyway rather than assume.
        store.values()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn header(&self) -> &RowStoreHeader {
        &self.header
    }
    pub fn meta(&self) -> &serde_json::Value {
        &self.header.meta
    }
    pub fn n_rows(&self) -> usize {
        self.header.n_rows
    }
    pub fn dim(&self) -> usize {
        self.header.dim
    }

    fn values(&self) -> Result<&[f32]> {
        let Some(map) = &self.map else {
            return Ok(&[]);
        };
        // SAFETY: every bit pattern is a valid f32; align_to only yields correctly aligned
        // elements, and the prefix check rejects a misaligned start.
        let (pre, vals, post) = unsafe { map.align_to::<f32>() };
        if !pre.is_empty() || !post.is_empty() {
            bail!("{}: the mapping is not f32-aligned", self.path.display());
        }
        Ok(vals)
    }

    /// Row `i`, borrowed from the map. // [dim]
    pub fn row(&self, i: usize) -> Result<&[f32]> {
        self.rows(i..i.saturating_add(1))
    }

    /// Rows `range`, contiguous, borrowed from the map. // [range.len() * dim]
    pub fn rows(&self, range: Range<usize>) -> Result<&[f32]> {
        check_range(&|| self.path.display().to_string(), self.n_rows(), &range)?;
        let d = self.dim();
        Ok(&self.values()?[range.start * d..range.end * d])
    }
}
