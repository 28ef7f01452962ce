//! A finished row store, read memory-mapped.

use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{check_range, header_path, RowStoreHeader, FORMAT, VERSION};

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
        let header = read_header(&hpath)?;
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

/// Reads and checks the header at `hpath`: the format and version this code writes, and
/// little-endian f32 rows of positive length.
fn read_header(hpath: &Path) -> Result<RowStoreHeader> {
    let text = fs::read_to_string(hpath).with_context(|| {
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
    Ok(header)
}
