//! The architecture families erosion runs, one file each: everything that differs between
//! Qwen2, Qwen3, Llama, Mistral, Gemma 2 and Gemma 3 checkpoints (how `config.json` switches
//! biases and sliding windows, which norms a block has and how they apply their gain, whether
//! embeddings are scaled, the defaults transformers assumes for absent config fields, the class
//! name a saved config carries, how llama.cpp stored the family in GGUF) lives in that family's
//! file, as one [`Family`] value.
//!
//! The families share one [`Transformer`](crate::transformer::Transformer) (pre-norm decoder,
//! RoPE, grouped-query attention, gated MLP, RMSNorm) and Hugging Face's weight names
//! (`model.layers.{i}.self_attn.q_proj.weight`, ...); the pieces some families add (q/k norms,
//! post-norms, soft-capping, GeGLU, sliding windows) live in `transformer/` and are switched on
//! by these facts and the config. Adding a family built from those pieces is one new file here
//! and one line in [`FAMILIES`].

mod gemma2;
mod gemma3;
mod llama;
mod mistral;
mod qwen2;
mod qwen3;

use crate::config::Config;
use crate::text::shown;
use anyhow::{bail, Result};

/// Every family erosion runs, in the order error messages list them.
pub static FAMILIES: &[&Family] = &[
    &qwen2::QWEN2,
    &qwen3::QWEN3,
    &llama::LLAMA,
    &mistral::MISTRAL,
    &gemma2::GEMMA2,
    &gemma3::GEMMA3,
];

/// The per-head norms of families with [`Family::qk_norm`], under `model.layers.{i}.`.
pub const QK_NORMS: [&str; 2] = ["self_attn.q_norm", "self_attn.k_norm"];

/// What one architecture family is, as facts the loaders and the transformer read.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    /// `model_type` in `config.json` (also erosion's name for the family).
    pub model_type: &'static str,
    /// The `architectures` entry transformers expects in a saved `config.json`.
    pub hf_class: &'static str,
    /// Which attention projections carry a bias.
    pub attention_bias: AttentionBias,
    /// Which config fields turn on sliding-window attention, and in which layers.
    pub sliding_window: SlidingWindow,
    /// The RMS norms of a block.
    pub norms: Norms,
    /// How an RMS norm applies its weight.
    pub norm_gain: NormGain,
    /// Whether queries and keys get a per-head RMS norm (`self_attn.q_norm` / `k_norm`, over
    /// `head_dim`) before RoPE.
    pub qk_norm: bool,
    /// Whether token embeddings are multiplied by `sqrt(hidden_size)` (rounded to the model
    /// dtype first, as transformers does).
    pub scale_embeddings: bool,
    /// Values transformers' config class assumes for fields a `config.json` leaves out, as
    /// JSON text (`head_dim` 256 for Gemma, ...); filled in before the config is parsed.
    pub config_defaults: &'static [(&'static str, &'static str)],
    /// How llama.cpp writes the family, when erosion reads its GGUF files.
    pub gguf: Option<Gguf>,
    /// Tensors real checkpoints of the family carry that the model does not use, by Hugging
    /// Face name (`*` stands for a layer number). The loader skips these without a word and
    /// refuses any other tensor the config does not call for.
    pub harmless_extras: &'static [&'static str],
}

/// Which attention projections carry a bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionBias {
    /// q, k and v always, o never, whatever `attention_bias` says (transformers ignores the
    /// field for these families).
    QkvAlways,
    /// `attention_bias` switches q, k, v and o together (default false).
    FromConfig,
}

/// When a config asks for sliding-window attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlidingWindow {
    /// Never: full attention.
    Never,
    /// Whenever `sliding_window` is set.
    WhenSet,
    /// Only when `use_sliding_window` is true as well, in the layers from `max_window_layers`
    /// on.
    WhenSwitchedOn,
    /// Whenever `sliding_window` is set, in every layer but each `period`-th
    /// (`sliding_window_pattern` in the config overrides `period`).
    Interleaved { period: usize },
}

