//! A padded batch equals its sequences run one by one, with left and with right padding.

use crate::transformer_util;

use candle_core::{DType, Device, IndexOp, Tensor};
use erosion_model::transformer::{ForwardOptions, Transformer};
use transformer_util::*;

fn alone(model: &Transformer, seq: &[u32], opts: &mut ForwardOptions) -> Tensor {
    let ids = Tensor::new(seq, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model.forward(&ids, None, opts).unwrap().squeeze(0).unwrap()
}

fn batched_equals_one_by_one(model: &Transformer, opts: fn() -> ForwardOptions<'static>, tol: f64) {
    let vocab = model.config().vocab_size as u32;
    let seqs: Vec<Vec<u32>> = [7usize, 3, 5, 1]
        .iter()
        .zip(random_ids(4, 7, vocab, 11))
        .map(|(&n, ids)| ids[..n].to_vec())
        .collect();
    let singles: Vec<Tensor> = seqs.iter().map(|s| alone(model, s, &mut opts())).collect();
    for left in [false, true] {
        let (ids, mask) = pad(&seqs, left);
        let logits = model.forward(&ids, Some(&mask), &mut opts()).unwrap();
        let all = logits
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert!(
            all.iter().all(|v| v.is_finite()),
            "padded rows must stay finite"
        );
        let width = ids.dim(1).unwrap();
        for (b, (s, single)) in seqs.iter().zip(&singles).enumerate() {
            let start = if left { width - s.len() } else { 0 };
            let rows = logits.i((b, start..start + s.len())).unwrap();
            let err = max_abs_diff(&rows, single);
            assert!(
                err < tol,
                "left={left} example {b}: batched differs from alone by {err}"
            );
        }
    }
}

#[test]
fn qwen2_fixture_batched_equals_one_by_one() {
    let model = load_fixture("qwen2", DType::F32).unwrap();
    batched_equals_one_by_one(&model, ForwardOptions::fast, 1e-4);
    batched_equals_one_by_one(&model, ForwardOptions::differentiable, 1e-4);
}

#[test]
fn llama_fixture_batched_equals_one_by_one() {
    let model = load_fixture("llama", DType::F32).unwrap();
    batched_equals_one_by_one(&model, ForwardOptions::fast, 1e-4);
}

#[test]
fn f64_batched_equals_one_by_one_to_rounding() {
    let (model, _) = random_model(&tiny_config("llama"), DType::F64, 5).unwrap();
    batched_equals_one_by_one(&model, ForwardOptions::fast, 1e-12);
    batched_equals_one_by_one(&model, ForwardOptions::differentiable, 1e-12);
}

#[test]
fn bf16_batched_equals_one_by_one() {
    // The same arithmetic per row: measured identical here; allow under one bf16 step of a
    // logit of this model's size (|logits| < 4, step 2^-6).
    let model = load_fixture("mistral", DType::BF16).unwrap();
    batched_equals_one_by_one(&model, ForwardOptions::fast, 1e-2);
}

#[test]
fn bad_inputs_are_errors() {
    let model = load_fixture("qwen2", DType::F32).unwrap();
    let ids = Tensor::new(&[[1u32, 2, 300]], &Device::Cpu).unwrap();
    let e = model
        .forward(&ids, None, &mut ForwardOptions::fast())
        .unwrap_err()
        .to_string();
    assert!(e.contains("300") && e.contains("vocab"), "{e}");
    let ids = Tensor::new(&[[1u32, 2, 3]], &Device::Cpu).unwrap();
    let mask = Tensor::new(&[[1u32, 1]], &Device::Cpu).unwrap();
    assert!(model
        .forward(&ids, Some(&mask), &mut ForwardOptions::fast())
        .is_err());
    let mut hooks = erosion_model::hooks::Hooks::new(5);
    let e = model
        .forward(&ids, None, &mut ForwardOptions::fast().hooks(&mut hooks))
        .unwrap_err()
        .to_string();
    assert!(e.contains("5 layers"), "{e}");
}

/// With one layer and a window of 4, the last token sees only the last 4 tokens: its logits
/// equal those of those 4 tokens alone (RoPE is relative; the tables are f32, hence 1e-5), in
/// a full pass and through the KV cache, and differ without the window.
#[test]
fn a_sliding_window_limits_what_a_token_sees() {
    let mut cfg = tiny_config("mistral");
    cfg.num_hidden_layers = 1;
    cfg.sliding_window = Some(4);
    let (model, _) = random_model(&cfg, DType::F64, 1).unwrap();
    let ids = Tensor::new(&[[5u32, 9, 1, 2, 3, 4, 7]], &Device::Cpu).unwrap();
    let fast = || ForwardOptions::fast();
    let last = |t: &Tensor| t.narrow(1, t.dim(1).unwrap() - 1, 1).unwrap();
    let full = model.forward(&ids, None, &mut fast()).unwrap();
    let tail = model
        .forward(&ids.narrow(1, 3, 4).unwrap(), None, &mut fast())
        .unwrap();
    let err = max_abs_diff(&last(&full), &last(&tail));
    assert!(err < 1e-5, "the window leaks: {err}");

    let mut cache = model.new_cache();
    let head = ids.narrow(1, 0, 5).unwrap();
    model
        .forward_cached(&head, None, &mut cache, &mut fast())
        .unwrap();
    let rest = ids.narrow(1, 5, 2).unwrap();
    let cached = model
        .forward_cached(&rest, None, &mut cache, &mut fast())
        .unwrap();
    let err = max_abs_diff(&cached, &full.narrow(1, 5, 2).unwrap());
    assert!(err < 1e-10, "cached and full passes differ by {err}");

    cfg.sliding_window = None;
    let (unwindowed, _) = random_model(&cfg, DType::F64, 1).unwrap();
    let all = unwindowed.forward(&ids, None, &mut fast()).unwrap();
    assert!(max_abs_diff(&last(&all), &last(&full)) > 1e-4);
}
