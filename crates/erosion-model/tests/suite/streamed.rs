//! Streamed models (`Checkpoint::load_streamed`): blocks read from the files as a pass reaches
//! them compute the same bits as the model loaded whole, for every family, with an adapter, and
//! from a quantised GGUF; layer-major runs of several batches equal each batch run alone; and
//! what a streamed model cannot do is refused by name.

use crate::transformer_util::{load_reference, pad, random_ids, tiny_base};
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use erosion_model::hooks::{HookPoint, Positions, Site};
use erosion_model::load::Checkpoint;
use erosion_model::transformer::{ForwardOptions, LoraConfig, Transformer};

fn logits(model: &Transformer, ids: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    model.forward(ids, mask, &mut ForwardOptions::fast())
}

fn assert_same_bits(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
    let (a, b) = (
        a.flatten_all()?.to_vec1::<f32>()?,
        b.flatten_all()?.to_vec1::<f32>()?,
    );
    assert_eq!(a.len(), b.len(), "{what}");
    let differ = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(differ, 0, "{what}: {differ} of {} values differ", a.len());
    Ok(())
}

#[test]
fn streamed_models_compute_the_bits_of_whole_ones_in_every_family() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut specs = Vec::new();
    for arch in ["llama", "qwen2", "qwen3", "mistral", "gemma2", "gemma3"] {
        specs.push((arch, tiny_base(arch, tmp.path()).display().to_string()));
    }
    // An adapter is put on each block as it is read.
    let peft = erosion_testkit::model_fixtures().join("peft");
    for (arch, adapter) in [
        ("qwen2", "tiny-qwen2-r8-rslora"),
        ("llama", "tiny-llama-r1-down"),
    ] {
        let base = tmp.path().join(format!("tiny-{arch}"));
        let spec = format!("{}+{}", base.display(), peft.join(adapter).display());
        specs.push((arch, spec));
    }
    for (arch, spec) in &specs {
        let inputs = load_reference(arch)?;
        let ids = inputs["input_ids"].to_dtype(DType::U32)?;
        let mask = &inputs["attention_mask"];
        let ck = Checkpoint::open(spec)?;
        let whole = ck.load_model(DType::F32, &Device::Cpu)?;
        let streamed = ck.load_streamed(DType::F32, &Device::Cpu)?;
        assert!(streamed.is_streamed() && !whole.is_streamed());
        assert_eq!(streamed.n_layers(), whole.n_layers());
        assert_eq!(streamed.lora_modules(), whole.lora_modules(), "{spec}");
        assert_eq!(
            streamed.parameter_names(),
            whole.parameter_names(),
            "{spec}"
        );
        let want = logits(&whole, &ids, Some(mask))?;
        assert_same_bits(&logits(&streamed, &ids, Some(mask))?, &want, spec)?;
    }
    Ok(())
}

#[test]
fn a_streamed_quantised_gguf_equals_it_loaded_whole() -> Result<()> {
    let ck = Checkpoint::open(erosion_testkit::smollm2_gguf().to_str().unwrap())?;
    let whole = ck.load_model(DType::F32, &Device::Cpu)?;
    let streamed = ck.load_streamed(DType::F32, &Device::Cpu)?;
    let (ids, mask) = pad(&random_ids(2, 7, 49152, 3), false);
    let want = logits(&whole, &ids, Some(&mask))?;
    assert_same_bits(
        &logits(&streamed, &ids, Some(&mask))?,
        &want,
        "smollm2 gguf",
    )
}

