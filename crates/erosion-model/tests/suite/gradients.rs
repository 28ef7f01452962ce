//! Gradients of the differentiable path against central finite differences (f64), the
//! "lower layers without a graph" split against full backpropagation, and the fused path
//! against the composite one.

use crate::transformer_util;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use erosion_model::transformer::{ForwardOptions, Transformer, WeightVar};
use transformer_util::*;

/// A left-padded batch and next-token targets: (ids, mask, targets).
fn batch(vocab: u32) -> (Tensor, Tensor, Tensor) {
    let seqs: Vec<Vec<u32>> = random_ids(3, 6, vocab, 3)
        .into_iter()
        .zip([6, 4, 2])
        .map(|(s, n)| s[..n].to_vec())
        .collect();
    let (ids, mask) = pad(&seqs, true);
    let targets =
        Tensor::from_vec(random_ids(3, 6, vocab, 4).concat(), (3, 6, 1), &Device::Cpu).unwrap();
    (ids, mask, targets)
}

/// Sum over real tokens of -log p(target) from logits `[b, s, vocab]`.
fn nll(logits: &Tensor, mask: &Tensor, targets: &Tensor) -> Tensor {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1).unwrap();
    let picked = logp.gather(targets, 2).unwrap().squeeze(2).unwrap(); // [b, s]
    let m = mask.to_dtype(logits.dtype()).unwrap();
    (picked * m).unwrap().sum_all().unwrap().neg().unwrap()
}

fn loss(model: &Transformer, data: &(Tensor, Tensor, Tensor)) -> Tensor {
    let (ids, mask, targets) = data;
    let logits = model
        .forward(ids, Some(mask), &mut ForwardOptions::differentiable())
        .unwrap();
    nll(&logits, mask, targets)
}

fn scalar(t: &Tensor) -> f64 {
    t.to_scalar::<f64>().unwrap()
}

/// Central difference of `f` at entry `i` of `var`, step h.
/// Perturbs entry `i` of the weight in Hugging Face's orientation (so the backprop gradient
/// must come back in that orientation too).
fn finite_difference(var: &WeightVar, i: usize, h: f64, f: &dyn Fn() -> f64) -> f64 {
    let orig = var
        .value()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let shape = var.value().unwrap().shape().clone();
    let at = |delta: f64| {
        let mut v = orig.clone();
        v[i] += delta;
        var.set(&Tensor::from_vec(v, shape.clone(), &Device::Cpu).unwrap())
            .unwrap();
        f()
    };
    let (up, down) = (at(h), at(-h));
    var.set(&Tensor::from_vec(orig, shape, &Device::Cpu).unwrap())
        .unwrap();
    (up - down) / (2.0 * h)
}

fn probe_indices(n: usize) -> Vec<usize> {
    vec![0, n / 3, 2 * n / 3 + 1, n - 1]
}

fn assert_close(what: &str, analytic: f64, numeric: f64) {
    let tol = 1e-7 + 1e-6 * analytic.abs();
    assert!(
        (analytic - numeric).abs() < tol,
        "{what}: backprop {analytic} vs finite difference {numeric}"
    );
}

/// Backprop gradients of the weights `names` of a random f64 model of `cfg` equal central
/// finite differences at a few entries each, and are not all ~0.
fn check_weight_gradients(cfg: &erosion_model::Config, seed: u64, names: &[&str]) {
    let (mut model, _varmap) = random_model(cfg, DType::F64, seed).unwrap();
    let data = batch(cfg.vocab_size as u32);
    let vars: Vec<WeightVar> = names.iter().map(|n| model.var(n).unwrap()).collect();
    let grads = loss(&model, &data).backward().unwrap();
    for (name, var) in names.iter().zip(&vars) {
        let g = var
            .grad(&grads)
            .unwrap()
            .unwrap_or_else(|| panic!("{}: no gradient for {name}", cfg.model_type));
        let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let mut largest = 0f64;
        for i in probe_indices(g.len()) {
            let fd = finite_difference(var, i, 1e-5, &|| scalar(&loss(&model, &data)));
            assert_close(&format!("{} {name}[{i}]", cfg.model_type), g[i], fd);
            largest = largest.max(g[i].abs());
        }
        assert!(
            largest > 1e-4,
            "{name}: the probed gradients are all ~0, the test would be vacuous"
        );
    }
}

#[test]
fn weight_gradients_match_finite_differences() {
    let cfg = tiny_config("qwen2"); // q/k/v bias, GQA, tied embeddings
    let names = [
        "model.layers.2.self_attn.o_proj.weight",
        "model.layers.1.self_attn.q_proj.bias",
        "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.1.mlp.gate_proj.weight",
        "model.norm.weight",
        "model.embed_tokens.weight", // also the tied lm_head
    ];
    check_weight_gradients(&cfg, 7, &names);
}

