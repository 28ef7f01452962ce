//! The passes on a real model, SmolLM2-135M-Instruct (GGUF Q4_1), against Hugging Face
//! transformers' reading of the same file (crates/erosion-model/tests/fixtures/smollm2/
//! reference.json, made by scripts/reference/make_smollm2_reference.py).
//!
//! The GGUF is not in the repository: scripts/fetch-smollm2.sh fetches it (CI runs it first).
//! Without it these tests fail, on purpose, saying so.

use crate::forward_util;

use erosion_data::{Sequence, ShortResponse};
use erosion_forward::batch::{BatchOptions, NoProgress};
use erosion_forward::logprobs::{next_token, response_logprobs};
use erosion_forward::windows::{record_windows, Layers, Window, WindowOptions};
use forward_util::*;
use serde_json::Value;

/// The tolerance erosion-model's SmolLM2 test holds log-probs to: the reference is float64;
/// transformers' own float32 run differs from it by 6.1e-6; our float32 forward sums in
/// another order. A wrong position or model error moves log-probs by 1e-2 or more.
const LOGPROB_TOL: f64 = 1e-4;

fn reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../erosion-model/tests/fixtures/smollm2/reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("SmolLM2 reference fixture"))
        .unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The reference chat (prompt + "The capital of France is Paris.<|im_end|>") as a sequence.
fn reply_sequence(r: &Value) -> Sequence {
    let prompt = ids(&r["chat"]["prompt_ids"]);
    let reply = ids(&r["reply"]["ids"]);
    let n = prompt.len();
    Sequence::new([prompt, reply.clone()].concat(), n..n + reply.len()).unwrap()
}

#[test]
fn reply_log_probs_equal_transformers_alone_and_in_a_batch() {
    let r = reference();
    let want = floats(&r["reply"]["logprobs"]);
    let reply = reply_sequence(&r);
    // Batched with a longer and a shorter sequence, so the reply is padded and not first.
    let mut longer = reply.clone();
    longer.ids.extend_from_slice(&[504, 3575, 282, 4649]);
    let shorter = Sequence::new(reply.ids[..20].to_vec(), 10..20).unwrap();
    let alone = response_logprobs(
        smollm2(),
        std::slice::from_ref(&reply),
        &BatchOptions::default(),
        None,
        &mut NoProgress,
    )
    .unwrap();
    let batch = response_logprobs(
        smollm2(),
        &[shorter, reply, longer],
        &BatchOptions::default(),
        None,
        &mut NoProgress,
    )
    .unwrap();
    for got in [&alone[0], &batch[1]] {
        let err = max_abs(&to_f64(&got.logprobs), &want);
        assert!(
            err < LOGPROB_TOL,
            "max |erosion - transformers| = {err:.2e}"
        );
        let joint: f64 = want.iter().sum();
        assert!((got.log_joint() - joint).abs() < LOGPROB_TOL * want.len() as f64);
        assert!(got.entropy.iter().all(|h| h.is_finite() && *h >= 0.0));
    }
    // The first reply token's entropy, against the full distribution after the prompt.
    let first = &r["chat"]["prompt_ids"];
    let nt = next_token(smollm2(), &ids(first), 1, None).unwrap();
    assert!((nt.entropy - alone[0].entropy[0]).abs() < 1e-4);
}

#[test]
fn next_token_top5_equals_transformers() {
    let r = reference();
    let got = next_token(smollm2(), &ids(&r["chat"]["prompt_ids"]), 5, None).unwrap();
    let top: Vec<u32> = got.top.iter().map(|t| t.id).collect();
    assert_eq!(top, ids(&r["top5"]["ids"]));
    for (t, w) in got.top.iter().zip(floats(&r["top5"]["logprobs"])) {
        assert!(
            (t.logprob as f64 - w).abs() < LOGPROB_TOL,
            "token {}: {} vs {w}",
            t.id,
            t.logprob
        );
    }
    // The full distribution's entropy, from the log-softmax of the full logits.
    let lp = log_softmax_rows(&full_logits(
        smollm2(),
        &ids(&r["chat"]["prompt_ids"]),
        None,
    ))
    .pop()
    .unwrap();
    let h: f64 = -lp.iter().map(|&l| (l as f64).exp() * l as f64).sum::<f64>();
    assert!(
        (got.entropy as f64 - h).abs() < 1e-4,
        "{} vs {h}",
        got.entropy
    );
}

#[test]
fn windows_on_30_layers_equal_a_full_record() {
    let r = reference();
    let reply = reply_sequence(&r);
    let opts = WindowOptions {
        layers: Layers::All,
        window: Window::Response { offset: 2, len: 4 },
        short: ShortResponse::Error,
        ..Default::default()
    };
    let full = full_record(smollm2(), &reply.ids);
    let mut n = 0;
    record_windows(
        smollm2(),
        std::slice::from_ref(&reply),
        &opts,
        &BatchOptions::default(),
        &mut NoProgress,
        &mut |rec| {
            let name = if rec.layer == 0 {
                "hook_embed".to_string()
            } else {
                format!("blocks.{}.hook_resid_post", rec.layer - 1)
            };
            let got = rec.hidden.to_vec2::<f32>()?;
            assert_eq!(
                rec.positions,
                &[
                    reply.response.start + 2,
                    reply.response.start + 3,
                    reply.response.start + 4,
                    reply.response.start + 5
                ]
            );
            for (row, &p) in got.iter().zip(rec.positions) {
                let want = &full[&name][p];
                let err = row
                    .iter()
                    .zip(want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                let scale = want.iter().map(|x| x.abs()).fold(1f32, f32::max);
                assert!(
                    err <= 1e-5 * scale,
                    "layer {} position {p}: {err:.2e} (scale {scale})",
                    rec.layer
                );
            }
            n += 1;
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(n, 31);
}
