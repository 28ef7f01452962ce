//! A validating walk over a GGUF header, run before candle's reader sees the file. Every count
//! and length the file declares is checked against the bytes left in the file (and against
//! fixed caps where candle's in-memory form is much larger than the bytes on disk) before
//! anything is allocated; `general.alignment` must be a positive power of two; every tensor
//! must use a type candle dequantises and lie inside the file. The file's numbers then never
//! decide how much memory or time loading takes, and candle's reader (which divides by the
//! alignment, panicking on 0, and keeps every array element as a 32-byte `Value`) only ever
//! sees headers that pass. Layout (GGUF v1-v3, little endian): magic, version, tensor count,
//! kv count, kvs (key string, value type, value), tensor infos (name, n_dims, dims, type,
//! offset), padding to the alignment, tensor data.

pub use super::ggml_types::{ggml_type_name, SUPPORTED_TYPES};

use super::ggml_types::{ggml_dtype, supported_type_names};
use crate::text::shown;
use anyhow::{bail, ensure, Context, Result};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// Metadata array elements a file may hold in all. The largest real tokenizers (Gemma 3's
/// 262k tokens with scores and types; Llama 3's 128k tokens and 280k merges) stay under 1M;
/// candle keeps each element as a 32-byte value (64 with vector growth), so 4M caps the
/// metadata at about 256 MiB whatever the file claims.
pub const MAX_METADATA_ELEMENTS: u64 = 1 << 22;

/// Longest metadata key, GGUF's own limit (the spec: keys are at most 2^16 - 1 bytes).
const MAX_KEY_LEN: u64 = u16::MAX as u64;

/// Longest tensor name. llama.cpp refuses names of 64 bytes or more (GGML_MAX_NAME); 256
/// leaves room for other writers while keeping names short enough to print.
const MAX_TENSOR_NAME_LEN: u64 = 256;

/// Most dimensions a tensor has (GGML_MAX_DIMS).
const MAX_DIMS: u32 = 4;

/// Deepest nesting of arrays in metadata (real files nest none).
const MAX_ARRAY_DEPTH: usize = 4;

/// What the walk learned: enough for tests and messages; candle reads the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSummary {
    pub version: u32,
    pub tensors: usize,
    pub metadata: usize,
    pub alignment: u64,
    /// Where the tensor data starts.
    pub data_offset: u64,
}

