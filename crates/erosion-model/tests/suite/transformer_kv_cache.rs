//! Incremental decoding with a KV cache equals the full forward pass.

use crate::transformer_util;

use candle_core::{DType, Device, IndexOp, Tensor};
use erosion_model::hooks::{Edit, HookPoint, Positions};
use erosion_model::transformer::{ForwardOptions, KvCache, Transformer};
use transformer_util::*;

/// Feeds the left-padded prompts, then the continuation one token at a time, and compares
/// every step's logits with the full forward over prompt + continuation.
fn cached_equals_full(model: &Transformer, tol: f64) {
    let vocab = model.config().vocab_size as u32;
    let prompts: Vec<Vec<u32>> = random_ids(3, 5, vocab, 51)
        .into_iter()
        .zip([5, 2, 4])
        .map(|(s, n)| s[..n].to_vec())
        .collect();
    let (prompt_ids, prompt_mask) = pad(&prompts, true);
    let cont = random_ids(3, 4, vocab, 52);
    let full_ids = Tensor::cat(
        &[
            &prompt_ids,
            &Tensor::from_vec(cont.concat(), (3, 4), &Device::Cpu).unwrap(),
        ],
        1,
    )
    .unwrap();
    let full_mask = Tensor::cat(
        &[
            &prompt_mask,
            &Tensor::ones((3, 4), DType::U32, &Device::Cpu).unwrap(),
        ],
        1,
    )
    .unwrap();
    let full = model
        .forward(&full_ids, Some(&full_mask), &mut ForwardOptions::fast())
        .unwrap();

    let mut cache = model.new_cache();
    let first = model
        .forward_cached(
            &prompt_ids,
            Some(&prompt_mask),
            &mut cache,
            &mut ForwardOptions::fast(),
        )
        .unwrap();
    let err = masked_max_diff(&first, &full.i((.., ..5)).unwrap(), &prompt_mask);
    assert!(err < tol, "prompt logits differ by {err}");
    // `prefill` gives the last column's logits and leaves the same cache.
    let mut other = model.new_cache();
    let last = model
        .prefill(
            &prompt_ids,
            Some(&prompt_mask),
            &mut other,
            &mut ForwardOptions::fast(),
        )
        .unwrap(); // [3, vocab]
    let err = max_abs_diff(&last, &first.i((.., 4)).unwrap());
    assert!(err < tol, "prefill's logits differ by {err}");
    assert_eq!(other.tokens(), cache.tokens());
    for t in 0..4 {
        let step: Vec<u32> = cont.iter().map(|c| c[t]).collect();
        let step = Tensor::from_vec(step, (3, 1), &Device::Cpu).unwrap();
        let logits = model
            .forward_cached(&step, None, &mut cache, &mut ForwardOptions::fast())
            .unwrap();
        let err = max_abs_diff(&logits, &full.i((.., 5 + t..6 + t)).unwrap());
        assert!(err < tol, "step {t}: cached logits differ by {err}");
    }
    assert_eq!(cache.len(), 9);
    assert_eq!(cache.tokens(), vec![9, 6, 8]);
}

#[test]
fn qwen2_cached_decoding_equals_full_forward() {
    cached_equals_full(&load_fixture("qwen2", DType::F32).unwrap(), 1e-4);
}

#[test]
fn llama_cached_decoding_equals_full_forward() {
    cached_equals_full(&load_fixture("llama", DType::F32).unwrap(), 1e-4);
}

/// Gemma 2 and 3: sliding windows (4, shorter than the prompt), soft-caps and local RoPE on
/// the cached path.
#[test]
fn gemma_cached_decoding_equals_full_forward() {
    for arch in ["gemma2", "gemma3"] {
        cached_equals_full(&load_fixture(arch, DType::F32).unwrap(), 1e-4);
    }
}

#[test]
fn f64_cached_decoding_equals_full_forward_to_rounding() {
    let (model, _) = random_model(&tiny_config("mistral"), DType::F64, 3).unwrap();
    cached_equals_full(&model, 1e-12);
}

#[test]
fn hooks_steer_cached_decoding_like_the_full_pass() {
    let model = load_fixture("qwen2", DType::F32).unwrap();
    let v = Tensor::ones(model.config().hidden_size, DType::F32, &Device::Cpu).unwrap();
    let ids = Tensor::from_vec(random_ids(1, 6, 128, 53).concat(), (1, 6), &Device::Cpu).unwrap();
    let steer = || {
        let mut h = model.hooks();
        h.edit(HookPoint::resid_pre(1), Edit::add(&v, 2.0), Positions::All)
            .unwrap();
        h
    };
    let mut hooks = steer();
    let full = model
        .forward(&ids, None, &mut ForwardOptions::fast().hooks(&mut hooks))
        .unwrap();
    let mut cache = model.new_cache();
    let mut hooks = steer();
    model
        .forward_cached(
            &ids.i((.., ..5)).unwrap(),
            None,
            &mut cache,
            &mut ForwardOptions::fast().hooks(&mut hooks),
        )
        .unwrap();
    let last = model
        .forward_cached(
            &ids.i((.., 5..)).unwrap(),
            None,
            &mut cache,
            &mut ForwardOptions::fast().hooks(&mut hooks),
        )
        .unwrap();
    assert!(max_abs_diff(&last, &full.i((.., 5..)).unwrap()) < 1e-4);
}

