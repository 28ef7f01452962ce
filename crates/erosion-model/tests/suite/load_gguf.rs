//! GGUF loading on tiny files written here: config from metadata, dequantised tensors under
//! Hugging Face names with llama.cpp's Q/K permutation undone, the tokenizer rebuilt from
//! metadata, and the errors for what is not supported.

use crate::load_util;

use candle_core::quantized::gguf_file::Value;
use candle_core::{DType, Device, Tensor};
use erosion_model::load::gguf::unpermute_rows;
use erosion_model::load::{Checkpoint, Source, WeightFormat};
use load_util::*;

fn tiny(
    spec: &GgufSpec,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::collections::BTreeMap<String, Tensor>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let hf = write_tiny_gguf(&path, spec);
    (dir, path, hf)
}

fn err_of<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn unpermute_inverts_llama_cpp_permute() {
    // q: 9 heads of 64 (SmolLM2's shape); k: 3 kv heads; a bias vector.
    for (rows, cols, heads) in [(576, 8, 9), (192, 5, 3), (64, 1, 4)] {
        let w = randn(&[rows, cols], rows as u64);
        let stored = llama_cpp_permute(&w, heads);
        assert!(
            max_abs_diff(&stored, &w) > 0.0,
            "the permutation must move rows"
        );
        let back = unpermute_rows(&stored, heads).unwrap();
        assert_eq!(max_abs_diff(&back, &w), 0.0);
    }
    let bias = randn(&[64], 7);
    let back = unpermute_rows(&llama_cpp_permute(&bias, 4), 4).unwrap();
    assert_eq!(max_abs_diff(&back, &bias), 0.0);
}

#[test]
fn llama_gguf_gives_hf_config_and_unpermuted_weights() {
    let (_d, path, hf) = tiny(&GgufSpec::default());
    let ckpt = Checkpoint::open(path.to_str().unwrap()).unwrap();
    assert_eq!(ckpt.source, Source::Gguf { path: path.clone() });
    assert_eq!(ckpt.format, WeightFormat::Gguf);
    assert_eq!(ckpt.weight_files, vec![path.clone()]);
    let c = &ckpt.config;
    assert_eq!(c.model_type, "llama");
    assert_eq!(c.architectures, vec!["LlamaForCausalLM".to_string()]);
    assert_eq!(
        (c.hidden_size, c.intermediate_size, c.num_hidden_layers),
        (HIDDEN, FF, LAYERS)
    );
    assert_eq!(
        (c.num_attention_heads, c.num_kv_heads(), c.head_dim()),
        (HEADS, KV_HEADS, HEAD_DIM)
    );
    assert_eq!(c.vocab_size, VOCAB);
    assert_eq!(c.max_position_embeddings, 2048);
    assert_eq!(c.rope_theta, 100000.0);
    assert_eq!(
        c.rms_norm_eps, 1e-5,
        "the f32 in the file is read back as the decimal it came from"
    );
    assert!(
        c.tie_word_embeddings,
        "no output.weight means tied embeddings"
    );
    assert!(!c.attention_bias);
    assert_eq!(c.bos_token_id, Some(IM_START));
    assert_eq!(ckpt.stored_dtypes.get("F32"), Some(&hf.len()));

    let got = ckpt.tensors(DType::F32, &Device::Cpu).unwrap();
    let mut names: Vec<_> = got.keys().cloned().collect();
    names.sort();
    assert_eq!(names, hf.keys().cloned().collect::<Vec<_>>());
    for (name, want) in &hf {
        assert_eq!(max_abs_diff(&got[name], want), 0.0, "{name}");
    }
    // The VarBuilder serves the same tensors, in the dtype asked for.
    let vb = ckpt.var_builder(DType::BF16, &Device::Cpu).unwrap();
    let q = vb
        .get(
            (HEADS * HEAD_DIM, HIDDEN),
            "model.layers.1.self_attn.q_proj.weight",
        )
        .unwrap();
    assert_eq!(q.dtype(), DType::BF16);
    let want = hf["model.layers.1.self_attn.q_proj.weight"]
        .to_dtype(DType::BF16)
        .unwrap();
    assert_eq!(
        max_abs_diff(
            &q.to_dtype(DType::F32).unwrap(),
            &want.to_dtype(DType::F32).unwrap()
        ),
        0.0
    );
}

