//! The architecture families erosion runs, one file each: everything that differs between
//! Qwen2, Llama and Mistral checkpoints (how `config.json` switches biases and sliding windows,
//! the class name a saved config carries, how llama.cpp stored the family in GGUF) lives in
//! that family's file, as one [`Family`] value.
//!
//! The families share one [`Transformer`](crate::transformer::Transformer) (pre-norm decoder,
//! RoPE, grouped-query attention, SwiGLU MLP, RMSNorm) and Hugging Face's weight names
//! (`model.layers.{i}.self_attn.q_proj.weight`, ...). Adding a family that fits that structure
//! is one new file here and one line in [`FAMILIES`]; one that does not (extra norms, other
//! activations) also needs its blocks in `transformer/`.

mod llama;
mod mistral;
mod qwen2;

use crate::config::Config;
use crate::text::shown;
use anyhow::{bail, Result};

/// Every family erosion runs, in the order error messages list them.
pub static FAMILIES: &[&Family] = &[&qwen2::QWEN2, &llama::LLAMA, &mistral::MISTRAL];

/// What one architecture family is, as facts the loaders and the transformer read.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    /// `model_type` in `config.json` (also erosion's name for the family).
    pub model_type: &'static str,
    /// The `architectures` entry transformers expects in a saved `config.json`.
    pub hf_class: &'static str,
    /// Which attention projections carry a bias.
    pub attention_bias: AttentionBias,
    /// Which config fields turn on sliding-window attention.
    pub sliding_window: SlidingWindow,
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
    /// Only when `use_sliding_window` is true as well.
    WhenSwitchedOn,
}

/// How llama.cpp stores a family in GGUF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gguf {
    /// `general.architecture`.
    pub arch: &'static str,
    /// Whether llama.cpp's converter permuted the rows of q_proj and k_proj (for its
    /// interleaved RoPE); the loader undoes it.
    pub qk_rows_permuted: bool,
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
            SlidingWindow::WhenSet => cfg.sliding_window,
            SlidingWindow::WhenSwitchedOn if cfg.use_sliding_window == Some(true) => {
                cfg.sliding_window
            }
            SlidingWindow::WhenSwitchedOn => None,
        }
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
        assert_eq!(Family::gguf_archs(), ["llama", "qwen2"]);
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
