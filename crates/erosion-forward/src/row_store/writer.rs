//! The append-only writer of a row store, finished atomically (module docs of [`super`]).

use anyhow::{bail, Context, Result};
use erosion_model::atomic::write_atomic;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{check_row, header_path, suffixed, RowSink, RowStoreHeader, FORMAT, VERSION};

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
