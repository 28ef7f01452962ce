//! PEFT LoRA adapters on their base, against Hugging Face peft's own numbers
//! (tests/fixtures/peft, made by scripts/reference/make_peft_fixtures.py): `BASE+ADAPTER` as
//! a separate low-rank path against `PeftModel`, merged on load against `merge_and_unload`,
//! both within 1e-4 on every valid logit; and what is refused, by name.

use crate::transformer_util::{load_reference, masked_max_diff, max_abs_diff, tiny_base};
use anyhow::Result;
use candle_core::{DType, Device, IndexOp, Tensor};
use erosion_model::load::{Checkpoint, OpenOptions};
use erosion_model::transformer::{ForwardOptions, Transformer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const TOL: f64 = 1e-4;

fn peft_dir() -> PathBuf {
    erosion_testkit::model_fixtures().join("peft")
}

fn reference() -> &'static HashMap<String, Tensor> {
    static REF: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    REF.get_or_init(|| {
        candle_core::safetensors::load(peft_dir().join("reference.safetensors"), &Device::Cpu)
            .expect("tests/fixtures/peft/reference.safetensors")
    })
}

fn spec(base: &Path, adapter: &str) -> String {
    format!("{}+{}", base.display(), peft_dir().join(adapter).display())
}

fn logits(model: &Transformer, ids: &Tensor, mask: Option<&Tensor>) -> Tensor {
    model
        .forward(ids, mask, &mut ForwardOptions::fast())
        .unwrap()
}

#[test]
fn tiny_adapters_match_peft_and_merge_and_unload() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    for arch in ["llama", "qwen2"] {
        let base = tiny_base(arch, tmp.path());
        let inputs = load_reference(arch)?;
        let ids = inputs["input_ids"].to_dtype(DType::U32)?;
        let mask = &inputs["attention_mask"];
        for kind in ["r1-down", "r8-rslora"] {
            let name = format!("tiny-{arch}-{kind}");
            let ck = Checkpoint::open(&spec(&base, &name))?;
            let separate = logits(&ck.load_model(DType::F32, &Device::Cpu)?, &ids, Some(mask));
            let merged = logits(
                &ck.load_model_merged(DType::F32, &Device::Cpu)?,
                &ids,
                Some(mask),
            );
            let (want, want_merged) = (
                &reference()[&format!("{name}.peft")],
                &reference()[&format!("{name}.merged")],
            );
            let err = masked_max_diff(&separate, want, mask);
            assert!(err < TOL, "{name}: logits differ from PeftModel's by {err}");
            let err = masked_max_diff(&merged, want_merged, mask);
            assert!(
                err < TOL,
                "{name}: merged logits differ from merge_and_unload's by {err}"
            );
            // The adapter matters: the base's logits are far from these.
            let moved = masked_max_diff(&inputs["logits"], want, mask);
            assert!(
                moved > 100.0 * TOL,
                "{name}: the adapter moves logits by {moved} only"
            );
        }
    }
    Ok(())
}

/// On SmolLM2's GGUF (scripts/fetch-smollm2.sh), at the positions and token ids the fixture
/// keeps; the rank-1 adapter opened alone, on the base its config records (a path relative to
/// the repository root).
#[test]
fn smollm2_adapters_match_peft() -> Result<()> {
    let gguf = erosion_testkit::smollm2_gguf();
    let root = OpenOptions {
        relative_to: Some(erosion_testkit::workspace_root()),
        ..OpenOptions::default()
    };
    for name in ["smollm2-r1-down", "smollm2-r8-rslora"] {
        let adapter = peft_dir().join(name);
        let ck = match name {
            "smollm2-r1-down" => Checkpoint::open_with(adapter.to_str().unwrap(), &root)?,
            _ => Checkpoint::open(&format!("{}+{}", gguf.display(), adapter.display()))?,
        };
        let r = |k: &str| &reference()[&format!("{name}.{k}")];
        let ids = r("input_ids").to_dtype(DType::U32)?;
        let pos: Vec<i64> = r("positions").to_vec1()?;
        let tok = r("token_ids").to_dtype(DType::U32)?;
        let pick = |model: &Transformer| -> Result<Tensor> {
            let all = logits(model, &ids, None).i(0)?;
            let rows: Vec<Tensor> = pos
                .iter()
                .map(|&p| all.i(p as usize)?.index_select(&tok, 0))
                .collect::<candle_core::Result<_>>()?;
            Ok(Tensor::stack(&rows, 0)?)
        };
        let mut model = ck.load_model(DType::F32, &Device::Cpu)?;
        let err = max_abs_diff(&pick(&model)?, r("peft"));
        assert!(err < TOL, "{name}: logits differ from PeftModel's by {err}");
        model.merge_lora()?;
        let err = max_abs_diff(&pick(&model)?, r("merged"));
        assert!(
            err < TOL,
            "{name}: merged logits differ from merge_and_unload's by {err}"
        );
        let moved = max_abs_diff(r("base"), r("peft"));
        assert!(
            moved > 100.0 * TOL,
            "{name}: the adapter moves logits by {moved} only"
        );
    }
    Ok(())
}

