//! `adapter_config.json` of a PEFT LoRA adapter, read as PEFT reads it: which modules carry an
//! adapter and with what scale. Every key is either honoured, ignored because it only shapes
//! training (dropout, initialisation), or refused by name when set: an adapter is never loaded
//! as something other than what it is.
//!
//! Scale of module m with rank r_m and alpha a_m (`rank_pattern` / `alpha_pattern` override
//! `r` / `lora_alpha` per module): `s_m = a_m / r_m`, or `a_m / sqrt(r_m)` with `use_rslora`.

use crate::text::shown;
use anyhow::{bail, Context, Result};
use fancy_regex::Regex;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "adapter_config.json";

/// Which modules `target_modules` (or `exclude_modules`) selects.
#[derive(Debug, Clone)]
pub enum Targets {
    /// Names matched as PEFT matches them: equal to the module's path or its last components.
    Names(Vec<String>),
    /// A Python regular expression that must match the whole module path.
    Pattern(String, Regex),
    /// `"all-linear"`: every linear map but the output layer.
    AllLinear,
}

/// The parts of `adapter_config.json` that change what the adapter computes.
#[derive(Debug, Clone)]
pub struct PeftConfig {
    /// The file it was read from, for messages.
    pub path: PathBuf,
    /// `base_model_name_or_path` (with `@revision` when `revision` is set and it is a hub id).
    pub base_model: Option<String>,
    pub r: usize,
    pub lora_alpha: f64,
    pub use_rslora: bool,
    pub target_modules: Targets,
    pub exclude_modules: Option<Targets>,
    /// `layers_to_transform`: only these layer indices (list targets only, as in PEFT).
    pub layers_to_transform: Option<Vec<usize>>,
    /// `layers_pattern`: the module-path component before the layer index (`layers`).
    pub layers_pattern: Vec<String>,
    /// In file order: the first pattern that matches wins.
    pub rank_pattern: Vec<(String, usize)>,
    pub alpha_pattern: Vec<(String, f64)>,
    /// Modules whose whole weights the adapter replaces.
    pub modules_to_save: Vec<String>,
}

/// Keys that only shape training or bookkeeping: read by nobody at inference.
const IGNORED: &[&str] = &[
    "task_type",
    "inference_mode",
    "auto_mapping",
    "peft_version",
    "lora_dropout",
    "init_lora_weights",
    "loftq_config",
    "eva_config",
    "corda_config",
    "runtime_config",
    "qalora_group_size",
    "megatron_core",
    // PEFT sets it to false itself for nn.Linear targets, which every supported module is.
    "fan_in_fan_out",
];

/// Keys that change the computation in ways not implemented: refused when set, with why.
const REFUSED: &[(&str, &str)] = &[
    ("use_dora", "DoRA (weight-decomposed LoRA) is not supported"),
    ("lora_bias", "a bias on lora_B is not supported"),
    ("layer_replication", "layer replication is not supported"),
    (
        "trainable_token_indices",
        "trainable token embeddings are not supported",
    ),
    (
        "target_parameters",
        "LoRA on parameters (not modules) is not supported",
    ),
    (
        "alora_invocation_tokens",
        "activated LoRA (aLoRA) is not supported",
    ),
    ("use_qalora", "QA-LoRA is not supported"),
    ("megatron_config", "Megatron-parallel LoRA is not supported"),
    ("arrow_config", "Arrow routing is not supported"),
    (
        "ensure_weight_tying",
        "weight tying of saved modules is not supported",
    ),
];

/// Keys read below.
const HONOURED: &[&str] = &[
    "peft_type",
    "base_model_name_or_path",
    "revision",
    "r",
    "lora_alpha",
    "use_rslora",
    "target_modules",
    "exclude_modules",
    "layers_to_transform",
    "layers_pattern",
    "bias",
    "modules_to_save",
    "rank_pattern",
    "alpha_pattern",
];

/// Whether a JSON value says "not used": null, false, 0, "", [] or {}.
fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

