//! The transformer against Hugging Face transformers' own numbers for tiny random Qwen2,
//! Llama (llama3 rope scaling), Mistral, Qwen3 (q/k norms), Gemma 2 (post-norms, soft-capping,
//! GeGLU, a sliding window shorter than the batch) and Gemma 3 (q/k norms, local and global
//! RoPE, linear rope scaling) checkpoints (scripts/reference/make_tiny_fixtures.py).
//! The folders are read with candle's safetensors loader and `Config::from_file` only.

use crate::transformer_util;

use candle_core::{DType, Tensor};
use erosion_model::hooks::{HookPoint, Positions};
use erosion_model::transformer::ForwardOptions;
use transformer_util::*;

/// f32: logits and every `output_hidden_states` entry, at the valid (unpadded) positions.
fn matches_transformers_f32(arch: &str) {
    let model = load_fixture(arch, DType::F32).unwrap();
    let reference = load_reference(arch).unwrap();
    let ids = reference["input_ids"].to_dtype(DType::U32).unwrap();
    let mask = &reference["attention_mask"];
    let n = model.n_layers();

    let mut hooks = model.hooks();
    for i in 0..=n {
        hooks
            .record(HookPoint::hf_hidden_state(i, n).unwrap(), Positions::All)
            .unwrap();
    }
    let logits = model
        .forward(
            &ids,
            Some(mask),
            &mut ForwardOptions::fast().hooks(&mut hooks),
        )
        .unwrap();
    let cache = hooks.take_cache();

    let want = &reference["logits"];
    assert_eq!(logits.dims(), want.dims());
    let err = masked_max_diff(&logits, want, mask);
    assert!(
        err < 1e-4,
        "{arch}: logits differ by {err} (|logits| up to {})",
        max_abs(want)
    );
    for i in 0..=n {
        let point = HookPoint::hf_hidden_state(i, n).unwrap().to_string();
        let got = cache.tensor(&point).unwrap();
        let err = masked_max_diff(got, &reference[&format!("hidden_states.{i}")], mask);
        assert!(
            err < 1e-4,
            "{arch}: hidden state {i} ({point}) differs by {err}"
        );
    }
}

/// bf16 against transformers run in bf16. Both round matmul outputs, residual adds and norm
/// gains to bf16 (8 significant bits: a relative step of 2^-8 = 0.4%), not always at the same
/// points, so the two bf16 results differ from each other by about as much as each differs
/// from the exact (f32) result. The test therefore asks for transformers' own bf16 accuracy:
/// our mean error against the f32 logits is at most 1.5x transformers' bf16 mean error (it is
/// 0.96x-1.13x on these fixtures), and no logit is further from transformers' bf16 logit than
/// twice transformers' largest bf16 error (measured: at most 1.4x, i.e. one bf16 step of a
/// logit near 32). Differences of one bf16 rounding (e.g. the norm computed in bf16 rather than
/// f32) stay within these bounds on models this small; they catch real mistakes (a wrong
/// rope, mask or weight) and dtype handling that loses more than bf16 precision.
fn matches_transformers_bf16(arch: &str) {
    let model = load_fixture(arch, DType::BF16).unwrap();
    let reference = load_reference(arch).unwrap();
    let ids = reference["input_ids"].to_dtype(DType::U32).unwrap();
    let mask = &reference["attention_mask"];
    let logits = model
        .forward(&ids, Some(mask), &mut ForwardOptions::fast())
        .unwrap();
    assert_eq!(logits.dtype(), DType::BF16);
    let (hf_bf16, hf_f32) = (&reference["logits_bf16"], &reference["logits"]);
    let hf_mean_err = masked_mean_diff(hf_bf16, hf_f32, mask);
    let our_mean_err = masked_mean_diff(&logits, hf_f32, mask);
    assert!(
        our_mean_err <= 1.5 * hf_mean_err,
        "{arch}: mean bf16 error {our_mean_err} vs transformers' {hf_mean_err}"
    );
    let hf_max_err = masked_max_diff(hf_bf16, hf_f32, mask);
    let vs_hf = masked_max_diff(&logits, hf_bf16, mask);
    assert!(vs_hf <= 2.0 * hf_max_err, "{arch}: bf16 logits differ from transformers' bf16 by {vs_hf} (its own bf16 error: {hf_max_err})");
}

#[test]
fn qwen2_f32_matches_transformers() {
    matches_transformers_f32("qwen2");
}

#[test]
fn llama_f32_matches_transformers() {
    matches_transformers_f32("llama");
}

#[test]
fn mistral_f32_matches_transformers() {
    matches_transformers_f32("mistral");
}

#[test]
fn qwen3_f32_matches_transformers() {
    matches_transformers_f32("qwen3");
}

#[test]
fn gemma2_f32_matches_transformers() {
    matches_transformers_f32("gemma2");
}

