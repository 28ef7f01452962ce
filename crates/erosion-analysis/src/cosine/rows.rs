//! Where the rows of a Gram matrix come from: memory, or a flat little-endian f32 file
//! (memory-mapped to read, written row by row).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A store of `n_rows` vectors of length `dim`, read in ranges of rows.
pub trait RowSource {
    fn n_rows(&self) -> usize;
    fn dim(&self) -> usize;
    /// Copies rows `range` into `buf` (row-major, `range.len() * dim` values).
    fn read_rows(&mut self, range: Range<usize>, buf: &mut [f32]) -> Result<()>;
}

/// Checks a read of rows `range` into `buf` against a store of `src_rows` rows of `dim`.
fn check_read(src_rows: usize, dim: usize, range: &Range<usize>, buf: &[f32]) -> Result<()> {
    if range.start > range.end || range.end > src_rows {
        bail!("row range {range:?} outside a store of {src_rows} rows");
    }
    if buf.len() != range.len() * dim {
        bail!(
            "buffer of {} values for {} rows of dim {dim}",
            buf.len(),
            range.len()
        );
    }
    Ok(())
}

/// Rows held in memory (row-major `f32`).
#[derive(Clone, Debug)]
pub struct InMemoryRows {
    n: usize,
    dim: usize,
    data: Vec<f32>, // [n, dim]
}

impl InMemoryRows {
    pub fn new(n: usize, dim: usize, data: Vec<f32>) -> Result<Self> {
        if data.len() != n * dim {
            bail!(
                "in-memory rows: {} values for {n} rows of dim {dim}",
                data.len()
            );
        }
        Ok(Self { n, dim, data })
    }

    /// The data. // [n, dim]
    pub fn data(&self) -> &[f32] {
        &self.data
    }
}

impl RowSource for InMemoryRows {
    fn n_rows(&self) -> usize {
        self.n
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn read_rows(&mut self, range: Range<usize>, buf: &mut [f32]) -> Result<()> {
        check_read(self.n, self.dim, &range, buf)?;
        buf.copy_from_slice(&self.data[range.start * self.dim..range.end * self.dim]);
        Ok(())
    }
}

/// Rows in a flat little-endian `f32` file (no header: row i at byte offset 4 * i * dim),
/// memory-mapped: the OS pages rows in as they are read, so the process holds only the blocks
/// it copies out. The file must not change while mapped.
pub struct MmapRows {
    path: PathBuf,
    map: memmap2::Mmap,
    n: usize,
    dim: usize,
}

impl MmapRows {
    /// Maps `path` as rows of `dim` f32 values; the file size must be a multiple of 4 * dim.
    pub fn open(path: impl AsRef<Path>, dim: usize) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if dim == 0 {
            bail!("{}: row dim must be positive", path.display());
        }
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("stat {}", path.display()))?
            .len() as usize;
        if len % (4 * dim) != 0 {
            bail!(
                "{}: {len} bytes is not a whole number of rows of {dim} f32",
                path.display()
            );
        }
        // SAFETY: read-only map; the documented contract is that the file is not modified
        // while mapped (it is written once by RowFileWriter, then only read).
        let map = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("memory-mapping {}", path.display()))?;
        Ok(Self {
            path,
            map,
            n: len / (4 * dim),
            dim,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl RowSource for MmapRows {
    fn n_rows(&self) -> usize {
        self.n
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn read_rows(&mut self, range: Range<usize>, buf: &mut [f32]) -> Result<()> {
        check_read(self.n, self.dim, &range, buf)
            .with_context(|| format!("reading {}", self.path.display()))?;
        let bytes = &self.map[range.start * self.dim * 4..range.end * self.dim * 4];
        for (dst, src) in buf.iter_mut().zip(bytes.chunks_exact(4)) {
            *dst = f32::from_le_bytes([src[0], src[1], src[2], src[3]]);
        }
        Ok(())
    }
}

/// Appends rows to a flat little-endian f32 file readable by [`MmapRows`].
pub struct RowFileWriter {
    path: PathBuf,
    out: BufWriter<File>,
    dim: usize,
    n: usize,
}

impl RowFileWriter {
    pub fn create(path: impl AsRef<Path>, dim: usize) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            path,
            out: BufWriter::new(file),
            dim,
            n: 0,
        })
    }

    /// Appends one row. // row: `[dim]`
    pub fn push(&mut self, row: &[f32]) -> Result<()> {
        if row.len() != self.dim {
            bail!(
                "{}: row {} has {} values, expected {}",
                self.path.display(),
                self.n,
                row.len(),
                self.dim
            );
        }
        for v in row {
            self.out
                .write_all(&v.to_le_bytes())
                .with_context(|| format!("writing {}", self.path.display()))?;
        }
        self.n += 1;
        Ok(())
    }

    /// Flushes; returns the number of rows written.
    pub fn finish(mut self) -> Result<usize> {
        self.out
            .flush()
            .with_context(|| format!("flushing {}", self.path.display()))?;
        Ok(self.n)
    }
}