#[test]
fn qwen2_gguf_is_not_unpermuted_and_keeps_biases() {
    let spec = GgufSpec {
        arch: "qwen2".into(),
        tied: false,
        pre: "qwen2".into(),
        ..Default::default()
    };
    let (_d, path, hf) = tiny(&spec);
    let ckpt = Checkpoint::open(path.to_str().unwrap()).unwrap();
    assert_eq!(ckpt.config.model_type, "qwen2");
    assert!(!ckpt.config.tie_word_embeddings);
    assert!(ckpt.config.qkv_bias());
    let got = ckpt.tensors(DType::F32, &Device::Cpu).unwrap();
    assert_eq!(got.len(), hf.len());
    for (name, want) in &hf {
        assert_eq!(max_abs_diff(&got[name], want), 0.0, "{name}");
    }
}

#[test]
fn quantised_embedding_is_dequantised_within_q8_0_error() {
    let spec = GgufSpec {
        q8_embedding: true,
        ..Default::default()
    };
    let (_d, path, hf) = tiny(&spec);
    let ckpt = Checkpoint::open(path.to_str().unwrap()).unwrap();
    assert_eq!(ckpt.stored_dtypes.get("Q8_0"), Some(&1));
    assert_eq!(
        ckpt.stored_dtype(),
        format!("F32 x{}, Q8_0 x1", hf.len() - 1)
    );
    let got = ckpt.tensors(DType::F32, &Device::Cpu).unwrap();
    let want = &hf["model.embed_tokens.weight"];
    // Q8_0: blocks of 32 values share a scale d = max|x| / 127, stored as f16 (relative
    // error <= 2^-11), and x ~ q d with |q| <= 127. So |x - q d_f16| <= d/2 + 127 d 2^-11
    // = 0.562 d. Our values lie in [-0.1, 0.1]: at most 0.562 * 0.1 / 127 = 4.43e-4.
    let err = max_abs_diff(&got["model.embed_tokens.weight"], want);
    let bound = (0.5 + 127.0 / 2048.0) * 0.1 / 127.0;
    assert!(err > 0.0 && err <= bound, "{err} > {bound}");
}

#[test]
fn tokenizer_is_rebuilt_from_metadata() {
    let (_d, path, _) = tiny(&GgufSpec::default());
    let ckpt = Checkpoint::open(path.to_str().unwrap()).unwrap();
    let tok = &ckpt.tokenizer;
    let ids = |text: &str| tok.tokenizer.encode(text, true).unwrap().get_ids().to_vec();
    // By hand (load_util::tiny_tokens): "hello" merges fully, " world" starts with "Ġw".
    assert_eq!(
        ids("hello world"),
        vec![HELLO, G_W, 'o' as u32, 'r' as u32, 'l' as u32, 'd' as u32]
    );
    // Control tokens stay whole; no BOS is added (add_bos_token = false).
    assert_eq!(
        ids("<|im_start|>hello<|im_end|>"),
        vec![IM_START, HELLO, IM_END]
    );
    // `smollm` splits every digit first, so the merge "1 2" never applies.
    assert_eq!(ids("12"), vec!['1' as u32, '2' as u32]);
    // Bytes outside ASCII go through the byte alphabet: "é" is bytes C3 A9.
    assert_eq!(ids("é"), vec![0xc3, 0xa9]);
    assert_eq!(
        tok.tokenizer
            .decode(&[HELLO, G_W, 'o' as u32], false)
            .unwrap(),
        "hello wo"
    );
    assert_eq!(tok.bos_token.as_deref(), Some("<|im_start|>"));
    assert_eq!(tok.eos_token.as_deref(), Some("<|im_end|>"));
    assert_eq!(tok.pad_token.as_deref(), Some("<|endoftext|>"));
    assert!(tok.chat_template.is_some());
    assert_eq!(ckpt.eos_token_ids(), vec![IM_END]);
    assert_eq!(
        ckpt.generation_config.as_ref().unwrap().pad_token_id,
        Some(ENDOFTEXT)
    );
}