#[test]
fn cached_path_refuses_gradients_and_mismatched_batches() {
    let model = load_fixture("qwen2", DType::F32).unwrap();
    let ids = Tensor::new(&[[3u32, 4]], &Device::Cpu).unwrap();
    let mut cache = model.new_cache();
    assert!(model
        .forward_cached(
            &ids,
            None,
            &mut cache,
            &mut ForwardOptions::differentiable()
        )
        .is_err());
    model
        .forward_cached(&ids, None, &mut cache, &mut ForwardOptions::fast())
        .unwrap();
    let two = Tensor::new(&[[3u32], [4]], &Device::Cpu).unwrap();
    let e = model
        .forward_cached(&two, None, &mut cache, &mut ForwardOptions::fast())
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds 1 sequences"), "{e}");
    cache.clear();
    assert!(cache.is_empty());
    model
        .forward_cached(&two, None, &mut cache, &mut ForwardOptions::fast())
        .unwrap();
}

/// The last-position logits of `ids` run alone, without cache or padding `[1, vocab]`.
fn alone(model: &Transformer, ids: &[u32]) -> Tensor {
    let t = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let out = model
        .forward(&t, None, &mut ForwardOptions::fast())
        .unwrap();
    out.i((.., ids.len() - 1..ids.len())).unwrap()
}

/// Feeds one token per row and holds each row's logits to its sequence run alone.
fn step_rows(
    model: &Transformer,
    cache: &mut KvCache,
    seqs: &mut [Vec<u32>],
    next: &[u32],
    tol: f64,
) {
    for (s, &t) in seqs.iter_mut().zip(next) {
        s.push(t);
    }
    let ids = Tensor::from_vec(next.to_vec(), (next.len(), 1), &Device::Cpu).unwrap();
    let got = model
        .forward_cached(&ids, None, cache, &mut ForwardOptions::fast())
        .unwrap();
    for (r, s) in seqs.iter().enumerate() {
        let err = max_abs_diff(&got.i(r..r + 1).unwrap(), &alone(model, s));
        assert!(
            err < tol,
            "row {r} after {} tokens differs by {err}",
            s.len()
        );
    }
}

/// Continuous batching: a row that joins a running cache (`append_rows`, left-padded to the
/// longer one) and rows left behind when others finish (`keep_rows`, leading pads dropped)
/// decode as each sequence would alone.
fn joined_and_left_rows_decode_as_alone(model: &Transformer, tol: f64) {
    let vocab = model.config().vocab_size as u32;
    let ids = random_ids(3, 9, vocab, 61);
    let prefill = |prompt: &[u32]| {
        let mut c = model.new_cache();
        let t = Tensor::new(prompt, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        model
            .forward_cached(&t, None, &mut c, &mut ForwardOptions::fast())
            .unwrap();
        c
    };
    // Row 0 has decoded 2 tokens after a prompt of 5 (7 columns) when row 1 (prompt 2) joins.
    let mut seqs = vec![ids[0][..5].to_vec()];
    let mut cache = prefill(&seqs[0]);
    step_rows(model, &mut cache, &mut seqs, &[ids[0][5]], tol);
    step_rows(model, &mut cache, &mut seqs, &[ids[0][6]], tol);
    cache = cache.append_rows(&prefill(&ids[1][..2])).unwrap();
    seqs.push(ids[1][..2].to_vec());
    assert_eq!((cache.len(), cache.tokens()), (7, vec![7, 2]));
    step_rows(model, &mut cache, &mut seqs, &[ids[0][7], ids[1][2]], tol);
    // Row 2 (a prompt of 9, longer than the cache) joins: the running rows are padded.
    cache = cache.append_rows(&prefill(&ids[2])).unwrap();
    seqs.push(ids[2].clone());
    assert_eq!((cache.len(), cache.tokens()), (9, vec![8, 3, 9]));
    step_rows(
        model,
        &mut cache,
        &mut seqs,
        &[ids[0][8], ids[1][3], 1],
        tol,
    );
    // Row 2 finishes, then row 0: row 1's leading pads go with them.
    cache = cache.keep_rows(&[1, 0]).unwrap();
    seqs = vec![seqs[1].clone(), seqs[0].clone()];
    step_rows(model, &mut cache, &mut seqs, &[ids[1][4], 2], tol);
    cache = cache.keep_rows(&[0]).unwrap();
    seqs.truncate(1);
    assert_eq!((cache.len(), cache.tokens()), (5, vec![5]));
    step_rows(model, &mut cache, &mut seqs, &[ids[1][5]], tol);
    assert!(cache.keep_rows(&[1]).is_err());
    assert!(cache.keep_rows(&[]).unwrap().is_empty());
}

#[test]
fn joined_and_left_rows_decode_as_alone_in_qwen2_and_gemma() {
    for arch in ["qwen2", "gemma3"] {
        joined_and_left_rows_decode_as_alone(&load_fixture(arch, DType::F32).unwrap(), 1e-4);
    }
    let (model, _) = random_model(&tiny_config("mistral"), DType::F64, 3).unwrap();
    joined_and_left_rows_decode_as_alone(&model, 1e-12);
}