impl PeftConfig {
    /// Reads and checks `dir/adapter_config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        if !path.is_file() {
            bail!(
                "no {CONFIG_FILE} in {}: a PEFT adapter folder holds {CONFIG_FILE} and \
                 adapter_model.safetensors",
                dir.display()
            );
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let map: Map<String, Value> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON object", path.display()))?;
        Self::from_map(&map, &path).with_context(|| format!("in {}", path.display()))
    }

    fn from_map(m: &Map<String, Value>, path: &Path) -> Result<Self> {
        match m.get("peft_type") {
            Some(Value::String(t)) if t == "LORA" => {}
            Some(Value::String(other)) => bail!(
                "peft_type is `{}`: only LORA adapters are supported",
                shown(other)
            ),
            Some(other) => bail!("peft_type is {other}, not a string: only \"LORA\" is supported"),
            None => bail!("peft_type is missing: only LORA adapters are supported"),
        }
        for (key, why) in REFUSED {
            if m.get(*key).is_some_and(|v| !is_unset(v)) {
                bail!("`{key}` is set: {why}");
            }
        }
        if let Some((key, _)) = m.iter().find(|(k, v)| {
            !HONOURED.contains(&k.as_str())
                && !IGNORED.contains(&k.as_str())
                && !is_unset(v)
                && !REFUSED.iter().any(|(r, _)| r == k)
        }) {
            bail!(
                "`{}` is set, and erosion does not know what it changes: refused rather than \
                 ignored",
                shown(key)
            );
        }
        match m.get("bias").and_then(Value::as_str).unwrap_or("none") {
            "none" => {}
            other => bail!(
                "bias is `{}`: only \"none\" is supported (trained biases are not loaded)",
                shown(other)
            ),
        }
        let r = match m.get("r") {
            None => 8,
            Some(v) => positive_int(v).context("field `r` must be a positive integer")?,
        };
        let lora_alpha = match m.get("lora_alpha") {
            None => 8.0,
            Some(v) => v.as_f64().context("field `lora_alpha` must be a number")?,
        };
        let base_model = base_model(m)?;
        Ok(Self {
            path: path.to_path_buf(),
            base_model,
            r,
            lora_alpha,
            use_rslora: flag(m, "use_rslora")?,
            target_modules: targets(m.get("target_modules"), "target_modules")?
                .unwrap_or_else(|| Targets::Names(vec!["q_proj".into(), "v_proj".into()])),
            exclude_modules: targets(m.get("exclude_modules"), "exclude_modules")?,
            layers_to_transform: layers(m.get("layers_to_transform"))?,
            layers_pattern: strings(m.get("layers_pattern"), "layers_pattern")?,
            rank_pattern: pattern(m, "rank_pattern", positive_int)?,
            alpha_pattern: pattern(m, "alpha_pattern", |v| v.as_f64().context("not a number"))?,
            modules_to_save: strings(m.get("modules_to_save"), "modules_to_save")?,
        })
    }

    /// Whether PEFT would put an adapter on `key` (a module path such as
    /// `model.layers.3.mlp.down_proj`): PEFT's `check_target_module_exists`.
    pub fn targets(&self, key: &str) -> bool {
        let excluded = self
            .exclude_modules
            .as_ref()
            .is_some_and(|ex| ex.matches(key));
        // A module saved whole never carries an adapter (PEFT: `(^|.*\.){m}($|\..*)`).
        let saved = self.modules_to_save.iter().any(|m| {
            key == m
                || key.ends_with(&format!(".{m}"))
                || key.contains(&format!(".{m}."))
                || key.starts_with(&format!("{m}."))
        });
        if excluded || saved {
            return false;
        }
        match &self.target_modules {
            Targets::Pattern(..) => self.target_modules.matches(key),
            // The linear maps of the blocks (the embeddings are no linear map, the output layer
            // is left out by PEFT).
            Targets::AllLinear => key.contains(".layers.") && self.in_layers(key),
            Targets::Names(names) if names.iter().any(|n| n == key) => true,
            Targets::Names(_) => self.target_modules.matches(key) && self.in_layers(key),
        }
    }

    /// `layers_to_transform` applied to `key` (true when unset).
    fn in_layers(&self, key: &str) -> bool {
        let Some(wanted) = &self.layers_to_transform else {
            return true;
        };
        let index = if self.layers_pattern.is_empty() {
            layer_after(key, None)
        } else {
            self.layers_pattern
                .iter()
                .find_map(|p| layer_after(key, Some(p)))
        };
        index.is_some_and(|i| wanted.contains(&i))
    }

    /// (r_m, alpha_m) of module `key`, `rank_pattern` / `alpha_pattern` applied.
    pub fn rank_alpha(&self, key: &str) -> (usize, f64) {
        let r = pattern_value(&self.rank_pattern, key).unwrap_or(self.r);
        let a = pattern_value(&self.alpha_pattern, key).unwrap_or(self.lora_alpha);
        (r, a)
    }

    /// s_m: alpha_m / r_m, or alpha_m / sqrt(r_m) with `use_rslora`.
    pub fn scaling(&self, key: &str) -> f64 {
        let (r, a) = self.rank_alpha(key);
        if self.use_rslora {
            a / (r as f64).sqrt()
        } else {
            a / r as f64
        }
    }
}