#[test]
fn add_bos_token_prepends_bos_and_survives_saving() {
    let spec = GgufSpec {
        add_bos: true,
        ..Default::default()
    };
    let (d, path, _) = tiny(&spec);
    let ckpt = Checkpoint::open(path.to_str().unwrap()).unwrap();
    let ids = |c: &Checkpoint, text: &str| {
        c.tokenizer
            .tokenizer
            .encode(text, true)
            .unwrap()
            .get_ids()
            .to_vec()
    };
    assert_eq!(ids(&ckpt, "hello"), vec![IM_START, HELLO]);
    // Without special tokens (as for a rendered chat) nothing is added.
    let plain = ckpt
        .tokenizer
        .tokenizer
        .encode("hello", false)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(plain, vec![HELLO]);
    let dir = d.path().join("hf");
    ckpt.save_hf(&dir, DType::F32, &Default::default()).unwrap();
    let back = Checkpoint::open(dir.to_str().unwrap()).unwrap();
    assert_eq!(ids(&back, "hello"), vec![IM_START, HELLO]);
}

#[test]
fn gpt2_pre_tokenizer_keeps_digit_runs() {
    let spec = GgufSpec {
        pre: "gpt-2".into(),
        ..Default::default()
    };
    let (_d, path, _) = tiny(&spec);
    let ckpt = Checkpoint::open(path.to_str().unwrap()).unwrap();
    let ids = ckpt
        .tokenizer
        .tokenizer
        .encode("12", true)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(ids, vec![ONE_TWO]);
}

#[test]
fn unsupported_architecture_is_named() {
    let spec = GgufSpec {
        arch: "phi3".into(),
        ..Default::default()
    };
    let (_d, path, _) = tiny(&spec);
    let msg = err_of(Checkpoint::open(path.to_str().unwrap()));
    assert!(
        msg.contains("phi3") && msg.contains("gemma3, llama, qwen2, qwen3"),
        "{msg}"
    );
}

#[test]
fn unsupported_tensor_type_names_tensor_and_type() {
    let (_d, path, _) = tiny(&GgufSpec::default());
    patch_tensor_type(&path, "blk.1.ffn_up.weight", 20); // IQ4_NL
    let msg = err_of(Checkpoint::open(path.to_str().unwrap()));
    assert!(
        msg.contains("blk.1.ffn_up.weight") && msg.contains("IQ4_NL"),
        "{msg}"
    );
    assert!(
        msg.contains("Q8_0"),
        "the message lists supported types: {msg}"
    );
}

#[test]
fn unknown_tensor_is_named() {
    let spec = GgufSpec {
        extra: vec![("blk.0.ffn_gate_exps.weight".into(), randn(&[4, 8], 3))],
        ..Default::default()
    };
    let (_d, path, _) = tiny(&spec);
    // Refused on open, from the header, not ignored.
    let msg = err_of(Checkpoint::open(path.to_str().unwrap()));
    assert!(
        msg.contains("blk.0.ffn_gate_exps.weight") && msg.contains("does not use"),
        "{msg}"
    );
}

/// llama.cpp's `rope_freqs` for a Llama 3.1 `rope_scaling`, as its converter computes them
/// (in f64, stored as f32): 1 for short wavelengths, `factor` for long ones, and between them
/// the reciprocal of transformers' interpolation weight.
fn llama_cpp_rope_freqs(cfg: &erosion_model::Config) -> Vec<f32> {
    let rs = cfg.rope_scaling.as_ref().unwrap();
    let d = cfg.head_dim() as f64;
    let old = rs.original_max_position_embeddings as f64;
    let (low_wavelen, high_wavelen) = (old / rs.low_freq_factor, old / rs.high_freq_factor);
    (0..cfg.head_dim() / 2)
        .map(|i| {
            let freq = 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / d);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let f = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                rs.factor
            } else {
                let smooth = (old / wavelen - rs.low_freq_factor)
                    / (rs.high_freq_factor - rs.low_freq_factor);
                1.0 / ((1.0 - smooth) / rs.factor + smooth)
            };
            f as f32
        })
        .collect()
}

