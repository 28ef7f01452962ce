//! Weights and config must agree, checked from the file headers before any weight is read:
//! every tensor the config implies is present, floating point, and of the shape the config
//! implies; every other tensor is either one the family lists as harmless
//! ([`Family::harmless_extras`](crate::family::Family::harmless_extras)) or refused by name. Without this a config with fewer layers
//! than the weights runs the first few and prints garbage, an integer tensor is converted to
//! floats as if it were weights, and a stray tensor is silently ignored.

use crate::config::Config;
use crate::text::shown;
use anyhow::{bail, Result};
use std::collections::{BTreeMap, BTreeSet};

/// Names listed in one message before "and N more".
const LISTED: usize = 8;

/// One stored tensor as its file's header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTensor {
    /// The name in the file (a GGUF name for GGUF files), for messages.
    pub stored_name: String,
    /// The stored dtype as the file names it (`bf16`, `u32`, `Q4_1`).
    pub dtype: String,
    /// Whether the dtype holds real numbers the model can use as weights.
    pub float: bool,
    /// Shape in Hugging Face order (`[out, in]` for linear maps).
    pub shape: Vec<usize>,
}

/// Whether a safetensors dtype (as [`super::folder::read_header`] lowercases it) holds
/// weights candle converts by value: the IEEE float types. Integer and boolean tensors would
/// be converted number by number into meaningless weights; 8-bit floats are not supported.
pub fn is_float_dtype(dtype: &str) -> bool {
    matches!(dtype, "f16" | "bf16" | "f32" | "f64")
}

/// The tokenizer's ids must index rows of the embedding: its largest id (added tokens
/// included) must be below `vocab_size` (the embedding's rows), else encoding some text gives
/// an id past the embedding. A tokenizer with fewer tokens than rows is normal (Qwen2.5 pads
/// its embedding to a multiple of 128). `origin` names the checkpoint in the error.
pub fn check_tokenizer_fits(
    tokenizer: &tokenizers::Tokenizer,
    vocab_size: usize,
    origin: &str,
) -> Result<()> {
    let largest = tokenizer
        .get_vocab(true)
        .into_iter()
        .max_by_key(|&(_, id)| id);
    if let Some((token, id)) = largest.filter(|&(_, id)| id as usize >= vocab_size) {
        bail!(
            "the tokenizer of {origin} has {} tokens with ids up to {id} (`{}`), but the model's vocab_size is {vocab_size}: ids from {vocab_size} on would index past the embedding; the tokenizer belongs to another model",
            tokenizer.get_vocab_size(true),
            shown(&token)
        );
    }
    Ok(())
}

/// Every weight `cfg` calls for, by Hugging Face name, with its shape.
pub fn expected_weights(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let (d, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let (q, kv) = (
        cfg.num_attention_heads * cfg.head_dim(),
        cfg.num_kv_heads() * cfg.head_dim(),
    );
    let norms = cfg.family().map(|f| f.layer_norms(cfg)).unwrap_or_default();
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, d])];
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let mut linear = |name: &str, rows: usize, cols: usize, bias: bool| {
            out.push((format!("{p}.{name}.weight"), vec![rows, cols]));
            if bias {
                out.push((format!("{p}.{name}.bias"), vec![rows]));
            }
        };
        linear("self_attn.q_proj", q, d, cfg.qkv_bias());
        linear("self_attn.k_proj", kv, d, cfg.qkv_bias());
        linear("self_attn.v_proj", kv, d, cfg.qkv_bias());
        linear("self_attn.o_proj", d, q, cfg.o_bias());
        linear("mlp.gate_proj", f, d, cfg.mlp_bias);
        linear("mlp.up_proj", f, d, cfg.mlp_bias);
        linear("mlp.down_proj", d, f, cfg.mlp_bias);
        for (name, size) in &norms {
            out.push((format!("{p}.{name}.weight"), vec![*size]));
        }
    }
    out.push(("model.norm.weight".to_string(), vec![d]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, d]));
    }
    out
}

/// Checks `stored` (Hugging Face name -> tensor; names with no Hugging Face counterpart under
/// their own names) against `cfg` and its family (module docs). The error lists every problem
/// found, each kind in one sentence.
pub fn check_weights(cfg: &Config, stored: &BTreeMap<String, StoredTensor>) -> Result<()> {
    let family = cfg.family()?;
    // Every layer has several tensors: a layer count beyond the file's tensors would only
    // list (and allocate) names that cannot be there.
    if cfg.num_hidden_layers > stored.len() {
        bail!(
            "num_hidden_layers is {}, but the weights hold {} tensors in all",
            cfg.num_hidden_layers,
            stored.len()
        );
    }
    let expected = expected_weights(cfg);
    let mut problems = Vec::new();
    let mut missing = Vec::new();
    for (name, shape) in &expected {
        let Some(t) = stored.get(name) else {
            missing.push(name.clone());
            continue;
        };
        if !t.float {
            problems.push(format!(
                "tensor {} is stored as {}, but weights must be floating point (F16, BF16, F32 \
                 or F64)",
                shown(&t.stored_name),
                shown(&t.dtype)
            ));
        } else if &t.shape != shape {
            problems.push(format!(
                "tensor {} has shape {:?}, but the config implies {shape:?}",
                shown(&t.stored_name),
                t.shape
            ));
        }
    }
    if !missing.is_empty() {
        problems.insert(
            0,
            format!("missing tensors the config needs: {}", list(&missing)),
        );
    }
    let wanted: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let extras: Vec<&StoredTensor> = stored
        .iter()
        .filter(|(name, _)| !wanted.contains(name.as_str()) && !family.is_harmless_extra(name))
        .map(|(_, t)| t)
        .collect();
    if let Some(top) = extras
        .iter()
        .filter_map(|t| layer_of(&t.stored_name))
        .max()
        .filter(|&top| top >= cfg.num_hidden_layers)
    {
        problems.push(format!(
            "the weights hold {} layers but the config has num_hidden_layers = {}: layers {} to \
             {top} would be ignored",
            top + 1,
            cfg.num_hidden_layers,
            cfg.num_hidden_layers
        ));
    }
    if !extras.is_empty() {
        let names: Vec<String> = extras.iter().map(|t| t.stored_name.clone()).collect();
        problems.push(format!(
            "{} tensor{} the {family} model does not use: {}",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            list(&names)
        ));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

/// The layer a stored tensor name belongs to (`model.layers.N.` or GGUF's `blk.N.`).
fn layer_of(name: &str) -> Option<usize> {
    let rest = name
        .strip_prefix("model.layers.")
        .or_else(|| name.strip_prefix("blk."))?;
    rest.split('.').next()?.parse().ok()
}

/// Up to [`LISTED`] names, escaped, then how many more.
fn list(names: &[String]) -> String {
    let mut out: Vec<String> = names
        .iter()
        .take(LISTED)
        .map(|n| shown(n).to_string())
        .collect();
    if names.len() > LISTED {
        out.push(format!("and {} more", names.len() - LISTED));
    }
    out.join(", ")
}
