//! The KL cost of an intervention against a naive computation from full logits in f64.

use crate::forward_util;

use candle_core::{DType, Device, Tensor};
use erosion_forward::batch::BatchOptions;
use erosion_forward::kl::response_kl;
use erosion_model::hooks::{Edit, HookPoint, Hooks, Positions};
use forward_util::*;

/// KL(p || q) per position from two rows of logits, in f64.
fn naive_kl(p: &[f32], q: &[f32]) -> f64 {
    let lsm = |z: &[f32]| {
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = m + z.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
        z.iter().map(|&x| x as f64 - lse).collect::<Vec<f64>>()
    };
    let (lp, lq) = (lsm(p), lsm(q));
    lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum()
}

#[test]
fn kl_is_zero_without_a_change_and_equals_the_naive_value_with_one() {
    let model = tiny("qwen2", DType::F32);
    let vocab = model.config().vocab_size as u32;
    let mut seqs = random_sequences(&[9, 6, 12], vocab, 3);
    seqs[1].response = 2..6;
    let d = model.config().hidden_size;
    let batch = BatchOptions::default();

    let zero = Tensor::zeros(d, DType::F32, &Device::Cpu).unwrap();
    let mut hooks = Hooks::new(model.n_layers());
    hooks
        .edit(
            HookPoint::resid_post(0),
            Edit::add(&zero, 1.0),
            Positions::All,
        )
        .unwrap();
    let kl = response_kl(&model, &seqs, &batch, &mut hooks).unwrap();
    assert!(kl.iter().all(|&k| k == 0.0), "{kl:?}");

    let v = Tensor::randn(0f32, 1., d, &Device::Cpu).unwrap();
    let make = || {
        let mut h = Hooks::new(model.n_layers());
        h.edit(HookPoint::resid_post(0), Edit::add(&v, 3.0), Positions::All)
            .unwrap();
        h
    };
    let kl = response_kl(&model, &seqs, &batch, &mut make()).unwrap();
    for (s, got) in seqs.iter().zip(&kl) {
        let p = logits_rows(&full_logits(&model, &s.ids, None));
        let q = logits_rows(&full_logits(&model, &s.ids, Some(&mut make())));
        let r = &s.response;
        let want = (r.start - 1..r.end - 1)
            .map(|t| naive_kl(&p[t], &q[t]))
            .sum::<f64>()
            / r.len() as f64;
        assert!(want > 1e-4, "the steer must move the distribution ({want})");
        assert!((got - want).abs() < 1e-4 * want.max(1.0), "{got} vs {want}");
    }
}