/// Checks the header of the GGUF at `path` (module docs). Errors name the file and the key
/// or tensor at fault.
pub fn check_header(path: &Path) -> Result<HeaderSummary> {
    let file =
        File::open(path).with_context(|| format!("cannot open GGUF file {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut w = Walker {
        r: BufReader::new(file),
        pos: 0,
        len,
        wide: true,
        elements: 0,
    };
    w.header()
        .with_context(|| format!("GGUF {}", path.display()))
}

struct Walker {
    r: BufReader<File>,
    pos: u64,
    len: u64,
    wide: bool, // v2+: u64 lengths and counts; v1: u32
    elements: u64,
}

/// Bytes of a scalar metadata value type: u8 i8 bool (0, 1, 7); u16 i16 (2, 3);
/// u32 i32 f32 (4..=6); u64 i64 f64 (10..=12). Strings (8) and arrays (9) have lengths.
fn scalar_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

impl Walker {
    fn left(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .with_context(|| format!("the file ends inside {what} (byte {})", self.pos))?;
        self.pos += N as u64;
        Ok(b)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }
    fn len_field(&mut self, what: &str) -> Result<u64> {
        if self.wide {
            self.u64(what)
        } else {
            Ok(self.u32(what)? as u64)
        }
    }
    /// Skips `n` bytes, which must be in the file.
    fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        ensure!(
            n <= self.left(),
            "{what} needs {n} bytes at byte {}, but only {} are left in the file",
            self.pos,
            self.left()
        );
        self.r.seek_relative(n as i64)?;
        self.pos += n;
        Ok(())
    }
    /// A string of at most `max` bytes (and at most what is left in the file).
    fn string(&mut self, max: u64, what: &str) -> Result<String> {
        let n = self.len_field(what)?;
        ensure!(
            n <= max && n <= self.left(),
            "{what} claims {n} bytes (at most {max} allowed, {} left in the file)",
            self.left()
        );
        let mut b = vec![0u8; n as usize];
        self.r.read_exact(&mut b)?;
        self.pos += n;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    fn header(&mut self) -> Result<HeaderSummary> {
        ensure!(
            self.bytes::<4>("the magic")? == *b"GGUF",
            "not a GGUF file (bad magic)"
        );
        let version = self.u32("the version")?;
        ensure!(
            (1..=3).contains(&version),
            "GGUF version {version} is not supported (1 to 3 are)"
        );
        self.wide = version >= 2;
        let n_tensors = self.len_field("the tensor count")?;
        let n_kv = self.len_field("the metadata count")?;
        // Smallest possible entries: a kv is a key length, a type and one byte; a tensor info
        // a name length, n_dims, a type and an offset.
        let prefix = if self.wide { 8 } else { 4 };
        let needed = n_kv
            .saturating_mul(prefix + 5)
            .saturating_add(n_tensors.saturating_mul(prefix + 16));
        ensure!(
            needed <= self.left(),
            "the header declares {n_tensors} tensors and {n_kv} metadata entries, which need at \
             least {needed} bytes; the file has {} left",
            self.left()
        );
        let mut keys = HashSet::new();
        let mut alignment = candle_core::quantized::gguf_file::DEFAULT_ALIGNMENT;
        for i in 0..n_kv {
            let key = self.string(MAX_KEY_LEN, &format!("metadata key {i}"))?;
            let ty = self.u32("a metadata value type")?;
            if key == "general.alignment" {
                alignment = self.alignment(ty)?;
            } else {
                self.skip_value(ty, 0)
                    .with_context(|| format!("metadata {}", shown(&key)))?;
            }
            ensure!(
                keys.insert(key.clone()),
                "metadata key {} appears twice",
                shown(&key)
            );
        }
        let data = self.tensor_infos(n_tensors)?;
        let data_offset = self
            .pos
            .div_ceil(alignment)
            .checked_mul(alignment)
            .context("the tensor data offset overflows")?;
        for (name, offset, bytes) in &data {
            let end = data_offset
                .checked_add(*offset)
                .and_then(|s| s.checked_add(*bytes));
            ensure!(
                end.is_some_and(|e| e <= self.len),
                "tensor {} needs {bytes} bytes at offset {offset} of the data section (which \
                 starts at byte {data_offset}), past the end of the {}-byte file: the file is \
                 truncated or corrupt",
                shown(name),
                self.len
            );
        }
        Ok(HeaderSummary {
            version,
            tensors: data.len(),
            metadata: keys.len(),
            alignment,
            data_offset,
        })
    }

    /// `general.alignment`: an integer type candle honours, a positive power of two (candle
    /// divides by it; llama.cpp requires a power of two). Other widths candle silently
    /// replaces with 32, which would misplace every tensor, so they are refused too.
    fn alignment(&mut self, ty: u32) -> Result<u64> {
        let value: i64 = match ty {
            0 => self.bytes::<1>("general.alignment")?[0] as i64,
            1 => self.bytes::<1>("general.alignment")?[0] as i8 as i64,
            2 => u16::from_le_bytes(self.bytes("general.alignment")?) as i64,
            3 => i16::from_le_bytes(self.bytes("general.alignment")?) as i64,
            4 => self.u32("general.alignment")? as i64,
            5 => self.u32("general.alignment")? as i32 as i64,
            other => {
                bail!("general.alignment has value type {other}; GGUF stores it as a u32 (type 4)")
            }
        };
        ensure!(
            value > 0 && (value as u64).is_power_of_two(),
            "general.alignment = {value}; it must be a positive power of two (usually 32)"
        );
        Ok(value as u64)
    }

    fn skip_value(&mut self, ty: u32, depth: usize) -> Result<()> {
        if let Some(size) = scalar_size(ty) {
            return self.skip(size, "a value");
        }
        match ty {
            8 => {
                let n = self.len_field("a string length")?;
                self.skip(n, "a string")
            }
            9 => {
                ensure!(
                    depth < MAX_ARRAY_DEPTH,
                    "arrays nested more than {MAX_ARRAY_DEPTH} deep"
                );
                let elem = self.u32("an array element type")?;
                let count = self.len_field("an array length")?;
                // The smallest element on disk: a scalar's size, a string's or an array's
                // length prefix.
                let min = match (scalar_size(elem), elem) {
                    (Some(size), _) => size,
                    (None, 8) => {
                        if self.wide {
                            8
                        } else {
                            4
                        }
                    }
                    (None, 9) => {
                        if self.wide {
                            12
                        } else {
                            8
                        }
                    }
                    (None, other) => bail!("array of unknown value type {other}"),
                };
                ensure!(
                    count.saturating_mul(min) <= self.left(),
                    "an array claims {count} elements, which need at least {} bytes; the file \
                     has {} left",
                    count.saturating_mul(min),
                    self.left()
                );
                self.elements = self.elements.saturating_add(count);
                ensure!(
                    self.elements <= MAX_METADATA_ELEMENTS,
                    "an array of {count} elements takes the metadata past {MAX_METADATA_ELEMENTS} \
                     array elements in all, more than any real model's (the largest tokenizers \
                     hold under 1M)"
                );
                match scalar_size(elem) {
                    Some(size) => self.skip(size * count, "an array"),
                    None => (0..count).try_for_each(|_| self.skip_value(elem, depth + 1)),
                }
            }
            other => bail!("unknown value type {other}"),
        }
    }

    /// Tensor infos: `(name, offset, bytes)` each, after checking the name, the dimensions
    /// and the type.
    fn tensor_infos(&mut self, n: u64) -> Result<Vec<(String, u64, u64)>> {
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for i in 0..n {
            let name = self.string(MAX_TENSOR_NAME_LEN, &format!("the name of tensor {i}"))?;
            let n_dims = self.u32("a tensor's dimension count")?;
            ensure!(
                n_dims <= MAX_DIMS,
                "tensor {} has {n_dims} dimensions (at most {MAX_DIMS})",
                shown(&name)
            );
            let mut elems: u64 = 1;
            for _ in 0..n_dims {
                let d = self.len_field("a tensor dimension")?;
                elems = elems.checked_mul(d).with_context(|| {
                    format!("tensor {}'s element count overflows", shown(&name))
                })?;
            }
            let code = self.u32("a tensor type")?;
            let offset = self.u64("a tensor offset")?;
            let dtype = ggml_dtype(code).with_context(|| {
                format!(
                    "tensor {} has type {} (ggml type {code}), which erosion cannot dequantise. \
                     Supported: {}. Re-quantise with llama.cpp's llama-quantize (e.g. to Q8_0), \
                     or load the original safetensors",
                    shown(&name),
                    ggml_type_name(code).unwrap_or("unknown"),
                    supported_type_names()
                )
            })?;
            let block = dtype.block_size() as u64;
            ensure!(
                elems.is_multiple_of(block),
                "tensor {} has {elems} elements, not a multiple of its type's block of {block}",
                shown(&name)
            );
            let bytes = (elems / block)
                .checked_mul(dtype.type_size() as u64)
                .with_context(|| format!("tensor {}'s byte size overflows", shown(&name)))?;
            ensure!(
                names.insert(name.clone()),
                "tensor {} appears twice",
                shown(&name)
            );
            out.push((name, offset, bytes));
        }
        Ok(out)
    }
}
