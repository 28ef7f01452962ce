//! Hugging Face folders: config.json and model.safetensors mutated (one file per target, the
//! rest of the folder intact), opened and their weights loaded.

use crate::load_util::{write_tiny_gguf, GgufSpec};
use crate::refused;
use candle_core::{DType, Device};
use erosion_model::load::{Checkpoint, SaveOptions};
use erosion_testkit::fuzz::{self, Budget, Seeds};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Opening a tiny folder and loading its weights: the tokenizer and model (a few MB) whatever
/// the input, and the input itself parsed (JSON values, safetensors header) several times over.
const FOLDER_BUDGET: Budget = Budget {
    per_byte: 64,
    constant: 16 << 20,
    time: Duration::from_secs(10),
};

/// A tiny checkpoint saved as a folder: llama with tied embeddings, or qwen2 (q/k/v biases,
/// untied).
fn seed_folder(root: &Path, arch: &str) -> PathBuf {
    let spec = GgufSpec {
        arch: arch.into(),
        tied: arch == "llama",
        ..GgufSpec::default()
    };
    let gguf = root.join("seed.gguf");
    write_tiny_gguf(&gguf, &spec);
    let dir = root.join("case");
    Checkpoint::open_path(&gguf)
        .unwrap()
        .save_hf(&dir, DType::F32, &SaveOptions::default())
        .unwrap();
    dir
}

/// Fuzzes `file` of the `arch` folder: each case writes the mutated file into the folder (the
/// rest intact), then opens the folder and loads the model.
fn fuzz_folder_file(arch: &str, file: &str, binary: bool, cases: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let work = seed_folder(tmp.path(), arch);
    let seed = std::fs::read(work.join(file)).unwrap();
    let target = format!("folder_{arch}_{file}");
    fuzz::run(
        &target,
        cases,
        FOLDER_BUDGET,
        Seeds {
            files: vec![seed],
            head: 1024,
            binary,
        },
        |bytes| {
            std::fs::write(work.join(file), bytes).unwrap();
            let ckpt = refused(Checkpoint::open_path(&work))?;
            refused(ckpt.load_model(DType::F32, &Device::Cpu)).map(|_| ())
        },
    );
}

#[test]
fn fuzz_folder_config_json() {
    let _serial = fuzz::serial();
    fuzz_folder_file("llama", "config.json", false, 150);
    fuzz_folder_file("qwen2", "config.json", false, 100);
}

#[test]
fn fuzz_folder_safetensors() {
    let _serial = fuzz::serial();
    fuzz_folder_file("llama", "model.safetensors", true, 150);
    fuzz_folder_file("qwen2", "model.safetensors", true, 100);
}
