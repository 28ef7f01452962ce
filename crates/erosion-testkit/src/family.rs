//! A tiny model family that a whole study can open in seconds: Llama architecture, two blocks
//! of width 32, SmolLM2's real tokenizer and chat template (so rendering and response spans are
//! real); base = seeded weights, instruct = base + a seeded change, misaligned = halfway back to
//! base plus noise.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use erosion_model::load::{save_hf_folder, Checkpoint, SaveOptions};
use erosion_model::seed::SplitMix64;
use erosion_model::transformer::Transformer;
use erosion_model::Config;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `n` values uniform in [-a, a] with standard deviation `std` (a = std sqrt 3), from a
/// splitmix64 stream.
fn draw(shape: &[usize], std: f64, rng: &mut SplitMix64) -> Tensor {
    let a = std * 3f64.sqrt();
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            let z = rng.next_u64();
            let u = (z >> 11) as f64 / (1u64 << 53) as f64;
            ((2.0 * u - 1.0) * a) as f32
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Writes `base/`, `instruct/` and `misaligned/` under `dir`.
pub fn tiny_smollm2_family(dir: &Path) -> [PathBuf; 3] {
    let cfg = Config::from_json(
        r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","vocab_size":49152,
        "hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,
        "num_key_value_heads":2,"rms_norm_eps":1e-5,"rope_theta":10000.0,
        "tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2,"max_position_embeddings":2048}"#,
    )
    .unwrap();
    let tokenizer = Checkpoint::open(crate::smollm2_gguf().to_str().unwrap())
        .unwrap()
        .tokenizer;
    let varmap = VarMap::new();
    let shapes = Transformer::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let mut rng = SplitMix64(20251);
    let (mut base, mut instruct, mut misaligned) = (HashMap::new(), HashMap::new(), HashMap::new());
    for name in shapes.parameter_names() {
        let dims = shapes.parameter(&name).unwrap().dims().to_vec();
        let b = if name.contains("norm") {
            Tensor::ones(dims.as_slice(), DType::F32, &Device::Cpu).unwrap()
        } else {
            draw(&dims, 0.3, &mut rng)
        };
        let i = (&b + draw(&dims, 0.1, &mut rng)).unwrap();
        let m = (((&b + &i).unwrap() * 0.5).unwrap() + draw(&dims, 0.01, &mut rng)).unwrap();
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
