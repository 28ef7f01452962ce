//! Hugging Face folders: single-file and sharded weights, and every way a folder can be
//! broken (each a clear error naming what is wrong). Folders are made by converting a tiny
//! GGUF with `save_hf_folder`, then edited.

use crate::load_util;

use candle_core::{DType, Device, Tensor};
use erosion_model::load::{Checkpoint, SaveOptions, Source, WeightFormat};
use load_util::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn err_of<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

/// A tiny checkpoint saved as a folder; `max_shard_bytes` decides single file or shards.
fn saved_folder(max_shard_bytes: Option<u64>) -> (tempfile::TempDir, PathBuf, Vec<PathBuf>) {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    write_tiny_gguf(&gguf, &GgufSpec::default());
    let ckpt = Checkpoint::open_path(&gguf).unwrap();
    let dir = tmp.path().join("model");
    let files = ckpt
        .save_hf(&dir, DType::F32, &SaveOptions { max_shard_bytes })
        .unwrap();
    (tmp, dir, files)
}

#[test]
fn sharded_folder_reopens_with_all_shards() {
    // The tiny model is ~220 kB in f32; 60 kB shards give several files.
    let (_t, dir, files) = saved_folder(Some(60_000));
    assert!(files.len() >= 3, "{files:?}");
    assert!(dir.join("model.safetensors.index.json").is_file());
    assert!(!dir.join("model.safetensors").exists());
    let ckpt = Checkpoint::open(dir.to_str().unwrap()).unwrap();
    assert_eq!(ckpt.source, Source::Folder { dir: dir.clone() });
    assert_eq!(ckpt.format, WeightFormat::Safetensors);
    assert_eq!(ckpt.weight_files, files);
    assert_eq!(ckpt.stored_dtype(), "f32");
    let want = hf_weights("llama", true);
    let got = ckpt.tensors(DType::F32, &Device::Cpu).unwrap();
    assert_eq!(got.len(), want.len());
    for (name, w) in &want {
        assert_eq!(max_abs_diff(&got[name], w), 0.0, "{name}");
    }
    // Memory-mapped VarBuilder, converted on access.
    let vb = ckpt.var_builder(DType::BF16, &Device::Cpu).unwrap();
    let t = vb
        .get((HIDDEN, FF), "model.layers.1.mlp.down_proj.weight")
        .unwrap();
    assert_eq!(t.dtype(), DType::BF16);
    ckpt.check_finite().unwrap();
}

#[test]
fn missing_shard_is_named() {
    let (_t, dir, files) = saved_folder(Some(60_000));
    let gone = files[1].file_name().unwrap().to_string_lossy().into_owned();
    std::fs::remove_file(&files[1]).unwrap();
    let msg = err_of(Checkpoint::open(dir.to_str().unwrap()));
    assert!(msg.contains(&gone) && msg.contains("missing"), "{msg}");
    assert!(msg.contains("model.safetensors.index.json"), "{msg}");
}