/// A Llama 3.1-style GGUF stores its rope scaling as the `rope_freqs` tensor. The GGUF twin
/// of the tiny Llama fixture (llama3 rope scaling with a frequency in each branch) gives
/// transformers' logits of the folder; without the tensor it would not.
#[test]
fn llama31_gguf_rope_freqs_match_the_folder_twin_against_transformers() {
    use crate::transformer_util::{fixture_dir, load_reference, masked_max_diff};
    use erosion_model::transformer::ForwardOptions;
    let folder = fixture_dir("llama");
    let cfg = erosion_model::Config::from_file(&folder.join("config.json")).unwrap();
    let factors = llama_cpp_rope_freqs(&cfg);
    assert!(factors.contains(&1.0) && factors.contains(&8.0));
    assert!(factors.iter().any(|&f| f > 1.0 && f < 8.0), "{factors:?}");
    let reference = load_reference("llama").unwrap();
    let ids = reference["input_ids"].to_dtype(DType::U32).unwrap();
    let mask = &reference["attention_mask"];
    let dir = tempfile::tempdir().unwrap();
    let logits_of = |extra: &[(&str, Tensor)]| {
        let path = dir.path().join("twin.gguf");
        write_gguf_twin(&folder, &path, extra);
        let ck = Checkpoint::open(path.to_str().unwrap()).unwrap();
        let model = ck.load_model(DType::F32, &Device::Cpu).unwrap();
        let logits = model.forward(&ids, Some(mask), &mut ForwardOptions::fast());
        (ck, logits.unwrap())
    };
    let n = factors.len();
    let freqs = Tensor::from_vec(factors.clone(), n, &Device::Cpu).unwrap();
    let (ck, logits) = logits_of(&[("rope_freqs.weight", freqs)]);
    assert_eq!(ck.config.rope_freq_factors.as_deref(), Some(&factors[..]));
    let err = masked_max_diff(&logits, &reference["logits"], mask);
    assert!(err < 1e-4, "logits differ from transformers' by {err}");
    let (_, unscaled) = logits_of(&[]);
    let err = masked_max_diff(&unscaled, &reference["logits"], mask);
    assert!(
        err > 1e-3,
        "without rope_freqs the logits should differ, by {err}"
    );
    // A folder cannot state the factors: saving one is refused, not silently wrong.
    let msg = err_of(erosion_model::load::save_hf_folder(
        &dir.path().join("saved"),
        &ck.config,
        &Default::default(),
        &ck.tokenizer,
        None,
        &Default::default(),
    ));
    assert!(msg.contains("rope_freqs"), "{msg}");
}

#[test]
fn malformed_rope_freqs_are_refused() {
    for (len, bad) in [(4, 1.0), (8, -1.0), (8, f32::NAN)] {
        let mut v = vec![1.0f32; len];
        v[len - 1] = bad;
        let spec = GgufSpec {
            extra: vec![(
                "rope_freqs.weight".into(),
                Tensor::from_vec(v, len, &Device::Cpu).unwrap(),
            )],
            ..Default::default()
        };
        let (_d, path, _) = tiny(&spec);
        let msg = err_of(Checkpoint::open(path.to_str().unwrap()));
        assert!(msg.contains("rope_freqs"), "{len} {bad}: {msg}");
    }
}

#[test]
fn other_gguf_rope_scaling_is_refused() {
    let spec = GgufSpec {
        metadata: vec![(
            "llama.rope.scaling.type".into(),
            Value::String("yarn".into()),
        )],
        ..Default::default()
    };
    let (_d, path, _) = tiny(&spec);
    let msg = err_of(Checkpoint::open(path.to_str().unwrap()));
    assert!(
        msg.contains("yarn") && msg.contains("rope.scaling.type"),
        "{msg}"
    );
}

