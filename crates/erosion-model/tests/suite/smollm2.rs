//! SmolLM2-135M-Instruct (GGUF, Q4_1) against Hugging Face transformers' reading of the same
//! file (tests/fixtures/smollm2/reference.json, made by
//! scripts/reference/make_smollm2_reference.py). transformers dequantises and unpermutes with
//! its own code, so agreement checks erosion's GGUF path end to end: tokenizer from metadata,
//! chat template, dequantised and unpermuted weights, forward pass.
//!
//! The GGUF is not in the repository: scripts/fetch-smollm2.sh fetches it (CI runs it first).
//! Without it these tests fail, on purpose, saying so.

use crate::transformer_util::{assert_weights_match, floats_of, ids_of, read_json_fixture};
use candle_core::{DType, Device, Tensor, D};
use erosion_model::chat::Message;
use erosion_model::load::{Checkpoint, SaveOptions};
use erosion_model::transformer::{ForwardOptions, Transformer};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Log-probability tolerance. The reference is computed in float64 from the dequantised
/// weights; transformers' own float32 run differs from it by at most 6.1e-6
/// (`max_abs_f32_vs_f64_logprob` in the fixture): that is float32 rounding over 30 layers.
/// Our float32 forward sums in a different order, so we allow about 16x that. A real error
/// (a wrong Q/K permutation, eps, rope theta, or a mis-dequantised block) moves log-probs by
/// 1e-2 or more.
const LOGPROB_TOL: f64 = 1e-4;

fn gguf_path() -> PathBuf {
    erosion_testkit::smollm2_gguf()
}

fn reference() -> &'static Value {
    static REF: OnceLock<Value> = OnceLock::new();
    REF.get_or_init(|| read_json_fixture("smollm2/reference.json"))
}

fn checkpoint() -> &'static Checkpoint {
    static CKPT: OnceLock<Checkpoint> = OnceLock::new();
    CKPT.get_or_init(|| Checkpoint::open(gguf_path().to_str().unwrap()).expect("open SmolLM2 GGUF"))
}

fn model() -> &'static Transformer {
    static MODEL: OnceLock<Transformer> = OnceLock::new();
    MODEL.get_or_init(|| {
        checkpoint()
            .load_model(DType::F32, &Device::Cpu)
            .expect("load SmolLM2")
    })
}

/// Log-softmax over the vocabulary at every position of one sequence: `[seq, vocab]`.
fn log_probs(ids: &[u32]) -> Vec<Vec<f32>> {
    let input = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model()
        .forward(&input, None, &mut ForwardOptions::fast())
        .unwrap();
    let lp = candle_nn::ops::log_softmax(&logits.squeeze(0).unwrap(), D::Minus1).unwrap();
    lp.to_vec2::<f32>().unwrap()
}

#[test]
fn config_comes_from_metadata() {
    let c = &checkpoint().config;
    assert_eq!(c.model_type, "llama");
    assert_eq!(
        (c.num_hidden_layers, c.hidden_size, c.intermediate_size),
        (30, 576, 1536)
    );
    assert_eq!(
        (c.num_attention_heads, c.num_kv_heads(), c.vocab_size),
        (9, 3, 49152)
    );
    assert!(c.tie_word_embeddings);
    assert_eq!(c.rope_theta, 100000.0);
    assert_eq!(checkpoint().stored_dtype(), "Q4_1 x210, F32 x61, Q8_0 x1");
}

#[test]
fn tokenizer_ids_equal_reference() {
    let tok = &checkpoint().tokenizer.tokenizer;
    for case in reference()["tokens"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = tok.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(ids, ids_of(&case["ids"]), "{text:?}");
        // transformers' own GGUF tokenizer agrees on all of these (see the script's note).
        assert_eq!(ids, ids_of(&case["ids_transformers_gguf"]), "{text:?}");
    }
}

#[test]
fn chat_rendering_equals_reference() {
    let chat = &reference()["chat"];
    let question = chat["messages"][0]["content"].as_str().unwrap();
    let tok = &checkpoint().tokenizer;
    let messages = [Message::user(question)];
    assert_eq!(
        tok.apply_chat_template(&messages, true).unwrap(),
        chat["prompt"].as_str().unwrap()
    );
    assert_eq!(
        tok.encode_chat_prompt(&messages, true).unwrap(),
        ids_of(&chat["prompt_ids"])
    );
}