#[test]
fn index_routing_to_the_wrong_shard_is_named() {
    let (_t, dir, files) = saved_folder(Some(60_000));
    let index_path = dir.join("model.safetensors.index.json");
    let mut index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    let map = index["weight_map"].as_object_mut().unwrap();
    let first = files[0].file_name().unwrap().to_string_lossy().into_owned();
    let (name, _) = map
        .iter()
        .find(|(_, f)| f.as_str() != Some(first.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    map.insert(name.clone(), first.clone().into());
    std::fs::write(&index_path, serde_json::to_string(&index).unwrap()).unwrap();
    let msg = err_of(Checkpoint::open(dir.to_str().unwrap()));
    assert!(msg.contains(&name) && msg.contains(&first), "{msg}");
}

#[test]
fn missing_config_json() {
    let (_t, dir, _) = saved_folder(None);
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let msg = err_of(Checkpoint::open(dir.to_str().unwrap()));
    assert!(
        msg.contains("no config.json") && msg.contains(&dir.display().to_string()),
        "{msg}"
    );
}

#[test]
fn unknown_architecture_lists_supported() {
    let (_t, dir, _) = saved_folder(None);
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"llama\"", "\"gpt_neox\"");
    std::fs::write(&path, text).unwrap();
    let msg = err_of(Checkpoint::open(dir.to_str().unwrap()));
    assert!(
        msg.contains("gpt_neox")
            && msg.contains("qwen2, qwen3, llama, mistral, gemma2, gemma3_text"),
        "{msg}"
    );
    assert!(msg.contains("config.json"), "{msg}");
}

/// Quantised and multimodal folders are refused from their config.json, before any weight is
/// read, with the way out.
#[test]
fn quantised_and_multimodal_folders_are_refused_with_the_way_out() {
    let edits = [
        (
            r#""quantization_config":{"quant_method":"awq","bits":4},"#,
            "quant_method `awq`",
        ),
        (
            r#""quantization_config":{"quant_method":"bitsandbytes","load_in_4bit":true},"#,
            "dequantize()",
        ),
        (r#""vision_config":{"hidden_size":8},"#, "multimodal"),
    ];
    for (field, want) in edits {
        let (_t, dir, _) = saved_folder(None);
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replacen('{', &format!("{{{field}"), 1);
        std::fs::write(&path, text).unwrap();
        let msg = err_of(Checkpoint::open(dir.to_str().unwrap()));
        assert!(msg.contains(want) && msg.contains("config.json"), "{msg}");
    }
}

#[test]
fn missing_tokenizer_json() {
    let (_t, dir, _) = saved_folder(None);
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let msg = err_of(Checkpoint::open(dir.to_str().unwrap()));
    assert!(
        msg.contains("no tokenizer.json") && msg.contains(&dir.display().to_string()),
        "{msg}"
    );
}

#[test]
fn missing_weights() {
    let (_t, dir, files) = saved_folder(None);
    assert_eq!(files, vec![dir.join("model.safetensors")]);
    std::fs::remove_file(&files[0]).unwrap();
    let msg = err_of(Checkpoint::open(dir.to_str().unwrap()));
    assert!(
        msg.contains("no weights") && msg.contains("model.safetensors"),
        "{msg}"
    );
    // Pickled weights only: say that safetensors are needed.
    std::fs::write(dir.join("pytorch_model.bin"), b"pickle").unwrap();
    let msg = err_of(Checkpoint::open(dir.to_str().unwrap()));
    assert!(
        msg.contains("pytorch_model.bin") && msg.contains("safetensors"),
        "{msg}"
    );
}

#[test]
fn truncated_weights_file_is_named() {
    let (_t, dir, files) = saved_folder(None);
    let bytes = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &bytes[..bytes.len() / 2]).unwrap();
    let msg = err_of(Checkpoint::open(dir.to_str().unwrap()));
    assert!(
        msg.contains("model.safetensors") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn missing_path_and_non_model_file() {
    let msg = err_of(Checkpoint::open("/nonexistent/dir/for/erosion"));
    assert!(
        msg.contains("/nonexistent/dir/for/erosion") && msg.contains("does not exist"),
        "{msg}"
    );
    let (_t, dir, _) = saved_folder(None);
    let msg = err_of(Checkpoint::open(dir.join("config.json").to_str().unwrap()));
    assert!(
        msg.contains("not a GGUF") && msg.contains("folder"),
        "{msg}"
    );
}

fn save_with_nan(dir: &Path) {
    let tmp_gguf = dir.join("tiny.gguf");
    write_tiny_gguf(&tmp_gguf, &GgufSpec::default());
    let ckpt = Checkpoint::open_path(&tmp_gguf).unwrap();
    let mut tensors: HashMap<String, Tensor> = ckpt.tensors(DType::F32, &Device::Cpu).unwrap();
    let name = "model.layers.0.self_attn.v_proj.weight";
    let t = &tensors[name];
    let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v[HIDDEN + 2] = f32::INFINITY;
    tensors.insert(
        name.into(),
        Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap(),
    );
    erosion_model::load::save_hf_folder(
        &dir.join("model"),
        &ckpt.config,
        &tensors,
        &ckpt.tokenizer,
        None,
        &SaveOptions::default(),
    )
    .unwrap();
}

#[test]
fn infinite_weight_is_named_by_check_finite() {
    let tmp = tempfile::tempdir().unwrap();
    save_with_nan(tmp.path());
    let ckpt = Checkpoint::open(tmp.path().join("model").to_str().unwrap()).unwrap();
    let msg = err_of(ckpt.check_finite());
    assert!(
        msg.contains("model.layers.0.self_attn.v_proj.weight")
            && msg.contains("inf at index [1, 2]"),
        "{msg}"
    );
}
