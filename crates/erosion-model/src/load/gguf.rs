//! GGUF files (llama.cpp): the model config from metadata, the tensors dequantised to f32 and
//! renamed to Hugging Face names, and llama.cpp's Q/K row permutation undone, so a GGUF runs
//! through the same `Transformer` as a safetensors folder.
//!
//! The permutation. For `llama`-arch models llama.cpp's converter (`LlamaModel.permute` in
//! convert_hf_to_gguf.py) rewrites the rows of q_proj (with n_head) and k_proj (with n_head_kv):
//! `w.reshape(n, 2, rows/n/2, ...).swapaxes(1, 2).reshape(w.shape)`, i.e. within each head the
//! HF row `p * (d/2) + j` (p in {0, 1}: the two rotate-half halves) moves to row `2j + p`
//! (interleaved pairs, the layout of llama.cpp's "normal" RoPE). [`unpermute_rows`] applies the
//! inverse: view the rows as `[n, d/2, 2]`, swap the last two axes back. `qwen2` files are
//! written unpermuted (llama.cpp runs them with NeoX RoPE, which is HF's rotate-half).

use super::expect::StoredTensor;
use super::finite::check_finite;
use super::generation::GenerationConfig;
use super::ggml_types::ggml_dtype_name;
use super::gguf_header::check_header;
use crate::config::{Config, TokenIds};
use crate::family::{AttentionBias, Family, Norms};
use crate::text::shown;
use crate::transformer::matrix::check_rows;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};

use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::ops::Range;
use std::path::Path;

pub(crate) type Metadata = HashMap<String, Value>;

/// Reads the header (metadata and tensor infos, not the data), after [`check_header`] has
/// bounded every count and length in it by the file's size, checked `general.alignment` and
/// named any tensor whose type candle cannot dequantise. (candle 0.11's reader panics on an
/// alignment of 0 and lets a small file claim millions of metadata elements; worth reporting
/// upstream.)
pub(crate) fn read_content(path: &Path) -> Result<(Content, BufReader<File>)> {
    check_header(path)?;
    let file =
        File::open(path).with_context(|| format!("cannot open GGUF file {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader)
        .map_err(|e| anyhow!(e))
        .with_context(|| format!("cannot read GGUF file {}", path.display()))?;
    Ok((content, reader))
}

pub(crate) fn meta_str<'a>(md: &'a Metadata, key: &str) -> Option<&'a str> {
    match md.get(key) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// An integer metadata value of any width; `Ok(None)` when absent.
pub(crate) fn meta_usize(md: &Metadata, key: &str) -> Result<Option<usize>> {
    let v = match md.get(key) {
        None => return Ok(None),
        Some(v) => v,
    };
    let n: i128 = match v {
        Value::U8(x) => *x as i128,
        Value::I8(x) => *x as i128,
        Value::U16(x) => *x as i128,
        Value::I16(x) => *x as i128,
        Value::U32(x) => *x as i128,
        Value::I32(x) => *x as i128,
        Value::U64(x) => *x as i128,
        Value::I64(x) => *x as i128,
        other => bail!("GGUF metadata {key} should be an integer, found {other:?}"),
    };
    usize::try_from(n)
        .map(Some)
        .map_err(|_| anyhow!("GGUF metadata {key} = {n} is out of range"))
}

fn meta_f64(md: &Metadata, key: &str) -> Result<Option<f64>> {
    let x = match md.get(key) {
        None => return Ok(None),
        // The shortest decimal that round-trips the f32 (1e-5, not 9.999999747378752e-6):
        // the value the original config.json held before llama.cpp stored it as f32.
        Some(Value::F32(x)) => x.to_string().parse::<f64>()?,
        Some(Value::F64(x)) => *x,
        Some(_) => return Ok(meta_usize(md, key)?.map(|n| n as f64)),
    };
    // A NaN would become null in the config built from the metadata, and its error would
    // not say which key held it.
    if !x.is_finite() {
        bail!("GGUF metadata {key} is {x}; it must be a finite number");
    }
    Ok(Some(x))
}

/// The family of `general.architecture`, checked against what erosion runs.
pub(crate) fn architecture(md: &Metadata, path: &Path) -> Result<&'static Family> {
    let arch = meta_str(md, "general.architecture")
        .with_context(|| format!("GGUF {} has no general.architecture", path.display()))?;
    Family::of_gguf_arch(arch).with_context(|| {
        format!(
            "GGUF {}: architecture `{}` is not supported: erosion reads GGUF architectures {} \
             (Mistral files use llama)",
            path.display(),
            shown(arch),
            Family::gguf_archs().join(", ")
        )
    })
}