/// The RMS norms of a block, by Hugging Face name under `model.layers.{i}.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norms {
    /// `input_layernorm` before attention, `post_attention_layernorm` before the MLP.
    PreOnly,
    /// Gemma 2/3's four: `input_layernorm` before attention, `post_attention_layernorm` on
    /// its output, `pre_feedforward_layernorm` before the MLP, `post_feedforward_layernorm` on
    /// its output.
    Sandwich,
}

impl Norms {
    /// The Hugging Face names, in the order a block applies them.
    pub const fn names(self) -> &'static [&'static str] {
        match self {
            Norms::PreOnly => &["input_layernorm", "post_attention_layernorm"],
            Norms::Sandwich => &[
                "input_layernorm",
                "post_attention_layernorm",
                "pre_feedforward_layernorm",
                "post_feedforward_layernorm",
            ],
        }
    }
}

/// How an RMS norm applies its weight `w` to `n = x / sqrt(mean(x^2) + eps)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormGain {
    /// `n * w`: `n` computed in f32, cast to the model dtype, then scaled (Llama, Qwen).
    Weight,
    /// `n * (1 + w)`, all in f32, then cast (Gemma; `w` is stored as an offset from 1).
    OnePlusWeight,
}

/// How llama.cpp stores a family in GGUF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gguf {
    /// `general.architecture`.
    pub arch: &'static str,
    /// Whether llama.cpp's converter permuted the rows of q_proj and k_proj (for its
    /// interleaved RoPE); the loader undoes it.
    pub qk_rows_permuted: bool,
    /// Whether llama.cpp stored every `*norm.weight` as the gain `1 + w` (Gemma's converter
    /// adds 1); the loader subtracts it, as transformers' GGUF loader does.
    pub norms_hold_gain: bool,
    /// Config fields read from `{arch}.{key}` metadata beyond the ones every family has:
    /// `(key, config field)`.
    pub config_keys: &'static [(&'static str, &'static str)],
    /// Gemma's `query_pre_attn_scalar`, which GGUF does not store: llama.cpp scales queries by
    /// `1/sqrt(head_dim)`, except for the 27B checkpoint (told by this many layers), which it
    /// scales by `1/sqrt(hidden / heads)`, as its config does. `None`: not a Gemma.
    pub query_scalar_27b_layers: Option<usize>,
}

impl Gguf {
    /// A family llama.cpp stores plainly (no permutation, no gain, no extra keys).
    pub const fn plain(arch: &'static str) -> Self {
        Gguf {
            arch,
            qk_rows_permuted: false,
            norms_hold_gain: false,
            config_keys: &[],
            query_scalar_27b_layers: None,
        }
    }
}

