//! Hostile Hugging Face folders (issue 17): weights that disagree with config.json, integer
//! tensors, stray tensors, NaN weights, special token ids past the vocabulary, control
//! characters, shard names that are paths, and a runaway chat template. Each folder is made
//! here (a tiny GGUF saved as a folder, then edited) and must be refused with a clear message.

use crate::load_util;

use candle_core::{DType, Device, Tensor};
use erosion_model::chat::Message;
use erosion_model::load::{Checkpoint, SaveOptions};
use load_util::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn err_of<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

/// A tiny llama checkpoint (tied embeddings) saved as a folder.
fn folder(max_shard_bytes: Option<u64>) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    write_tiny_gguf(&gguf, &GgufSpec::default());
    let dir = tmp.path().join("model");
    Checkpoint::open_path(&gguf)
        .unwrap()
        .save_hf(&dir, DType::F32, &SaveOptions { max_shard_bytes })
        .unwrap();
    (tmp, dir)
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string(&v).unwrap()).unwrap();
}

fn edit_weights(dir: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let file = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, &file).unwrap();
}

fn open(dir: &Path) -> anyhow::Result<Checkpoint> {
    Checkpoint::open(dir.to_str().unwrap())
}

#[test]
fn config_with_fewer_layers_than_the_weights_is_refused() {
    let (_t, dir) = folder(None);
    edit_json(&dir.join("config.json"), |c| {
        c["num_hidden_layers"] = 1.into()
    });
    let msg = err_of(open(&dir));
    assert!(
        msg.contains("do not match its config.json")
            && msg.contains("the weights hold 2 layers but the config has num_hidden_layers = 1")
            && msg.contains("model.layers.1.self_attn.q_proj.weight"),
        "{msg}"
    );
}

/// A layer count far beyond the file listed a name per expected tensor until the process
/// aborted out of memory (10^12 layers); it is refused against the file's tensor count.
#[test]
fn a_huge_layer_count_is_refused_before_names_are_listed() {
    let (_t, dir) = folder(None);
    edit_json(&dir.join("config.json"), |c| {
        c["num_hidden_layers"] = 1_000_000_000_000u64.into()
    });
    let msg = err_of(open(&dir));
    assert!(
        msg.contains("num_hidden_layers is 1000000000000") && msg.contains("tensors in all"),
        "{msg}"
    );
}

#[test]
fn integer_tensor_where_weights_belong_is_refused() {
    let (_t, dir) = folder(None);
    let name = "model.layers.0.mlp.up_proj.weight";
    edit_weights(&dir, |w| {
        let t = Tensor::zeros((FF, HIDDEN), DType::U32, &Device::Cpu).unwrap();
        w.insert(name.into(), t);
    });
    let msg = err_of(open(&dir));
    assert!(
        msg.contains(&format!("tensor {name} is stored as u32")) && msg.contains("floating point"),
        "{msg}"
    );
}

#[test]
fn stray_tensors_are_listed_and_harmless_ones_accepted() {
    let (_t, dir) = folder(None);
    // What real checkpoints carry: RoPE's buffer, an output head on a tied model.
    edit_weights(&dir, |w| {
        let inv_freq = Tensor::ones(HEAD_DIM / 2, DType::F32, &Device::Cpu).unwrap();
        w.insert(
            "model.layers.1.self_attn.rotary_emb.inv_freq".into(),
            inv_freq,
        );
        let head = w["model.embed_tokens.weight"].clone();
        w.insert("lm_head.weight".into(), head);
    });
    let ckpt = open(&dir).unwrap();
    ckpt.load_model(DType::F32, &Device::Cpu).unwrap();
    edit_weights(&dir, |w| {
        let t = Tensor::ones((4, 4), DType::F32, &Device::Cpu).unwrap();
        w.insert("model.layers.0.mlp.experts.0.weight".into(), t.clone());
        w.insert("vision_tower.proj.weight".into(), t);
    });
    let msg = err_of(open(&dir));
    assert!(
        msg.contains("2 tensors the llama model does not use")
            && msg.contains("model.layers.0.mlp.experts.0.weight")
            && msg.contains("vision_tower.proj.weight")
            && !msg.contains("inv_freq"),
        "{msg}"
    );
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let (_t, dir) = folder(None);
    edit_weights(&dir, |w| {
        w.remove("model.norm.weight");
        let t = Tensor::zeros((HIDDEN, HIDDEN), DType::F32, &Device::Cpu).unwrap();
        w.insert("model.layers.1.self_attn.k_proj.weight".into(), t);
    });
    let msg = err_of(open(&dir));
    assert!(
        msg.contains("missing tensors the config needs: model.norm.weight")
            && msg.contains(&format!(
                "tensor model.layers.1.self_attn.k_proj.weight has shape [{HIDDEN}, {HIDDEN}], \
                 but the config implies [{}, {HIDDEN}]",
                KV_HEADS * HEAD_DIM
            )),
        "{msg}"
    );
}

#[test]
fn nan_weight_is_named_when_the_model_loads() {
    let (_t, dir) = folder(None);
    let name = "model.layers.1.mlp.gate_proj.weight";
    edit_weights(&dir, |w| {
        let t = &w[name];
        let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v[HIDDEN + 3] = f32::NAN;
        let bad = Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap();
        w.insert(name.into(), bad);
    });
    let ckpt = open(&dir).unwrap();
    for dtype in [DType::F32, DType::BF16] {
        let msg = err_of(ckpt.load_model(dtype, &Device::Cpu));
        assert!(
            msg.contains(name) && msg.contains("NaN at index [1, 3]"),
            "{msg}"
        );
    }
    let msg = err_of(ckpt.tensors(DType::F32, &Device::Cpu));
    assert!(msg.contains(name) && msg.contains("NaN"), "{msg}");
}

