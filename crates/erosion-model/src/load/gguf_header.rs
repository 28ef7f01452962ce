//! A minimal walk over a GGUF header that only collects each tensor's name and raw ggml type
//! code. candle's reader rejects a whole file at the first type it does not know, with a
//! message naming neither the tensor nor the type; this walk lets us say which tensor uses
//! which type. Layout (GGUF v1-v3, little endian): magic, version, tensor count, kv count,
//! kvs (key string, value type, value), tensor infos (name, n_dims, dims, type, offset).

use anyhow::{bail, Result};
use std::io::{Read, Seek, SeekFrom};

/// ggml's type names by code (ggml.h `enum ggml_type`); codes absent here were removed.
pub fn ggml_type_name(code: u32) -> Option<&'static str> {
    Some(match code {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return None,
    })
}

/// The ggml types candle dequantises (the codes `GgmlDType::from_u32` accepts).
pub const SUPPORTED_TYPES: &[u32] = &[0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 30];

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

struct Walker<R> {
    r: R,
    wide: bool, // v2+: u64 lengths and counts; v1: u32
}

impl<R: Read + Seek> Walker<R> {
    fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.r.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        self.r.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn len(&mut self) -> Result<u64> {
        if self.wide {
            self.u64()
        } else {
            Ok(self.u32()? as u64)
        }
    }
    fn skip(&mut self, n: u64) -> Result<()> {
        self.r.seek(SeekFrom::Current(n as i64))?;
        Ok(())
    }
    fn string(&mut self) -> Result<String> {
        let n = self.len()?;
        if n > 1 << 30 {
            bail!("string length {n} is implausible");
        }
        let mut b = vec![0u8; n as usize];
        self.r.read_exact(&mut b)?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }
    fn skip_value(&mut self, ty: u32, depth: usize) -> Result<()> {
        if depth > 8 {
            bail!("metadata nested too deeply");
        }
        if let Some(size) = scalar_size(ty) {
            return self.skip(size);
        }
        match ty {
            8 => {
                let n = self.len()?;
                self.skip(n)
            }
            9 => {
                let elem = self.u32()?;
                let count = self.len()?;
                match scalar_size(elem) {
                    Some(size) => self.skip(size * count),
                    None => (0..count).try_for_each(|_| self.skip_value(elem, depth + 1)),
                }
            }
            other => bail!("unknown metadata value type {other}"),
        }
    }
}

/// `(tensor name, ggml type code)` for every tensor in the header.
pub fn tensor_types<R: Read + Seek>(r: R) -> Result<Vec<(String, u32)>> {
    let mut w = Walker { r, wide: true };
    if w.u32()? != u32::from_le_bytes(*b"GGUF") {
        bail!("not a GGUF file (bad magic)");
    }
    let version = w.u32()?;
    w.wide = version >= 2;
    let n_tensors = w.len()?;
    let n_kv = w.len()?;
    for _ in 0..n_kv {
        w.string()?;
        let ty = w.u32()?;
        w.skip_value(ty, 0)?;
    }
    let mut out = Vec::new();
    for _ in 0..n_tensors {
        let name = w.string()?;
        let n_dims = w.u32()?;
        if n_dims > 8 {
            bail!("tensor {name} has {n_dims} dimensions");
        }
        for _ in 0..n_dims {
            w.len()?;
        }
        let ty = w.u32()?;
        w.u64()?; // offset
        out.push((name, ty));
    }
    Ok(out)
}
