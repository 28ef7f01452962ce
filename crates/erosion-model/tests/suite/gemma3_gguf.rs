//! Gemma 3 270M (base; GGUF Q4_K_M with a sentencepiece tokenizer) against Hugging Face
//! transformers' reading of the same file (tests/fixtures/gemma3/reference.json, made by
//! scripts/reference/make_gemma3_reference.py): the config from metadata with Gemma 3's
//! defaults, the Unigram tokenizer rebuilt from the stored pieces and scores, the norm weights
//! with llama.cpp's added 1 taken off, every hidden state and the log-probs.
//!
//! The GGUF is not in the repository: scripts/fetch-gemma3.sh fetches it (the test command runs
//! it first). Without it these tests fail, on purpose, saying so.

use crate::transformer_util::{assert_weights_match, floats_of, ids_of, read_json_fixture};
use candle_core::{DType, Device, Tensor, D};
use erosion_model::hooks::{HookPoint, Positions};
use erosion_model::load::Checkpoint;
use erosion_model::transformer::{ForwardOptions, Transformer};
use serde_json::Value;
use std::sync::OnceLock;

/// Log-probability tolerance: transformers' own f32 run is within 6.7e-6 of its f64 one
/// (`max_abs_f32_vs_f64_logprob`); a wrong norm shift, query scale or window moves log-probs
/// by far more than this.
const LOGPROB_TOL: f64 = 1e-4;

fn reference() -> &'static Value {
    static REF: OnceLock<Value> = OnceLock::new();
    REF.get_or_init(|| read_json_fixture("gemma3/reference.json"))
}

fn checkpoint() -> &'static Checkpoint {
    static CKPT: OnceLock<Checkpoint> = OnceLock::new();
    CKPT.get_or_init(|| {
        Checkpoint::open(erosion_testkit::gemma3_gguf().to_str().unwrap())
            .expect("open the Gemma 3 GGUF")
    })
}

fn model() -> &'static Transformer {
    static MODEL: OnceLock<Transformer> = OnceLock::new();
    MODEL.get_or_init(|| {
        checkpoint()
            .load_model(DType::F32, &Device::Cpu)
            .expect("load Gemma 3")
    })
}

#[test]
fn config_equals_transformers_reading() {
    let c = &checkpoint().config;
    let want = &reference()["config"];
    assert_eq!(c.model_type, want["model_type"].as_str().unwrap());
    let ints = [
        ("vocab_size", c.vocab_size),
        ("hidden_size", c.hidden_size),
        ("intermediate_size", c.intermediate_size),
        ("num_hidden_layers", c.num_hidden_layers),
        ("num_attention_heads", c.num_attention_heads),
        ("num_key_value_heads", c.num_kv_heads()),
        ("head_dim", c.head_dim()),
        ("sliding_window", c.sliding_window.unwrap()),
    ];
    for (k, got) in ints {
        assert_eq!(got as u64, want[k].as_u64().unwrap(), "{k}");
    }
    assert_eq!(
        c.query_pre_attn_scalar,
        Some(want["query_pre_attn_scalar"].as_f64().unwrap())
    );
    let rope = &want["rope_parameters"];
    assert_eq!(
        c.rope_theta,
        rope["full_attention"]["rope_theta"].as_f64().unwrap()
    );
    assert_eq!(
        c.rope_local_base_freq,
        rope["sliding_attention"]["rope_theta"].as_f64()
    );
    assert!(c.rope_scaling.is_none() && c.tie_word_embeddings);
    assert_eq!(c.final_logit_softcapping, None);
    // Layers 5, 11, 17 attend globally, the others within the window.
    let windows = c.layer_windows().unwrap();
    let types: Vec<&str> = (want["layer_types"].as_array().unwrap().iter())
        .map(|t| t.as_str().unwrap())
        .collect();
    for (l, (w, t)) in windows.iter().zip(&types).enumerate() {
        assert_eq!(w.is_some(), *t == "sliding_attention", "layer {l}");
    }
    // transformers keeps llama.cpp's f32 eps (9.99999997e-7); erosion reads it back as the
    // 1e-6 the original config held. The difference is far below f32 resolution of x^2.
    let eps = want["rms_norm_eps"].as_f64().unwrap();
    assert!((c.rms_norm_eps - eps).abs() < 1e-14, "{}", c.rms_norm_eps);
}

#[test]
fn sentencepiece_ids_and_decoding_equal_transformers() {
    let tok = &checkpoint().tokenizer.tokenizer;
    for case in reference()["tokens"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = tok.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(ids, ids_of(&case["ids"]), "{text:?}");
        let plain = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(
            tok.decode(&plain, false).unwrap(),
            case["decoded"].as_str().unwrap(),
            "{text:?}"
        );
    }
}

#[test]
fn norm_weights_lose_llama_cpps_added_one() {
    let tensors = checkpoint().tensors(DType::F32, &Device::Cpu).unwrap();
    assert_weights_match(&tensors, &reference()["weights"]);
}

#[test]
fn every_hidden_state_and_the_log_probs_equal_transformers() {
    let r = reference();
    let full = ids_of(&r["hidden_norms"]["ids"]);
    let model = model();
    let n = model.n_layers();
    let mut hooks = model.hooks();
    for i in 0..=n {
        hooks
            .record(HookPoint::hf_hidden_state(i, n).unwrap(), Positions::All)
            .unwrap();
    }
    let input = Tensor::new(full.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model
        .forward(&input, None, &mut ForwardOptions::fast().hooks(&mut hooks))
        .unwrap();
    let cache = hooks.take_cache();
    for (i, want) in r["hidden_norms"]["norms"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let point = HookPoint::hf_hidden_state(i, n).unwrap().to_string();
        let got = cache
            .tensor(&point)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let norms = got.sqr().unwrap().sum(D::Minus1).unwrap().sqrt().unwrap();
        for (p, (g, w)) in (norms.to_vec1::<f64>().unwrap().iter())
            .zip(floats_of(want))
            .enumerate()
        {
            assert!(
                (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                "hidden state {i} ({point}) at position {p}: norm {g} vs {w}"
            );
        }
    }
    let lp = candle_nn::ops::log_softmax(&logits.squeeze(0).unwrap(), D::Minus1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let prompt = ids_of(&r["prompt"]["ids"]);
    let reply = ids_of(&r["reply"]["ids"]);
    let k = prompt.len();
    for (i, (&t, w)) in reply
        .iter()
        .zip(floats_of(&r["reply"]["logprobs"]))
        .enumerate()
    {
        let got = lp[k - 1 + i][t as usize] as f64;
        assert!(
            (got - w).abs() < LOGPROB_TOL,
            "reply token {i} ({t}): {got} vs {w}"
        );
    }
    let last = &lp[k - 1];
    let mut order: Vec<usize> = (0..last.len()).collect();
    order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
    let top: Vec<u32> = order[..5].iter().map(|&i| i as u32).collect();
    assert_eq!(top, ids_of(&r["top5"]["ids"]));
}

#[test]
fn greedy_continuation_equals_transformers() {
    use erosion_model::generate::{generate, SamplingOptions};
    let r = reference();
    let want = ids_of(&r["greedy"]["ids"]);
    let prompt = ids_of(&r["prompt"]["ids"]);
    let opts = SamplingOptions {
        max_new_tokens: want.len(),
        ..Default::default()
    };
    let got = generate(model(), &prompt, &[], &opts).unwrap();
    assert_eq!(got.tokens, want, "{}", r["greedy"]["text"]);
}
