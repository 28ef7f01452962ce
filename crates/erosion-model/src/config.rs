//! The model configuration, mirroring Hugging Face's `config.json` for the families in
//! [`crate::family`] (Qwen2.5, Qwen3, SmolLM2, Llama 2/3, Mistral, Gemma 2, Gemma 3). Field
//! names are Hugging Face's, so a checkpoint's `config.json` deserialises directly and a saved
//! one is read by transformers. Fields a family's transformers class defaults when absent are
//! filled in from [`Family::config_defaults`] before parsing.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::family::Family;
use crate::text::shown;

/// `rope_scaling`: Llama 3.1+'s `llama3` or `linear` (Gemma 3: frequencies divided by
/// `factor`). Other types are rejected on load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    #[serde(default = "one")]
    pub factor: f64,
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    #[serde(default = "default_original_ctx")]
    pub original_max_position_embeddings: usize,
}

fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn default_original_ctx() -> usize {
    8192
}

/// Every special token id must name a row of the embedding: an id past the vocabulary would
/// never be generated (so generation never stops) or index past the embedding.
pub(crate) fn check_token_ids(
    vocab_size: usize,
    bos: Option<u32>,
    eos: Option<&TokenIds>,
    pad: Option<u32>,
) -> Result<()> {
    let eos = eos.map(TokenIds::to_vec).unwrap_or_default();
    let fields = [
        ("bos_token_id", bos.into_iter().collect::<Vec<_>>()),
        ("eos_token_id", eos),
        ("pad_token_id", pad.into_iter().collect()),
    ];
    for (field, ids) in fields {
        if let Some(id) = ids.into_iter().find(|&id| id as usize >= vocab_size) {
            bail!("{field} {id} is outside the vocabulary (vocab_size {vocab_size})");
        }
    }
    Ok(())
}

/// `eos_token_id` is an integer in some configs and a list in others (Llama 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            Self::One(id) => vec![*id],
            Self::Many(ids) => ids.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub architectures: Vec<String>,
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention; absent means one kv head per query head.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Absent means hidden_size / num_attention_heads.
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama's switch for q/k/v/o bias. Qwen2 always has q/k/v bias and no o bias,
    /// whatever this says (transformers ignores it for qwen2).
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default)]
    pub torch_dtype: Option<String>,
    /// The window of sliding-window layers (each query sees the `sliding_window` latest
    /// tokens, itself included); which layers, and whether at all, is the family's rule
    /// ([`Family::layer_windows`]).
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    /// One divisor per RoPE frequency, from a GGUF's `rope_freqs` tensor: llama.cpp's form of
    /// Llama 3.1's `rope_scaling` (the factors, without the parameters that made them). Not a
    /// `config.json` field: a folder cannot state it, so such a model is not saved as one.
    #[serde(skip)]
    pub rope_freq_factors: Option<Vec<f32>>,
    /// Qwen2/Qwen3: layers from this index on use the sliding window (when switched on).
    #[serde(default)]
    pub max_window_layers: Option<usize>,
    /// `full_attention` or `sliding_attention` for each layer (transformers >= 4.53); absent
    /// means the family's pattern.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Gemma 3 (older configs): every n-th layer is global, the others sliding.
    #[serde(default)]
    pub sliding_window_pattern: Option<usize>,
    /// Gemma's name for the MLP activation (it wins over `hidden_act` when set).
    #[serde(default)]
    pub hidden_activation: Option<String>,
    /// Gemma: attention scores are scaled by `query_pre_attn_scalar^-1/2` instead of
    /// `head_dim^-1/2`.
    #[serde(default)]
    pub query_pre_attn_scalar: Option<f64>,
    /// Gemma 2: scores become `c tanh(scores / c)` before the mask and softmax.
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
    /// Gemma 2: logits become `c tanh(logits / c)`.
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
    /// Gemma 3: the RoPE base of sliding-window layers (global layers use `rope_theta` and
    /// `rope_scaling`).
    #[serde(default)]
    pub rope_local_base_freq: Option<f64>,
}

/// The MLP's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `silu(x) = x sigma(x)` (SwiGLU)
    Silu,
    /// `gelu_pytorch_tanh`: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` (GeGLU)
    GeluTanh,
}

fn default_max_pos() -> usize {
    4096
}
fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_act() -> String {
    "silu".to_string()
}

