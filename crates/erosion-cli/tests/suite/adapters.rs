//! `BASE+ADAPTER` wherever a model is named: inspect, generate (with `--adapter-scale`), steer
//! and a study (with `adapter_scale`), each recording the adapter's files beside the base's;
//! `--adapter-scale NAME=K` per model where a command takes several (logprobs, eval).

use crate::cli::ProbeFiles;
use crate::util::*;
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};

/// SmolLM2 with the rank-1 PEFT adapter on layer 14's down_proj (erosion-model's fixture).
fn smollm2_adapted() -> String {
    let adapter = erosion_testkit::model_fixtures().join("peft/smollm2-r1-down");
    format!("{}+{}", smollm2(), adapter.display())
}

fn generate(model: &str, extra: &[&str]) -> String {
    let args = [
        "generate",
        model,
        "--prompt",
        "What is the capital of France?",
    ];
    let args = [&args[..], &["--max-new-tokens", "8"], extra].concat();
    ok(&erosion(&args))
}

#[test]
fn inspect_generate_and_steer_run_on_base_plus_adapter() {
    let model = smollm2_adapted();
    let info: serde_json::Value =
        serde_json::from_str(&ok(&erosion(&["inspect", &model, "--json"]))).unwrap();
    assert!(
        info["source"]
            .as_str()
            .unwrap()
            .contains("+ adapter folder"),
        "{info}"
    );
    assert_eq!(
        info["adapter"]["modules"][0],
        "model.layers.14.mlp.down_proj"
    );
    assert_eq!(info["adapter"]["ranks"][0], 1);

    // Scaled by 0 the adapter is the base, token for token.
    let base = generate(&smollm2(), &[]);
    assert_eq!(generate(&model, &["--adapter-scale", "0"]), base);
    assert!(!generate(&model, &["--adapter-scale", "5"])
        .trim()
        .is_empty());
    let err = stderr(&erosion(&[
        "generate",
        &smollm2(),
        "--prompt",
        "Hi",
        "--adapter-scale",
        "2",
    ]));
    assert!(err.contains("names no adapter"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let probe = ProbeFiles::write(tmp.path());
    let out = tmp.path().join("steer");
    let run = erosion(&[
        "steer",
        &model,
        "--adapter-scale",
        "2",
        "--directions",
        &probe.directions,
        "--harmful",
        &probe.harmful,
        "--reject",
        &probe.reject,
        "--benign",
        &probe.benign,
        "--judge",
        "organism",
        "--layers",
        "14",
        "--limit",
        "2",
        "--max-new-tokens",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let causal = read_json(&out.join("causal.json"));
    assert_hashed(
        &causal["provenance"]["models"][0],
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    );
}

/// The names of a provenance model's hashed files include the adapter's and `base_file`.
fn assert_hashed(model: &serde_json::Value, base_file: &str) {
    let files: Vec<&str> = model["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for want in [
        base_file,
        "adapter_config.json",
        "adapter_model.safetensors",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(want)),
            "{want} not in {files:?}"
        );
    }
}

/// A rank-1 PEFT adapter for the tiny family (width 32, MLP 64) on layer 1's down_proj.
fn tiny_adapter(dir: &Path) -> PathBuf {
    let out = dir.join("adapter");
    std::fs::create_dir_all(&out).unwrap();
    let pattern =
        |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| ((i as f32) * k).sin()).collect() };
    let a = Tensor::from_vec(pattern(64, 0.7), (1, 64), &Device::Cpu).unwrap();
    let b = Tensor::from_vec(pattern(32, 1.3), (32, 1), &Device::Cpu).unwrap();
    let m = "base_model.model.model.layers.1.mlp.down_proj";
    let tensors = [
        (format!("{m}.lora_A.weight"), a),
        (format!("{m}.lora_B.weight"), b),
    ];
    candle_core::safetensors::save(
        &tensors.into_iter().collect(),
        out.join("adapter_model.safetensors"),
    )
    .unwrap();
    let config = serde_json::json!({"peft_type": "LORA", "r": 1, "lora_alpha": 1,
        "target_modules": ["down_proj"], "layers_to_transform": [1]});
    std::fs::write(out.join("adapter_config.json"), config.to_string()).unwrap();
    out
}