/// The Hugging Face `config.json` a GGUF's metadata describes.
pub(crate) fn config_from_content(content: &Content, path: &Path) -> Result<Config> {
    let md = &content.metadata;
    let family = architecture(md, path)?;
    let arch = family.gguf.map_or(family.model_type, |g| g.arch);
    let key = |k: &str| format!("{arch}.{k}");
    let need = |k: &str| -> Result<usize> {
        meta_usize(md, &key(k))?
            .with_context(|| format!("GGUF {} lacks metadata {}", path.display(), key(k)))
    };
    let hidden = need("embedding_length")?;
    let heads = need("attention.head_count")?;
    let layers = need("block_count")?;
    let kv_heads = meta_usize(md, &key("attention.head_count_kv"))?.unwrap_or(heads);
    // key_length is the head size. It is left out where it is hidden / heads, unless the
    // family's config would otherwise assume another (Gemma's 256, Qwen3's 128).
    let has_default = |k: &str| family.config_defaults.iter().any(|(d, _)| *d == k);
    let head_dim = meta_usize(md, &key("attention.key_length"))?
        .filter(|&d| d * heads != hidden || has_default("head_dim"));
    let infos = &content.tensor_infos;
    let rope_scaling = match meta_str(md, &key("rope.scaling.type")) {
        None | Some("none") => None,
        // Gemma 3 4B+ divides the global layers' frequencies by the factor.
        Some("linear") => {
            let factor = meta_f64(md, &key("rope.scaling.factor"))?.with_context(|| {
                format!(
                    "GGUF {}: linear rope scaling without {}",
                    path.display(),
                    key("rope.scaling.factor")
                )
            })?;
            Some(serde_json::json!({"rope_type": "linear", "factor": factor}))
        }
        Some(kind) => bail!(
            "GGUF {}: rope scaling `{}` ({}) is not supported for GGUF; load the Hugging Face \
             folder of this model instead",
            path.display(),
            shown(kind),
            key("rope.scaling.type")
        ),
    };
    let vocab = match infos.get("token_embd.weight") {
        Some(info) => info.shape.dims()[0],
        None => bail!("GGUF {} has no token_embd.weight tensor", path.display()),
    };
    let eps = meta_f64(md, &key("attention.layer_norm_rms_epsilon"))?.with_context(|| {
        format!(
            "GGUF {} lacks {}",
            path.display(),
            key("attention.layer_norm_rms_epsilon")
        )
    })?;
    // A family whose config switches its attention biases gets the switch from the file.
    let attention_bias = family.attention_bias == AttentionBias::FromConfig
        && infos.contains_key("blk.0.attn_q.bias");
    let mut json = serde_json::json!({
        "architectures": [family.hf_class],
        "model_type": family.model_type,
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": need("feed_forward_length")?,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "max_position_embeddings": meta_usize(md, &key("context_length"))?.unwrap_or(4096),
        "rms_norm_eps": eps,
        "rope_theta": meta_f64(md, &key("rope.freq_base"))?.unwrap_or(10_000.0),
        "rope_scaling": rope_scaling,
        "tie_word_embeddings": !infos.contains_key("output.weight"),
        "attention_bias": attention_bias,
        "bos_token_id": meta_usize(md, "tokenizer.ggml.bos_token_id")?,
        "eos_token_id": meta_usize(md, "tokenizer.ggml.eos_token_id")?,
        "pad_token_id": meta_usize(md, "tokenizer.ggml.padding_token_id")?,
        "torch_dtype": "float32",
    });
    let obj = json.as_object_mut().expect("an object");
    if let Some(g) = family.gguf {
        for (k, field) in g.config_keys {
            let value = match md.get(&key(k)) {
                Some(Value::F32(_) | Value::F64(_)) => meta_f64(md, &key(k))?.map(|x| x.into()),
                _ => meta_usize(md, &key(k))?.map(|n| n.into()),
            };
            if let Some(v) = value {
                obj.insert(field.to_string(), v);
            }
        }
        if let Some(n) = g.query_scalar_27b_layers {
            let d = head_dim.unwrap_or(hidden / heads);
            let scalar = if layers == n { hidden / heads } else { d };
            obj.insert("query_pre_attn_scalar".into(), serde_json::json!(scalar));
        }
    }
    // Absent values are left to the family's defaults, as for a config.json.
    obj.retain(|_, v| !v.is_null());
    let cfg = Config::from_json(&json.to_string()).with_context(|| {
        format!(
            "GGUF {}: metadata does not form a model config",
            path.display()
        )
    })?;
    cfg.validate()
        .with_context(|| format!("in the config of GGUF {}", path.display()))?;
    Ok(cfg)
}

