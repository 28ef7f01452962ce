//! Response log-probabilities and entropies (analysis 1) against independent answers:
//! transformers' logits for the tiny fixture models, and a naive full-logits log-softmax.

use crate::forward_util;

use candle_core::{DType, Device, Tensor};
use erosion_data::Sequence;
use erosion_forward::batch::{BatchOptions, NoProgress, ProgressFn};
use erosion_forward::logprobs::{next_token, response_logprobs};
use erosion_model::hooks::{Edit, HookPoint, Positions};
use forward_util::*;

/// transformers' f32 logits against ours differ by < 1e-4 (erosion-model's hf_fixtures);
/// log-probs and entropies inherit that.
const HF_TOL: f64 = 2e-4;
/// The same model's logits gathered at a few rows vs all rows, batched or not: f32 rounding
/// only (matrix products of other shapes sum in another order; about 2e-6 relative to
/// log-probs of order 10). An off-by-one position or a wrong row moves them by O(1).
const SAME_TOL: f64 = 5e-5;

#[test]
fn log_probs_and_entropies_equal_transformers_logits() {
    for arch in ARCHS {
        let model = tiny(arch, DType::F32);
        let r = reference(arch);
        let ids = reference_sequences(&r);
        let logits = r["logits"].to_vec3::<f32>().unwrap(); // [3, S, vocab]
                                                            // Responses of different starts, one of them a single token.
        let seqs: Vec<Sequence> = ids
            .iter()
            .zip([3usize, 1, 2])
            .map(|(ids, start)| Sequence::new(ids.clone(), start..ids.len()).unwrap())
            .collect();
        let got = response_logprobs(
            &model,
            &seqs,
            &BatchOptions::default(),
            None,
            &mut NoProgress,
        )
        .unwrap();
        for (b, (s, g)) in seqs.iter().zip(&got).enumerate() {
            let (lp, h) = naive_logprobs(&logits[b], s);
            assert_eq!(g.ids, s.response_ids());
            let (e_lp, e_h) = (
                max_abs(&to_f64(&g.logprobs), &lp),
                max_abs(&to_f64(&g.entropy), &h),
            );
            assert!(
                e_lp < HF_TOL && e_h < HF_TOL,
                "{arch} example {b}: log-prob error {e_lp:.2e}, entropy error {e_h:.2e}"
            );
            let joint: f64 = lp.iter().sum();
            assert!((g.log_joint() - joint).abs() < HF_TOL * lp.len() as f64);
            let running = g.running_log_joint();
            assert!((running.last().unwrap() - g.log_joint()).abs() < 1e-12);
            assert!((running[0] - g.logprobs[0] as f64).abs() < 1e-12);
        }
    }
}

#[test]
fn gathered_rows_equal_full_logits_and_batching_changes_nothing() {
    let model = tiny("qwen2", DType::F32);
    let lens = [9, 3, 17, 5, 12, 2, 17, 8];
    let seqs = random_sequences(&lens, 128, 7);
    let one_by_one = BatchOptions {
        max_tokens: 1,
        max_batch: 1,
    };
    let batched = BatchOptions {
        max_tokens: 40,
        max_batch: 3,
    };
    let mut seen = Vec::new();
    let a = response_logprobs(&model, &seqs, &one_by_one, None, &mut NoProgress).unwrap();
    let b = response_logprobs(
        &model,
        &seqs,
        &batched,
        None,
        &mut ProgressFn::new(|d, t| seen.push((d, t))),
    )
    .unwrap();
    assert_eq!(
        seen.last(),
        Some(&(lens.len(), lens.len())),
        "progress reaches the total"
    );
    assert!(
        seen.len() > 1 && seen.len() < lens.len(),
        "several examples per batch: {seen:?}"
    );
    for (i, s) in seqs.iter().enumerate() {
        let logits = logits_rows(&full_logits(&model, &s.ids, None));
        let (lp, h) = naive_logprobs(&logits, s);
        for got in [&a[i], &b[i]] {
            assert_eq!(
                got.ids,
                s.response_ids(),
                "example {i} keeps its place in the output"
            );
            assert!(
                max_abs(&to_f64(&got.logprobs), &lp) < SAME_TOL,
                "example {i}: {:.2e}",
                max_abs(&to_f64(&got.logprobs), &lp)
            );
            assert!(
                max_abs(&to_f64(&got.entropy), &h) < SAME_TOL,
                "example {i}: entropy {:.2e}",
                max_abs(&to_f64(&got.entropy), &h)
            );
        }
    }
}