impl Config {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model config {}", path.display()))?;
        let cfg = Self::from_json(&text)
            .with_context(|| format!("malformed model config {}", path.display()))?;
        cfg.validate()
            .with_context(|| format!("in model config {}", path.display()))?;
        Ok(cfg)
    }

    /// Parses a `config.json` text, in the form transformers 4 writes (top-level `rope_theta`,
    /// `rope_scaling`, `torch_dtype`) or transformers 5 (`rope_parameters`, `dtype`).
    pub fn from_json(text: &str) -> Result<Self> {
        let mut value: serde_json::Value = serde_json::from_str(text)?;
        if let Some(obj) = value.as_object_mut() {
            // transformers >= 5 nests the rope settings and renames torch_dtype; without this
            // a saved fine-tune would silently run with rope_theta 10000 and no scaling.
            if let Some(rope) = obj.get("rope_parameters").cloned() {
                // Gemma 3 under transformers 5 nests one set per attention type.
                let rope = match rope.get("full_attention") {
                    Some(full) => {
                        let local = rope
                            .get("sliding_attention")
                            .and_then(|r| r.get("rope_theta"));
                        if let Some(theta) = local {
                            obj.entry("rope_local_base_freq").or_insert(theta.clone());
                        }
                        full.clone()
                    }
                    None => rope,
                };
                if let Some(theta) = rope.get("rope_theta") {
                    obj.entry("rope_theta").or_insert(theta.clone());
                }
                let kind = rope
                    .get("rope_type")
                    .and_then(|t| t.as_str())
                    .unwrap_or("default");
                if kind != "default" && !obj.contains_key("rope_scaling") {
                    obj.insert("rope_scaling".into(), rope.clone());
                }
            }
            if let Some(dtype) = obj.get("dtype").cloned() {
                obj.entry("torch_dtype").or_insert(dtype);
            }
            // A config saved from a bare config object carries `"architectures": null`.
            if obj.get("architectures").is_some_and(|a| a.is_null()) {
                obj.remove("architectures");
            }
            crate::unsupported::refuse(obj)?;
            let family = obj.get("model_type").and_then(|t| t.as_str());
            if let Some(family) = family.and_then(|t| Family::of_model_type(t).ok()) {
                for (key, value) in family.config_defaults {
                    if !obj.contains_key(*key) {
                        obj.insert(key.to_string(), serde_json::from_str(value)?);
                    }
                }
            }
        }
        Ok(serde_json::from_value(value)?)
    }

    /// The architecture family `model_type` names (its quirks live in `crate::family`).
    pub fn family(&self) -> Result<&'static Family> {
        Family::of_model_type(&self.model_type)
    }

    pub fn num_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// Whether q, k and v projections carry a bias.
    pub fn qkv_bias(&self) -> bool {
        self.family()
            .map_or(self.attention_bias, |f| f.qkv_bias(self))
    }

    /// Whether the output projection carries a bias.
    pub fn o_bias(&self) -> bool {
        self.family()
            .map_or(self.attention_bias, |f| f.o_bias(self))
    }

    /// Checks what the transformer relies on, with a message that names the field.
    pub fn validate(&self) -> Result<()> {
        self.family()?;
        if self.num_attention_heads == 0
            || self.num_kv_heads() == 0
            || self.num_hidden_layers == 0
            || self.hidden_size == 0
        {
            bail!("hidden_size, num_hidden_layers, num_attention_heads and num_key_value_heads must be positive");
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            bail!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if !self.num_attention_heads.is_multiple_of(self.num_kv_heads()) {
            bail!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.num_kv_heads()
            );
        }
        if !self.head_dim().is_multiple_of(2) {
            bail!(
                "head_dim {} must be even for rotary embeddings",
                self.head_dim()
            );
        }
        if self.head_dim == Some(0) {
            bail!("head_dim must be positive");
        }
        self.activation()?;
        self.check_layer_types()?;
        // After the layer types, which the sliding window's check reads.
        self.check_numbers()?;
        check_token_ids(
            self.vocab_size,
            self.bos_token_id,
            self.eos_token_id.as_ref(),
            self.pad_token_id,
        )?;
        if let Some(rs) = &self.rope_scaling {
            if !matches!(rs.rope_type.as_str(), "llama3" | "linear" | "default") {
                bail!(
                    "rope_scaling type `{}` is not supported (supported: llama3, linear, default)",
                    shown(&rs.rope_type)
                );
            }
        }
        Ok(())
    }

    /// The MLP activation: `hidden_activation` (Gemma) or `hidden_act`.
    pub fn activation(&self) -> Result<Activation> {
        let (field, name) = match &self.hidden_activation {
            Some(name) => ("hidden_activation", name),
            None => ("hidden_act", &self.hidden_act),
        };
        match name.as_str() {
            "silu" => Ok(Activation::Silu),
            "gelu_pytorch_tanh" => Ok(Activation::GeluTanh),
            other => bail!(
                "{field} `{}` is not supported (supported: silu, gelu_pytorch_tanh)",
                shown(other)
            ),
        }
    }

    /// The sliding window of each layer (`None`: full attention), as the family reads
    /// `sliding_window`, `layer_types` and its pattern.
    pub fn layer_windows(&self) -> Result<Vec<Option<usize>>> {
        Ok(self.family()?.layer_windows(self))
    }

    /// The real-valued fields the forward pass divides by, takes powers or roots of: a zero,
    /// negative or non-finite value there runs without complaint and gives NaN or meaningless
    /// logits, so it is refused by name.
    fn check_numbers(&self) -> Result<()> {
        let positive = [
            ("rope_theta", Some(self.rope_theta)),
            ("rope_local_base_freq", self.rope_local_base_freq),
            ("query_pre_attn_scalar", self.query_pre_attn_scalar),
            ("attn_logit_softcapping", self.attn_logit_softcapping),
            ("final_logit_softcapping", self.final_logit_softcapping),
            (
                "rope_scaling.factor",
                self.rope_scaling.as_ref().map(|r| r.factor),
            ),
        ];
        for (field, value) in positive {
            if let Some(v) = value.filter(|v| !(v.is_finite() && *v > 0.0)) {
                bail!("{field} is {v}; it must be a positive number");
            }
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps >= 0.0) {
            bail!(
                "rms_norm_eps is {}; it must be a number at least 0",
                self.rms_norm_eps
            );
        }
        // A window of 0 would hide every earlier token (erosion would still show each token
        // itself): refused where the family applies the window, as transformers would fail.
        if self.sliding_window == Some(0) && self.family()?.layer_windows(self).contains(&Some(0)) {
            bail!("sliding_window is 0; it must be positive (or null for no window)");
        }
        Ok(())
    }

    fn check_layer_types(&self) -> Result<()> {
        if self.sliding_window_pattern == Some(0) {
            bail!("sliding_window_pattern must be positive");
        }
        let Some(types) = &self.layer_types else {
            return Ok(());
        };
        if types.len() != self.num_hidden_layers {
            bail!(
                "layer_types lists {} layers but num_hidden_layers is {}",
                types.len(),
                self.num_hidden_layers
            );
        }
        if let Some(t) = types
            .iter()
            .find(|t| !matches!(t.as_str(), "full_attention" | "sliding_attention"))
        {
            bail!(
                "layer_types holds `{}`; supported: full_attention, sliding_attention",
                shown(t)
            );
        }
        Ok(())
    }

    /// The number of parameters the weights hold (embeddings counted once when tied).
    pub fn num_parameters(&self) -> usize {
        let (d, f, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let (hq, hk, hd) = (
            self.num_attention_heads,
            self.num_kv_heads(),
            self.head_dim(),
        );
        let attn = d * hq * hd
            + 2 * d * hk * hd
            + hq * hd * d
            + if self.qkv_bias() {
                hq * hd + 2 * hk * hd
            } else {
                0
            }
            + if self.o_bias() { d } else { 0 };
        let mlp = 3 * d * f + if self.mlp_bias { 2 * f + d } else { 0 };
        let norms: usize = self.family().map_or(2 * d, |f| {
            f.layer_norms(self).iter().map(|(_, size)| size).sum()
        });
        let layer = attn + mlp + norms;
        let head = if self.tie_word_embeddings { 0 } else { v * d };
        v * d + self.num_hidden_layers * layer + d + head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN: &str = r#"{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2",
        "vocab_size":151936,"hidden_size":896,"intermediate_size":4864,"num_hidden_layers":24,
        "num_attention_heads":14,"num_key_value_heads":2,"rms_norm_eps":1e-6,
        "rope_theta":1000000.0,"tie_word_embeddings":true,"bos_token_id":151643,
        "eos_token_id":151645,"sliding_window":32768,"use_sliding_window":false}"#;

    #[test]
    fn qwen_config_parses_and_counts_parameters() {
        let cfg: Config = serde_json::from_str(QWEN).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.family().unwrap().model_type, "qwen2");
        assert_eq!(cfg.head_dim(), 64);
        assert!(cfg.qkv_bias() && !cfg.o_bias());
        // Qwen2.5-0.5B has 494,032,768 parameters (its model card: 0.49B).
        assert_eq!(cfg.num_parameters(), 494_032_768);
    }

    #[test]
    fn transformers_5_rope_parameters_are_read() {
        let text = r#"{"model_type":"llama","vocab_size":256,"hidden_size":32,
            "intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"dtype":"float32",
            "rope_parameters":{"rope_theta":500000.0,"rope_type":"llama3","factor":8.0,
            "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}}"#;
        let cfg = Config::from_json(text).unwrap();
        assert_eq!(cfg.rope_theta, 500000.0);
        let rs = cfg.rope_scaling.unwrap();
        assert_eq!((rs.rope_type.as_str(), rs.factor), ("llama3", 8.0));
        assert_eq!(cfg.torch_dtype.as_deref(), Some("float32"));
        let plain = Config::from_json(&text.replace("llama3", "default")).unwrap();
        assert!(plain.rope_scaling.is_none() && plain.rope_theta == 500000.0);
    }

    // As transformers 5 writes it from a bare config: nested rope, `architectures` null.
    const GEMMA3_V5: &str = r#"{"architectures":null,"model_type":"gemma3_text","vocab_size":256,"hidden_size":32,
        "intermediate_size":64,"num_hidden_layers":7,"num_attention_heads":4,"head_dim":16,
        "sliding_window":512,"rope_parameters":{
            "sliding_attention":{"rope_type":"default","rope_theta":10000.0},
            "full_attention":{"rope_type":"linear","factor":8.0,"rope_theta":1000000.0}}}"#;

    #[test]
    fn gemma3_nested_rope_parameters_and_defaults_are_read() {
        let cfg = Config::from_json(GEMMA3_V5).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.rope_theta, 1e6);
        assert_eq!(cfg.rope_local_base_freq, Some(10000.0));
        let rs = cfg.rope_scaling.as_ref().unwrap();
        assert_eq!((rs.rope_type.as_str(), rs.factor), ("linear", 8.0));
        // Gemma3TextConfig's defaults fill what the file leaves out.
        assert!(cfg.tie_word_embeddings);
        assert_eq!(cfg.query_pre_attn_scalar, Some(256.0));
        assert_eq!(cfg.activation().unwrap(), Activation::GeluTanh);
        // Five sliding layers, then a global one.
        let w = Some(512);
        assert_eq!(cfg.layer_windows().unwrap(), [w, w, w, w, w, None, w]);
        let explicit = GEMMA3_V5.replace(
            r#""sliding_window":512,"#,
            r#""sliding_window":512,"layer_types":["full_attention","sliding_attention",
                "full_attention","full_attention","full_attention","full_attention",
                "full_attention"],"#,
        );
        let cfg = Config::from_json(&explicit).unwrap();
        assert_eq!(cfg.layer_windows().unwrap()[..3], [None, w, None]);
        let bad = explicit.replacen(
            "full_attention\",\"sliding",
            "chunked_attention\",\"sliding",
            1,
        );
        let msg = Config::from_json(&bad)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("chunked_attention"), "{msg}");
    }

    #[test]
    fn an_explicit_null_is_not_replaced_by_a_family_default() {
        let text = r#"{"model_type":"gemma2","vocab_size":256,"hidden_size":32,
            "intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,
            "final_logit_softcapping":null}"#;
        let cfg = Config::from_json(text).unwrap();
        assert_eq!(cfg.final_logit_softcapping, None);
        assert_eq!(cfg.attn_logit_softcapping, Some(50.0));
        assert_eq!(cfg.head_dim(), 256);
    }

    #[test]
    fn unknown_architecture_lists_supported() {
        let text = QWEN.replace("\"qwen2\"", "\"gpt_neox\"");
        let cfg: Config = serde_json::from_str(&text).unwrap();
        let msg = cfg.validate().unwrap_err().to_string();
        assert!(
            msg.contains("gpt_neox")
                && msg.contains("qwen2, qwen3, llama, mistral, gemma2, gemma3_text"),
            "{msg}"
        );
    }

    #[test]
    fn llama3_eos_list_and_rope_scaling() {
        let text = r#"{"model_type":"llama","vocab_size":128256,"hidden_size":2048,
            "intermediate_size":8192,"num_hidden_layers":16,"num_attention_heads":32,
            "num_key_value_heads":8,"rope_theta":500000.0,"eos_token_id":[128001,128008,128009],
            "rope_scaling":{"factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,
            "original_max_position_embeddings":8192,"rope_type":"llama3"}}"#;
        let cfg: Config = serde_json::from_str(text).unwrap();
        cfg.validate().unwrap();
        assert_eq!(
            cfg.eos_token_id.unwrap().to_vec(),
            vec![128001, 128008, 128009]
        );
        assert_eq!(cfg.rope_scaling.unwrap().factor, 32.0);
    }

    #[test]
    fn token_ids_outside_the_vocabulary_are_refused() {
        for (field, value) in [
            ("eos_token_id", "151936"),
            ("eos_token_id", "[151645, 200000]"),
            ("bos_token_id", "151936"),
            ("pad_token_id", "999999"),
        ] {
            let text = QWEN.replace(
                "\"sliding_window\"",
                &format!("\"{field}\":{value},\"sliding_window\""),
            );
            let text = text
                .replacen(&format!("\"{field}\":151643,"), "", 1)
                .replacen(&format!("\"{field}\":151645,"), "", 1);
            let cfg: Config = serde_json::from_str(&text).unwrap();
            let msg = cfg.validate().unwrap_err().to_string();
            assert!(
                msg.contains(field)
                    && msg.contains("outside the vocabulary")
                    && msg.contains("151936"),
                "{msg}"
            );
        }
    }

    #[test]
    fn control_characters_in_names_are_escaped() {
        let text = QWEN.replace("\"qwen2\"", "\"\\u001b[31mevil\"");
        let cfg: Config = serde_json::from_str(&text).unwrap();
        let msg = cfg.validate().unwrap_err().to_string();
        assert!(
            !msg.contains('\x1b') && msg.contains("\\u{1b}[31mevil"),
            "{msg}"
        );
    }

    /// Values that would run and give NaN or meaningless logits are refused by name.
    #[test]
    fn zero_negative_and_non_finite_numbers_are_refused_by_name() {
        let gemma2 = r#"{"model_type":"gemma2","vocab_size":256,"hidden_size":32,
            "intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"head_dim":8"#;
        let check = |extra: &str| {
            let text = format!("{gemma2}{extra}}}");
            Config::from_json(&text).unwrap().validate()
        };
        check("").unwrap();
        for (extra, field) in [
            (r#","head_dim":0"#, "head_dim"),
            (r#","rope_theta":0"#, "rope_theta"),
            (r#","rope_theta":-10000.0"#, "rope_theta"),
            (r#","rms_norm_eps":-1e-6"#, "rms_norm_eps"),
            (r#","query_pre_attn_scalar":0"#, "query_pre_attn_scalar"),
            (r#","attn_logit_softcapping":0"#, "attn_logit_softcapping"),
            (
                r#","final_logit_softcapping":-30"#,
                "final_logit_softcapping",
            ),
            (r#","sliding_window":0"#, "sliding_window"),
            (
                r#","rope_scaling":{"rope_type":"linear","factor":0}"#,
                "rope_scaling.factor",
            ),
        ] {
            let msg = check(extra).unwrap_err().to_string();
            assert!(msg.contains(field), "{extra}: {msg}");
        }
        // A NaN (from a GGUF's metadata) too.
        let mut cfg = Config::from_json(&format!("{gemma2}}}")).unwrap();
        cfg.rms_norm_eps = f64::NAN;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("rms_norm_eps"));
        // A window the family does not apply is not checked (Qwen2 with it switched off).
        let qwen = QWEN.replace(r#""sliding_window":32768"#, r#""sliding_window":0"#);
        Config::from_json(&qwen).unwrap().validate().unwrap();
    }
}
