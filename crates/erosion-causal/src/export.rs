//! Directions out of (and back into) `erosion`: safetensors (this crate's own format, read
//! back by `erosion steer --directions`), `.npy` for numpy, and llama.cpp control vectors
//! (GGUF, which llama.cpp's `--control-vector` and repeng read).
//!
//! Layer numbering. Here layer index l = 0..=L (0 = embeddings, l = output of block l-1).
//! llama.cpp adds tensor `direction.N` (N >= 1) to the output of its block N (0-based), so
//! our layer l goes to `direction.{l-1}`, and layers 0 and 1 cannot be exported (llama.cpp
//! never steers the embeddings or block 0's output); they are left out and reported.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use erosion_model::atomic::write_bytes_atomic;

use crate::directions::LayerDirections;

/// Writes `layers.{l}` tensors `[d_model]` f32 for each layer with a direction, with the
/// origin and the layer count in the metadata.
pub fn write_safetensors(dirs: &LayerDirections, path: &Path) -> Result<()> {
    dirs.validate()?;
    let mut tensors = HashMap::new();
    for l in dirs.available() {
        tensors.insert(format!("layers.{l}"), dirs.tensor(l, &Device::Cpu)?);
    }
    let meta = HashMap::from([
        ("format".to_string(), "erosion-directions-1".to_string()),
        ("n_layer_indices".to_string(), dirs.layers.len().to_string()),
        ("origin".to_string(), dirs.origin.clone()),
    ]);
    let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), Some(meta))
        .context("serialising directions")?;
    write_bytes_atomic(path, &bytes)
}

/// Reads what [`write_safetensors`] wrote.
pub fn read_safetensors(path: &Path) -> Result<LayerDirections> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some("erosion-directions-1") {
        bail!(
            "{} is not a directions file written by erosion (no format erosion-directions-1)",
            path.display()
        );
    }
    let n: usize = meta
        .get("n_layer_indices")
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{}: no n_layer_indices in the metadata", path.display()))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
    let mut layers = vec![None; n];
    let mut d_model = 0;
    for (name, t) in tensors {
        let l: usize = name
            .strip_prefix("layers.")
            .and_then(|s| s.parse().ok())
            .filter(|&l| l < n)
            .with_context(|| format!("{}: unexpected tensor `{name}`", path.display()))?;
        let v = t.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        d_model = v.len();
        layers[l] = Some(v);
    }
    let dirs = LayerDirections {
        d_model,
        layers,
        origin: meta.get("origin").cloned().unwrap_or_default(),
    };
    dirs.validate()
        .with_context(|| format!("in {}", path.display()))?;
    Ok(dirs)
}

/// `[L+1, d_model]` f32, a zero row where a layer has no direction.
pub fn write_npy(dirs: &LayerDirections, path: &Path) -> Result<()> {
    dirs.validate()?;
    let flat: Vec<f32> = dirs
        .layers
        .iter()
        .flat_map(|v| v.clone().unwrap_or_else(|| vec![0.0; dirs.d_model]))
        .collect();
    erosion_report::npy::write_npy(path, &[dirs.layers.len(), dirs.d_model], &flat)
}

/// Writes a llama.cpp control vector: `direction.{l-1}` = `scale * v_l` for every layer
/// l >= 2 with a direction, `controlvector.model_hint` = `model_hint` (the architecture,
/// e.g. "qwen2"), `controlvector.layer_count`. Returns the layers left out (0 and 1).
pub fn write_control_vector(
    dirs: &LayerDirections,
    scale: f32,
    model_hint: &str,
    path: &Path,
) -> Result<Vec<usize>> {
    dirs.validate()?;
    let mut names = Vec::new();
    let mut qtensors = Vec::new();
    let mut left_out = Vec::new();
    for l in dirs.available() {
        if l < 2 {
            left_out.push(l);
            continue;
        }
        let t = (dirs.tensor(l, &Device::Cpu)? * scale as f64)?;
        names.push(format!("direction.{}", l - 1));
        qtensors.push(QTensor::quantize(&t, GgmlDType::F32)?);
    }
    if names.is_empty() {
        bail!("no layer >= 2 has a direction: a llama.cpp control vector cannot steer the embeddings or block 0");
    }
    let hint = Value::String(model_hint.to_string());
    let arch = Value::String("controlvector".to_string());
    let count = Value::U32(names.len() as u32);
    let meta: Vec<(&str, &Value)> = vec![
        ("general.architecture", &arch),
        ("controlvector.model_hint", &hint),
        ("controlvector.layer_count", &count),
    ];
    let tensors: Vec<(&str, &QTensor)> = names.iter().map(String::as_str).zip(&qtensors).collect();
    let mut buf = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &meta, &tensors).context("writing the control vector")?;
    write_bytes_atomic(path, buf.get_ref())?;
    Ok(left_out)
}

/// A control vector read back: its model hint and `(llama.cpp block N, direction)` pairs.
pub struct ControlVector {
    pub model_hint: String,
    pub directions: Vec<(usize, Vec<f32>)>,
}

/// Reads a control vector (ours or llama.cpp's / repeng's).
pub fn read_control_vector(path: &Path) -> Result<ControlVector> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let content = gguf_file::Content::read(&mut f)
        .with_context(|| format!("{} is not a GGUF file", path.display()))?;
    let hint = match content.metadata.get("controlvector.model_hint") {
        Some(Value::String(s)) => s.clone(),
        _ => bail!("{}: no controlvector.model_hint", path.display()),
    };
    let mut out = Vec::new();
    for name in content.tensor_infos.keys() {
        let n: usize = name
            .strip_prefix("direction.")
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("{}: unexpected tensor `{name}`", path.display()))?;
        let t = content
            .tensor(&mut f, name, &Device::Cpu)?
            .dequantize(&Device::Cpu)?;
        out.push((n, t.to_vec1::<f32>()?));
    }
    out.sort_by_key(|(n, _)| *n);
    Ok(ControlVector {
        model_hint: hint,
        directions: out,
    })
}