#[test]
fn logits_are_formed_in_f32_for_a_bf16_model() {
    // A bf16 model's gathered log-probs equal the log-softmax (in f32) of its own full bf16
    // logits: only rows are gathered, nothing is rounded twice.
    let model = tiny("llama", DType::BF16);
    let seqs = random_sequences(&[10, 6], 128, 3);
    let got = response_logprobs(
        &model,
        &seqs,
        &BatchOptions::default(),
        None,
        &mut NoProgress,
    )
    .unwrap();
    for (s, g) in seqs.iter().zip(&got) {
        let logits = logits_rows(&full_logits(&model, &s.ids, None));
        let (lp, _) = naive_logprobs(&logits, s);
        assert!(max_abs(&to_f64(&g.logprobs), &lp) < 1e-4);
    }
}

#[test]
fn hooked_log_probs_equal_the_hooked_full_forward() {
    let model = tiny("mistral", DType::F32);
    let seqs = random_sequences(&[11, 7, 4], 128, 11);
    let dir = Tensor::from_vec(
        (0..32).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(),
        32,
        &Device::Cpu,
    )
    .unwrap();
    let hooks = || {
        let mut h = model.hooks();
        h.edit(
            HookPoint::resid_post(0),
            Edit::add(&dir, 2.0),
            Positions::All,
        )
        .unwrap();
        h
    };
    let plain = response_logprobs(
        &model,
        &seqs,
        &BatchOptions::default(),
        None,
        &mut NoProgress,
    )
    .unwrap();
    let got = response_logprobs(
        &model,
        &seqs,
        &BatchOptions::default(),
        Some(&mut hooks()),
        &mut NoProgress,
    )
    .unwrap();
    for (i, s) in seqs.iter().enumerate() {
        let logits = logits_rows(&full_logits(&model, &s.ids, Some(&mut hooks())));
        let (lp, _) = naive_logprobs(&logits, s);
        assert!(max_abs(&to_f64(&got[i].logprobs), &lp) < SAME_TOL);
        assert!(
            max_abs(&to_f64(&got[i].logprobs), &to_f64(&plain[i].logprobs)) > 1e-3,
            "the edit matters"
        );
    }
}

#[test]
fn responses_without_a_prefix_or_tokens_are_refused_by_index() {
    let model = tiny("llama", DType::F32);
    let ok = Sequence::new(vec![5, 6, 7], 1..3).unwrap();
    for (bad, why) in [
        (Sequence::new(vec![5, 6, 7], 0..2).unwrap(), "token 0"),
        (Sequence::new(vec![5, 6, 7], 2..2).unwrap(), "empty"),
        (
            Sequence {
                ids: vec![5, 6],
                response: 1..4,
                end_of_turn: None,
            },
            "1..4",
        ),
    ] {
        let e = response_logprobs(
            &model,
            &[ok.clone(), bad],
            &BatchOptions::default(),
            None,
            &mut NoProgress,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("example 1") && e.contains(why), "{e}");
    }
}

#[test]
fn next_token_top_k_and_entropy_equal_the_full_distribution() {
    let model = tiny("qwen2", DType::F32);
    let prompt = &random_sequences(&[9], 128, 5)[0].ids;
    let lp = log_softmax_rows(&full_logits(&model, prompt, None))
        .pop()
        .unwrap();
    let mut order: Vec<usize> = (0..lp.len()).collect();
    order.sort_by(|&a, &b| lp[b].total_cmp(&lp[a]));
    let want_h: f64 = -lp.iter().map(|&l| (l as f64).exp() * l as f64).sum::<f64>();

    let got = next_token(&model, prompt, 5, None).unwrap();
    let ids: Vec<u32> = got.top.iter().map(|t| t.id).collect();
    assert_eq!(
        ids,
        order[..5].iter().map(|&i| i as u32).collect::<Vec<_>>()
    );
    for t in &got.top {
        assert!(
            (t.logprob - lp[t.id as usize]).abs() < 1e-5,
            "{} vs {}",
            t.logprob,
            lp[t.id as usize]
        );
        assert!((t.prob - lp[t.id as usize].exp()).abs() < 1e-6);
    }
    assert!(
        (got.entropy as f64 - want_h).abs() < SAME_TOL,
        "{} vs {want_h}",
        got.entropy
    );
    // k past the vocabulary gives the whole distribution, which sums to 1.
    let all = next_token(&model, prompt, 1000, None).unwrap();
    assert_eq!(all.top.len(), 128);
    assert!((all.top.iter().map(|t| t.prob as f64).sum::<f64>() - 1.0).abs() < 1e-5);
    assert!(all.top.windows(2).all(|w| w[0].prob >= w[1].prob));
    assert!(next_token(&model, &[], 3, None).is_err());
}
