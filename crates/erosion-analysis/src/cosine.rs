//! Cosine-similarity matrices of n vectors (finding 2: loss vectors and gradients).
//!
//! cos_ij = x_i . x_j / (|x_i| |x_j|), read off the Gram matrix G = X X^T:
//! cos_ij = G_ij / sqrt(G_ii G_jj). Mean-centring (x_i - mu, mu = mean of the rows) is applied
//! to the Gram matrix exactly by double centring: Gc = C G C with C = I - 11^T/n, i.e.
//! Gc_ij = G_ij - r_i - r_j + t, r_i = mean_j G_ij, t = mean_ij G_ij.
//!
//! Rows can be far too large to hold all at once (a gradient of a 32B model's last-layer
//! o_proj has 26M values): [`blocked_gram`] reads rows from a [`RowSource`] (in memory, or a
//! memory-mapped flat f32 file) block by block and holds two blocks plus the n x n result.
//!
//! Exactness: every Gram entry is computed by one kernel ([`dot_f32`]: f32 products accumulated
//! in f64, in a fixed order over fixed column chunks), so the blocked matrix equals the dense
//! one bit for bit, whatever the block size.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::matrix::Matrix;

/// Column chunk of the dot kernel; tiles of the blocked Gram use the same width.
const CHUNK: usize = 1024;

/// A store of `n_rows` vectors of length `dim`, read in ranges of rows.
pub trait RowSource {
    fn n_rows(&self) -> usize;
    fn dim(&self) -> usize;
    /// Copies rows `range` into `buf` (row-major, `range.len() * dim` values).
    fn read_rows(&mut self, range: Range<usize>, buf: &mut [f32]) -> Result<()>;
}

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

/// Lanes of the dot kernel: 32 f64 accumulators (four 512-bit or eight 256-bit vectors), so
/// the additions are independent and vectorise; a fixed count keeps the result deterministic.
const LANES: usize = 32;

/// Dot product of one column chunk: f32 products summed in f64 over [`LANES`] lanes, the
/// lanes then added as a fixed pairwise tree. Symmetric in (a, b) bit for bit.
#[inline]
pub(crate) fn chunk_dot(a: &[f32], b: &[f32]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut lanes = [0.0f64; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for k in 0..LANES {
            lanes[k] += x[k] as f64 * y[k] as f64;
        }
    }
    for (k, (x, y)) in ar.iter().zip(br).enumerate() {
        lanes[k] += *x as f64 * *y as f64;
    }
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for k in 0..w {
            lanes[k] += lanes[k + w];
        }
    }
    lanes[0]
}

/// The Gram kernel: sum over 1024-column chunks of a 32-lane f64 dot product, in chunk order. Symmetric in
/// (a, b) bit for bit.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = 0.0;
    for (x, y) in a.chunks(CHUNK).zip(b.chunks(CHUNK)) {
        acc += chunk_dot(x, y);
    }
    acc
}

/// Gram matrix of row-major f32 rows held in memory, with [`dot_f32`]. // data: [n, dim] -> [n, n]
pub fn gram_dense_f32(n: usize, dim: usize, data: &[f32]) -> Result<Matrix> {
    if data.len() != n * dim {
        bail!("gram: {} values for {n} rows of dim {dim}", data.len());
    }
    let mut g = Matrix::zeros(n, n);
    for i in 0..n {
        for j in i..n {
            let v = dot_f32(&data[i * dim..(i + 1) * dim], &data[j * dim..(j + 1) * dim]);
            g.set(i, j, v);
            g.set(j, i, v);
        }
    }
    Ok(g)
}

