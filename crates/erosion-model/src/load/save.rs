//! Writing a Hugging Face model folder that both erosion and transformers load: config.json,
//! model.safetensors (or shards + model.safetensors.index.json), tokenizer.json,
//! tokenizer_config.json, generation_config.json. Every file is written to a temporary name
//! in the same folder and renamed into place, so a crash never leaves a half-written file
//! under a real name.

use super::folder::{INDEX_FILE, SINGLE_FILE};
use super::generation::GenerationConfig;
use crate::atomic::{write_atomic_via_path, write_bytes_atomic};
use crate::config::Config;
use crate::tokenizer::ModelTokenizer;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Options for [`save_hf_folder`].
#[derive(Debug, Clone)]
pub struct SaveOptions {
    /// Split the weights into shards of at most this many bytes (transformers' default is
    /// 5 GB); `None` writes one file whatever the size.
    pub max_shard_bytes: Option<u64>,
}

impl Default for SaveOptions {
    fn default() -> Self {
        Self {
            max_shard_bytes: Some(5_000_000_000),
        }
    }
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_bytes_atomic(path, text.as_bytes())
}

/// transformers' name for a dtype (`torch_dtype` in config.json).
fn torch_dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        DType::F64 => "float64",
        _ => "float32",
    }
}

/// Drops `null` entries: transformers' strict config classes reject `null` for typed fields
/// (e.g. `use_sliding_window`), and absent means "default" to both sides. Top-level `keep`
/// keys stay: for them absent means a default that is not null (Gemma 2's soft-caps).
fn without_nulls(v: serde_json::Value, keep: &[&str]) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.into_iter()
                .filter(|(k, v)| !v.is_null() || keep.contains(&k.as_str()))
                .map(|(k, v)| (k, without_nulls(v, &[])))
                .collect(),
        ),
        other => other,
    }
}

/// The config.json to write: `architectures` from the model type, `torch_dtype` from the
/// weights.
fn config_json(config: &Config, dtype: DType) -> Result<serde_json::Value> {
    let family = config.family()?;
    let mut cfg = config.clone();
    cfg.architectures = vec![family.hf_class.to_string()];
    cfg.torch_dtype = Some(torch_dtype_name(dtype).to_string());
    let defaulted: Vec<&str> = family.config_defaults.iter().map(|(k, _)| *k).collect();
    Ok(without_nulls(serde_json::to_value(&cfg)?, &defaulted))
}

/// Writes the weights, sharded when they exceed `max_shard_bytes`. Stale weight files of the
/// other layout (a single file when writing shards, or an index when writing one file) are
/// removed, since the loader prefers the index.
pub fn save_weights(
    dir: &Path,
    tensors: &HashMap<String, Tensor>,
    opts: &SaveOptions,
) -> Result<Vec<PathBuf>> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let size = |n: &String| (tensors[n].elem_count() * tensors[n].dtype().size_in_bytes()) as u64;
    let total: u64 = names.iter().map(|n| size(n)).sum();
    let mut shards: Vec<Vec<&String>> = vec![vec![]];
    let mut current = 0u64;
    for name in &names {
        let s = size(name);
        if let Some(max) = opts.max_shard_bytes {
            if current > 0 && current + s > max {
                shards.push(vec![]);
                current = 0;
            }
        }
        shards.last_mut().unwrap().push(name);
        current += s;
    }
    let write_file = |path: &Path, names: &[&String]| -> Result<()> {
        let subset: Vec<(&str, &Tensor)> = names
            .iter()
            .map(|n| (n.as_str(), &tensors[n.as_str()]))
            .collect();
        write_safetensors(path, subset)
    };
    if shards.len() == 1 {
        let path = dir.join(SINGLE_FILE);
        write_file(&path, &shards[0])?;
        remove_if_present(&dir.join(INDEX_FILE))?;
        remove_stale_shards(dir, &[])?;
        return Ok(vec![path]);
    }
    let n = shards.len();
    let mut weight_map = BTreeMap::new();
    let mut files = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        write_file(&dir.join(&file), shard)?;
        for name in shard {
            weight_map.insert(name.to_string(), file.clone());
        }
        files.push(dir.join(file));
    }
    let index =
        serde_json::json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
    write_json(&dir.join(INDEX_FILE), &index)?;
    remove_if_present(&dir.join(SINGLE_FILE))?;
    remove_stale_shards(dir, &files)?;
    Ok(files)
}

/// Writes `tensors` to a safetensors file at `path` atomically (see [`crate::atomic`]),
/// streamed tensor by tensor, with transformers' `{"format": "pt"}` metadata.
pub fn write_safetensors<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
) -> Result<()> {
    let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    write_atomic_via_path(path, |tmp| {
        safetensors::serialize_to_file(tensors, Some(metadata), tmp)
            .map_err(|e| anyhow!("cannot write {}: {e}", tmp.display()))
    })
}

