//! `.npy` files (NumPy format version 1.0) for the matrices and vectors of a study.
//!
//! Layout (numpy.lib.format): the magic `\x93NUMPY`, the version bytes `1 0`, a
//! little-endian u16 header length, then the header: a Python dict literal
//! `{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }`, padded with spaces and
//! ended by `\n` so that magic + length + header is a multiple of 64 bytes; then the data,
//! little-endian, C order (last index fastest).
//!
//! The header is written byte for byte as numpy >= 1.23 writes it: numpy also reserves
//! `21 - len(repr(shape[0]))` spaces after the dict so that the first axis can grow in
//! place, and when the total is already a multiple of 64 it still pads a full 64 bytes.

use std::path::Path;

mod rows;
pub use rows::NpyRowFile;

use anyhow::{bail, ensure, Context, Result};

use crate::atomic::write_atomic;

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// numpy aligns the data start to this many bytes.
const ALIGN: usize = 64;
/// numpy's GROWTH_AXIS_MAX_DIGITS: room for the first axis to grow to 21 digits.
const GROWTH_AXIS_MAX_DIGITS: usize = 21;

/// An element type that `.npy` files of this crate hold.
pub trait NpyElement: Copy + Sized {
    /// numpy's dtype string, little-endian (`<f4`, `<f8`, `<u4`, `<i8`).
    const DESCR: &'static str;
    /// Bytes per element.
    const SIZE: usize;
    /// Appends the little-endian bytes of `self`.
    fn put_le(self, out: &mut Vec<u8>);
    /// Reads one element from exactly `SIZE` little-endian bytes.
    fn get_le(bytes: &[u8]) -> Self;
    /// Wraps a vector of this type into [`NpyData`].
    fn wrap(v: Vec<Self>) -> NpyData;
    /// Takes the vector out of [`NpyData`] if it holds this type.
    fn unwrap(d: NpyData) -> Option<Vec<Self>>;
}