/// acc[i, j] = a_i . b_j for a tile, on every core: the rows of `a` are split among threads.
/// Each entry is summed in the same order whatever the split, so results stay bit-identical.
fn tile_products(a: &[f32], na: usize, b: &[f32], nb: usize, dim: usize, acc: &mut [f64]) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Below about a million multiply-adds a thread costs more than it saves.
    let threads = if na * nb * dim < 1 << 20 {
        1
    } else {
        cores.min(na)
    };
    if threads <= 1 {
        return tile_rows(a, na, b, nb, dim, acc);
    }
    let per = na.div_ceil(threads);
    std::thread::scope(|scope| {
        for (t, out) in acc[..na * nb].chunks_mut(per * nb).enumerate() {
            let rows = out.len() / nb;
            let a = &a[t * per * dim..(t * per + rows) * dim];
            scope.spawn(move || tile_rows(a, rows, b, nb, dim, out));
        }
    });
}

/// The Gram tile of two row blocks, column chunk by column chunk (cache-friendly for long
/// rows), in the same order as [`dot_f32`]. // a: [na, dim], b: [nb, dim], acc: [na, nb]
fn tile_rows(a: &[f32], na: usize, b: &[f32], nb: usize, dim: usize, acc: &mut [f64]) {
    acc.iter_mut().for_each(|v| *v = 0.0);
    let mut c0 = 0;
    while c0 < dim {
        let c1 = (c0 + CHUNK).min(dim);
        for i in 0..na {
            let ai = &a[i * dim + c0..i * dim + c1];
            for j in 0..nb {
                acc[i * nb + j] += chunk_dot(ai, &b[j * dim + c0..j * dim + c1]);
            }
        }
        c0 = c1;
    }
}

fn blocks(n: usize, block_rows: usize) -> Vec<Range<usize>> {
    (0..n)
        .step_by(block_rows)
        .map(|s| s..(s + block_rows).min(n))
        .collect()
}

/// Gram matrix G = X X^T of a row store, reading `block_rows` rows at a time: holds two
/// blocks (2 * block_rows * dim f32) and the result; reads the store ceil(n/b)(ceil(n/b)+1)/2
/// block-times. Equal bit for bit to [`gram_dense_f32`]. // -> [n, n]
pub fn blocked_gram(src: &mut dyn RowSource, block_rows: usize) -> Result<Matrix> {
    if block_rows == 0 {
        bail!("block_rows must be positive");
    }
    let (n, dim) = (src.n_rows(), src.dim());
    let bl = blocks(n, block_rows);
    let mut g = Matrix::zeros(n, n);
    let mut buf_i = vec![0f32; block_rows.min(n) * dim];
    let mut buf_j = vec![0f32; block_rows.min(n) * dim];
    let mut tile = vec![0f64; block_rows * block_rows];
    for (bi, ri) in bl.iter().enumerate() {
        let a = &mut buf_i[..ri.len() * dim];
        src.read_rows(ri.clone(), a)
            .with_context(|| format!("gram block rows {ri:?}"))?;
        for rj in &bl[bi..] {
            let b: &[f32] = if rj == ri {
                &*a
            } else {
                let b = &mut buf_j[..rj.len() * dim];
                src.read_rows(rj.clone(), b)
                    .with_context(|| format!("gram block rows {rj:?}"))?;
                b
            };
            let t = &mut tile[..ri.len() * rj.len()];
            tile_products(a, ri.len(), b, rj.len(), dim, t);
            for (ii, i) in ri.clone().enumerate() {
                for (jj, j) in rj.clone().enumerate() {
                    let v = t[ii * rj.len() + jj];
                    g.set(i, j, v);
                    g.set(j, i, v);
                }
            }
        }
    }
    Ok(g)
}

