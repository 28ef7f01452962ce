//! Weights read one tensor at a time, for models larger than memory
//! ([`Checkpoint::load_streamed`](super::Checkpoint::load_streamed)).
//!
//! A safetensors tensor's bytes are read with a positioned read, not through a memory map:
//! mapped pages a pass has touched count in the process's resident memory until the map is
//! dropped, read pages stay in the kernel's page cache, which does not. Each tensor is converted
//! to the model's dtype and checked finite as it is read; the stored copy is freed at once, the
//! converted one with the block that holds it. GGUF tensors are read and dequantised the same
//! way, one at a time ([`GgufTensors`]).

use super::finite::{ensure_finite, of_shape};
use super::folder::{Header, HeaderEntry};
use super::gguf::GgufTensors;
use crate::text::shown;
use crate::transformer::matrix::{check_rows, MatrixRows};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The tensors of safetensors files, read on demand.
pub(crate) struct SafetensorsTensors {
    files: Vec<(PathBuf, File, Header)>,
    /// Tensor name -> index into `files`.
    home: HashMap<String, usize>,
}

impl SafetensorsTensors {
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut home = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            let header = Header::read(path)?;
            home.extend(header.tensors.keys().map(|n| (n.clone(), i)));
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            files.push((path.clone(), file, header));
        }
        Ok(SafetensorsTensors { files, home })
    }

    /// The file and header entry of tensor `name`.
    fn entry(&self, name: &str) -> Result<(&Path, &File, u64, &HeaderEntry)> {
        let &i = (self.home.get(name))
            .with_context(|| format!("no tensor {} in the weights", shown(name)))?;
        let (path, file, header) = &self.files[i];
        Ok((path, file, header.data_start, &header.tensors[name]))
    }

    /// Tensor `name`, converted to `dtype` and checked finite, on `device`.
    pub fn load(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let (path, _, _, entry) = self.entry(name)?;
        self.read(
            name,
            0..entry.offsets[1] - entry.offsets[0],
            &entry.shape,
            dtype,
            device,
        )
        .with_context(|| format!("tensor {} of {}", shown(name), path.display()))
    }

    /// Rows `rows` of the matrix `name` `[rows.len(), cols]`, as [`SafetensorsTensors::load`]
    /// would give them.
    pub fn rows(
        &self,
        name: &str,
        rows: Range<usize>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let (path, _, _, entry) = self.entry(name)?;
        let &[total, cols] = entry.shape.as_slice() else {
            bail!(
                "tensor {} of {} is not a matrix",
                shown(name),
                path.display()
            );
        };
        check_rows(name, &rows, total)?;
        let row_bytes = (cols * stored_dtype(&entry.dtype)?.size_in_bytes()) as u64;
        if entry.offsets[1] - entry.offsets[0] != total as u64 * row_bytes {
            bail!(
                "tensor {} of {} holds {} bytes, not the {} of its shape {:?}",
                shown(name),
                path.display(),
                entry.offsets[1] - entry.offsets[0],
                total as u64 * row_bytes,
                entry.shape
            );
        }
        let bytes = rows.start as u64 * row_bytes..rows.end as u64 * row_bytes;
        self.read(name, bytes, &[rows.len(), cols], dtype, device)
            .with_context(|| format!("rows {rows:?} of {} in {}", shown(name), path.display()))
    }

    /// Bytes `bytes` of tensor `name`'s data, as a tensor of `shape`, converted to `dtype`,
    /// checked finite, on `device`.
    fn read(
        &self,
        name: &str,
        bytes: Range<u64>,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let (_, file, data_start, entry) = self.entry(name)?;
        let stored = stored_dtype(&entry.dtype)?;
        let mut buf = vec![0u8; (bytes.end - bytes.start) as usize];
        file.read_exact_at(&mut buf, data_start + entry.offsets[0] + bytes.start)
            .context("cannot read it")?;
        let t = Tensor::from_raw_buffer(&buf, stored, shape, &Device::Cpu)?;
        drop(buf);
        let t = t.to_dtype(dtype)?;
        ensure_finite(name, &t)?;
        Ok(t.to_device(device)?)
    }
}

/// candle's dtype for a safetensors dtype as [`Header`] lower-cases it.
fn stored_dtype(dtype: &str) -> Result<DType> {
    Ok(match dtype {
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        "f32" => DType::F32,
        "f64" => DType::F64,
        "u8" => DType::U8,
        "u32" => DType::U32,
        "i64" => DType::I64,
        other => bail!("dtype {} cannot be read", shown(other)),
    })
}

/// Where a streamed model reads its weights: a `VarBuilder` backend that reads each tensor from
/// the file when the model asks for it.
pub(crate) enum TensorFiles {
    Safetensors(SafetensorsTensors),
    Gguf(GgufTensors),
}

impl TensorFiles {
    pub fn open(
        format: super::WeightFormat,
        files: &[PathBuf],
        cfg: &crate::Config,
    ) -> Result<Self> {
        Ok(match format {
            super::WeightFormat::Safetensors => Self::Safetensors(SafetensorsTensors::open(files)?),
            super::WeightFormat::Gguf => Self::Gguf(GgufTensors::open(only(files)?, cfg)?),
        })
    }

    fn load(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        match self {
            Self::Safetensors(f) => f.load(name, dtype, device),
            Self::Gguf(f) => f.load(name, dtype, device),
        }
    }
}

fn only(files: &[PathBuf]) -> Result<&Path> {
    match files {
        [one] => Ok(one),
        _ => bail!("a GGUF checkpoint is one file, not {}", files.len()),
    }
}

impl MatrixRows for TensorFiles {
    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        match self {
            Self::Safetensors(f) => Ok(f.entry(name)?.3.shape.clone()),
            Self::Gguf(f) => f.shape(name),
        }
    }

    fn rows(
        &self,
        name: &str,
        rows: Range<usize>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        match self {
            Self::Safetensors(f) => f.rows(name, rows, dtype, device),
            Self::Gguf(f) => f.rows(name, rows, dtype, device),
        }
    }
}

/// The files as the streamed model's `VarBuilder` reads them; the same files give it the
/// embedding rows ([`MatrixRows`]).
pub(crate) struct SharedFiles(pub Arc<TensorFiles>);

impl SimpleBackend for SharedFiles {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        of_shape(self.get_unchecked(name, dtype, dev)?, s, name)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0
            .load(name, dtype, dev)
            .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        match &*self.0 {
            TensorFiles::Safetensors(f) => f.home.contains_key(name),
            TensorFiles::Gguf(f) => f.contains(name),
        }
    }
}
