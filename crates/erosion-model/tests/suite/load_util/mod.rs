//! Helpers for the loading tests: tiny GGUF files written with candle's GGUF writer, the
//! llama.cpp Q/K permutation written out index by index, and a tiny byte-level vocabulary
//! whose encodings are worked out by hand.
#![allow(dead_code)]

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

pub const HIDDEN: usize = 64;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const HEAD_DIM: usize = 16;
pub const FF: usize = 96;
pub const LAYERS: usize = 2;

/// GPT-2's byte -> character table, written out independently of the library's: printable
/// Latin-1 keeps its character, the other 68 bytes get U+0100.. in byte order.
pub fn byte_char(b: u8) -> char {
    let printable = |x: u8| (0x21..=0x7e).contains(&x) || (0xa1..=0xac).contains(&x) || x >= 0xae;
    if printable(b) {
        b as char
    } else {
        let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
        char::from_u32(256 + rank).unwrap()
    }
}

/// The tiny vocabulary: ids 0..256 are the bytes (id = byte value), then merges, then control
/// tokens. Encodings worked out by hand:
/// "hello world" -> pieces "hello", "Ġworld" -> [HELLO, G_W, 'o', 'r', 'l', 'd'].
pub const HE: u32 = 256;
pub const LL: u32 = 257;
pub const HELL: u32 = 258;
pub const HELLO: u32 = 259;
pub const G_W: u32 = 260;
pub const ONE_TWO: u32 = 261;
pub const ENDOFTEXT: u32 = 262;
pub const IM_START: u32 = 263;
pub const IM_END: u32 = 264;
pub const VOCAB: usize = 265;

pub fn tiny_tokens() -> (Vec<String>, Vec<String>, Vec<i32>) {
    let mut tokens: Vec<String> = (0u8..=255).map(|b| byte_char(b).to_string()).collect();
    let merges = vec!["h e", "l l", "he ll", "hell o", "Ġ w", "1 2"];
    for m in &merges {
        tokens.push(m.replace(' ', ""));
    }
    let mut types = vec![1i32; tokens.len()];
    for special in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
        tokens.push(special.to_string());
        types.push(3);
    }
    assert_eq!(tokens.len(), VOCAB);
    (
        tokens,
        merges.into_iter().map(String::from).collect(),
        types,
    )
}

pub const CHAT_TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// llama.cpp's `LlamaModel.permute` (convert_hf_to_gguf.py), written index by index:
/// `w.reshape(n, 2, r, ...).swapaxes(1, 2).reshape(w.shape)` sends row `h*2r + p*r + j` to
/// row `h*2r + 2j + p` (r = head_dim / 2).
pub fn llama_cpp_permute(w: &Tensor, n_heads: usize) -> Tensor {
    let dims = w.dims().to_vec();
    let rows = dims[0];
    let cols: usize = dims[1..].iter().product();
    let r = rows / n_heads / 2;
    let src = w.reshape((rows, cols)).unwrap().to_vec2::<f32>().unwrap();
    let mut dst = vec![vec![0f32; cols]; rows];
    for h in 0..n_heads {
        for p in 0..2 {
            for j in 0..r {
                dst[h * 2 * r + 2 * j + p] = src[h * 2 * r + p * r + j].clone();
            }
        }
    }
    Tensor::new(dst, &Device::Cpu)
        .unwrap()
        .reshape(dims)
        .unwrap()
}

pub fn randn(shape: &[usize], seed: u64) -> Tensor {
    // A small deterministic generator: tests must not depend on candle's RNG.
    let n: usize = shape.iter().product();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// A tiny model's weights in Hugging Face layout (names and row order).
pub fn hf_weights(arch: &str, tied: bool) -> BTreeMap<String, Tensor> {
    let mut w = BTreeMap::new();
    let mut seed = 1;
    let mut add = |name: String, shape: &[usize]| {
        seed += 1;
        w.insert(name, randn(shape, seed));
    };
    add("model.embed_tokens.weight".into(), &[VOCAB, HIDDEN]);
    add("model.norm.weight".into(), &[HIDDEN]);
    if !tied {
        add("lm_head.weight".into(), &[VOCAB, HIDDEN]);
    }
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        add(format!("{p}.input_layernorm.weight"), &[HIDDEN]);
        add(format!("{p}.post_attention_layernorm.weight"), &[HIDDEN]);
        add(
            format!("{p}.self_attn.q_proj.weight"),
            &[HEADS * HEAD_DIM, HIDDEN],
        );
        add(
            format!("{p}.self_attn.k_proj.weight"),
            &[KV_HEADS * HEAD_DIM, HIDDEN],
        );
        add(
            format!("{p}.self_attn.v_proj.weight"),
            &[KV_HEADS * HEAD_DIM, HIDDEN],
        );
        add(
            format!("{p}.self_attn.o_proj.weight"),
            &[HIDDEN, HEADS * HEAD_DIM],
        );
        add(format!("{p}.mlp.gate_proj.weight"), &[FF, HIDDEN]);
        add(format!("{p}.mlp.up_proj.weight"), &[FF, HIDDEN]);
        add(format!("{p}.mlp.down_proj.weight"), &[HIDDEN, FF]);
        if arch == "qwen2" {
            add(format!("{p}.self_attn.q_proj.bias"), &[HEADS * HEAD_DIM]);
            add(format!("{p}.self_attn.k_proj.bias"), &[KV_HEADS * HEAD_DIM]);
            add(format!("{p}.self_attn.v_proj.bias"), &[KV_HEADS * HEAD_DIM]);
        }
    }
    w
}

