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

mod memory;
mod reader;
mod writer;

pub use memory::MemoryRows;
pub use reader::RowStore;
pub use writer::RowStoreWriter;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
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

/// Checks that `row` is row `n` of a sink of `dim`-value rows: its length, and finite values.
/// `what` names the sink in errors.
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

/// Checks that `range` lies within the `n` rows stored; `what` names the store in errors.
fn check_range(what: &dyn Fn() -> String, n: usize, range: &Range<usize>) -> Result<()> {
    if range.start > range.end || range.end > n {
        bail!("{}: rows {range:?} are outside the {n} rows stored", what());
    }
    Ok(())
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

/// `path` with `suffix` appended to its last component (`rows.bin` -> `rows.bin.json`).
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}
