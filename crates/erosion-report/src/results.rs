//! `results.json`: every number of a run, under the provenance that produced it.
//!
//! The file is one JSON object `{"provenance": {...}, "results": {...}}`, pretty-printed
//! and written atomically. JSON has no NaN or infinity: serde_json writes non-finite
//! floats as `null`, so a `null` where a number belongs means "not a finite number"; the
//! `.npy` files keep the exact values.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::provenance::Provenance;
use erosion_model::atomic::write_atomic;

#[derive(Serialize)]
struct ResultsRef<'a, R: Serialize> {
    provenance: &'a Provenance,
    results: &'a R,
}

/// A `results.json` read back.
#[derive(Debug, Clone, Deserialize)]
pub struct ResultsFile {
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
                provenance,
                results,
            },
        )?;
        w.write_all(b"\n")?;
        Ok(())
    })
}

/// Reads a `results.json` written by [`write_results_json`].
pub fn read_results_json(path: &Path) -> Result<ResultsFile> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}