/// A tiny config of a family that needs its config defaults (read as a `config.json`), with
/// `extra` JSON fields.
fn family_config(model_type: &str, extra: &str) -> erosion_model::Config {
    erosion_model::Config::from_json(&format!(
        r#"{{"model_type":"{model_type}","vocab_size":40,"hidden_size":16,"intermediate_size":24,
            "num_hidden_layers":3,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,
            "rms_norm_eps":1e-6{extra}}}"#
    ))
    .unwrap()
}

/// The ops Gemma and Qwen3 add: (1 + w) norms in every position (pre, post, q/k), GeGLU,
/// attention and final soft-capping, the query scalar, a sliding window shorter than the
/// batch (3 < 6) and a local RoPE base.
#[test]
fn gemma_and_qwen3_gradients_match_finite_differences() {
    let gemma2 = family_config(
        "gemma2",
        r#","sliding_window":3,"attn_logit_softcapping":2.0,"final_logit_softcapping":4.0,
            "query_pre_attn_scalar":12"#,
    );
    assert_eq!(gemma2.layer_windows().unwrap(), [Some(3), None, Some(3)]);
    let names = [
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.post_attention_layernorm.weight",
        "model.layers.1.pre_feedforward_layernorm.weight",
        "model.layers.2.post_feedforward_layernorm.weight",
        "model.layers.1.mlp.gate_proj.weight",
        "model.norm.weight",
        "model.embed_tokens.weight",
    ];
    check_weight_gradients(&gemma2, 21, &names);

    let gemma3 = family_config(
        "gemma3_text",
        r#","sliding_window":3,"sliding_window_pattern":2,"rope_local_base_freq":100.0"#,
    );
    assert_eq!(gemma3.layer_windows().unwrap(), [Some(3), None, Some(3)]);
    let names = [
        "model.layers.0.self_attn.q_norm.weight",
        "model.layers.1.self_attn.k_norm.weight",
        "model.layers.2.self_attn.k_proj.weight",
    ];
    check_weight_gradients(&gemma3, 22, &names);

    let qwen3 = family_config("qwen3", "");
    let names = [
        "model.layers.0.self_attn.q_norm.weight",
        "model.layers.2.self_attn.k_norm.weight",
    ];
    check_weight_gradients(&qwen3, 23, &names);
}

/// Lower layers run fast without a graph; a `Var` continues from the activation.
fn upper_loss(
    model: &Transformer,
    resid: &Tensor,
    from: usize,
    data: &(Tensor, Tensor, Tensor),
) -> Tensor {
    let (ids, mask, targets) = data;
    let (b, s) = ids.dims2().unwrap();
    let ctx = model.context(Some(mask), b, s).unwrap();
    let mut opts = ForwardOptions::differentiable();
    let x = model
        .run_layers(resid.clone(), from..model.n_layers(), &ctx, &mut opts)
        .unwrap();
    let logits = model
        .unembed(&model.final_norm(&x, &mut opts).unwrap(), &mut opts)
        .unwrap();
    nll(&logits, mask, targets)
}

fn lower_activation(model: &Transformer, upto: usize, data: &(Tensor, Tensor, Tensor)) -> Tensor {
    let (ids, mask, _) = data;
    let (b, s) = ids.dims2().unwrap();
    let ctx = model.context(Some(mask), b, s).unwrap();
    let mut fast = ForwardOptions::fast();
    let x = model.embed(ids, &mut fast).unwrap();
    model
        .run_layers(x, 0..upto, &ctx, &mut fast)
        .unwrap()
        .detach()
}

#[test]
fn activation_gradient_matches_finite_differences_and_pads_get_none() {
    let cfg = tiny_config("llama");
    let (model, _varmap) = random_model(&cfg, DType::F64, 8).unwrap();
    let data = batch(cfg.vocab_size as u32);
    let act = Var::from_tensor(&lower_activation(&model, 1, &data)).unwrap(); // [3, 6, 16]
    let grads = upper_loss(&model, act.as_tensor(), 1, &data)
        .backward()
        .unwrap();
    let g = grads.get(&act).expect("gradient at the activation");
    let g = g.to_vec3::<f64>().unwrap();
    let d = cfg.hidden_size;
    // (example, position, feature): real tokens of each example, and its left pads.
    for (b, p, j) in [(0, 0, 0), (0, 5, 7), (1, 2, 3), (1, 4, 15), (2, 5, 9)] {
        let fd = finite_difference(
            &WeightVar::plain(act.clone()),
            (b * 6 + p) * d + j,
            1e-5,
            &|| scalar(&upper_loss(&model, act.as_tensor(), 1, &data)),
        );
        assert_close(&format!("d loss / d resid[{b}, {p}, {j}]"), g[b][p][j], fd);
        assert!(g[b][p][j].abs() > 1e-6);
    }
    // Pads are masked as keys and excluded from the loss: exactly no gradient reaches them.
    for (b, pads) in [(1usize, 0..2usize), (2, 0..4)] {
        for p in pads {
            assert!(
                g[b][p].iter().all(|&v| v == 0.0),
                "pad [{b}, {p}] got a gradient"
            );
        }
    }
}