/// The tensor in which llama.cpp stores Llama 3.1's rope scaling: one divisor per RoPE
/// frequency. It is read into the config ([`Config::rope_freq_factors`]), not the weights.
pub(crate) const ROPE_FREQS: &str = "rope_freqs.weight";

/// `rope_freqs.weight` `[head_dim / 2]`, if the file has it: finite, positive, one per
/// frequency.
pub(crate) fn rope_freq_factors(
    content: &Content,
    reader: &mut BufReader<File>,
    cfg: &Config,
    path: &Path,
) -> Result<Option<Vec<f32>>> {
    let Some(info) = content.tensor_infos.get(ROPE_FREQS) else {
        return Ok(None);
    };
    let half = cfg.head_dim() / 2;
    if info.shape.dims() != [half] {
        bail!(
            "GGUF {}: {ROPE_FREQS} has shape {:?}; a head of {} dimensions has {half} frequencies",
            path.display(),
            info.shape.dims(),
            cfg.head_dim()
        );
    }
    let factors: Vec<f32> = info
        .read(reader, content.tensor_data_offset, &Device::Cpu)
        .and_then(|q| q.dequantize(&Device::Cpu))
        .and_then(|t| t.to_dtype(DType::F32)?.to_vec1())
        .with_context(|| format!("GGUF {}: cannot read {ROPE_FREQS}", path.display()))?;
    if let Some((i, f)) = factors
        .iter()
        .enumerate()
        .find(|(_, f)| !(f.is_finite() && **f > 0.0))
    {
        bail!(
            "GGUF {}: {ROPE_FREQS}[{i}] = {f}; rope frequency factors must be positive",
            path.display()
        );
    }
    Ok(Some(factors))
}

/// The generation config a GGUF implies: its bos / pad ids, and as end-of-generation ids its
/// eos and (where different) end-of-turn tokens.
pub(crate) fn generation_config(md: &Metadata, cfg: &Config) -> Result<GenerationConfig> {
    let mut eos = Vec::new();
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
        if let Some(id) = meta_usize(md, key)? {
            if !eos.contains(&(id as u32)) {
                eos.push(id as u32);
            }
        }
    }
    Ok(GenerationConfig {
        bos_token_id: cfg.bos_token_id,
        eos_token_id: match eos.len() {
            0 => None,
            1 => Some(TokenIds::One(eos[0])),
            _ => Some(TokenIds::Many(eos)),
        },
        pad_token_id: cfg.pad_token_id,
        ..Default::default()
    })
}

/// How many tensors are stored in each ggml type.
pub(crate) fn stored_types(content: &Content) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for info in content.tensor_infos.values() {
        *counts
            .entry(ggml_dtype_name(info.ggml_dtype).to_string())
            .or_insert(0) += 1;
    }
    counts
}

