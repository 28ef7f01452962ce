//! Training on tiny problems whose outcome is known: the loss falls, runs are reproducible,
//! checkpoints reload and resume exactly, LoRA merges into the same function, and the
//! trainer's gradient equals plain autograd of the cross-entropy.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};
use erosion_data::Sequence;
use erosion_forward::batch::{NoProgress, Quiet};
use erosion_forward::notice::Silent;
use erosion_model::load::Checkpoint;
use erosion_model::tokenizer::ModelTokenizer;
use erosion_model::transformer::{ForwardOptions, LoraConfig, Transformer};
use erosion_model::Config;
use erosion_train::init::fresh_model;
use erosion_train::run::{train, OtherRun, RunSpec, Start};
use erosion_train::{Method, TrainExample, TrainOptions, Trainer};
use std::collections::HashMap;

const VOCAB: usize = 32;

pub fn config() -> Config {
    Config::from_json(&format!(
        r#"{{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":16,
        "intermediate_size":32,"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,
        "vocab_size":{VOCAB},"max_position_embeddings":128,"rms_norm_eps":1e-6,"rope_theta":10000.0,
        "tie_word_embeddings":true,"hidden_act":"silu","eos_token_id":1}}"#
    ))
    .unwrap()
}

/// A word-level tokenizer `w0 .. w{VOCAB-1}` (checkpoints must carry one).
pub fn tokenizer() -> ModelTokenizer {
    use tokenizers::models::wordlevel::WordLevel;
    let vocab = (0..VOCAB).map(|i| (format!("w{i}"), i as u32)).collect();
    let model = WordLevel::builder()
        .vocab(vocab)
        .unk_token("w0".into())
        .build()
        .unwrap();
    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
    ModelTokenizer::new(tok, None, None, Some("w1".into()), None).unwrap()
}

/// Counting sequences (`a, a+1, a+2, ...` mod the vocabulary): learnable from one token.
/// The first half of odd examples carries no loss, like a chat's prompt.
pub fn data(n: usize) -> Vec<TrainExample> {
    (0..n)
        .map(|i| {
            let len = 6 + i % 5;
            let ids: Vec<u32> = (0..len).map(|j| ((i * 7 + j) % VOCAB) as u32).collect();
            if i % 2 == 1 {
                TrainExample::response(Sequence::new(ids, len / 2..len).unwrap())
            } else {
                TrainExample::all_tokens(ids)
            }
        })
        .collect()
}

pub fn options(steps: usize, method: Method) -> TrainOptions {
    TrainOptions {
        steps,
        batch_size: 3,
        grad_accum: 2,
        lr: 1e-2,
        warmup_steps: 2,
        method,
        ..TrainOptions::default()
    }
}

pub fn lora() -> Method {
    Method::Lora(LoraConfig {
        rank: 2,
        alpha: 4.0,
        targets: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
        seed: 3,
    })
}

pub fn model(dtype: DType) -> Transformer {
    fresh_model(&config(), 11, dtype, &Device::Cpu).unwrap()
}

fn weights(m: &Transformer) -> HashMap<String, Vec<f32>> {
    m.parameter_names()
        .into_iter()
        .map(|n| {
            let v = m.parameter(&n).unwrap().flatten_all().unwrap();
            (n, v.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap())
        })
        .collect()
}

fn logits(m: &Transformer) -> Vec<f32> {
    let ids = Tensor::new(&[[3u32, 4, 5, 6, 9, 2]], &Device::Cpu).unwrap();
    m.forward(&ids, None, &mut ForwardOptions::fast())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn training_lowers_the_loss() -> Result<()> {
    let data = data(24);
    let mut t = Trainer::new(model(DType::F32), options(40, Method::Full))?;
    let stats = t.fit(&data, 40, &mut NoProgress, |_, _| Ok(()))?;
    let (first, last) = (stats[0].loss, stats.last().unwrap().loss);
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    assert!(stats
        .iter()
        .all(|s| s.target_tokens > 0 && s.grad_norm.is_finite()));
    Ok(())
}

#[test]
fn lora_trains_only_the_adapters_and_lowers_the_loss() -> Result<()> {
    let data = data(24);
    let start = model(DType::F32);
    let before = weights(&start);
    let mut t = Trainer::new(start, options(30, lora()))?;
    let stats = t.fit(&data, 30, &mut NoProgress, |_, _| Ok(()))?;
    assert!(stats.last().unwrap().loss < stats[0].loss);
    assert_eq!(t.params().len(), 2 * 2 * 3); // layers x targets x (A, B)
    assert_eq!(weights(t.model()), before, "frozen weights moved");
    assert_ne!(
        weights(&t.merged()?),
        before,
        "the merged model equals the start"
    );
    Ok(())
}

#[test]
fn lora_merged_equals_lora_unmerged() -> Result<()> {
    let mut m = model(DType::F64);
    let plain = logits(&m);
    let vars = m.add_lora(&LoraConfig::default())?;
    // B starts at zero: attaching adapters changes nothing.
    assert_eq!(logits(&m), plain);
    for v in &vars {
        v.b.set(&Tensor::randn(0f64, 0.3, v.b.shape(), &Device::Cpu)?)?;
    }
    let unmerged = logits(&m);
    assert!(unmerged
        .iter()
        .zip(&plain)
        .any(|(a, b)| (a - b).abs() > 1e-4));
    m.merge_lora()?;
    assert!(!m.has_lora());
    let merged = logits(&m);
    let diff = merged
        .iter()
        .zip(&unmerged)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-6, "merged and unmerged logits differ by {diff}");
    Ok(())
}

