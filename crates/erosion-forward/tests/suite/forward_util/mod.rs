//! Shared by the log-prob, window and cache tests: the tiny Hugging Face fixture models of
//! crates/erosion-model (with transformers' logits and hidden states), SmolLM2, comparisons.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor, D};
use erosion_data::Sequence;
use erosion_model::hooks::{HookPoint, Hooks, Positions};
use erosion_model::load::Checkpoint;
use erosion_model::transformer::{ForwardOptions, Transformer};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::PathBuf;

pub const ARCHS: [&str; 3] = ["llama", "qwen2", "mistral"];

pub fn fixture_dir(arch: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../erosion-model/tests/fixtures"
    ))
    .join(format!("tiny-{arch}"))
}

/// A tiny fixture model (2 layers, d_model 32, vocab 128) in `dtype`.
pub fn tiny(arch: &str, dtype: DType) -> Transformer {
    erosion_testkit::tiny_fixture_model(arch, dtype)
}

/// transformers' outputs for the fixture batch: input_ids, attention_mask, logits,
/// hidden_states.{i} (see scripts/reference/make_tiny_fixtures.py).
pub fn reference(arch: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(
        fixture_dir(arch).join("reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

/// The fixture batch as sequences (pads dropped), with their valid lengths.
pub fn reference_sequences(r: &HashMap<String, Tensor>) -> Vec<Vec<u32>> {
    let ids = r["input_ids"]
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec2::<u32>()
        .unwrap();
    let mask = r["attention_mask"]
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec2::<u32>()
        .unwrap();
    ids.into_iter()
        .zip(mask)
        .map(|(i, m)| i[..m.iter().sum::<u32>() as usize].to_vec())
        .collect()
}

/// Seeded sequences of lengths in `lens`, ids in 3..vocab, responses starting at a seeded
/// position in 1..len/2 and running to the end.
pub fn random_sequences(lens: &[usize], vocab: u32, seed: u64) -> Vec<Sequence> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    lens.iter()
        .map(|&n| {
            let ids: Vec<u32> = (0..n).map(|_| rng.random_range(3..vocab)).collect();
            let start = rng.random_range(1..=(n / 2).max(1));
            Sequence::new(ids, start..n).unwrap()
        })
        .collect()
}

/// Full logits `[seq, vocab]` of one sequence run alone (the naive path), optionally hooked.
pub fn full_logits(model: &Transformer, ids: &[u32], hooks: Option<&mut Hooks>) -> Tensor {
    let input = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut opts = ForwardOptions::fast();
    if let Some(h) = hooks {
        opts = opts.hooks(h);
    }
    model
        .forward(&input, None, &mut opts)
        .unwrap()
        .squeeze(0)
        .unwrap()
}

/// Naive per-token log-probs and entropies of a response from full `[seq, vocab]` logits,
/// in f64: lp_t = z_{t-1}[x_t] - logsumexp(z_{t-1}), H = -sum p ln p.
pub fn naive_logprobs(logits: &[Vec<f32>], seq: &Sequence) -> (Vec<f64>, Vec<f64>) {
    let (mut lps, mut hs) = (Vec::new(), Vec::new());
    for t in seq.response.clone() {
        let z: Vec<f64> = logits[t - 1].iter().map(|&x| x as f64).collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + z.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
        lps.push(z[seq.ids[t] as usize] - lse);
        hs.push(-z.iter().map(|x| (x - lse).exp() * (x - lse)).sum::<f64>());
    }
    (lps, hs)
}

/// Every hidden state of one sequence run alone, as `output_hidden_states` would give them
/// with both conventions: `hook_embed`, every `blocks.{l}.hook_resid_post` and
/// `ln_final.hook_normalized`, each `[seq, d_model]`, keyed by hook name.
pub fn full_record(model: &Transformer, ids: &[u32]) -> HashMap<String, Vec<Vec<f32>>> {
    let mut hooks = model.hooks();
    let mut points = vec![HookPoint::Embed, HookPoint::LnFinal];
    points.extend((0..model.n_layers()).map(HookPoint::resid_post));
    for &p in &points {
        hooks.record(p, Positions::All).unwrap();
    }
    full_logits(model, ids, Some(&mut hooks));
    let cache = hooks.take_cache();
    points
        .iter()
        .map(|p| {
            let t = cache.tensor(&p.to_string()).unwrap().squeeze(0).unwrap();
            (
                p.to_string(),
                t.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap(),
            )
        })
        .collect()
}

pub fn max_abs(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn logits_rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap()
}

pub fn log_softmax_rows(t: &Tensor) -> Vec<Vec<f32>> {
    logits_rows(&candle_nn::ops::log_softmax(&t.to_dtype(DType::F32).unwrap(), D::Minus1).unwrap())
}

pub fn smollm2_path() -> PathBuf {
    erosion_testkit::smollm2_gguf()
}

pub fn smollm2() -> &'static Transformer {
    static MODEL: std::sync::OnceLock<Transformer> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        Checkpoint::open(smollm2_path().to_str().unwrap())
            .unwrap()
            .load_model(DType::F32, &Device::Cpu)
            .unwrap()
    })
}
