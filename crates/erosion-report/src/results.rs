//! `results.json`: every number of a run, under the provenance that produced it.
//!
//! The file is one JSON object `{"schema_version": N, "provenance": {...}, "results": {...}}`,
//! pretty-printed and written atomically. `schema_version` ([`RESULTS_SCHEMA_VERSION`]) changes
//! whenever the layout of `results` changes, so files written by different versions of erosion
//! can be told apart (a file without it predates the field: version 0). JSON has no NaN or infinity: serde_json writes non-finite
//! floats as `null`, so a `null` where a number belongs means "not a finite number"; the
//! `.npy` files keep the exact values.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::provenance::Provenance;
use erosion_model::atomic::write_atomic;

/// The layout version of the `results.json` this build writes.
pub const RESULTS_SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct ResultsRef<'a, R: Serialize> {
    schema_version: u32,
    provenance: &'a Provenance,
    results: &'a R,
}

/// A `results.json` read back.
#[derive(Debug, Clone, Deserialize)]
pub struct ResultsFile {
    /// 0 for files written before the field existed.
    #[serde(default)]
    pub schema_version: u32,
    pub provenance: Provenance,
    pub results: serde_json::Value,
}

/// Writes `{"provenance": ..., "results": ...}` to `path` atomically.
pub fn write_results_json<R: Serialize>(
    path: &Path,
    provenance: &Provenance,
    results: &R,
) -> Result<()> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(
            &mut *w,
            &ResultsRef {
                schema_version: RESULTS_SCHEMA_VERSION,
                provenance,
                results,
            },
        )?;
        w.write_all(b"\n")?;
        Ok(())
    })
}

/// Reads a `results.json` written by [`write_results_json`]; refuses one of a newer layout
/// than this build knows, rather than misreading it.
pub fn read_results_json(path: &Path) -> Result<ResultsFile> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file: ResultsFile =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    if file.schema_version > RESULTS_SCHEMA_VERSION {
        bail!(
            "{}: results schema version {} is newer than this erosion reads ({}): \
             read it with the erosion version recorded in its provenance",
            path.display(),
            file.schema_version,
            RESULTS_SCHEMA_VERSION
        );
    }
    Ok(file)
}