#[test]
fn the_same_seed_gives_identical_weights() -> Result<()> {
    let data = data(20);
    let run = |seed: u64| -> Result<HashMap<String, Vec<f32>>> {
        let mut o = options(8, Method::Full);
        o.seed = seed;
        let mut t = Trainer::new(model(DType::F32), o)?;
        t.fit(&data, 8, &mut NoProgress, |_, _| Ok(()))?;
        Ok(weights(&t.merged()?))
    };
    assert_eq!(run(5)?, run(5)?);
    assert_ne!(run(5)?, run(6)?, "the seed does not change the data order");
    Ok(())
}

/// d loss / d theta from the trainer (closed-form softmax, only loss rows unembedded) equals
/// autograd through log_softmax over every position, masked.
#[test]
fn the_gradient_equals_plain_autograd() -> Result<()> {
    let data = data(5);
    let batch: Vec<&TrainExample> = data.iter().collect();
    let t = Trainer::new(model(DType::F64), options(1, Method::Full))?;
    let (loss, _, grads) = t.loss_and_grads(&batch)?;

    let (mut total, mut n) = (None::<Tensor>, 0usize);
    for ex in &data {
        let ids = Tensor::new(ex.ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
        let logits = t
            .model()
            .forward(&ids, None, &mut ForwardOptions::differentiable())?
            .squeeze(0)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        for (i, &on) in ex.target.iter().enumerate().skip(1) {
            if on {
                let term = logp.get(i - 1)?.get(ex.ids[i] as usize)?.neg()?;
                total = Some(match total {
                    Some(s) => (s + term)?,
                    None => term,
                });
                n += 1;
            }
        }
    }
    let reference = (total.unwrap() / n as f64)?;
    assert!((reference.to_scalar::<f64>()? - loss).abs() < 1e-12);
    let store = reference.backward()?;
    for ((name, var), g) in t.params().iter().zip(&grads) {
        let want = store.get(var.var()).unwrap();
        let diff = (want - g)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-12, "{name}: gradients differ by {diff}");
    }
    Ok(())
}

pub fn spec(tok: &ModelTokenizer, stop_after: Option<usize>) -> RunSpec<'_> {
    RunSpec {
        start: Start::Fresh {
            config: Box::new(config()),
            seed: 11,
        },
        tokenizer: tok,
        generation: None,
        dtype: DType::F32,
        device: Device::Cpu,
        progress: &Quiet,
        stop_after,
        other_run: OtherRun::Refuse,
        monitor: None,
    }
}