/// The adapter's own vectors are readable, and `adapter_scale` k multiplies the update: the
/// merged weight moves k times as far.
#[test]
fn adapter_scale_multiplies_the_update_and_b_is_readable() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = tiny_base("llama", tmp.path());
    let spec = spec(&base, "tiny-llama-r1-down");
    let module = "model.layers.1.mlp.down_proj";
    let weight = |k: Option<f64>| -> Result<Tensor> {
        let opts = OpenOptions {
            adapter_scale: k,
            ..OpenOptions::default()
        };
        let ck = Checkpoint::open_with(&spec, &opts)?;
        Ok(ck
            .load_model_merged(DType::F32, &Device::Cpu)?
            .parameter(&format!("{module}.weight"))?
            .clone())
    };
    let plain = erosion_testkit::tiny_fixture_model("llama", DType::F32);
    let w0 = plain.parameter(&format!("{module}.weight"))?;
    let (d1, d3) = ((weight(None)? - w0)?, (weight(Some(3.0))? - w0)?);
    assert!(max_abs_diff(&(d1.clone() * 3.0)?, &d3) < 1e-6);
    assert!(max_abs_diff(&d1, &d1.zeros_like()?) > 1e-2);

    let model = Checkpoint::open(&spec)?.load_model(DType::F32, &Device::Cpu)?;
    assert_eq!(model.lora_modules(), vec![module.to_string()]);
    let lora = model.lora(module)?.expect("an adapter on down_proj");
    let file = candle_core::safetensors::load(
        peft_dir().join("tiny-llama-r1-down/adapter_model.safetensors"),
        &Device::Cpu,
    )?;
    let b = &file[&format!("base_model.model.{module}.lora_B.weight")];
    assert_eq!(lora.b.dims(), &[32, 1]);
    assert_eq!(max_abs_diff(&lora.b, b), 0.0);
    assert_eq!(lora.scale, 2.0); // alpha 2 / r 1
    Ok(())
}

/// A copy of fixture adapter `name` in `dir`, its config edited by `edit`.
fn edited(dir: &Path, name: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let out = dir.join(format!("edited-{name}"));
    std::fs::create_dir_all(&out).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(peft_dir().join(name).join(f), out.join(f)).unwrap();
    }
    let path = out.join("adapter_config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&path, cfg.to_string()).unwrap();
    out
}

#[test]
fn bad_adapters_are_refused_naming_file_and_field() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = tiny_base("llama", tmp.path());
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty)?;
    let name = "tiny-llama-r1-down";
    let cases: Vec<(PathBuf, &[&str])> = vec![
        (empty.clone(), &["no adapter_config.json in", "empty"]),
        (
            edited(&tmp.path().join("a"), name, |c| c["use_dora"] = true.into()),
            &["use_dora", "DoRA", "adapter_config.json"],
        ),
        (
            edited(&tmp.path().join("b"), name, |c| {
                c["target_modules"] = serde_json::json!(["c_attn"])
            }),
            &["target_modules", "selects no module", "adapter_config.json"],
        ),
        (
            edited(&tmp.path().join("c"), name, |c| c["r"] = 2.into()),
            &[
                "lora_A.weight",
                "[1, 64]",
                "field `r`",
                "adapter_model.safetensors",
            ],
        ),
        (
            edited(&tmp.path().join("d"), name, |c| {
                c["peft_type"] = "IA3".into()
            }),
            &["peft_type is `IA3`"],
        ),
    ];
    for (adapter, said) in cases {
        let spec = format!("{}+{}", base.display(), adapter.display());
        let err = format!("{:#}", Checkpoint::open(&spec).unwrap_err());
        for s in said {
            assert!(
                err.contains(s),
                "{}: `{s}` not in: {err}",
                adapter.display()
            );
        }
    }
    // Alone, on a recorded base that is nowhere.
    let lost = edited(&tmp.path().join("e"), name, |c| {
        c["base_model_name_or_path"] = "no-such/base-model".into()
    });
    let err = format!(
        "{:#}",
        Checkpoint::open(lost.to_str().unwrap()).unwrap_err()
    );
    assert!(
        err.contains("no-such/base-model") && err.contains("base_model_name_or_path"),
        "{err}"
    );
    // A scale without an adapter.
    let opts = OpenOptions {
        adapter_scale: Some(2.0),
        ..OpenOptions::default()
    };
    let err = format!(
        "{:#}",
        Checkpoint::open_with(base.to_str().unwrap(), &opts).unwrap_err()
    );
    assert!(err.contains("names no adapter"), "{err}");
    Ok(())
}

/// An adapter scaled far beyond its training overflows f32: the forward pass says so, rather
/// than handing NaN on as log-probs or activations (generation caught it only at the logits).
#[test]
fn an_overflowing_adapter_scale_is_an_error_not_nan_numbers() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = tiny_base("llama", tmp.path());
    let opts = OpenOptions {
        adapter_scale: Some(1e37),
        ..OpenOptions::default()
    };
    let model = Checkpoint::open_with(&spec(&base, "tiny-llama-r8-rslora"), &opts)?
        .load_model(DType::F32, &Device::Cpu)?;
    let ids = Tensor::new(&[[1u32, 2, 1, 2]], &Device::Cpu)?;
    let err = model
        .forward(&ids, None, &mut ForwardOptions::fast())
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("NaN or infinite") && msg.contains("adapter scale"),
        "{msg}"
    );
    // As trained, the same adapter computes finite logits.
    let fine = Checkpoint::open(&spec(&base, "tiny-llama-r8-rslora"))?
        .load_model(DType::F32, &Device::Cpu)?;
    let l = fine.forward(&ids, None, &mut ForwardOptions::fast())?;
    assert!(l.sum_all()?.to_scalar::<f32>()?.is_finite());
    Ok(())
}
