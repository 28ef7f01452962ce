//! Shared by the gradient tests: tiny models (seeded random f64, and the Hugging Face
//! fixtures of erosion-model), example sequences, and an independent reference: the loss and
//! its gradient by plain autograd through the whole model.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarMap;
use erosion_data::{Sequence, ShortResponse};
use erosion_forward::gradients::{LossSpan, LossSpec, ParamSelection, Reduction};
use erosion_model::transformer::{ForwardOptions, Transformer, WeightVar};
use erosion_model::Config;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::ops::Range;

/// Three layers, GQA 4/2; qwen2: q/k/v biases and tied embeddings; llama: untied.
pub fn tiny_config(arch: &str) -> Config {
    erosion_testkit::tiny_config(arch, 37, 20)
}

/// A VarMap-built model (every weight a `Var`) with seeded uniform weights scaled to keep
/// activations of order one, so gradients are far from zero.
pub fn random_model(arch: &str, dtype: DType, seed: u64) -> (Transformer, VarMap) {
    let init = erosion_testkit::RandomInit {
        norm: 0.25,
        bias: 0.4,
        embedding: 1.5,
        lm_head_as_embedding: true,
    };
    erosion_testkit::random_model(&tiny_config(arch), dtype, seed, init)
}

/// A tiny Hugging Face checkpoint of erosion-model's fixtures (the forward tests' loader).
pub use crate::forward_util::tiny as fixture_model;

/// Seeded sequences of the given lengths with responses `[start, end)`, ids in 1..vocab.
pub fn sequences(spec: &[(usize, Range<usize>)], vocab: usize, seed: u64) -> Vec<Sequence> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    spec.iter()
        .map(|(n, r)| Sequence {
            ids: (0..*n).map(|_| rng.random_range(1..vocab as u32)).collect(),
            response: r.clone(),
            end_of_turn: None,
        })
        .collect()
}

/// Loss over target tokens `targets` by a plain full forward (whole sequence, no cut).
pub fn reference_loss(
    model: &Transformer,
    ids: &[u32],
    targets: Range<usize>,
    reduction: Reduction,
) -> f64 {
    let loss = loss_tensor(model, ids, targets, reduction, &mut ForwardOptions::fast());
    loss.to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn loss_tensor(
    model: &Transformer,
    ids: &[u32],
    targets: Range<usize>,
    reduction: Reduction,
    opts: &mut ForwardOptions,
) -> Tensor {
    let input = Tensor::from_slice(ids, (1, ids.len()), &Device::Cpu).unwrap();
    let logits = model
        .forward(&input, None, opts)
        .unwrap()
        .squeeze(0)
        .unwrap(); // [n, vocab]
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
    let n_t = targets.len();
    let rows = logp.narrow(0, targets.start - 1, n_t).unwrap();
    let idx = Tensor::from_slice(&ids[targets], (n_t, 1), &Device::Cpu).unwrap();
    let nll = rows
        .gather(&idx, 1)
        .unwrap()
        .sum_all()
        .unwrap()
        .neg()
        .unwrap();
    match reduction {
        Reduction::Mean => (nll / n_t as f64).unwrap(),
        Reduction::Sum => nll,
    }
}

/// The reference gradient: every weight a `Var`, the whole model differentiable from the
/// embeddings, the whole sequence fed, autograd through the unembedding and log-softmax.
/// Returns (loss, gradient of `names` flattened in the given order, f64).
pub fn reference_gradient(
    model: &Transformer,
    names: &[&str],
    ids: &[u32],
    targets: Range<usize>,
    reduction: Reduction,
) -> (f64, Vec<f64>) {
    let mut m = model.clone();
    let all: Vec<(String, WeightVar)> = m
        .parameter_names()
        .into_iter()
        .map(|n| {
            let v = m.var(&n).unwrap();
            (n, v)
        })
        .collect();
    let loss = loss_tensor(
        &m,
        ids,
        targets,
        reduction,
        &mut ForwardOptions::differentiable(),
    );
    let grads = loss.backward().unwrap();
    let mut flat = Vec::new();
    for name in names {
        let var = &all.iter().find(|(n, _)| n == name).unwrap().1;
        let g = var
            .grad(&grads)
            .unwrap()
            .unwrap_or_else(|| panic!("no reference gradient for {name}"));
        flat.extend(
            g.to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap(),
        );
    }
    let loss = loss
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    (loss, flat)
}

pub fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |a, x| a.max(x.abs()))
}

/// max |a - b| / max |b|.
pub fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let d = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((*x as f64 - y).abs()));
    d / max_abs(b)
}

pub fn rel_err_f32(a: &[f32], b: &[f32]) -> f64 {
    let b: Vec<f64> = b.iter().map(|&x| x as f64).collect();
    rel_err(a, &b)
}

pub fn named(names: &[&str]) -> ParamSelection {
    ParamSelection::Named(names.iter().map(|s| s.to_string()).collect())
}

pub fn spec(span: LossSpan, reduction: Reduction, short: ShortResponse) -> LossSpec {
    LossSpec {
        span,
        reduction,
        short,
    }
}

/// Target tokens of a span, computed here by hand from the definitions.
pub fn targets(span: LossSpan, s: &Sequence) -> std::ops::Range<usize> {
    match span {
        LossSpan::Sequence => 1..s.ids.len(),
        LossSpan::Response => s.response.clone(),
        LossSpan::ResponseWindow { t } => {
            s.response.start..(s.response.start + t).min(s.response.end)
        }
    }
}
