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
use super::folder::Header;
use super::gguf::GgufTensors;
use crate::text::shown;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

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

    /// Tensor `name`, converted to `dtype` and checked finite, on `device`.
    pub fn load(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let &i = (self.home.get(name))
            .with_context(|| format!("no tensor {} in the weights", shown(name)))?;
        let (path, file, header) = &self.files[i];
        let entry = &header.tensors[name];
        let stored = stored_dtype(&entry.dtype)
            .with_context(|| format!("tensor {} in {}", shown(name), path.display()))?;
        let mut bytes = vec![0u8; (entry.offsets[1] - entry.offsets[0]) as usize];
        file.read_exact_at(&mut bytes, header.data_start + entry.offsets[0])
            .with_context(|| format!("cannot read tensor {} of {}", shown(name), path.display()))?;
        let t = Tensor::from_raw_buffer(&bytes, stored, &entry.shape, &Device::Cpu)
            .with_context(|| format!("tensor {} of {}", shown(name), path.display()))?;
        drop(bytes);
        let t = t.to_dtype(dtype)?;
        ensure_finite(name, &t).with_context(|| format!("in {}", path.display()))?;
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

impl SimpleBackend for TensorFiles {
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
        self.load(name, dtype, dev)
            .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        match self {
            Self::Safetensors(f) => f.home.contains_key(name),
            Self::Gguf(f) => f.contains(name),
        }
    }
}