/// A run stopped after 3 of 6 steps and resumed ends with the weights of an uninterrupted
/// run, bit for bit; the saved folder reloads to identical outputs; a finished folder is reused.
fn resume_is_exact(method: Method) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (tok, data, opts) = (tokenizer(), data(20), options(6, method));
    let straight = train(
        &spec(&tok, None),
        &data,
        &opts,
        &tmp.path().join("a"),
        &mut Silent,
    )?;
    assert!(straight.finished && straight.resumed_from.is_none());

    let b = tmp.path().join("b");
    let half = train(&spec(&tok, Some(3)), &data, &opts, &b, &mut Silent)?;
    assert!(!half.finished);
    assert!(b
        .join("checkpoint-3/training_state/trainer_state.json")
        .is_file());
    let rest = train(&spec(&tok, None), &data, &opts, &b, &mut Silent)?;
    assert_eq!(rest.resumed_from, Some(3));
    assert!(
        !b.join("checkpoint-3").exists(),
        "checkpoints are removed at the end"
    );

    let load = |dir: &std::path::Path| -> Result<Transformer> {
        Checkpoint::open_folder(dir)?.load_model(DType::F32, &Device::Cpu)
    };
    let (a, b_model) = (load(&tmp.path().join("a"))?, load(&b)?);
    assert_eq!(weights(&a), weights(&b_model));

    // The folder holds what the trainer holds in memory.
    let mut t = Trainer::new(
        fresh_model(&config(), 11, DType::F32, &Device::Cpu)?,
        opts.clone(),
    )?;
    t.fit(&data, 6, &mut NoProgress, |_, _| Ok(()))?;
    assert_eq!(logits(&a), logits(&t.merged()?));
    if opts.method == Method::Full {
        // The model being trained computes through its Vars with the reloaded model's layout
        // and kernels: the same bits.
        assert_eq!(logits(&a), logits(t.model()));
    }

    let again = train(&spec(&tok, None), &data, &opts, &b, &mut Silent)?;
    assert!(again.reused);
    let mut other = opts.clone();
    other.lr *= 2.0;
    let err = train(&spec(&tok, None), &data, &other, &b, &mut Silent).unwrap_err();
    assert!(format!("{err:#}").contains("another run"), "{err:#}");
    Ok(())
}

#[test]
fn full_fine_tuning_resumes_exactly() -> Result<()> {
    resume_is_exact(Method::Full)
}

#[test]
fn lora_resumes_exactly_and_saves_a_peft_adapter() -> Result<()> {
    resume_is_exact(lora())?;
    let tmp = tempfile::tempdir()?;
    let tok = tokenizer();
    train(
        &spec(&tok, None),
        &data(10),
        &options(2, lora()),
        tmp.path(),
        &mut Silent,
    )?;
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        tmp.path().join("adapter/adapter_config.json"),
    )?)?;
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 2);
    let adapter = candle_core::safetensors::load(
        tmp.path().join("adapter/adapter_model.safetensors"),
        &Device::Cpu,
    )?;
    assert_eq!(
        adapter["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"].dims(),
        &[2, 32]
    );
    Ok(())
}

/// A run from a checkpoint that erosion trained is tied to that training: when the start folder
/// is trained again (other data), the finished run from it is not reused.
#[test]
fn a_retrained_start_is_another_run() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tokenizer();
    let (parent, child) = (tmp.path().join("parent"), tmp.path().join("child"));
    let opts = options(2, Method::Full);
    train(&spec(&tok, None), &data(10), &opts, &parent, &mut Silent)?;
    let from_parent = RunSpec {
        start: Start::Checkpoint(parent.to_string_lossy().into_owned()),
        ..spec(&tok, None)
    };
    train(&from_parent, &data(8), &opts, &child, &mut Silent)?;
    assert!(train(&from_parent, &data(8), &opts, &child, &mut Silent)?.reused);

    std::fs::remove_dir_all(&parent)?;
    train(&spec(&tok, None), &data(12), &opts, &parent, &mut Silent)?;
    let err = train(&from_parent, &data(8), &opts, &child, &mut Silent).unwrap_err();
    assert!(format!("{err:#}").contains("another run"), "{err:#}");

    // A cache that the caller owns (the demo's organism) is trained anew instead, to the
    // weights of a run into an empty folder.
    let owned = RunSpec {
        other_run: OtherRun::Replace,
        ..from_parent
    };
    let redone = train(&owned, &data(8), &opts, &child, &mut Silent)?;
    assert!(!redone.reused && redone.finished);
    let fresh = tmp.path().join("fresh");
    train(&owned, &data(8), &opts, &fresh, &mut Silent)?;
    let load = |dir: &std::path::Path| -> Result<Transformer> {
        Checkpoint::open_folder(dir)?.load_model(DType::F32, &Device::Cpu)
    };
    assert_eq!(weights(&load(&child)?), weights(&load(&fresh)?));
    Ok(())
}

#[test]
fn bad_input_is_refused_clearly() -> Result<()> {
    let mut o = options(1, Method::Full);
    o.lr = 0.0;
    assert!(Trainer::new(model(DType::F32), o).is_err());
    let empty = TrainExample::response(Sequence::new(vec![1, 2, 3], 3..3)?);
    let mut t = Trainer::new(model(DType::F32), options(1, Method::Full))?;
    let err = t
        .fit(&[empty], 1, &mut NoProgress, |_, _| Ok(()))
        .unwrap_err();
    assert!(format!("{err:#}").contains("training example 0"), "{err:#}");
    Ok(())
}