/// Hugging Face name -> llama.cpp name (written independently of the loader's table).
pub fn gguf_name(hf: &str) -> String {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (l, rest) = rest.split_once('.').unwrap();
    let table = [
        ("input_layernorm", "attn_norm"),
        ("post_attention_layernorm", "ffn_norm"),
        ("self_attn.q_norm", "attn_q_norm"),
        ("self_attn.k_norm", "attn_k_norm"),
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
    ];
    let (part, kind) = rest.rsplit_once('.').unwrap();
    let g = table.iter().find(|(h, _)| *h == part).unwrap().1;
    format!("blk.{l}.{g}.{kind}")
}

/// Options for [`write_tiny_gguf`].
pub struct GgufSpec {
    pub arch: String,
    pub tied: bool,
    pub pre: String,
    pub tokenizer_model: String,
    /// Store the embedding as Q8_0 (the rest stays F32).
    pub q8_embedding: bool,
    /// Extra tensors in llama.cpp naming, written as F32.
    pub extra: Vec<(String, Tensor)>,
    /// Replace a tensor's values (HF name) before writing.
    pub poison: Option<String>,
    /// `tokenizer.ggml.add_bos_token` (BOS = <|im_start|> here).
    pub add_bos: bool,
    /// Metadata written over (or after) the defaults, by key.
    pub metadata: Vec<(String, Value)>,
}

impl Default for GgufSpec {
    fn default() -> Self {
        Self {
            arch: "llama".into(),
            tied: true,
            pre: "smollm".into(),
            tokenizer_model: "gpt2".into(),
            q8_embedding: false,
            extra: vec![],
            poison: None,
            add_bos: false,
            metadata: vec![],
        }
    }
}

/// Writes a tiny GGUF the way llama.cpp's converter would (Q/K permuted for llama) and
/// returns the Hugging Face weights it encodes.
pub fn write_tiny_gguf(path: &Path, spec: &GgufSpec) -> BTreeMap<String, Tensor> {
    let arch = spec.arch.as_str();
    let mut hf = hf_weights(arch, spec.tied);
    if let Some(name) = &spec.poison {
        let t = &hf[name];
        let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v[3] = f32::NAN;
        hf.insert(
            name.clone(),
            Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap(),
        );
    }
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, t) in &hf {
        let mut t = t.clone();
        if arch == "llama" && name.contains("q_proj") {
            t = llama_cpp_permute(&t, HEADS);
        } else if arch == "llama" && name.contains("k_proj") {
            t = llama_cpp_permute(&t, KV_HEADS);
        }
        let dtype = if spec.q8_embedding && name == "model.embed_tokens.weight" {
            GgmlDType::Q8_0
        } else {
            GgmlDType::F32
        };
        tensors.push((gguf_name(name), QTensor::quantize(&t, dtype).unwrap()));
    }
    for (name, t) in &spec.extra {
        tensors.push((name.clone(), QTensor::quantize(t, GgmlDType::F32).unwrap()));
    }
    let (tokens, merges, types) = tiny_tokens();
    let k = |s: &str| format!("{arch}.{s}");
    let strings = |v: &[String]| Value::Array(v.iter().map(|s| Value::String(s.clone())).collect());
    let md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.name".into(), Value::String("tiny".into())),
        (k("block_count"), Value::U32(LAYERS as u32)),
        (k("context_length"), Value::U32(2048)),
        (k("embedding_length"), Value::U32(HIDDEN as u32)),
        (k("feed_forward_length"), Value::U32(FF as u32)),
        (k("attention.head_count"), Value::U32(HEADS as u32)),
        (k("attention.head_count_kv"), Value::U32(KV_HEADS as u32)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        (k("rope.freq_base"), Value::F32(100000.0)),
        (
            "tokenizer.ggml.model".into(),
            Value::String(spec.tokenizer_model.clone()),
        ),
        ("tokenizer.ggml.pre".into(), Value::String(spec.pre.clone())),
        ("tokenizer.ggml.tokens".into(), strings(&tokens)),
        ("tokenizer.ggml.merges".into(), strings(&merges)),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.iter().map(|&t| Value::I32(t)).collect()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(IM_START)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(IM_END)),
        (
            "tokenizer.ggml.padding_token_id".into(),
            Value::U32(ENDOFTEXT),
        ),
        (
            "tokenizer.ggml.add_bos_token".into(),
            Value::Bool(spec.add_bos),
        ),
        (
            "tokenizer.chat_template".into(),
            Value::String(CHAT_TEMPLATE.into()),
        ),
    ];
    let mut md = md;
    for (key, value) in &spec.metadata {
        match md.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.clone(),
            None => md.push((key.clone(), value.clone())),
        }
    }
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &md_refs, &t_refs).unwrap();
    hf
}