impl Family {
    /// The family of a `config.json`'s `model_type`, or an error listing the supported ones.
    pub fn of_model_type(model_type: &str) -> Result<&'static Family> {
        match FAMILIES.iter().find(|f| f.model_type == model_type) {
            Some(f) => Ok(f),
            None => bail!(
                "unsupported architecture `{}`: erosion supports model_type {}",
                shown(model_type),
                Self::model_types().join(", ")
            ),
        }
    }

    /// The family a GGUF's `general.architecture` holds, if erosion reads it.
    pub fn of_gguf_arch(arch: &str) -> Option<&'static Family> {
        FAMILIES
            .iter()
            .copied()
            .find(|f| f.gguf.is_some_and(|g| g.arch == arch))
    }

    /// Every supported `model_type`.
    pub fn model_types() -> Vec<&'static str> {
        FAMILIES.iter().map(|f| f.model_type).collect()
    }

    /// Every GGUF `general.architecture` erosion reads, sorted.
    pub fn gguf_archs() -> Vec<&'static str> {
        let mut archs: Vec<_> = FAMILIES
            .iter()
            .filter_map(|f| f.gguf.map(|g| g.arch))
            .collect();
        archs.sort_unstable();
        archs
    }

    /// Whether `name` is one of [`Family::harmless_extras`].
    pub fn is_harmless_extra(&self, name: &str) -> bool {
        self.harmless_extras
            .iter()
            .any(|pattern| matches_pattern(pattern, name))
    }

    /// Whether q, k and v projections carry a bias under `cfg`.
    pub fn qkv_bias(&self, cfg: &Config) -> bool {
        match self.attention_bias {
            AttentionBias::QkvAlways => true,
            AttentionBias::FromConfig => cfg.attention_bias,
        }
    }

    /// Whether the output projection carries a bias under `cfg`.
    pub fn o_bias(&self, cfg: &Config) -> bool {
        match self.attention_bias {
            AttentionBias::QkvAlways => false,
            AttentionBias::FromConfig => cfg.attention_bias,
        }
    }

    /// The sliding-window length `cfg` asks for, if any.
    pub fn sliding_window(&self, cfg: &Config) -> Option<usize> {
        match self.sliding_window {
            SlidingWindow::Never => None,
            SlidingWindow::WhenSet | SlidingWindow::Interleaved { .. } => cfg.sliding_window,
            SlidingWindow::WhenSwitchedOn if cfg.use_sliding_window == Some(true) => {
                cfg.sliding_window
            }
            SlidingWindow::WhenSwitchedOn => None,
        }
    }

    /// Each layer's sliding window (`None`: full attention), as transformers assigns them:
    /// `layer_types` when the config lists them, else the family's pattern.
    pub fn layer_windows(&self, cfg: &Config) -> Vec<Option<usize>> {
        let n = cfg.num_hidden_layers;
        let Some(w) = self.sliding_window(cfg) else {
            return vec![None; n];
        };
        let sliding = |i: usize| match (&cfg.layer_types, self.sliding_window) {
            (Some(types), _) => types[i] == "sliding_attention",
            (None, SlidingWindow::WhenSwitchedOn) => i >= cfg.max_window_layers.unwrap_or(0),
            (None, SlidingWindow::Interleaved { period }) => {
                !(i + 1).is_multiple_of(cfg.sliding_window_pattern.unwrap_or(period))
            }
            (None, _) => true,
        };
        (0..n).map(|i| sliding(i).then_some(w)).collect()
    }

    /// The norm weights of one layer: name under `model.layers.{i}.` and length.
    pub fn layer_norms(&self, cfg: &Config) -> Vec<(&'static str, usize)> {
        let mut norms: Vec<_> = self
            .norms
            .names()
            .iter()
            .map(|&n| (n, cfg.hidden_size))
            .collect();
        if self.qk_norm {
            norms.extend(QK_NORMS.map(|n| (n, cfg.head_dim())));
        }
        norms
    }
}

/// `pattern` with each `*` standing for one layer number (one or more ASCII digits).
fn matches_pattern(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    for part in parts {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        match rest[digits..].strip_prefix(part) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_found_by_its_names_and_names_are_unique() {
        for family in FAMILIES {
            assert_eq!(Family::of_model_type(family.model_type).unwrap(), *family);
            if let Some(g) = family.gguf {
                assert_eq!(Family::of_gguf_arch(g.arch).unwrap().gguf, Some(g));
            }
        }
        let mut types = Family::model_types();
        types.sort();
        types.dedup();
        assert_eq!(types.len(), FAMILIES.len());
        assert_eq!(Family::gguf_archs(), ["gemma3", "llama", "qwen2", "qwen3"]);
        assert!(Family::of_model_type("gemma3").is_err()); // the multimodal wrapper
        assert!(Family::of_gguf_arch("mistral").is_none());
    }

    #[test]
    fn harmless_extras_match_layer_numbers_only() {
        let q = Family::of_model_type("qwen2").unwrap();
        assert!(q.is_harmless_extra("model.layers.17.self_attn.rotary_emb.inv_freq"));
        assert!(q.is_harmless_extra("lm_head.weight"));
        assert!(!q.is_harmless_extra("model.layers..self_attn.rotary_emb.inv_freq"));
        assert!(!q.is_harmless_extra("model.layers.x.self_attn.rotary_emb.inv_freq"));
        assert!(!q.is_harmless_extra("model.layers.1.self_attn.rotary_emb.inv_freq.extra"));
        assert!(!q.is_harmless_extra("model.layers.1.mlp.up_proj.weight"));
    }
}
