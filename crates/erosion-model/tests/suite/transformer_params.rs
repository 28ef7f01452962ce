//! Weights by Hugging Face name: listing, reading, replacing, making them `Var`s.

use crate::transformer_util;

use candle_core::{DType, Tensor};
use erosion_model::transformer::ForwardOptions;
use transformer_util::*;

#[test]
fn names_follow_the_checkpoint() {
    let qwen = load_fixture("qwen2", DType::F32).unwrap();
    let names = qwen.parameter_names();
    let mut in_file: Vec<String> = candle_core::safetensors::load(
        fixture_dir("qwen2").join("model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap()
    .into_keys()
    .collect();
    in_file.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted, in_file,
        "every stored tensor is a named parameter (tied: no lm_head)"
    );
    assert!(names.contains(&"model.layers.1.self_attn.q_proj.bias".to_string()));
    let llama = load_fixture("llama", DType::F32).unwrap();
    assert!(llama
        .parameter_names()
        .contains(&"lm_head.weight".to_string()));
    assert!(!llama.parameter_names().iter().any(|n| n.ends_with(".bias")));
}

#[test]
fn reading_replacing_and_errors() {
    let mut model = load_fixture("llama", DType::F32).unwrap();
    let w = model
        .parameter("model.layers.0.mlp.down_proj.weight")
        .unwrap();
    assert_eq!(w.dims(), &[32, 64]);
    let e = model
        .parameter("model.layers.0.self_attn.q_proj.bias")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no `model.layers.0.self_attn.q_proj.bias`"),
        "{e}"
    );
    let e = model
        .parameter("model.layers.7.mlp.up_proj.weight")
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 layers"), "{e}");
    let e = model
        .parameter("model.layers.0.mlp.fc1.weight")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown weight") && e.contains("model.layers.{i}.mlp.{gate,up,down}_proj"),
        "{e}"
    );
    assert!(model
        .set_parameter(
            "model.norm.weight",
            Tensor::zeros(3, DType::F32, &candle_core::Device::Cpu).unwrap()
        )
        .is_err());

    // Zeroing the final norm's gain zeroes the logits: the replacement is used.
    let ids = Tensor::new(&[[5u32, 6, 7]], &candle_core::Device::Cpu).unwrap();
    let zeros = model
        .parameter("model.norm.weight")
        .unwrap()
        .zeros_like()
        .unwrap();
    model.set_parameter("model.norm.weight", zeros).unwrap();
    let logits = model
        .forward(&ids, None, &mut ForwardOptions::fast())
        .unwrap();
    assert_eq!(max_abs(&logits), 0.0);
}

#[test]
fn var_set_changes_the_model_in_place() {
    let mut model = load_fixture("qwen2", DType::F32).unwrap();
    let ids = Tensor::new(&[[5u32, 6, 7]], &candle_core::Device::Cpu).unwrap();
    let before = model
        .forward(&ids, None, &mut ForwardOptions::fast())
        .unwrap();
    let var = model.var("lm_head.weight").unwrap(); // tied: the embeddings
    assert!(model
        .parameter("model.embed_tokens.weight")
        .unwrap()
        .is_variable());
    assert_eq!(
        max_abs_diff(
            &model
                .forward(&ids, None, &mut ForwardOptions::fast())
                .unwrap(),
            &before
        ),
        0.0
    );
    var.set(&(var.value().unwrap() * 2.0).unwrap()).unwrap();
    let after = model
        .forward(&ids, None, &mut ForwardOptions::fast())
        .unwrap();
    assert!(max_abs_diff(&after, &before) > 1e-2);
}

/// A linear map's `Var` is W^T `[in, out]` (the layout the kernel reads), while `value`, `set`
/// and `parameter` speak Hugging Face's W `[out, in]`.
#[test]
fn a_linear_weight_trains_as_its_transpose_and_reads_as_hugging_face_stores_it() {
    let mut model = load_fixture("qwen2", DType::F32).unwrap();
    let name = "model.layers.0.mlp.up_proj.weight";
    let before = model.parameter(name).unwrap().to_vec2::<f32>().unwrap();
    let (d_out, d_in) = (before.len(), before[0].len());
    assert_ne!(
        d_out, d_in,
        "a square weight would not tell the orientations apart"
    );
    let w = model.var(name).unwrap();
    assert_eq!(w.var().dims(), [d_in, d_out]);
    assert_eq!(w.value().unwrap().to_vec2::<f32>().unwrap(), before);
    let mut changed = before.clone();
    changed[1][2] += 1.0;
    w.set(&Tensor::new(changed.clone(), &candle_core::Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(
        model.parameter(name).unwrap().to_vec2::<f32>().unwrap(),
        changed
    );
    assert_eq!(
        w.var().as_tensor().to_vec2::<f32>().unwrap()[2][1],
        changed[1][2]
    );
}
