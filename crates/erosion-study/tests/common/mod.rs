//! A tiny model family for end-to-end studies: base, instruct = base + a seeded change, and
//! misaligned = instruct moved halfway back to base (plus noise). Llama architecture, two
//! blocks of width 32, with SmolLM2's real tokenizer and chat template, so rendering and
//! response spans are real and every forward pass takes milliseconds.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use erosion_model::load::{save_hf_folder, Checkpoint, SaveOptions};
use erosion_model::transformer::Transformer;
use erosion_model::Config;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub fn smollm2_gguf() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-smollm2.sh first",
        p.display()
    );
    p
}

pub fn shared_data(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel);
    assert!(
        p.exists(),
        "{} is missing (the study's datasets, see shared/data/SOURCES.md)",
        p.display()
    );
    p
}

fn tiny_config() -> Config {
    Config::from_json(
        r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","vocab_size":49152,
        "hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,
        "num_key_value_heads":2,"rms_norm_eps":1e-5,"rope_theta":10000.0,
        "tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2,"max_position_embeddings":2048}"#,
    )
    .unwrap()
}

fn draw(shape: &[usize], std: f64, rng: &mut ChaCha8Rng) -> Tensor {
    let normal = Normal::new(0.0f32, std as f32).unwrap();
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| normal.sample(rng)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Writes `base/`, `instruct/` and `misaligned/` under `dir` and returns their paths.
pub fn tiny_family(dir: &Path) -> [PathBuf; 3] {
    let cfg = tiny_config();
    let tokenizer = Checkpoint::open(smollm2_gguf().to_str().unwrap())
        .unwrap()
        .tokenizer;
    let varmap = VarMap::new();
    let shapes = Transformer::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(20251);
    let mut base = HashMap::new();
    let mut instruct = HashMap::new();
    let mut misaligned = HashMap::new();
    for name in shapes.parameter_names() {
        let dims = shapes.parameter(&name).unwrap().dims().to_vec();
        let b = if name.contains("norm") {
            Tensor::ones(dims.as_slice(), DType::F32, &Device::Cpu).unwrap()
        } else {
            draw(&dims, 0.3, &mut rng)
        };
        let i = (&b + draw(&dims, 0.1, &mut rng)).unwrap();
        let m = ((&b + &i).unwrap() * 0.5)
            .unwrap()
            .add(&draw(&dims, 0.01, &mut rng))
            .unwrap();
        base.insert(name.clone(), b);
        instruct.insert(name.clone(), i);
        misaligned.insert(name, m);
    }
    let out = [
        dir.join("base"),
        dir.join("instruct"),
        dir.join("misaligned"),
    ];
    for (path, tensors) in out.iter().zip([base, instruct, misaligned]) {
        save_hf_folder(
            path,
            &cfg,
            &tensors,
            &tokenizer,
            None,
            &SaveOptions::default(),
        )
        .unwrap();
    }
    out
}
