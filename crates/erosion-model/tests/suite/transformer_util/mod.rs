//! Shared by the transformer, hook and gradient tests: fixture loading, seeded random models,
//! comparisons.
#![allow(dead_code)]

use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use erosion_model::transformer::Transformer;
use erosion_model::Config;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub fn fixture_dir(arch: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
        .join(format!("tiny-{arch}"))
}

/// A Hugging Face folder of tests/fixtures, read with candle's own safetensors loader.
pub fn load_fixture(arch: &str, dtype: DType) -> Result<Transformer> {
    let dir = fixture_dir(arch);
    let cfg = Config::from_file(&dir.join("config.json"))?;
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], dtype, &Device::Cpu)?
    };
    Transformer::new(&cfg, vb)
}

pub fn load_reference(arch: &str) -> Result<HashMap<String, Tensor>> {
    Ok(candle_core::safetensors::load(
        fixture_dir(arch).join("reference.safetensors"),
        &Device::Cpu,
    )?)
}

/// A small Qwen2-style config: q/k/v bias, GQA 4/2, tied embeddings.
pub fn tiny_config(arch: &str) -> Config {
    erosion_testkit::tiny_config(arch, 40, 24)
}

/// A model with seeded random weights of order-one activations (uniform, variance-preserving),
/// Var-backed through a `VarMap`.
pub fn random_model(cfg: &Config, dtype: DType, seed: u64) -> Result<(Transformer, VarMap)> {
    let init = erosion_testkit::RandomInit {
        norm: 0.3,
        bias: 0.5,
        embedding: 1.7,
        lm_head_as_embedding: false,
    };
    Ok(erosion_testkit::random_model(cfg, dtype, seed, init))
}

/// Seeded token ids `[batch, seq]` in 1..vocab.
pub fn random_ids(batch: usize, seq: usize, vocab: u32, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..batch)
        .map(|_| (0..seq).map(|_| rng.random_range(1..vocab)).collect())
        .collect()
}

/// Pads sequences to one length, on the left or the right: (ids, mask) `[batch, max_len]`.
pub fn pad(seqs: &[Vec<u32>], left: bool) -> (Tensor, Tensor) {
    let len = seqs.iter().map(Vec::len).max().unwrap();
    let (mut ids, mut mask) = (Vec::<u32>::new(), Vec::<u32>::new());
    for s in seqs {
        let n = len - s.len();
        let (pi, pm) = (vec![0u32; n], vec![0u32; n]);
        let (ti, tm) = (s.clone(), vec![1u32; s.len()]);
        if left {
            ids.extend(pi.iter().chain(&ti));
            mask.extend(pm.iter().chain(&tm));
        } else {
            ids.extend(ti.iter().chain(&pi));
            mask.extend(tm.iter().chain(&pm));
        }
    }
    let shape = (seqs.len(), len);
    (
        Tensor::from_vec(ids, shape, &Device::Cpu).unwrap(),
        Tensor::from_vec(mask, shape, &Device::Cpu).unwrap(),
    )
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let d = (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap()).unwrap();
    d.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(D::Minus1)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

pub fn max_abs(a: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap().abs().unwrap();
    a.flatten_all()
        .unwrap()
        .max(D::Minus1)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Largest |a - b| over the positions where `mask` `[batch, seq]` is 1, for `[batch, seq, ...]`.
pub fn masked_max_diff(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    let mut shape = mask.dims().to_vec();
    shape.resize(a.rank(), 1);
    let m = mask.to_dtype(DType::F64).unwrap().reshape(shape).unwrap();
    let d = (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
        .unwrap()
        .abs()
        .unwrap();
    let d = d.broadcast_mul(&m).unwrap();
    d.flatten_all()
        .unwrap()
        .max(D::Minus1)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Mean |a - b| over the positions where `mask` `[batch, seq]` is 1, for `[batch, seq, ...]`.
pub fn masked_mean_diff(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    let mut shape = mask.dims().to_vec();
    shape.resize(a.rank(), 1);
    let m = mask.to_dtype(DType::F64).unwrap().reshape(shape).unwrap();
    let per_row: usize = a.dims()[mask.rank()..].iter().product();
    let d = (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
        .unwrap()
        .abs()
        .unwrap();
    let total = d
        .broadcast_mul(&m)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    total / (m.sum_all().unwrap().to_scalar::<f64>().unwrap() * per_row as f64)
}

/// The tiny `arch` fixture as a model folder in `dir` (with a word-level tokenizer, which
/// `Checkpoint::open` needs and the numbers do not use).
pub fn tiny_base(arch: &str, dir: &Path) -> PathBuf {
    erosion_testkit::tiny_checkpoint(arch, dir)
}

/// A JSON fixture under tests/fixtures/ (a real model's reference values).
pub fn read_json_fixture(rel: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    (v.as_array().unwrap().iter())
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn floats_of(v: &serde_json::Value) -> Vec<f64> {
    (v.as_array().unwrap().iter())
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Each tensor of a reference's `weights` (shape, sum, sum of squares, sampled values, as the
/// reference scripts record them) against `tensors`: sums to 1e-9 relative, samples to 1e-7.
pub fn assert_weights_match(tensors: &HashMap<String, Tensor>, weights: &serde_json::Value) {
    for (name, want) in weights.as_object().unwrap() {
        let t = &tensors[name];
        let shape: Vec<usize> = (want["shape"].as_array().unwrap().iter())
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.dims(), shape.as_slice(), "{name}");
        let flat = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let sum: f64 = flat.iter().map(|&x| x as f64).sum();
        let sum_sq: f64 = flat.iter().map(|&x| (x as f64) * (x as f64)).sum();
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1.0);
        assert!(
            rel(sum, want["sum"].as_f64().unwrap()) < 1e-9,
            "{name}: sum {sum}"
        );
        assert!(
            rel(sum_sq, want["sum_sq"].as_f64().unwrap()) < 1e-9,
            "{name}: sum of squares {sum_sq}"
        );
        for s in want["samples"].as_array().unwrap() {
            let idx: Vec<usize> = (s["index"].as_array().unwrap().iter())
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            let at = idx.iter().zip(&shape).fold(0, |acc, (&i, &d)| acc * d + i);
            let (got, want) = (flat[at] as f64, s["value"].as_f64().unwrap());
            assert!((got - want).abs() <= 1e-7, "{name}{idx:?}: {got} vs {want}");
        }
    }
}
