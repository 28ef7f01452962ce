//! Saving Hugging Face folders: GGUF -> folder -> reopen gives identical tensors and tokens,
//! the JSON files carry what transformers needs, and writes leave no temporary files.

use crate::load_util;

use candle_core::{DType, Device};
use erosion_model::load::{Checkpoint, SaveOptions};
use load_util::*;

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn gguf_to_folder_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    write_tiny_gguf(
        &gguf,
        &GgufSpec {
            q8_embedding: true,
            ..Default::default()
        },
    );
    let src = Checkpoint::open_path(&gguf).unwrap();
    let dir = tmp.path().join("hf");
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
        assert_eq!(max_abs_diff(t, &b[name]), 0.0, "{name}");
    }
    for text in [
        "hello world",
        "<|im_start|>user\nhé 12<|im_end|>\n",
        "  a\n\n b  ",
    ] {
        let ids = |c: &Checkpoint| {
            c.tokenizer
                .tokenizer
                .encode(text, true)
                .unwrap()
                .get_ids()
                .to_vec()
        };
        assert_eq!(ids(&src), ids(&back), "{text:?}");
    }
    assert_eq!(back.tokenizer.bos_token, src.tokenizer.bos_token);
    assert_eq!(back.tokenizer.eos_token, src.tokenizer.eos_token);
    assert_eq!(back.tokenizer.pad_token, src.tokenizer.pad_token);
    assert_eq!(
        back.tokenizer
            .chat_template
            .as_ref()
            .map(|t| t.source().to_string()),
        Some(CHAT_TEMPLATE.to_string())
    );
    assert_eq!(back.generation_config, src.generation_config);
    assert_eq!(back.eos_token_ids(), vec![IM_END]);
}

#[test]
fn saved_json_files_are_what_transformers_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    write_tiny_gguf(&gguf, &GgufSpec::default());
    let dir = tmp.path().join("hf");
    Checkpoint::open_path(&gguf)
        .unwrap()
        .save_hf(&dir, DType::BF16, &SaveOptions::default())
        .unwrap();

    let config = read_json(&dir.join("config.json"));
    assert_eq!(
        config["architectures"],
        serde_json::json!(["LlamaForCausalLM"])
    );
    assert_eq!(config["model_type"], "llama");
    assert_eq!(config["torch_dtype"], "bfloat16");
    assert_eq!(config["tie_word_embeddings"], true);
    assert!(
        config.as_object().unwrap().values().all(|v| !v.is_null()),
        "no nulls: {config}"
    );
    let tok = read_json(&dir.join("tokenizer_config.json"));
    assert_eq!(tok["chat_template"], CHAT_TEMPLATE);
    assert_eq!(tok["eos_token"], "<|im_end|>");
    assert_eq!(tok["bos_token"], "<|im_start|>");
    let generation = read_json(&dir.join("generation_config.json"));
    assert_eq!(generation["eos_token_id"], IM_END);
    assert_eq!(generation["pad_token_id"], ENDOFTEXT);
    // The stored dtype is the one asked for.
    let back = Checkpoint::open(dir.to_str().unwrap()).unwrap();
    assert_eq!(back.stored_dtype(), "bf16");
    // Every write went through a temporary name that was renamed away.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn resaving_switches_between_single_file_and_shards_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    write_tiny_gguf(&gguf, &GgufSpec::default());
    let src = Checkpoint::open_path(&gguf).unwrap();
    let dir = tmp.path().join("hf");
    let shards = src
        .save_hf(
            &dir,
            DType::F32,
            &SaveOptions {
                max_shard_bytes: Some(60_000),
            },
        )
        .unwrap();
    assert!(shards.len() > 1);
    let index = read_json(&dir.join("model.safetensors.index.json"));
    let total: u64 = index["metadata"]["total_size"].as_u64().unwrap();
    let params: usize = hf_weights("llama", true)
        .values()
        .map(|t| t.elem_count())
        .sum();
    assert_eq!(total, 4 * params as u64);
    // Saving again as one file removes the index, which the loader would otherwise prefer.
    src.save_hf(
        &dir,
        DType::F32,
        &SaveOptions {
            max_shard_bytes: None,
        },
    )
    .unwrap();
    assert!(!dir.join("model.safetensors.index.json").exists());
    for shard in &shards {
        assert!(
            !shard.exists(),
            "stale shard {} left behind",
            shard.display()
        );
    }
    let back = Checkpoint::open(dir.to_str().unwrap()).unwrap();
    assert_eq!(back.weight_files, vec![dir.join("model.safetensors")]);
}
