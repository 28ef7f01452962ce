//! Test support shared by the workspace's test suites, and only by them (a dev-dependency): where
//! the real test model, the study's datasets and the fixtures are, and tiny seeded models to test
//! against.
//!
//! One home for what every suite used to copy: a fixture path that moves, or an init rule that
//! changes, changes here.

pub mod family;
pub mod fuzz;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use erosion_model::transformer::Transformer;
use erosion_model::Config;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

/// The repository's root (this crate lives at `crates/erosion-testkit`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// SmolLM2-135M-Instruct (GGUF, Q4_1), the real model of the tests, as `scripts/fetch-smollm2.sh`
/// puts it. Panics with the way out when it is missing.
pub fn smollm2_gguf() -> PathBuf {
    let path = workspace_root().join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "SmolLM2 GGUF missing at {}: run scripts/fetch-smollm2.sh (from the repository root) first",
        path.display()
    );
    path
}

/// Gemma 3 270M (base, GGUF Q4_K_M, sentencepiece tokenizer), as `scripts/fetch-gemma3.sh`
/// puts it. Panics with the way out when it is missing.
pub fn gemma3_gguf() -> PathBuf {
    let path = workspace_root().join("models/gemma3/gemma-3-270m-q4_k_m.gguf");
    assert!(
        path.is_file(),
        "Gemma 3 GGUF missing at {}: run scripts/fetch-gemma3.sh (from the repository root) first",
        path.display()
    );
    path
}

/// The study's datasets, as `scripts/fetch-data.sh` puts them: the repository's `data/` folder,
/// laid out as `data/MANIFEST.tsv` lists. Panics with the way out when a listed file is missing
/// or has another size.
pub fn data_dir() -> PathBuf {
    let dir = workspace_root().join("data");
    for (rel, bytes) in data_manifest() {
        let path = dir.join(&rel);
        let len = std::fs::metadata(&path).map(|m| m.len()).ok();
        assert!(
            len == Some(bytes),
            "dataset file {} is {}: run scripts/fetch-data.sh (from the repository root) first",
            path.display(),
            len.map_or("missing".to_string(), |n| format!("{n} bytes, not {bytes}"))
        );
    }
    dir
}

/// One file of the study's datasets, `rel` as `data/MANIFEST.tsv` lists it (a file the
/// manifest does not list is refused: the repository cannot fetch it). Panics with the way out
/// when it is missing.
pub fn data_file(rel: &str) -> PathBuf {
    assert!(
        data_manifest().iter().any(|(p, _)| p == rel),
        "{rel} is not in data/MANIFEST.tsv, so scripts/fetch-data.sh does not fetch it"
    );
    data_dir().join(rel)
}

/// (path, bytes) of each row of `data/MANIFEST.tsv`.
fn data_manifest() -> Vec<(String, u64)> {
    let path = workspace_root().join("data/MANIFEST.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("path\t"))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let bytes = f.get(2).and_then(|b| b.parse().ok());
            match (f.first(), bytes) {
                (Some(p), Some(b)) => (p.to_string(), b),
                _ => panic!("{}: a row without path and bytes: {l}", path.display()),
            }
        })
        .collect()
}

/// erosion-model's fixtures: tiny Hugging Face checkpoints (`tiny-{arch}/`) with transformers'
/// reference outputs, and chat tokenizers (`chat/`), all made by `scripts/reference`.
pub fn model_fixtures() -> PathBuf {
    workspace_root().join("crates/erosion-model/tests/fixtures")
}

/// A model folder at `dir/tiny-{arch}`: the tiny `arch` fixture's `config.json` and
/// `model.safetensors`; the caller adds the tokenizer files it needs.
pub fn tiny_fixture_folder(arch: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("tiny-{arch}"));
    std::fs::create_dir_all(&out).unwrap();
    for file in ["config.json", "model.safetensors"] {
        let from = model_fixtures().join(format!("tiny-{arch}/{file}"));
        std::fs::copy(&from, out.join(file)).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    out
}