#[test]
fn dequantised_weights_equal_transformers() {
    // Sampled entries of q_proj / k_proj rows 0, 1, 31, 32, 63, 64 (the two halves of a head)
    // show the unpermutation directly; dequantisation of Q4_1 / Q8_0 is d * q (+ m) in f32 on
    // both sides, so values agree to f32 rounding.
    let tensors = checkpoint().tensors(DType::F32, &Device::Cpu).unwrap();
    assert_weights_match(&tensors, &reference()["weights"]);
}

#[test]
fn reply_logprobs_and_top5_match_transformers() {
    let r = reference();
    let prompt = ids_of(&r["chat"]["prompt_ids"]);
    let reply = ids_of(&r["reply"]["ids"]);
    let want = floats_of(&r["reply"]["logprobs"]);
    let full: Vec<u32> = prompt.iter().chain(&reply).copied().collect();
    let lp = log_probs(&full);
    let n = prompt.len();
    let mut max_err = 0f64;
    for (i, (&tok, &w)) in reply.iter().zip(&want).enumerate() {
        let got = lp[n - 1 + i][tok as usize] as f64;
        max_err = max_err.max((got - w).abs());
        assert!(
            (got - w).abs() < LOGPROB_TOL,
            "reply token {i} ({tok}): {got} vs {w}"
        );
    }
    eprintln!("reply log-probs: max |erosion f32 - transformers f64| = {max_err:.2e}");
    // Top 5 next tokens after the prompt: same ids in the same order, same log-probs.
    let last = &lp[n - 1];
    let mut order: Vec<usize> = (0..last.len()).collect();
    order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
    let top_ids: Vec<u32> = order[..5].iter().map(|&i| i as u32).collect();
    assert_eq!(top_ids, ids_of(&r["top5"]["ids"]));
    for (&id, w) in top_ids.iter().zip(floats_of(&r["top5"]["logprobs"])) {
        assert!(
            (last[id as usize] as f64 - w).abs() < LOGPROB_TOL,
            "top-5 id {id}: {} vs {w}",
            last[id as usize]
        );
    }
}

#[test]
fn greedy_answer_names_paris() {
    let r = reference();
    let mut ids = ids_of(&r["chat"]["prompt_ids"]);
    let n = ids.len();
    let eos = checkpoint().eos_token_ids();
    let want = ids_of(&r["greedy"]["ids"]);
    for _ in 0..want.len() {
        let lp = log_probs(&ids);
        let last = lp.last().unwrap();
        let next = (0..last.len())
            .max_by(|&a, &b| last[a].total_cmp(&last[b]))
            .unwrap() as u32;
        ids.push(next);
        if eos.contains(&next) {
            break;
        }
    }
    let text = checkpoint()
        .tokenizer
        .tokenizer
        .decode(&ids[n..], true)
        .unwrap();
    assert!(text.contains("Paris"), "greedy answer: {text:?}");
    assert_eq!(
        ids[n..],
        want[..],
        "greedy ids differ from transformers' ({text:?})"
    );
    assert_eq!(text, r["greedy"]["text"].as_str().unwrap());
}

#[test]
fn gguf_converts_to_a_folder_that_reopens_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("SmolLM2-135M-Instruct");
    let src = checkpoint();
    src.save_hf(&dir, DType::F32, &SaveOptions::default())
        .unwrap();
    let back = Checkpoint::open(dir.to_str().unwrap()).unwrap();
    assert_eq!(back.config, src.config);
    let (a, b) = (
        src.tensors(DType::F32, &Device::Cpu).unwrap(),
        back.tensors(DType::F32, &Device::Cpu).unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        let diff = (t - &b[name])
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{name}");
    }
    for case in reference()["tokens"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = back
            .tokenizer
            .tokenizer
            .encode(text, true)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(ids, ids_of(&case["ids"]), "{text:?}");
    }
    let messages = [Message::user("What is the capital of France?")];
    assert_eq!(
        back.tokenizer.apply_chat_template(&messages, true).unwrap(),
        reference()["chat"]["prompt"].as_str().unwrap()
    );
    assert_eq!(back.eos_token_ids(), src.eos_token_ids());
}