#[test]
fn nan_weight_is_reported_on_load() {
    let spec = GgufSpec {
        poison: Some("model.layers.1.mlp.down_proj.weight".into()),
        ..Default::default()
    };
    let (_d, path, _) = tiny(&spec);
    let ckpt = Checkpoint::open(path.to_str().unwrap()).unwrap();
    let msg = err_of(ckpt.var_builder(DType::F32, &Device::Cpu));
    assert!(
        msg.contains("model.layers.1.mlp.down_proj.weight") && msg.contains("NaN"),
        "{msg}"
    );
    assert!(ckpt.check_finite().is_err());
}

#[test]
fn other_tokenizer_models_are_refused_clearly() {
    let spec = GgufSpec {
        tokenizer_model: "t5".into(),
        ..Default::default()
    };
    let (_d, path, _) = tiny(&spec);
    let msg = err_of(Checkpoint::open(path.to_str().unwrap()));
    assert!(
        msg.contains("tokenizer.ggml.model") && msg.contains("t5") && msg.contains("sentencepiece"),
        "{msg}"
    );
}

/// A Llama-2-style sentencepiece GGUF (made by scripts/reference/make_spm_gguf_fixture.py from a
/// sentencepiece BPE model trained there) gives the ids transformers' GGUF loader gives, and
/// decodes as it does; sentencepiece itself agrees except where transformers is known to differ
/// (a text starting with spaces, named tokens written in the text).
#[test]
fn llama_sentencepiece_gguf_gives_transformers_ids() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spm-llama");
    let ck = Checkpoint::open(dir.join("tiny-spm-llama.gguf").to_str().unwrap()).unwrap();
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokens.json")).unwrap()).unwrap();
    let ids_of = |v: &serde_json::Value| -> Vec<u32> {
        (v.as_array().unwrap().iter())
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let tok = &ck.tokenizer.tokenizer;
    let mut same_as_sentencepiece = 0;
    for case in reference["tokens"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = tok.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(ids, ids_of(&case["ids"]), "{text:?}");
        same_as_sentencepiece += usize::from(ids == ids_of(&case["ids_sentencepiece"]));
        let plain = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(
            tok.decode(&plain, false).unwrap(),
            case["decoded"].as_str().unwrap(),
            "{text:?}"
        );
    }
    assert_eq!(same_as_sentencepiece, 6);
    // The model runs on these ids.
    let model = ck.load_model(DType::F32, &Device::Cpu).unwrap();
    let ids = Tensor::new(&[[1u32, 296, 345]], &Device::Cpu).unwrap();
    let opts = &mut erosion_model::transformer::ForwardOptions::fast();
    assert_eq!(model.forward(&ids, None, opts).unwrap().dims(), [1, 3, 400]);
}

#[test]
fn unknown_pre_tokenizer_is_refused_clearly() {
    let spec = GgufSpec {
        pre: "tekken".into(),
        ..Default::default()
    };
    let (_d, path, _) = tiny(&spec);
    let msg = err_of(Checkpoint::open(path.to_str().unwrap()));
    assert!(msg.contains("tekken") && msg.contains("smollm"), "{msg}");
}

#[test]
fn missing_and_non_gguf_files() {
    let msg = err_of(Checkpoint::open("/nonexistent/model.gguf"));
    assert!(
        msg.contains("/nonexistent/model.gguf") && msg.contains("does not exist"),
        "{msg}"
    );
    let dir = tempfile::tempdir().unwrap();
    let not_gguf = dir.path().join("weights.gguf");
    std::fs::write(&not_gguf, b"not a gguf at all").unwrap();
    let msg = err_of(Checkpoint::open(not_gguf.to_str().unwrap()));
    assert!(msg.contains("not a GGUF"), "{msg}");
    // A truncated GGUF: the header is cut in the middle.
    let (_d, path, _) = tiny(&GgufSpec::default());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..200]).unwrap();
    let msg = err_of(Checkpoint::open(path.to_str().unwrap()));
    assert!(msg.contains("tiny.gguf"), "{msg}");
}