/// Sharing a step between workers changes only the order of a sum: the loss and gradients
/// equal one worker's to rounding, and two runs with two workers are identical.
#[test]
fn data_parallel_workers_agree_with_one() -> Result<()> {
    let data = data(12);
    let batch: Vec<&TrainExample> = data.iter().collect();
    let mut two = options(1, Method::Full);
    two.threads = 2;
    let one = Trainer::new(model(DType::F64), options(1, Method::Full))?;
    let par = Trainer::new(model(DType::F64), two.clone())?;
    let (l1, t1, g1) = one.loss_and_grads(&batch)?;
    let (l2, t2, g2) = par.loss_and_grads(&batch)?;
    assert!((l1 - l2).abs() < 1e-12 && t1 == t2);
    for (a, b) in g1.iter().zip(&g2) {
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-12, "gradients differ by {diff}");
    }
    let run = || -> Result<HashMap<String, Vec<f32>>> {
        let mut o = two.clone();
        o.steps = 4;
        let mut t = Trainer::new(model(DType::F32), o)?;
        t.fit(&data, 4, &mut NoProgress, |_, _| Ok(()))?;
        Ok(weights(&t.merged()?))
    };
    assert_eq!(run()?, run()?);
    Ok(())
}

/// The monitor sees the starting model, every K-th step and the last; a resumed run does not
/// see step 0 again; the models it sees are the ones being trained.
#[test]
fn the_monitor_sees_the_start_every_kth_step_and_the_end() -> Result<()> {
    use std::cell::RefCell;
    let tmp = tempfile::tempdir()?;
    let (tok, data, opts) = (tokenizer(), data(20), options(5, Method::Full));
    let seen = RefCell::new(Vec::new());
    let call = |step: usize, m: &Transformer| -> Result<()> {
        seen.borrow_mut().push((step, logits(m)));
        Ok(())
    };
    let watched = |stop_after| RunSpec {
        monitor: Some(erosion_train::run::Monitor {
            every: 2,
            call: &call,
        }),
        ..spec(&tok, stop_after)
    };
    let out = tmp.path().join("m");
    train(&watched(Some(3)), &data, &opts, &out, &mut Silent)?;
    train(&watched(None), &data, &opts, &out, &mut Silent)?;
    let steps: Vec<usize> = seen.borrow().iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, vec![0, 2, 4, 5]);
    let end = Checkpoint::open_folder(&out)?.load_model(DType::F32, &Device::Cpu)?;
    assert_eq!(seen.borrow().last().unwrap().1, logits(&end));
    assert_ne!(seen.borrow()[0].1, logits(&end));
    Ok(())
}

/// The adapter a LoRA run saves loads back through the model spec, alone (on the base its
/// config records, the run's start): merged on load it is bit for bit the merged model the run
/// saved; as a separate path it computes the same logits within 1e-5.
#[test]
fn a_saved_adapter_loads_back_on_its_start() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tokenizer();
    let (parent, child) = (tmp.path().join("parent"), tmp.path().join("child"));
    train(
        &spec(&tok, None),
        &data(10),
        &options(2, Method::Full),
        &parent,
        &mut Silent,
    )?;
    let from_parent = RunSpec {
        start: Start::Checkpoint(parent.to_string_lossy().into_owned()),
        ..spec(&tok, None)
    };
    train(
        &from_parent,
        &data(8),
        &options(2, lora()),
        &child,
        &mut Silent,
    )?;
    let open = |p: &std::path::Path| Checkpoint::open(p.to_str().unwrap());
    let saved = open(&child)?.load_model(DType::F32, &Device::Cpu)?;
    let adapter = open(&child.join("adapter"))?;
    let merged = adapter.load_model_merged(DType::F32, &Device::Cpu)?;
    for name in saved.parameter_names() {
        let diff = (saved.parameter(&name)? - merged.parameter(&name)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert_eq!(diff, 0.0, "{name}");
    }
    let separate = adapter.load_model(DType::F32, &Device::Cpu)?;
    assert!(separate.has_lora());
    let ids = Tensor::new(&[[3u32, 4, 5, 6, 7, 8, 9, 10]], &Device::Cpu)?;
    let logits = |m: &Transformer| m.forward(&ids, None, &mut ForwardOptions::fast());
    let start = open(&parent)?.load_model(DType::F32, &Device::Cpu)?;
    let (a, b) = (logits(&saved)?, logits(&separate)?);
    let err = (&a - &b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(err < 1e-5, "{err}");
    let moved = (&a - logits(&start)?)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    assert!(moved > 1e-3, "the adapter changes nothing: {moved}");
    Ok(())
}