/// Every tensor of the file as [`check_weights`](super::expect::check_weights) reads them:
/// under its Hugging Face name where it has one, else under its own.
pub(crate) fn stored_tensors(content: &Content) -> BTreeMap<String, StoredTensor> {
    let norms = meta_str(&content.metadata, "general.architecture")
        .and_then(Family::of_gguf_arch)
        .map_or(Norms::PreOnly, |f| f.norms);
    content
        .tensor_infos
        .iter()
        .filter(|(name, _)| *name != ROPE_FREQS)
        .map(|(name, info)| {
            let t = StoredTensor {
                stored_name: name.clone(),
                dtype: ggml_dtype_name(info.ggml_dtype).to_string(),
                float: true, // every type candle reads is a float or a quantised float
                shape: info.shape.dims().to_vec(),
            };
            (
                hf_tensor_name(name, norms).unwrap_or_else(|| name.clone()),
                t,
            )
        })
        .collect()
}

/// llama.cpp tensor name -> Hugging Face name. `ffn_norm` is the norm before the MLP:
/// `post_attention_layernorm` in a pre-norm block, `pre_feedforward_layernorm` in Gemma's.
pub fn hf_tensor_name(gguf: &str, norms: Norms) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer_text, rest) = rest.split_once('.')?;
    let layer: usize = layer_text.parse().ok()?;
    // `blk.01` would land on the same name as `blk.1`; only canonical numbers map.
    if layer.to_string() != layer_text {
        return None;
    }
    let (part, kind) = rest.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" if norms == Norms::PreOnly => "post_attention_layernorm",
        "ffn_norm" => "pre_feedforward_layernorm",
        "post_attention_norm" if norms == Norms::Sandwich => "post_attention_layernorm",
        "post_ffw_norm" if norms == Norms::Sandwich => "post_feedforward_layernorm",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Undoes llama.cpp's Q/K row permutation (module docs). `t`: `[rows, ...]` with