#[test]
fn layer_major_batches_record_what_each_batch_records_alone() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let ck = Checkpoint::open(tiny_base("qwen2", tmp.path()).to_str().unwrap())?;
    let model = ck.load_streamed(DType::F32, &Device::Cpu)?;
    let point = HookPoint::block(1, Site::ResidPost);
    let batches: Vec<(Tensor, Tensor)> = [(3, 5), (2, 9)]
        .iter()
        .enumerate()
        .map(|(i, &(b, s))| pad(&random_ids(b, s, 128, i as u64), false))
        .collect();
    let record = |model: &Transformer| {
        let mut h = model.hooks();
        h.record(point, Positions::All).unwrap();
        h
    };
    // Each batch alone, through `run_layers`.
    let mut alone = Vec::new();
    for (ids, mask) in &batches {
        let mut hooks = record(&model);
        let mut o = ForwardOptions::fast().hooks(&mut hooks);
        let ctx = model.context(Some(mask), ids.dim(0)?, ids.dim(1)?)?;
        let x = model.embed(ids, &mut o)?;
        alone.push(model.run_layers(x, 0..2, &ctx, &mut o)?);
        alone.push(hooks.take_cache().tensor(&point.to_string())?.clone());
    }
    // Both at once, block by block.
    let mut hooks = vec![record(&model), record(&model)];
    let mut opts: Vec<ForwardOptions> = hooks
        .iter_mut()
        .map(|h| ForwardOptions::fast().hooks(h))
        .collect();
    let ctxs = (batches.iter())
        .map(|(ids, mask)| model.context(Some(mask), ids.dim(0).unwrap(), ids.dim(1).unwrap()))
        .collect::<Result<Vec<_>>>()?;
    let xs = (batches.iter().zip(&mut opts))
        .map(|((ids, _), o)| model.embed(ids, o))
        .collect::<Result<Vec<_>>>()?;
    let ctx_refs: Vec<_> = ctxs.iter().collect();
    let xs = model.run_layers_layer_major(xs, 0..2, &ctx_refs, &mut opts)?;
    opts.clear(); // releases the hooks
    for (i, (x, h)) in xs.iter().zip(&mut hooks).enumerate() {
        assert_same_bits(x, &alone[2 * i], "residual stream")?;
        let recorded = h.take_cache().tensor(&point.to_string())?.clone();
        assert_same_bits(&recorded, &alone[2 * i + 1], "recorded hook")?;
    }
    Ok(())
}

#[test]
fn a_streamed_model_refuses_to_give_set_or_train_its_weights_or_decode() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let ck = Checkpoint::open(tiny_base("llama", tmp.path()).to_str().unwrap())?;
    let mut model = ck.load_streamed(DType::F32, &Device::Cpu)?;
    let err = |r: Result<()>| format!("{:#}", r.unwrap_err());
    let name = "model.layers.1.mlp.down_proj.weight";
    let e = err(model.parameter(name).map(|_| ()));
    assert!(e.contains("streamed") && e.contains(name), "{e}");
    let e = err(model.add_lora(&LoraConfig::default()).map(|_| ()));
    assert!(e.contains("streamed") && e.contains("trained"), "{e}");
    // Decoding would read every layer again for each new token.
    let ids = candle_core::Tensor::new(&[[1u32, 2]], &Device::Cpu)?;
    let opts = &mut erosion_model::transformer::ForwardOptions::fast();
    let e = err(model
        .forward_cached(&ids, None, &mut model.new_cache(), opts)
        .map(|_| ()));
    assert!(
        e.contains("streamed") && e.contains("token by token"),
        "{e}"
    );
    // The embedding is read row by row as needed, so it cannot be given either; the final
    // norm is held. An adapter's saved embedding (modules_to_save) replaces it and is held.
    let embed = "model.embed_tokens.weight";
    let e = err(model.parameter(embed).map(|_| ()));
    assert!(e.contains("streamed") && e.contains(embed), "{e}");
    assert!(model.parameter("model.norm.weight").is_ok());
    let (v, d) = (model.config().vocab_size, model.config().hidden_size);
    let e = err(model.set_parameter(
        embed,
        candle_core::Tensor::zeros((v, d + 1), DType::F32, &Device::Cpu)?,
    ));
    assert!(e.contains(&format!("[{v}, {d}]")), "{e}");
    let saved = candle_core::Tensor::ones((v, d), DType::F32, &Device::Cpu)?;
    model.set_parameter(embed, saved)?;
    assert_eq!(
        model.parameter(embed)?.sum_all()?.to_scalar::<f32>()?,
        (v * d) as f32
    );
    Ok(())
}