#[test]
fn gemma3_f32_matches_transformers() {
    matches_transformers_f32("gemma3");
}

#[test]
fn qwen3_bf16_matches_transformers() {
    matches_transformers_bf16("qwen3");
}

#[test]
fn gemma2_bf16_matches_transformers() {
    matches_transformers_bf16("gemma2");
}

#[test]
fn gemma3_bf16_matches_transformers() {
    matches_transformers_bf16("gemma3");
}

#[test]
fn qwen2_bf16_matches_transformers() {
    matches_transformers_bf16("qwen2");
}

#[test]
fn llama_bf16_matches_transformers() {
    matches_transformers_bf16("llama");
}

#[test]
fn mistral_bf16_matches_transformers() {
    matches_transformers_bf16("mistral");
}

/// The fixtures exercise what they claim to: without llama3 scaling, or with Qwen2's q/k/v
/// bias zeroed, the logits no longer match (so the tests above can fail for these reasons).
#[test]
fn fixtures_exercise_rope_scaling_and_bias() {
    let reference = load_reference("llama").unwrap();
    let ids = reference["input_ids"].to_dtype(DType::U32).unwrap();
    let mask = &reference["attention_mask"];
    let dir = fixture_dir("llama");
    let mut cfg = erosion_model::Config::from_file(&dir.join("config.json")).unwrap();
    assert_eq!(cfg.rope_scaling.as_ref().unwrap().rope_type, "llama3");
    assert_eq!(cfg.rope_theta, 500000.0);
    cfg.rope_scaling = None;
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &candle_core::Device::Cpu,
        )
    }
    .unwrap();
    let unscaled = erosion_model::transformer::Transformer::new(&cfg, vb).unwrap();
    let logits = unscaled
        .forward(&ids, Some(mask), &mut ForwardOptions::fast())
        .unwrap();
    assert!(masked_max_diff(&logits, &reference["logits"], mask) > 1e-3);

    let mut qwen = load_fixture("qwen2", DType::F32).unwrap();
    let reference = load_reference("qwen2").unwrap();
    let ids = reference["input_ids"].to_dtype(DType::U32).unwrap();
    let mask = &reference["attention_mask"];
    let name = "model.layers.1.self_attn.k_proj.bias";
    let zeros = Tensor::zeros_like(qwen.parameter(name).unwrap()).unwrap();
    qwen.set_parameter(name, zeros).unwrap();
    let logits = qwen
        .forward(&ids, Some(mask), &mut ForwardOptions::fast())
        .unwrap();
    assert!(masked_max_diff(&logits, &reference["logits"], mask) > 1e-3);
}

/// The f32 logits of fixture `arch` run under `cfg` changed by `edit`, and how far they are
/// from transformers' (valid positions).
fn logits_error_with(arch: &str, edit: impl FnOnce(&mut erosion_model::Config)) -> f64 {
    let reference = load_reference(arch).unwrap();
    let ids = reference["input_ids"].to_dtype(DType::U32).unwrap();
    let mask = &reference["attention_mask"];
    let dir = fixture_dir(arch);
    let mut cfg = erosion_model::Config::from_file(&dir.join("config.json")).unwrap();
    edit(&mut cfg);
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &candle_core::Device::Cpu,
        )
    }
    .unwrap();
    let model = erosion_model::transformer::Transformer::new(&cfg, vb).unwrap();
    let logits = model
        .forward(&ids, Some(mask), &mut ForwardOptions::fast())
        .unwrap();
    masked_max_diff(&logits, &reference["logits"], mask)
}

type ConfigEdit = fn(&mut erosion_model::Config);

/// The Gemma fixtures exercise each feature they claim: without the sliding window, either
/// soft-cap, the query scalar, the local RoPE base or the linear scaling, the logits no longer
/// match transformers'.
#[test]
fn gemma_fixtures_exercise_windows_capping_and_local_rope() {
    assert!(logits_error_with("gemma2", |_| ()) < 1e-4);
    let edits: [(&str, &str, ConfigEdit); 6] = [
        ("gemma2", "no window", |c| c.sliding_window = Some(64)),
        ("gemma2", "no attention cap", |c| {
            c.attn_logit_softcapping = None
        }),
        ("gemma2", "no final cap", |c| {
            c.final_logit_softcapping = None
        }),
        ("gemma2", "head_dim scale", |c| {
            c.query_pre_attn_scalar = None
        }),
        ("gemma3", "one RoPE base", |c| c.rope_local_base_freq = None),
        ("gemma3", "no rope scaling", |c| c.rope_scaling = None),
    ];
    for (arch, what, edit) in edits {
        let err = logits_error_with(arch, edit);
        assert!(err > 1e-3, "{arch} with {what} still matches ({err})");
    }
}