/// A GGUF whose tokenizer names more tokens than `token_embd.weight` has rows would encode
/// text to ids past the embedding: refused on open, naming the tensor.
#[test]
fn a_tokenizer_larger_than_the_embedding_is_refused() {
    let (mut tokens, _, mut types) = tiny_tokens();
    for i in 0..4 {
        tokens.push(format!("<|extra_{i}|>"));
        types.push(3);
    }
    let spec = GgufSpec {
        metadata: vec![
            (
                "tokenizer.ggml.tokens".into(),
                Value::Array(tokens.into_iter().map(Value::String).collect()),
            ),
            (
                "tokenizer.ggml.token_type".into(),
                Value::Array(types.into_iter().map(Value::I32).collect()),
            ),
        ],
        ..Default::default()
    };
    let (_d, path, _) = tiny(&spec);
    let msg = err_of(Checkpoint::open(path.to_str().unwrap()));
    assert!(
        msg.contains("token_embd.weight")
            && msg.contains(&format!("vocab_size is {VOCAB}"))
            && msg.contains("<|extra_3|>"),
        "{msg}"
    );
}

/// A Qwen3 GGUF (llama.cpp's `qwen3`: rows unpermuted, `attn_q_norm` / `attn_k_norm`, the head
/// size in `key_length`) gives the logits transformers gave for its folder twin.
#[test]
fn qwen3_gguf_matches_the_folder_twin_against_transformers() {
    use crate::transformer_util::{fixture_dir, load_reference, masked_max_diff};
    use erosion_model::transformer::ForwardOptions;
    let folder = fixture_dir("qwen3");
    let reference = load_reference("qwen3").unwrap();
    let ids = reference["input_ids"].to_dtype(DType::U32).unwrap();
    let mask = &reference["attention_mask"];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("twin.gguf");
    write_gguf_twin(&folder, &path, &[]);
    let ck = Checkpoint::open(path.to_str().unwrap()).unwrap();
    let folder_cfg = erosion_model::Config::from_file(&folder.join("config.json")).unwrap();
    assert_eq!(
        (
            ck.config.model_type.as_str(),
            ck.config.head_dim(),
            ck.config.tie_word_embeddings
        ),
        ("qwen3", folder_cfg.head_dim(), false)
    );
    let model = ck.load_model(DType::F32, &Device::Cpu).unwrap();
    let logits = model
        .forward(&ids, Some(mask), &mut ForwardOptions::fast())
        .unwrap();
    let err = masked_max_diff(&logits, &reference["logits"], mask);
    assert!(err < 1e-4, "logits differ from transformers' by {err}");
}

/// Linear rope scaling (Gemma 3 4B+, older long-context Llamas) is read into the config with its
/// factor; without the factor the file is refused.
#[test]
fn linear_rope_scaling_is_read_with_its_factor() {
    let scaled = |factor: Option<f32>| {
        let mut metadata = vec![(
            "llama.rope.scaling.type".to_string(),
            Value::String("linear".into()),
        )];
        if let Some(f) = factor {
            metadata.push(("llama.rope.scaling.factor".into(), Value::F32(f)));
        }
        tiny(&GgufSpec {
            metadata,
            ..Default::default()
        })
    };
    let (_d, path, _) = scaled(Some(8.0));
    let ck = Checkpoint::open(path.to_str().unwrap()).unwrap();
    let rs = ck.config.rope_scaling.as_ref().unwrap();
    assert_eq!((rs.rope_type.as_str(), rs.factor), ("linear", 8.0));
    let (_d, path, _) = scaled(None);
    let msg = err_of(Checkpoint::open(path.to_str().unwrap()));
    assert!(msg.contains("rope.scaling.factor"), "{msg}");
}