macro_rules! npy_element {
    ($t:ty, $descr:literal, $variant:ident) => {
        impl NpyElement for $t {
            const DESCR: &'static str = $descr;
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get_le(bytes: &[u8]) -> Self {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                b.copy_from_slice(bytes);
                <$t>::from_le_bytes(b)
            }
            fn wrap(v: Vec<Self>) -> NpyData {
                NpyData::$variant(v)
            }
            fn unwrap(d: NpyData) -> Option<Vec<Self>> {
                match d {
                    NpyData::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
npy_element!(f32, "<f4", F32);
npy_element!(f64, "<f8", F64);
npy_element!(u32, "<u4", U32);
npy_element!(i64, "<i8", I64);

/// The data of an array read from a `.npy` file, in C order.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    U32(Vec<u32>),
    I64(Vec<i64>),
}

impl NpyData {
    /// numpy's dtype string of the data.
    pub fn descr(&self) -> &'static str {
        match self {
            NpyData::F32(_) => f32::DESCR,
            NpyData::F64(_) => f64::DESCR,
            NpyData::U32(_) => u32::DESCR,
            NpyData::I64(_) => i64::DESCR,
        }
    }
}

/// An array read from a `.npy` file: its shape and its data in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

/// Python's `repr` of a shape tuple: `()`, `(3,)`, `(2, 3)`.
fn shape_repr(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|n| n.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// The full header (magic, version, length, padded dict) numpy writes for a C-order array
/// of dtype `descr` and this shape.
pub fn header_bytes(descr: &str, shape: &[usize]) -> Vec<u8> {
    // numpy sorts the keys: descr, fortran_order, shape.
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': {}, }}",
        shape_repr(shape)
    );
    if let Some(first) = shape.first() {
        let digits = first.to_string().len();
        dict.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits)));
    }
    let hlen = dict.len() + 1; // + '\n'
    let pad = ALIGN - (MAGIC.len() + 2 + 2 + hlen) % ALIGN;
    let total_header = hlen + pad;
    let mut out = Vec::with_capacity(10 + total_header);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    // A 1-D or 2-D header is far below u16::MAX; an absurd rank is refused by the writers.
    out.extend_from_slice(&(total_header as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out
}

/// The bytes of a `.npy` file holding `data` with `shape` (C order).
pub fn npy_bytes<T: NpyElement>(shape: &[usize], data: &[T]) -> Result<Vec<u8>> {
    check_shape(shape, data.len())?;
    let mut out = header_bytes(T::DESCR, shape);
    out.reserve(data.len() * T::SIZE);
    for &x in data {
        x.put_le(&mut out);
    }
    Ok(out)
}

/// The number of elements of `shape`, checked: at most 32 axes, no overflow.
fn element_count(shape: &[usize]) -> Result<usize> {
    ensure!(
        shape.len() <= 32,
        "npy: shape {shape:?} has {} axes; at most 32 are supported",
        shape.len()
    );
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .with_context(|| format!("npy: shape {shape:?} overflows usize"))
}

fn check_shape(shape: &[usize], len: usize) -> Result<()> {
    let n = element_count(shape)?;
    ensure!(
        n == len,
        "npy: shape {shape:?} holds {n} elements but {len} were given"
    );
    Ok(())
}

/// Writes `data` with `shape` (C order) to `path` as `.npy`, atomically.
pub fn write_npy<T: NpyElement>(path: &Path, shape: &[usize], data: &[T]) -> Result<()> {
    check_shape(shape, data.len()).with_context(|| format!("writing {}", path.display()))?;
    write_atomic(path, |w| {
        w.write_all(&header_bytes(T::DESCR, shape))?;
        // Convert in chunks so a large matrix is not copied whole.
        let mut buf = Vec::with_capacity(8192 * T::SIZE);
        for chunk in data.chunks(8192) {
            buf.clear();
            for &x in chunk {
                x.put_le(&mut buf);
            }
            w.write_all(&buf)?;
        }
        Ok(())
    })
}

/// Writes a 1-D array.
pub fn write_npy_1d<T: NpyElement>(path: &Path, data: &[T]) -> Result<()> {
    write_npy(path, &[data.len()], data)
}

/// Writes a 2-D array given as rows; every row must have the same length.
pub fn write_npy_2d<T: NpyElement>(path: &Path, rows: &[Vec<T>]) -> Result<()> {
    let cols = rows.first().map_or(0, |r| r.len());
    for (i, r) in rows.iter().enumerate() {
        ensure!(
            r.len() == cols,
            "writing {}: row {i} has {} values, row 0 has {cols}",
            path.display(),
            r.len()
        );
    }
    let flat: Vec<T> = rows.iter().flatten().copied().collect();
    write_npy(path, &[rows.len(), cols], &flat)
}

/// Parses the bytes of a `.npy` file (versions 1.0, 2.0 and 3.0; C or Fortran order,
/// which is returned converted to C order for 2-D arrays).
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray> {
    ensure!(
        bytes.len() >= 10 && &bytes[..6] == MAGIC,
        "not a .npy file (no \\x93NUMPY magic)"
    );
    let (major, minor) = (bytes[6], bytes[7]);
    let (hlen, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            ensure!(bytes.len() >= 12, "truncated .npy header");
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        _ => bail!("unsupported .npy version {major}.{minor}"),
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .with_context(|| format!("truncated .npy header: {hlen} bytes announced"))?;
    let header = std::str::from_utf8(&bytes[start..end]).context(".npy header is not text")?;
    let descr = dict_str(header, "descr")?;
    let fortran = match dict_raw(header, "fortran_order")? {
        v if v.starts_with("True") => true,
        v if v.starts_with("False") => false,
        v => bail!(".npy header: fortran_order is {v:?}"),
    };
    let shape = dict_shape(header)?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .context(".npy shape overflows")?;
    let body = &bytes[end..];
    let data = match descr.as_str() {
        "<f4" => decode::<f32>(body, n)?,
        "<f8" => decode::<f64>(body, n)?,
        "<u4" => decode::<u32>(body, n)?,
        "<i8" => decode::<i64>(body, n)?,
        d => bail!(".npy dtype {d:?} is not supported (only <f4, <f8, <u4, <i8)"),
    };
    let data = if fortran && shape.len() == 2 {
        transpose_fortran(data, shape[0], shape[1])
    } else {
        ensure!(
            !fortran || shape.len() < 2,
            ".npy: Fortran order with {} axes is not supported",
            shape.len()
        );
        data
    };
    Ok(NpyArray { shape, data })
}

/// Reads a `.npy` file.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_npy(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// Reads a `.npy` file that must hold elements of type `T`.
pub fn read_npy_as<T: NpyElement>(path: &Path) -> Result<(Vec<usize>, Vec<T>)> {
    let a = read_npy(path)?;
    let descr = a.data.descr();
    let v = T::unwrap(a.data).with_context(|| {
        format!(
            "{} holds dtype {descr}, expected {}",
            path.display(),
            T::DESCR
        )
    })?;
    Ok((a.shape, v))
}

fn decode<T: NpyElement>(body: &[u8], n: usize) -> Result<NpyData> {
    let need = n.checked_mul(T::SIZE).context(".npy size overflows")?;
    ensure!(
        body.len() == need,
        ".npy data has {} bytes, the header announces {n} x {} = {need}",
        body.len(),
        T::SIZE
    );
    Ok(T::wrap(body.chunks_exact(T::SIZE).map(T::get_le).collect()))
}

fn transpose_fortran(data: NpyData, rows: usize, cols: usize) -> NpyData {
    // Fortran order stores column j contiguously: element (i, j) is at j * rows + i.
    fn t<T: Copy>(v: Vec<T>, rows: usize, cols: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(v.len());
        for i in 0..rows {
            for j in 0..cols {
                out.push(v[j * rows + i]);
            }
        }
        out
    }
    match data {
        NpyData::F32(v) => NpyData::F32(t(v, rows, cols)),
        NpyData::F64(v) => NpyData::F64(t(v, rows, cols)),
        NpyData::U32(v) => NpyData::U32(t(v, rows, cols)),
        NpyData::I64(v) => NpyData::I64(t(v, rows, cols)),
    }
}

/// The text after `'key':` in the header dict, left-trimmed.
fn dict_raw<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let pat = format!("'{key}':");
    let at = header
        .find(&pat)
        .with_context(|| format!(".npy header has no '{key}' entry: {header:?}"))?;
    Ok(header[at + pat.len()..].trim_start())
}

fn dict_str(header: &str, key: &str) -> Result<String> {
    let rest = dict_raw(header, key)?;
    let q = rest.chars().next().filter(|c| *c == '\'' || *c == '"');
    let q = q.with_context(|| format!(".npy header: '{key}' is not a string"))?;
    let end = rest[1..]
        .find(q)
        .with_context(|| format!(".npy header: unterminated '{key}'"))?;
    Ok(rest[1..1 + end].to_string())
}

fn dict_shape(header: &str) -> Result<Vec<usize>> {
    let rest = dict_raw(header, "shape")?;
    ensure!(rest.starts_with('('), ".npy header: shape is not a tuple");
    let end = rest.find(')').context(".npy header: unterminated shape")?;
    rest[1..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        // numpy writes Python ints; some writers add an `L` suffix (Python 2).
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .with_context(|| format!(".npy header: bad shape entry {s:?}"))
        })
        .collect()
}