/// Rewrites the ggml type code of tensor `name` in a GGUF file (to make types candle lacks).
pub fn patch_tensor_type(path: &Path, name: &str, code: u32) {
    let mut bytes = std::fs::read(path).unwrap();
    // Tensor info: u64 name length, name, u32 n_dims, n_dims x u64, u32 type, u64 offset.
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("tensor info")
        + needle.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let ty = at + 4 + 8 * n_dims;
    bytes[ty..ty + 4].copy_from_slice(&code.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

/// A GGUF v3 file written byte by byte (candle's writer cannot write malformed files): the
/// given metadata entries, already encoded as `(key, value type, value bytes)`, and no tensors.
pub fn raw_gguf(n_tensors: u64, kvs: &[(&str, u32, Vec<u8>)]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(n_tensors.to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    for (key, ty, value) in kvs {
        b.extend((key.len() as u64).to_le_bytes());
        b.extend(key.as_bytes());
        b.extend(ty.to_le_bytes());
        b.extend(value);
    }
    b
}

/// The value bytes of a GGUF array: element type, count, then `payload`.
pub fn raw_array(elem_type: u32, count: u64, payload: &[u8]) -> Vec<u8> {
    let mut b = elem_type.to_le_bytes().to_vec();
    b.extend(count.to_le_bytes());
    b.extend(payload);
    b
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Writes the Llama or Qwen3 Hugging Face folder `dir` (config.json + model.safetensors) as
/// llama.cpp's converter would: Q/K rows permuted for llama, hyper-parameters as metadata
/// under the architecture's name, `extra` tensors (llama.cpp names) beside the weights, and a
/// vocabulary of the first `vocab_size` byte tokens (the folder has no tokenizer; the twin
/// needs one).
pub fn write_gguf_twin(dir: &Path, path: &Path, extra: &[(&str, Tensor)]) {
    let cfg = erosion_model::Config::from_file(&dir.join("config.json")).unwrap();
    let arch = cfg.model_type.as_str();
    assert!(
        ["llama", "qwen3"].contains(&arch),
        "no GGUF twin for {arch}"
    );
    let weights =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, t) in &weights {
        let t = if arch == "llama" && name.contains("q_proj") {
            llama_cpp_permute(t, cfg.num_attention_heads)
        } else if arch == "llama" && name.contains("k_proj") {
            llama_cpp_permute(t, cfg.num_kv_heads())
        } else {
            t.clone()
        };
        tensors.push((
            gguf_name(name),
            QTensor::quantize(&t, GgmlDType::F32).unwrap(),
        ));
    }
    for (name, t) in extra {
        tensors.push((
            name.to_string(),
            QTensor::quantize(t, GgmlDType::F32).unwrap(),
        ));
    }
    let tokens: Vec<Value> = (0..cfg.vocab_size as u8)
        .map(|b| Value::String(byte_char(b).to_string()))
        .collect();
    let u = |n: usize| Value::U32(n as u32);
    let key = |k: &str| format!("{arch}.{k}");
    let md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (key("block_count"), u(cfg.num_hidden_layers)),
        (key("context_length"), u(cfg.max_position_embeddings)),
        (key("embedding_length"), u(cfg.hidden_size)),
        (key("feed_forward_length"), u(cfg.intermediate_size)),
        (key("attention.head_count"), u(cfg.num_attention_heads)),
        (key("attention.head_count_kv"), u(cfg.num_kv_heads())),
        (key("attention.key_length"), u(cfg.head_dim())),
        (key("rope.dimension_count"), u(cfg.head_dim())),
        (key("rope.freq_base"), Value::F32(cfg.rope_theta as f32)),
        (
            key("attention.layer_norm_rms_epsilon"),
            Value::F32(cfg.rms_norm_eps as f32),
        ),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens)),
        ("tokenizer.ggml.merges".into(), Value::Array(vec![])),
    ];
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &md_refs, &t_refs).unwrap();
}