/// Cross Gram matrix X Y^T of two stores of the same dim, block by block. // -> [n_x, n_y]
pub fn blocked_cross_gram(
    x: &mut dyn RowSource,
    y: &mut dyn RowSource,
    block_rows: usize,
) -> Result<Matrix> {
    if block_rows == 0 {
        bail!("block_rows must be positive");
    }
    if x.dim() != y.dim() {
        bail!("cross gram of stores of dims {} and {}", x.dim(), y.dim());
    }
    let dim = x.dim();
    let (bx, by) = (
        blocks(x.n_rows(), block_rows),
        blocks(y.n_rows(), block_rows),
    );
    let mut g = Matrix::zeros(x.n_rows(), y.n_rows());
    let mut buf_x = vec![0f32; block_rows * dim];
    let mut buf_y = vec![0f32; block_rows * dim];
    let mut tile = vec![0f64; block_rows * block_rows];
    for rx in &bx {
        let a = &mut buf_x[..rx.len() * dim];
        x.read_rows(rx.clone(), a)
            .with_context(|| format!("cross gram: first store rows {rx:?}"))?;
        for ry in &by {
            let b = &mut buf_y[..ry.len() * dim];
            y.read_rows(ry.clone(), b)
                .with_context(|| format!("cross gram: second store rows {ry:?}"))?;
            let t = &mut tile[..rx.len() * ry.len()];
            tile_products(a, rx.len(), b, ry.len(), dim, t);
            for (ii, i) in rx.clone().enumerate() {
                g.row_mut(i)[ry.clone()].copy_from_slice(&t[ii * ry.len()..(ii + 1) * ry.len()]);
            }
        }
    }
    Ok(g)
}

/// Gram matrix of the mean-centred rows, from the uncentred one (double centring, exact in
/// exact arithmetic). // [n, n] -> [n, n]
pub fn double_centre(g: &Matrix) -> Result<Matrix> {
    if g.rows != g.cols || g.rows == 0 {
        bail!(
            "double centring needs a non-empty square Gram matrix, got {}x{}",
            g.rows,
            g.cols
        );
    }
    let n = g.rows;
    let r: Vec<f64> = (0..n)
        .map(|i| g.row(i).iter().sum::<f64>() / n as f64)
        .collect();
    let t = r.iter().sum::<f64>() / n as f64;
    let mut c = Matrix::zeros(n, n);
    for i in 0..n {
        for j in 0..n {
            c.set(i, j, g.get(i, j) - r[i] - r[j] + t);
        }
    }
    Ok(c)
}

/// Cosine matrix from a Gram matrix: G_ij / sqrt(G_ii G_jj), clamped to [-1, 1] (rounding can
/// overshoot by an ulp), diagonal exactly 1. Errors on a zero-norm row, naming it.
pub fn cosine_from_gram(g: &Matrix) -> Result<Matrix> {
    if g.rows != g.cols {
        bail!("cosine from a non-square Gram matrix {}x{}", g.rows, g.cols);
    }
    let n = g.rows;
    let norms: Vec<f64> = (0..n).map(|i| g.get(i, i).max(0.0).sqrt()).collect();
    // Relative threshold: a centred row can be zero up to rounding.
    let scale = norms.iter().cloned().fold(0.0, f64::max);
    for (i, &s) in norms.iter().enumerate() {
        if s.is_nan() || s <= 1e-12 * scale || !s.is_finite() {
            bail!("row {i} has norm {s} (max row norm {scale}): its cosine is undefined");
        }
    }
    let mut c = Matrix::zeros(n, n);
    for i in 0..n {
        for j in 0..n {
            let v = if i == j {
                1.0
            } else {
                (g.get(i, j) / (norms[i] * norms[j])).clamp(-1.0, 1.0)
            };
            c.set(i, j, v);
        }
    }
    Ok(c)
}

/// Cosine matrix of n vectors held in memory, optionally mean-centred first. // [n, d] -> [n, n]
pub fn cosine_matrix(rows: &Matrix, centre: bool) -> Result<Matrix> {
    let n = rows.rows;
    let mut g = Matrix::zeros(n, n);
    for i in 0..n {
        for j in i..n {
            let v = crate::matrix::dot(rows.row(i), rows.row(j));
            g.set(i, j, v);
            g.set(j, i, v);
        }
    }
    if centre {
        g = double_centre(&g)?;
    }
    cosine_from_gram(&g)
}

/// Cosine matrix of a row store computed block by block ([`blocked_gram`]). // -> [n, n]
pub fn blocked_cosine_matrix(
    src: &mut dyn RowSource,
    block_rows: usize,
    centre: bool,
) -> Result<Matrix> {
    let mut g = blocked_gram(src, block_rows)?;
    if centre {
        g = double_centre(&g)?;
    }
    cosine_from_gram(&g)
}