/// Removes shards of an earlier save (`model-NNNNN-of-MMMMM.safetensors`) not in `keep`.
fn remove_stale_shards(dir: &Path, keep: &[PathBuf]) -> Result<()> {
    let is_shard = |n: &str| {
        let b = n.as_bytes();
        n.len() == "model-00001-of-00001.safetensors".len()
            && n.starts_with("model-")
            && n.ends_with(".safetensors")
            && &n[11..15] == "-of-"
            && b[6..11].iter().chain(&b[15..20]).all(u8::is_ascii_digit)
    };
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if is_shard(&name) && !keep.contains(&path) {
            remove_if_present(&path)?;
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove stale {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// tokenizer.json and tokenizer_config.json (special tokens and chat template).
pub fn save_tokenizer(
    dir: &Path,
    tokenizer: &ModelTokenizer,
    model_max_length: usize,
) -> Result<()> {
    let json = tokenizer
        .tokenizer
        .to_string(true)
        .map_err(|e| anyhow!("cannot serialise the tokenizer: {e}"))?;
    write_bytes_atomic(&dir.join("tokenizer.json"), json.as_bytes())?;
    let mut cfg = serde_json::Map::new();
    cfg.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
    for (key, value) in [
        ("bos_token", &tokenizer.bos_token),
        ("eos_token", &tokenizer.eos_token),
        ("pad_token", &tokenizer.pad_token),
    ] {
        if let Some(v) = value {
            cfg.insert(key.into(), v.clone().into());
        }
    }
    if let Some(t) = &tokenizer.chat_template {
        cfg.insert("chat_template".into(), t.source().to_string().into());
    }
    cfg.insert("clean_up_tokenization_spaces".into(), false.into());
    cfg.insert("model_max_length".into(), model_max_length.into());
    write_json(
        &dir.join("tokenizer_config.json"),
        &serde_json::Value::Object(cfg),
    )
}

/// Writes a complete Hugging Face folder at `dir` (created if needed). `tensors` use Hugging
/// Face names (`model.layers.0.self_attn.q_proj.weight`); their dtype is stored as is and
/// recorded as `torch_dtype`. Returns the weight files written.
pub fn save_hf_folder(
    dir: &Path,
    config: &Config,
    tensors: &HashMap<String, Tensor>,
    tokenizer: &ModelTokenizer,
    generation_config: Option<&GenerationConfig>,
    opts: &SaveOptions,
) -> Result<Vec<PathBuf>> {
    if config.rope_freq_factors.is_some() {
        bail!(
            "cannot save {} as a Hugging Face folder: its RoPE frequencies come from a GGUF's \
             rope_freqs tensor, which config.json cannot state (start from the model's Hugging \
             Face folder instead, whose rope_scaling it can)",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dtype = tensors
        .get("model.embed_tokens.weight")
        .or_else(|| tensors.values().next())
        .map(|t| t.dtype())
        .context("no tensors to save")?;
    let files = save_weights(dir, tensors, opts)?;
    save_tokenizer(dir, tokenizer, config.max_position_embeddings)?;
    let generation = generation_config
        .cloned()
        .unwrap_or_else(|| GenerationConfig {
            bos_token_id: config.bos_token_id,
            eos_token_id: config.eos_token_id.clone(),
            pad_token_id: config.pad_token_id,
            ..Default::default()
        });
    write_json(
        &dir.join("generation_config.json"),
        &serde_json::to_value(&generation)?,
    )?;
    // config.json last: a folder is only recognised once everything else is in place.
    write_json(&dir.join("config.json"), &config_json(config, dtype)?)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers by value (24 == 24.0), objects on the keys both carry, the rest exactly.
    fn agree(ours: &serde_json::Value, theirs: &serde_json::Value) -> bool {
        use serde_json::Value::{Number, Object};
        match (ours, theirs) {
            (Number(a), Number(b)) => a.as_f64() == b.as_f64(),
            (Object(a), Object(b)) => a.iter().all(|(k, v)| b.get(k).is_none_or(|w| agree(v, w))),
            (a, b) => a == b,
        }
    }

    /// The config erosion saves for each tiny fixture agrees with the config.json transformers
    /// itself wrote (its reference) on every field both carry, and keeps the fields Gemma
    /// needs; an explicit null soft-cap stays null (absent would mean transformers' default).
    #[test]
    fn saved_configs_agree_with_what_transformers_wrote() {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        for arch in ["qwen2", "qwen3", "llama", "mistral", "gemma2", "gemma3"] {
            let path = Path::new(fixtures).join(format!("tiny-{arch}/config.json"));
            let written: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let cfg = Config::from_file(&path).unwrap();
            let saved = config_json(&cfg, DType::F32).unwrap();
            for (key, value) in saved.as_object().unwrap() {
                if let Some(theirs) = written.get(key).filter(|_| key != "torch_dtype") {
                    assert!(agree(value, theirs), "{arch}: `{key}` {value} vs {theirs}");
                }
            }
            assert_eq!(saved["architectures"], written["architectures"], "{arch}");
        }
        let gemma3 = Config::from_file(&Path::new(fixtures).join("tiny-gemma3/config.json"));
        let saved = config_json(&gemma3.unwrap(), DType::BF16).unwrap();
        for key in [
            "layer_types",
            "rope_local_base_freq",
            "rope_scaling",
            "query_pre_attn_scalar",
        ] {
            assert!(saved.get(key).is_some_and(|v| !v.is_null()), "{key}");
        }
        assert!(saved["final_logit_softcapping"].is_null());
        assert!(saved.get("max_window_layers").is_none());
    }
}