impl Targets {
    /// Name lists match a path equal to a name or ending in `.name`; a pattern must match the
    /// whole path.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Targets::Names(names) => names
                .iter()
                .any(|n| key == n || key.ends_with(&format!(".{n}"))),
            Targets::Pattern(_, re) => re.is_match(key).unwrap_or(false),
            Targets::AllLinear => true,
        }
    }
}

/// The first layer index after a component `pattern` (any component but the first when
/// `None`) in `key`, followed by one more component: PEFT's `.*?\.[^.]*\.(\d+)\.` and
/// `(?:^|.*?\.){pattern}\.(\d+)\.`.
fn layer_after(key: &str, pattern: Option<&str>) -> Option<usize> {
    let parts: Vec<&str> = key.split('.').collect();
    let first = if pattern.is_some() { 0 } else { 1 };
    (first..parts.len().saturating_sub(2))
        .filter(|&i| pattern.is_none_or(|p| parts[i] == p))
        .find_map(|i| {
            let digits = parts[i + 1];
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse().ok())
                .flatten()
        })
}

/// PEFT's `get_pattern_key`: the value of the first pattern matching `(.*\.)?(pattern)$` from
/// the start of `key`.
fn pattern_value<T: Copy>(patterns: &[(String, T)], key: &str) -> Option<T> {
    patterns.iter().find_map(|(p, v)| {
        let re = Regex::new(&format!(r"^(.*\.)?({p})$")).ok()?;
        re.is_match(key).ok()?.then_some(*v)
    })
}

fn base_model(m: &Map<String, Value>) -> Result<Option<String>> {
    let base = match m.get("base_model_name_or_path") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => bail!("field `base_model_name_or_path` must be a string"),
    };
    match m.get("revision").and_then(Value::as_str) {
        Some(rev) if !rev.is_empty() && super::super::hub::HubSpec::parse(&base).is_some() => {
            Ok(Some(format!("{base}@{rev}")))
        }
        _ => Ok(Some(base)),
    }
}

fn flag(m: &Map<String, Value>, key: &str) -> Result<bool> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => bail!("field `{key}` must be true or false"),
    }
}

fn positive_int(v: &Value) -> Result<usize> {
    v.as_u64()
        .filter(|&n| n > 0)
        .map(|n| n as usize)
        .context("not a positive integer")
}

/// A string or a list of strings (null: none).
fn strings(v: Option<&Value>, key: &str) -> Result<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .with_context(|| format!("field `{key}` must be a list of strings")),
        Some(_) => bail!("field `{key}` must be a string or a list of strings"),
    }
}

fn targets(v: Option<&Value>, key: &str) -> Result<Option<Targets>> {
    Ok(match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "all-linear" => Some(Targets::AllLinear),
        Some(Value::String(s)) => {
            let re = Regex::new(&format!("^(?:{s})$")).with_context(|| {
                format!(
                    "field `{key}` is not a regular expression erosion can read: `{}`",
                    shown(s)
                )
            })?;
            Some(Targets::Pattern(s.clone(), re))
        }
        Some(other) => Some(Targets::Names(strings(Some(other), key)?)),
    })
}

fn layers(v: Option<&Value>) -> Result<Option<Vec<usize>>> {
    let bad =
        || anyhow::anyhow!("field `layers_to_transform` must be a layer index or a list of them");
    Ok(match v {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if a.is_empty() => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|x| x.as_u64().map(|n| n as usize).ok_or_else(bad))
                .collect::<Result<_>>()?,
        ),
        Some(x) => Some(vec![x.as_u64().ok_or_else(bad)? as usize]),
    })
}