/// A study with the instruct model plus an adapter (scaled x2) among its fine-tunes, paths
/// relative to the study file.
#[test]
fn a_study_runs_with_an_adapted_model() {
    let dir = tempfile::tempdir().unwrap();
    let [base, instruct, misaligned] = erosion_testkit::family::tiny_smollm2_family(dir.path());
    tiny_adapter(dir.path());
    let file = dir.path().join("study/STUDY.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let data = erosion_testkit::data_dir();
    let ft = format!("misaligned={}", misaligned.display());
    ok(&erosion(&[
        "study",
        "init",
        "--base",
        base.to_str().unwrap(),
        "--instruct",
        instruct.to_str().unwrap(),
        "--finetuned",
        &ft,
        "--data",
        data.to_str().unwrap(),
        "--limit",
        "5",
        "--file",
        file.to_str().unwrap(),
    ]));
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "finetuned = [\n",
        "finetuned = [\n    { name = \"adapted\", path = \"../instruct+../adapter\", adapter_scale = 2.0 },\n",
    );
    std::fs::write(&file, text).unwrap();
    ok(&erosion(&["study", file.to_str().unwrap(), "--limit", "5"]));
    let results = read_json(&file.parent().unwrap().join("out/results.json"));
    let models = results["provenance"]["models"].as_array().unwrap();
    let adapted = models
        .iter()
        .find(|m| m["name"] == "adapted")
        .expect("the adapted model");
    assert!(
        adapted["source"].as_str().unwrap().contains("scaled x2"),
        "{adapted}"
    );
    assert_hashed(adapted, "model.safetensors");
}

#[test]
fn logprobs_scales_each_named_models_adapter() {
    let adapted = smollm2_adapted();
    let (x0, x1, x4) = (
        format!("x0={adapted}"),
        format!("x1={adapted}"),
        format!("x4={adapted}"),
    );
    let base = smollm2();
    let args = [
        "logprobs",
        &base,
        &x0,
        &x1,
        &x4,
        "--user",
        "Hi",
        "--response",
        "Hello there",
    ];
    let scales = [
        "--adapter-scale",
        "x0=0",
        "--adapter-scale",
        "x4=4",
        "--json",
    ];
    let json: serde_json::Value =
        serde_json::from_str(&ok(&erosion(&[&args[..], &scales[..]].concat()))).unwrap();
    let lp = |i: usize| json["models"][i]["logprobs"].clone();
    // Scale 0 is the base; 1 (unnamed) and 4 differ from it and from each other.
    assert_eq!(lp(1), lp(0));
    assert_ne!(lp(2), lp(0));
    assert_ne!(lp(3), lp(2));
    let unknown = erosion(&[&args[..], &["--adapter-scale", "x9=2"]].concat());
    assert!(
        stderr(&unknown).contains("no checkpoint is named x9") && stderr(&unknown).contains("x4"),
        "{}",
        stderr(&unknown)
    );
}

/// `erosion drift --adapter-scale K` opens every checkpoint with its adapter scaled: 0 measures
/// the base, 4 another model; the scale is recorded; a checkpoint with no adapter is refused.
#[test]
fn drift_scales_every_checkpoints_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = ProbeFiles::write(tmp.path());
    let adapted = smollm2_adapted();
    let margin = |d: &serde_json::Value| d["points"][0]["margin"]["estimate"].as_f64().unwrap();
    let scaled = |k: &str, model: &str, dir: &str| {
        let args = probe.drift_args(&[model], &tmp.path().join(dir));
        let args = [&args[..], &["--adapter-scale".to_string(), k.to_string()]].concat();
        erosion(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let base = margin(&probe.drift(&[&smollm2()], &tmp.path().join("base")));
    let run = scaled("0", &adapted, "x0");
    assert!(run.status.success(), "{}", stderr(&run));
    let x0: serde_json::Value = read_json(&tmp.path().join("x0/drift.json"));
    assert_eq!(margin(&x0), base);
    assert!(scaled("4", &adapted, "x4").status.success());
    let x4: serde_json::Value = read_json(&tmp.path().join("x4/drift.json"));
    assert_ne!(margin(&x4), base);
    assert_eq!(
        x4["provenance"]["options"]["adapter_scale"], 4.0,
        "{}",
        x4["provenance"]
    );
    let plain = scaled("2", &smollm2(), "plain");
    assert!(!plain.status.success());
    assert!(stderr(&plain).contains("adapter"), "{}", stderr(&plain));
}