#[test]
fn split_forward_gives_the_full_backprop_gradient() {
    let cfg = tiny_config("qwen2");
    let (mut model, _varmap) = random_model(&cfg, DType::F64, 9).unwrap();
    let data = batch(cfg.vocab_size as u32);
    let last = model.n_layers() - 1;
    let names = [
        format!("model.layers.{last}.self_attn.o_proj.weight"),
        format!("model.layers.{last}.self_attn.v_proj.weight"),
    ];
    let vars: Vec<Var> = names
        .iter()
        .map(|n| model.var(n).unwrap().var().clone())
        .collect();

    let full = loss(&model, &data).backward().unwrap();
    let below = lower_activation(&model, last, &data);
    let split = upper_loss(&model, &below, last, &data).backward().unwrap();
    for (name, var) in names.iter().zip(&vars) {
        let (a, b) = (full.get(var).unwrap(), split.get(var).unwrap());
        let err = max_abs_diff(a, b);
        assert!(
            err < 1e-10 * (1.0 + max_abs(a)),
            "{name}: split gradient differs by {err}"
        );
    }
}

#[test]
fn fused_and_composite_paths_give_equal_outputs() {
    for arch in ["qwen2", "qwen3", "gemma2", "gemma3"] {
        let model = load_fixture(arch, DType::F32).unwrap();
        let (ids, mask, _) = batch(model.config().vocab_size as u32);
        let fast = model
            .forward(&ids, Some(&mask), &mut ForwardOptions::fast())
            .unwrap();
        let slow = model
            .forward(&ids, Some(&mask), &mut ForwardOptions::differentiable())
            .unwrap();
        let err = masked_max_diff(&fast, &slow, &mask);
        assert!(
            err < 1e-4 && max_abs(&fast) > 1.0,
            "{arch} f32: fused and composite differ by {err}"
        );
    }

    let cfg = tiny_config("llama");
    let (model, _) = random_model(&cfg, DType::F64, 10).unwrap();
    let (ids, mask, _) = batch(cfg.vocab_size as u32);
    let fast = model
        .forward(&ids, Some(&mask), &mut ForwardOptions::fast())
        .unwrap();
    let slow = model
        .forward(&ids, Some(&mask), &mut ForwardOptions::differentiable())
        .unwrap();
    let err = max_abs_diff(&fast, &slow); // pads included: same arithmetic
    assert!(err < 1e-12, "f64: fused and composite differ by {err}");
}

/// The trap the two modes exist for: the fused kernels cut the graph silently.
#[test]
fn fast_mode_loses_gradients_that_the_differentiable_mode_keeps() {
    let cfg = tiny_config("qwen2");
    let (mut model, _varmap) = random_model(&cfg, DType::F32, 11).unwrap();
    let data = batch(cfg.vocab_size as u32);
    let q = model
        .var("model.layers.0.self_attn.q_proj.weight")
        .unwrap()
        .var()
        .clone();
    let (ids, mask, targets) = &data;
    let logits = model
        .forward(ids, Some(mask), &mut ForwardOptions::fast())
        .unwrap();
    assert!(nll(&logits, mask, targets)
        .backward()
        .unwrap()
        .get(&q)
        .is_none());
    assert!(loss(&model, &data).backward().unwrap().get(&q).is_some());
}

#[test]
fn a_varmap_model_is_initialised_like_transformers_and_trains() {
    let cfg = tiny_config("llama");
    let varmap = VarMap::new();
    let model = Transformer::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let mut in_map: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    in_map.sort();
    let mut names = model.parameter_names();
    names.sort();
    assert_eq!(in_map, names);
    let std = |t: &Tensor| {
        scalar(
            &t.to_dtype(DType::F64)
                .unwrap()
                .sqr()
                .unwrap()
                .mean_all()
                .unwrap(),
        )
        .sqrt()
    };
    let norm = model
        .parameter("model.layers.0.input_layernorm.weight")
        .unwrap();
    assert_eq!(norm.to_vec1::<f32>().unwrap(), vec![1.0; cfg.hidden_size]);
    let w = std(model
        .parameter("model.layers.1.mlp.up_proj.weight")
        .unwrap());
    assert!((w - 0.02).abs() < 0.004, "init std {w}");

    let data = batch(cfg.vocab_size as u32);
    let grads = loss(&model, &data).backward().unwrap();
    for var in varmap.all_vars() {
        assert!(
            grads.get(&var).is_some(),
            "a weight of shape {:?} got no gradient",
            var.dims()
        );
    }
}