/// `rows = n_heads * head_dim`; returns the same shape in Hugging Face row order.
pub fn unpermute_rows(t: &Tensor, n_heads: usize) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    if n_heads == 0 || !rows.is_multiple_of(2 * n_heads) {
        bail!("cannot unpermute {rows} rows over {n_heads} heads (rows must be a multiple of 2 * heads)");
    }
    let rest: usize = dims[1..].iter().product();
    // [n, d/2, 2, rest] -> [n, 2, d/2, rest]
    Ok(t.reshape((n_heads, rows / n_heads / 2, 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?)
}

/// Every tensor of the file, dequantised, renamed, unpermuted, checked finite, then cast to
/// `dtype` on `device`.
pub(crate) fn load_tensors(
    path: &Path,
    cfg: &Config,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let file = GgufTensors::open(path, cfg)?;
    (file.by_hf.keys())
        .map(|hf| Ok((hf.clone(), file.load(hf, dtype, device)?)))
        .collect()
}

/// The tensors of a GGUF file under their Hugging Face names, each read when asked for: what a
/// streamed model ([`super::Checkpoint::load_streamed`]) reads one layer at a time.
pub(crate) struct GgufTensors {
    path: std::path::PathBuf,
    content: Content,
    reader: std::sync::Mutex<BufReader<File>>,
    /// Hugging Face name -> GGUF name.
    by_hf: BTreeMap<String, String>,
    /// Heads of q_proj and k_proj rows, when llama.cpp permuted them (module docs).
    permuted_heads: Option<(usize, usize)>,
    /// Norm weights are stored as the gain `1 + w` ([`crate::family::Gguf::norms_hold_gain`]).
    norms_hold_gain: bool,
}

impl GgufTensors {
    /// Reads the header; every tensor must have a Hugging Face counterpart.
    pub fn open(path: &Path, cfg: &Config) -> Result<Self> {
        let (content, reader) = read_content(path)?;
        let family = architecture(&content.metadata, path)?;
        let permuted = family.gguf.is_some_and(|g| g.qk_rows_permuted);
        let norms_hold_gain = family.gguf.is_some_and(|g| g.norms_hold_gain);
        let mut by_hf = BTreeMap::new();
        let mut names: Vec<&String> = (content.tensor_infos.keys())
            .filter(|n| *n != ROPE_FREQS)
            .collect();
        names.sort(); // the first unknown name reported is stable
        for name in names {
            let hf = hf_tensor_name(name, family.norms).with_context(|| {
                format!(
                    "GGUF {}: tensor {} has no counterpart in a {family} model (erosion maps \
                     token_embd, blk.N.attn_norm/attn_q/attn_k/attn_v/attn_output/attn_q_norm/\
                     attn_k_norm/ffn_norm/ffn_gate/ffn_up/ffn_down (and post_attention_norm/\
                     post_ffw_norm for Gemma), output_norm, output)",
                    path.display(),
                    shown(name)
                )
            })?;
            by_hf.insert(hf, name.clone());
        }
        Ok(GgufTensors {
            path: path.to_path_buf(),
            content,
            reader: std::sync::Mutex::new(reader),
            by_hf,
            permuted_heads: permuted.then(|| (cfg.num_attention_heads, cfg.num_kv_heads())),
            norms_hold_gain,
        })
    }

    pub fn contains(&self, hf: &str) -> bool {
        self.by_hf.contains_key(hf)
    }

    /// The GGUF name and entry of tensor `hf`.
    fn info(&self, hf: &str) -> Result<(&str, &candle_core::quantized::gguf_file::TensorInfo)> {
        let name = self.by_hf.get(hf).with_context(|| {
            format!(
                "GGUF {} has no tensor for {}",
                self.path.display(),
                shown(hf)
            )
        })?;
        Ok((name, &self.content.tensor_infos[name]))
    }

    /// The shape of tensor `hf` (rows first, as Hugging Face's).
    pub fn shape(&self, hf: &str) -> Result<Vec<usize>> {
        Ok(self.info(hf)?.1.shape.dims().to_vec())
    }

    /// Rows `rows` of the matrix `hf`, dequantised (a row is whole quantisation blocks, so
    /// they are the rows of [`GgufTensors::load`]), checked finite, cast to `dtype` on `device`.
    /// Only for matrices stored as Hugging Face's: not the permuted q/k rows, not norms.
    pub fn rows(
        &self,
        hf: &str,
        rows: Range<usize>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let path = self.path.display();
        let (name, info) = self.info(hf)?;
        let &[total, cols] = info.shape.dims() else {
            bail!("GGUF {path}: tensor {} is not a matrix", shown(name));
        };
        if hf.contains(".q_proj.") || hf.contains(".k_proj.") || hf.ends_with("norm.weight") {
            bail!(
                "GGUF {path}: rows of {} are not read on their own",
                shown(hf)
            );
        }
        check_rows(hf, &rows, total)?;
        let (block, size) = (info.ggml_dtype.block_size(), info.ggml_dtype.type_size());
        if cols % block != 0 {
            bail!(
                "GGUF {path}: rows of {} are not whole blocks of {block}",
                shown(name)
            );
        }
        let row_bytes = cols / block * size;
        let start = self.content.tensor_data_offset + info.offset + (rows.start * row_bytes) as u64;
        let mut bytes = vec![0u8; rows.len() * row_bytes];
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
            reader.seek(SeekFrom::Start(start))?;
            reader.read_exact(&mut bytes).with_context(|| {
                format!("GGUF {path}: cannot read rows {rows:?} of {}", shown(name))
            })?;
        }
        let q = candle_core::quantized::ggml_file::qtensor_from_ggml(
            info.ggml_dtype,
            &bytes,
            vec![rows.len(), cols],
            &Device::Cpu,
        )?;
        let t = q.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?;
        check_finite(hf, &t).with_context(|| format!("in GGUF {path}"))?;
        Ok(t.to_dtype(dtype)?.to_device(device)?)
    }

    /// Tensor `hf`, dequantised, unpermuted, checked finite, then cast to `dtype` on `device`.
    pub fn load(&self, hf: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let path = self.path.display();
        let (name, info) = self.info(hf)?;
        let q = {
            let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
            info.read(&mut *reader, self.content.tensor_data_offset, &Device::Cpu)
                .with_context(|| format!("GGUF {path}: cannot read tensor {}", shown(name)))?
        };
        let mut t = q
            .dequantize(&Device::Cpu)
            .with_context(|| format!("GGUF {path}: cannot dequantise tensor {}", shown(name)))?
            .to_dtype(DType::F32)?;
        if let Some((q_heads, k_heads)) = self.permuted_heads {
            if hf.contains(".q_proj.") {
                t = unpermute_rows(&t, q_heads).with_context(|| format!("tensor {name}"))?;
            } else if hf.contains(".k_proj.") {
                t = unpermute_rows(&t, k_heads).with_context(|| format!("tensor {name}"))?;
            }
        }
        if self.norms_hold_gain && hf.ends_with("norm.weight") {
            t = (t - 1.0)?;
        }
        check_finite(hf, &t).with_context(|| format!("in GGUF {path}"))?;
        Ok(t.to_dtype(dtype)?.to_device(device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_hugging_face() {
        assert_eq!(
            hf_tensor_name("blk.12.attn_q.weight", Norms::PreOnly).unwrap(),
            "model.layers.12.self_attn.q_proj.weight"
        );
        assert_eq!(
            hf_tensor_name("blk.0.attn_k.bias", Norms::PreOnly).unwrap(),
            "model.layers.0.self_attn.k_proj.bias"
        );
        assert_eq!(
            hf_tensor_name("blk.3.ffn_down.weight", Norms::PreOnly).unwrap(),
            "model.layers.3.mlp.down_proj.weight"
        );
        assert_eq!(
            hf_tensor_name("blk.3.ffn_norm.weight", Norms::PreOnly).unwrap(),
            "model.layers.3.post_attention_layernorm.weight"
        );
        assert_eq!(
            hf_tensor_name("output.weight", Norms::PreOnly).unwrap(),
            "lm_head.weight"
        );
        assert_eq!(hf_tensor_name("rope_freqs.weight", Norms::PreOnly), None);
        assert_eq!(hf_tensor_name("blk.01.attn_q.weight", Norms::PreOnly), None);
        assert_eq!(hf_tensor_name("blk.+1.attn_q.weight", Norms::PreOnly), None);
        assert_eq!(
            hf_tensor_name("blk.0.ffn_gate_exps.weight", Norms::PreOnly),
            None
        );
        // Gemma's four norms, and the q/k norms of Gemma 3 and Qwen3.
        let gemma = |n: &str| hf_tensor_name(n, Norms::Sandwich).unwrap();
        assert_eq!(
            gemma("blk.2.ffn_norm.weight"),
            "model.layers.2.pre_feedforward_layernorm.weight"
        );
        assert_eq!(
            gemma("blk.2.post_attention_norm.weight"),
            "model.layers.2.post_attention_layernorm.weight"
        );
        assert_eq!(
            gemma("blk.2.post_ffw_norm.weight"),
            "model.layers.2.post_feedforward_layernorm.weight"
        );
        assert_eq!(
            gemma("blk.2.attn_k_norm.weight"),
            "model.layers.2.self_attn.k_norm.weight"
        );
        assert_eq!(
            hf_tensor_name("blk.2.post_ffw_norm.weight", Norms::PreOnly),
            None
        );
    }

    #[test]
    fn unpermute_moves_interleaved_pairs_back_to_halves() {
        // One head of dim 4, one column: llama.cpp stores HF rows [a0, a1, b0, b1] (halves
        // a, b) as [a0, b0, a1, b1]. Unpermuting must give the halves back.
        let stored = Tensor::new(&[[10f32], [20.], [11.], [21.]], &Device::Cpu).unwrap();
        let hf = unpermute_rows(&stored, 1).unwrap();
        assert_eq!(
            hf.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![10., 11., 20., 21.]
        );
        assert!(unpermute_rows(&stored, 3).is_err());
    }
}