#[test]
fn special_token_ids_past_the_vocabulary_are_refused() {
    let (_t, dir) = folder(None);
    let past = VOCAB + 5;
    edit_json(&dir.join("config.json"), |c| {
        c["eos_token_id"] = past.into()
    });
    let msg = err_of(open(&dir));
    assert!(
        msg.contains("config.json")
            && msg.contains(&format!(
                "eos_token_id {past} is outside the vocabulary (vocab_size {VOCAB})"
            )),
        "{msg}"
    );
    let (_t, dir) = folder(None);
    std::fs::write(
        dir.join("generation_config.json"),
        format!(r#"{{"eos_token_id": [{IM_END}, {past}]}}"#),
    )
    .unwrap();
    let msg = err_of(open(&dir));
    assert!(
        msg.contains("generation_config.json") && msg.contains("outside the vocabulary"),
        "{msg}"
    );
}

#[test]
fn control_characters_from_the_folder_are_escaped() {
    let (_t, dir) = folder(None);
    edit_json(&dir.join("config.json"), |c| {
        c["model_type"] = "\x1b[31mllama".into()
    });
    let msg = err_of(open(&dir));
    assert!(
        !msg.contains('\x1b') && msg.contains("\\u{1b}[31mllama"),
        "{msg:?}"
    );
    let (_t, dir) = folder(None);
    edit_weights(&dir, |w| {
        let t = Tensor::ones(4, DType::F32, &Device::Cpu).unwrap();
        w.insert("stray\x1b[2J\r".into(), t);
    });
    let msg = err_of(open(&dir));
    assert!(
        !msg.contains('\x1b') && !msg.contains('\r') && msg.contains("stray\\u{1b}[2J\\r"),
        "{msg:?}"
    );
}

#[test]
fn shard_names_must_be_files_beside_the_index_and_tensors_stored_once() {
    let (_t, dir) = folder(Some(60_000));
    let index = dir.join("model.safetensors.index.json");
    let original = std::fs::read_to_string(&index).unwrap();
    edit_json(&index, |i| {
        i["weight_map"]["model.norm.weight"] = "../../elsewhere.safetensors".into()
    });
    let msg = err_of(open(&dir));
    assert!(
        msg.contains("`../../elsewhere.safetensors`") && msg.contains("not a plain file name"),
        "{msg}"
    );
    // The same tensor in two shards: which copy a loader uses would be arbitrary.
    std::fs::write(&index, original).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
    let shard_of = |name: &str| dir.join(v["weight_map"][name].as_str().unwrap());
    let (home, other) = (
        shard_of("model.norm.weight"),
        shard_of("model.embed_tokens.weight"),
    );
    assert_ne!(home, other);
    let mut tensors = candle_core::safetensors::load(&other, &Device::Cpu).unwrap();
    let norm = Tensor::ones(HIDDEN, DType::F32, &Device::Cpu).unwrap();
    tensors.insert("model.norm.weight".into(), norm);
    candle_core::safetensors::save(&tensors, &other).unwrap();
    let msg = err_of(open(&dir));
    assert!(
        msg.contains("tensor model.norm.weight is stored twice"),
        "{msg}"
    );
}

#[test]
fn runaway_chat_template_names_its_file() {
    let (_t, dir) = folder(None);
    let config = dir.join("tokenizer_config.json");
    edit_json(&config, |c| {
        c["chat_template"] =
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
                .into()
    });
    let ckpt = open(&dir).unwrap();
    let started = std::time::Instant::now();
    let msg = err_of(
        ckpt.tokenizer
            .apply_chat_template(&[Message::user("hi")], true),
    );
    assert!(
        msg.contains(&format!("chat template from {}", config.display()))
            && msg.contains("ran out of fuel"),
        "{msg}"
    );
    // Generous bound for a debug build on a loaded machine; the loops alone run for an hour.
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
}

#[test]
fn tokenizer_with_ids_past_the_embedding_is_refused() {
    // Weights and config agree on 200 rows, but the tokenizer has 265 tokens.
    let (_t, dir) = folder(None);
    let name = "model.embed_tokens.weight";
    edit_weights(&dir, |w| {
        let narrowed = w[name].narrow(0, 0, 200).unwrap();
        w.insert(name.into(), narrowed);
    });
    // Special ids inside the 200 rows, so that only the tokenizer disagrees.
    for file in ["config.json", "generation_config.json"] {
        if dir.join(file).is_file() {
            edit_json(&dir.join(file), |c| {
                for key in ["bos_token_id", "eos_token_id", "pad_token_id"] {
                    if c.get(key).is_some() {
                        c[key] = 1.into();
                    }
                }
                if file == "config.json" {
                    c["vocab_size"] = 200.into();
                }
            });
        }
    }
    let msg = err_of(open(&dir));
    assert!(
        msg.contains("has 265 tokens with ids up to 264")
            && msg.contains("vocab_size is 200")
            && msg.contains("config.json"),
        "{msg}"
    );
}