fn pattern<T>(
    m: &Map<String, Value>,
    key: &str,
    read: impl Fn(&Value) -> Result<T>,
) -> Result<Vec<(String, T)>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| {
                let value = read(v).with_context(|| format!("field `{key}`: `{}`", shown(k)))?;
                Regex::new(&format!(r"^(.*\.)?({k})$")).with_context(|| {
                    format!(
                        "field `{key}`: `{}` is not a regular expression erosion can read",
                        shown(k)
                    )
                })?;
                Ok((k.clone(), value))
            })
            .collect(),
        Some(_) => bail!("field `{key}` must be an object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Result<PeftConfig> {
        let m: Map<String, Value> = serde_json::from_str(json).unwrap();
        PeftConfig::from_map(&m, Path::new("adapter_config.json"))
    }

    #[test]
    fn layer_index_is_found_as_peft_finds_it() {
        assert_eq!(layer_after("model.layers.12.mlp.down_proj", None), Some(12));
        assert_eq!(layer_after("model.layers.3.mlp", Some("layers")), Some(3));
        assert_eq!(layer_after("model.h.3.mlp", Some("layers")), None);
        // No component after the digits: PEFT's pattern needs a trailing `.`.
        assert_eq!(layer_after("model.layers.3", None), None);
        // The first index, not an expert's inside the layer.
        assert_eq!(layer_after("model.layers.1.experts.0.w1", None), Some(1));
    }

    #[test]
    fn names_regex_and_layers_select_as_peft() -> Result<()> {
        let c = cfg(
            r#"{"peft_type":"LORA","target_modules":["down_proj"],"layers_to_transform":[1]}"#,
        )?;
        assert!(c.targets("model.layers.1.mlp.down_proj"));
        assert!(!c.targets("model.layers.0.mlp.down_proj"));
        assert!(!c.targets("model.layers.1.mlp.up_proj"));
        let c = cfg(r#"{"peft_type":"LORA","target_modules":".*\\.1\\.self_attn\\.(q|v)_proj"}"#)?;
        assert!(c.targets("model.layers.1.self_attn.q_proj"));
        assert!(!c.targets("model.layers.11.self_attn.q_proj"));
        assert!(!c.targets("model.layers.1.self_attn.k_proj"));
        let c = cfg(
            r#"{"peft_type":"LORA","target_modules":"all-linear","exclude_modules":["o_proj"]}"#,
        )?;
        assert!(c.targets("model.layers.0.mlp.gate_proj"));
        assert!(!c.targets("model.layers.0.self_attn.o_proj"));
        assert!(!c.targets("lm_head"));
        assert!(!c.targets("model.embed_tokens"));
        Ok(())
    }

    #[test]
    fn scale_honours_rslora_and_patterns() -> Result<()> {
        let c = cfg(
            r#"{"peft_type":"LORA","r":4,"lora_alpha":8,"use_rslora":true,
                "rank_pattern":{"down_proj":16},"alpha_pattern":{"model.layers.0.mlp.down_proj":2}}"#,
        )?;
        assert_eq!(c.scaling("model.layers.1.self_attn.q_proj"), 8.0 / 2.0);
        assert_eq!(c.rank_alpha("model.layers.1.mlp.down_proj"), (16, 8.0));
        assert_eq!(c.scaling("model.layers.0.mlp.down_proj"), 2.0 / 4.0);
        Ok(())
    }

    #[test]
    fn what_is_not_supported_is_refused_by_name() {
        for (json, said) in [
            (r#"{"peft_type":"LORA","use_dora":true}"#, "DoRA"),
            (r#"{"peft_type":"IA3"}"#, "peft_type is `IA3`"),
            (r#"{"r":8}"#, "peft_type is missing"),
            (r#"{"peft_type":"LORA","bias":"all"}"#, "bias is `all`"),
            (
                r#"{"peft_type":"LORA","new_thing":[1]}"#,
                "`new_thing` is set",
            ),
            (r#"{"peft_type":"LORA","r":0}"#, "field `r`"),
            (r#"{"peft_type":5}"#, "peft_type is 5, not a string"),
        ] {
            let err = format!("{:#}", cfg(json).unwrap_err());
            assert!(err.contains(said), "{json}: {err}");
        }
        // Unset values of unknown keys and training-only keys pass.
        assert!(cfg(
            r#"{"peft_type":"LORA","new_thing":null,"lora_dropout":0.1,"use_dora":false}"#
        )
        .is_ok());
    }
}