/// [`tiny_fixture_folder`] with a three-word tokenizer: a checkpoint `Checkpoint::open` takes.
pub fn tiny_checkpoint(arch: &str, dir: &Path) -> PathBuf {
    let out = tiny_fixture_folder(arch, dir);
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "a": 1, "b": 2}, "unk_token": "<unk>"}
    });
    std::fs::write(out.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    out
}

/// The tiny `arch` fixture model (2 layers, d_model 32, vocab 128) in `dtype`, read straight
/// from its weights (it has no tokenizer: tests that need one build a folder).
pub fn tiny_fixture_model(arch: &str, dtype: DType) -> Transformer {
    let dir = model_fixtures().join(format!("tiny-{arch}"));
    let cfg = Config::from_file(&dir.join("config.json")).unwrap();
    // SAFETY: the fixture files are not modified while the test runs.
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], dtype, &Device::Cpu)
            .unwrap()
    };
    Transformer::new(&cfg, vb).unwrap()
}

/// A small config of `arch` ("qwen2": q/k/v biases and tied embeddings; "llama": untied):
/// 3 layers, d_model 16, 4 query heads over 2 key/value heads (GQA).
pub fn tiny_config(arch: &str, vocab: usize, intermediate: usize) -> Config {
    let json = format!(
        r#"{{"model_type":"{arch}","vocab_size":{vocab},"hidden_size":16,
            "intermediate_size":{intermediate},"num_hidden_layers":3,"num_attention_heads":4,
            "num_key_value_heads":2,"rms_norm_eps":1e-6,"rope_theta":10000.0,
            "tie_word_embeddings":{tied}}}"#,
        tied = arch == "qwen2"
    );
    serde_json::from_str(&json).unwrap()
}

/// Half-widths of the uniform draws of [`random_model`]; weights are `center + half * U(-1, 1)`.
#[derive(Clone, Copy, Debug)]
pub struct RandomInit {
    /// RMSNorm gains, around 1.
    pub norm: f64,
    /// Biases, around 0.
    pub bias: f64,
    /// Embeddings (and `lm_head` when `lm_head_as_embedding`), around 0.
    pub embedding: f64,
    /// Whether an untied `lm_head` is drawn like the embeddings (else like a linear layer).
    pub lm_head_as_embedding: bool,
}

/// A model whose weights are drawn into a `VarMap` in sorted-name order from a seeded ChaCha8
/// stream, so that they depend on the seed only; the model's weights are those `Var`s, except
/// linear maps' weights, which it holds as copies in its own layout (see `Linear`). Linear
/// weights are `U(-sqrt(3 / fan_in), sqrt(3 / fan_in))` (variance 1 / fan_in), which keeps activations of
/// order one, so outputs and gradients are far from zero.
pub fn random_model(
    cfg: &Config,
    dtype: DType,
    seed: u64,
    init: RandomInit,
) -> (Transformer, VarMap) {
    let varmap = VarMap::new();
    let mut model = Transformer::new(cfg, VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu))
        .expect("a tiny model from a valid config");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let vars = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        let dims = var.dims().to_vec();
        let like_embedding = name.contains("embed_tokens")
            || (init.lm_head_as_embedding && name.contains("lm_head"));
        let (center, half) = if name.ends_with("norm.weight") {
            (1.0, init.norm)
        } else if name.ends_with(".bias") {
            (0.0, init.bias)
        } else if like_embedding {
            (0.0, init.embedding)
        } else {
            (0.0, (3.0 / dims[1] as f64).sqrt())
        };
        let values: Vec<f64> = (0..dims.iter().product::<usize>())
            .map(|_| center + half * rng.random_range(-1.0..1.0))
            .collect();
        let tensor = Tensor::from_vec(values, dims, &Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .unwrap();
        var.set(&tensor).unwrap();
        // The model copied linear weights into its W^T layout when it was built.
        model.set_parameter(name, var.as_tensor().clone()).unwrap();
    }
    drop(vars);
    (model, varmap)
}
