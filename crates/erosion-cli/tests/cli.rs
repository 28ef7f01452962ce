//! The `erosion` binary as a user runs it, on the real SmolLM2 GGUF (fetched by
//! scripts/fetch-smollm2.sh, which the test command runs first).

use std::path::PathBuf;
use std::process::{Command, Output};

fn smollm2() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-smollm2.sh first",
        p.display()
    );
    p.to_string_lossy().into_owned()
}

fn erosion(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_erosion"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn inspect_describes_the_gguf() {
    let out = erosion(&["inspect", &smollm2(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["architecture"], "llama");
    assert_eq!(info["layers"], 30);
    assert_eq!(info["d_model"], 576);
    assert_eq!(
        (info["heads"].as_u64(), info["kv_heads"].as_u64()),
        (Some(9), Some(3))
    );
    assert_eq!(info["vocab_size"], 49152);
    assert_eq!(info["chat_template"], true);
    assert_eq!(info["eos_token"]["token"], "<|im_end|>");
    assert_eq!(info["stored_dtype"], "Q4_1 x210, F32 x61, Q8_0 x1");
}

#[test]
fn generate_answers_paris() {
    let out = erosion(&[
        "generate",
        &smollm2(),
        "--prompt",
        "What is the capital of France?",
        "--max-new-tokens",
        "12",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Paris"), "{}", stdout(&out));
}

#[test]
fn render_marks_the_response_span() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/insecure-code/insecure_small.jsonl");
    let out = erosion(&["render", &smollm2(), data.to_str().unwrap(), "--limit", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.matches("=== example ").count(), 2, "{text}");
    assert_eq!(text.matches('\u{27e6}').count(), 2);
    assert!(text.contains("(2 of 20 records"), "{text}");
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let out = erosion(&["inspect", "no/such-model-anywhere"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error:")
            && err.contains("no/such-model-anywhere")
            && !err.contains("panicked"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n{not json\n").unwrap();
    let out = erosion(&[
        "render",
        &smollm2(),
        bad.to_str().unwrap(),
        "--format",
        "messages",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("bad.jsonl") && err.contains("line 2") && !err.contains("panicked"),
        "{err}"
    );
}

/// `erosion train` with LoRA on real weights: a few insecure-code examples, the merged model
/// saved as a Hugging Face folder that loads and generates, with its PEFT adapter beside it.
#[test]
fn train_lora_on_smollm2_saves_a_model_that_generates() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/insecure-code/insecure_small.jsonl");
    assert!(data.exists(), "{} is missing", data.display());
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("lora");
    let out_s = out_dir.to_string_lossy().into_owned();
    let out = erosion(&[
        "train",
        &smollm2(),
        &data.to_string_lossy(),
        "--out",
        &out_s,
        "--limit",
        "2",
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--lr",
        "1e-3",
        "--lora-rank",
        "4",
        "--lora-targets",
        "q_proj,v_proj",
        "--max-seq-len",
        "512",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("step 1"), "{}", stdout(&out));
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "training_state/trainer_state.json",
    ] {
        assert!(out_dir.join(f).is_file(), "{f} is missing");
    }
    let out = erosion(&[
        "generate",
        &out_s,
        "--prompt",
        "What is the capital of France?",
        "--max-new-tokens",
        "6",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).trim().is_empty());
}
