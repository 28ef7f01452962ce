//! Hook point names, TransformerLens style, and their shapes.
//!
//! | name | shape | what |
//! |---|---|---|
//! | `hook_embed` | `[batch, seq, d_model]` | token embeddings (= `blocks.0.hook_resid_pre`; no positional embedding) |
//! | `blocks.{l}.hook_resid_pre` | `[batch, seq, d_model]` | residual stream entering block l |
//! | `blocks.{l}.ln1.hook_normalized` | `[batch, seq, d_model]` | `input_layernorm` output, gain included: what attention reads |
//! | `blocks.{l}.attn.hook_q` | `[batch, seq, n_heads, d_head]` | queries after `q_proj` (+bias), before RoPE |
//! | `blocks.{l}.attn.hook_k` | `[batch, seq, n_kv_heads, d_head]` | keys before RoPE |
//! | `blocks.{l}.attn.hook_v` | `[batch, seq, n_kv_heads, d_head]` | values |
//! | `blocks.{l}.attn.q_norm.hook_normalized` | `[batch, seq, n_heads, d_head]` | queries after the per-head `q_norm`, before RoPE (Qwen3, Gemma 3) |
//! | `blocks.{l}.attn.k_norm.hook_normalized` | `[batch, seq, n_kv_heads, d_head]` | keys after `k_norm`, before RoPE (Qwen3, Gemma 3) |
//! | `blocks.{l}.attn.hook_rot_q` | `[batch, seq, n_heads, d_head]` | queries after RoPE |
//! | `blocks.{l}.attn.hook_rot_k` | `[batch, seq, n_kv_heads, d_head]` | keys after RoPE |
//! | `blocks.{l}.attn.hook_pattern` | `[batch, n_heads, query, key]` | softmax attention weights; positions select queries |
//! | `blocks.{l}.attn.hook_z` | `[batch, seq, n_heads, d_head]` | per-head attention output, before `o_proj` |
//! | `blocks.{l}.ln1_post.hook_normalized` | `[batch, seq, d_model]` | Gemma's `post_attention_layernorm` on the `o_proj` output (= `hook_attn_out`) |
//! | `blocks.{l}.hook_attn_out` | `[batch, seq, d_model]` | what attention adds to the residual stream: `o_proj` output (after `ln1_post` in Gemma) |
//! | `blocks.{l}.hook_resid_mid` | `[batch, seq, d_model]` | resid_pre + attn_out |
//! | `blocks.{l}.ln2.hook_normalized` | `[batch, seq, d_model]` | the norm before the MLP, gain included: `post_attention_layernorm` (Llama, Qwen), `pre_feedforward_layernorm` (Gemma) |
//! | `blocks.{l}.mlp.hook_pre` | `[batch, seq, d_mlp]` | `gate_proj` output, before SiLU |
//! | `blocks.{l}.mlp.hook_pre_linear` | `[batch, seq, d_mlp]` | `up_proj` output |
//! | `blocks.{l}.mlp.hook_post` | `[batch, seq, d_mlp]` | act(gate) * up (SiLU, or GELU-tanh for Gemma), what `down_proj` reads |
//! | `blocks.{l}.ln2_post.hook_normalized` | `[batch, seq, d_model]` | Gemma's `post_feedforward_layernorm` on the `down_proj` output (= `hook_mlp_out`) |
//! | `blocks.{l}.hook_mlp_out` | `[batch, seq, d_model]` | what the MLP adds to the residual stream: `down_proj` output (after `ln2_post` in Gemma) |
//! | `blocks.{l}.hook_resid_post` | `[batch, seq, d_model]` | resid_mid + mlp_out (= next block's resid_pre) |
//! | `ln_final.hook_normalized` | `[batch, seq, d_model]` | `model.norm` output, gain included |
//! | `hook_logits` | `[batch, seq, vocab]` | `lm_head` output |
//!
//! The four points marked with a family exist only in models of that family (TransformerLens's
//! names: `attn.q_norm` / `attn.k_norm` for its `use_qk_norm`, `ln1_post` / `ln2_post` for
//! Gemma 2's extra norms); elsewhere nothing passes through them. In Gemma, `hook_embed` is
//! the embedding after its `sqrt(d_model)` scale (what the first block reads, as in
//! TransformerLens, which folds the scale into `W_E`).
//!
//! One difference from TransformerLens: its `hook_normalized` is taken before the norm's gain
//! (which it usually folds into the next weights); here the gain is included, so
//! `ln_final.hook_normalized` equals Hugging Face's last hidden state.
//!
//! Hugging Face's `output_hidden_states` maps onto these points as: entry 0 = `hook_embed`,
//! entry l (1 <= l < L) = `blocks.{l-1}.hook_resid_post`, entry L (the last) =
//! `ln_final.hook_normalized` (transformers applies `model.norm` to it), with L = num layers.
//! [`HookPoint::hf_hidden_state`] does this mapping.

use anyhow::{bail, Result};
use std::fmt;

/// A hook point inside block `l`. The order is the order of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Site {
    ResidPre,
    Ln1Normalized,
    Q,
    K,
    V,
    QNormed,
    KNormed,
    RotQ,
    RotK,
    Pattern,
    Z,
    Ln1PostNormalized,
    AttnOut,
    ResidMid,
    Ln2Normalized,
    MlpPre,
    MlpPreLinear,
    MlpPost,
    Ln2PostNormalized,
    MlpOut,
    ResidPost,
}

impl Site {
    pub const ALL: [Site; 21] = [
        Site::ResidPre,
        Site::Ln1Normalized,
        Site::Q,
        Site::K,
        Site::V,
        Site::QNormed,
        Site::KNormed,
        Site::RotQ,
        Site::RotK,
        Site::Pattern,
        Site::Z,
        Site::Ln1PostNormalized,
        Site::AttnOut,
        Site::ResidMid,
        Site::Ln2Normalized,
        Site::MlpPre,
        Site::MlpPreLinear,
        Site::MlpPost,
        Site::Ln2PostNormalized,
        Site::MlpOut,
        Site::ResidPost,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The name after `blocks.{l}.`.
    pub fn suffix(self) -> &'static str {
        match self {
            Site::ResidPre => "hook_resid_pre",
            Site::Ln1Normalized => "ln1.hook_normalized",
            Site::Q => "attn.hook_q",
            Site::K => "attn.hook_k",
            Site::V => "attn.hook_v",
            Site::QNormed => "attn.q_norm.hook_normalized",
            Site::KNormed => "attn.k_norm.hook_normalized",
            Site::RotQ => "attn.hook_rot_q",
            Site::RotK => "attn.hook_rot_k",
            Site::Pattern => "attn.hook_pattern",
            Site::Z => "attn.hook_z",
            Site::Ln1PostNormalized => "ln1_post.hook_normalized",
            Site::AttnOut => "hook_attn_out",
            Site::ResidMid => "hook_resid_mid",
            Site::Ln2Normalized => "ln2.hook_normalized",
            Site::MlpPre => "mlp.hook_pre",
            Site::MlpPreLinear => "mlp.hook_pre_linear",
            Site::MlpPost => "mlp.hook_post",
            Site::Ln2PostNormalized => "ln2_post.hook_normalized",
            Site::MlpOut => "hook_mlp_out",
            Site::ResidPost => "hook_resid_post",
        }
    }

    /// The dimension that indexes token positions (queries, for the attention pattern).
    pub fn seq_dim(self) -> usize {
        match self {
            Site::Pattern => 2,
            _ => 1,
        }
    }
}

/// A named place in the forward pass where an activation can be recorded or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookPoint {
    /// `hook_embed`
    Embed,
    /// `blocks.{layer}.{site}`
    Block { layer: usize, site: Site },
    /// `ln_final.hook_normalized`
    LnFinal,
    /// `hook_logits`
    Logits,
}

/// The accepted names, for error messages.
pub const NAME_PATTERN: &str = "hook_embed, blocks.{l}.hook_resid_pre, blocks.{l}.ln1.hook_normalized, \
blocks.{l}.attn.hook_{q,k,v,rot_q,rot_k,pattern,z}, blocks.{l}.attn.{q,k}_norm.hook_normalized, \
blocks.{l}.ln1_post.hook_normalized, blocks.{l}.hook_attn_out, \
blocks.{l}.hook_resid_mid, blocks.{l}.ln2.hook_normalized, blocks.{l}.mlp.hook_{pre,pre_linear,post}, \
blocks.{l}.ln2_post.hook_normalized, blocks.{l}.hook_mlp_out, blocks.{l}.hook_resid_post, \
ln_final.hook_normalized, hook_logits";

impl HookPoint {
    pub fn block(layer: usize, site: Site) -> Self {
        HookPoint::Block { layer, site }
    }
    pub fn resid_pre(layer: usize) -> Self {
        Self::block(layer, Site::ResidPre)
    }
    pub fn resid_mid(layer: usize) -> Self {
        Self::block(layer, Site::ResidMid)
    }
    pub fn resid_post(layer: usize) -> Self {
        Self::block(layer, Site::ResidPost)
    }
    pub fn attn_out(layer: usize) -> Self {
        Self::block(layer, Site::AttnOut)
    }
    pub fn mlp_out(layer: usize) -> Self {
        Self::block(layer, Site::MlpOut)
    }

    /// The residual stream at layer index `index` in the study's notation: 0 -> `hook_embed`
    /// (the embeddings), l >= 1 -> `blocks.{l-1}.hook_resid_post` (the output of block l-1).
    /// Unchecked: a model of L blocks has indices 0..=L.
    pub fn resid(index: usize) -> Self {
        match index {
            0 => HookPoint::Embed,
            l => HookPoint::resid_post(l - 1),
        }
    }

    /// Parses a name such as `blocks.3.hook_resid_post` and checks the layer against
    /// `n_layers`. An unknown name is an error that lists the accepted pattern.
    pub fn parse(name: &str, n_layers: usize) -> Result<Self> {
        let point = match name {
            "hook_embed" => Some(HookPoint::Embed),
            "ln_final.hook_normalized" => Some(HookPoint::LnFinal),
            "hook_logits" => Some(HookPoint::Logits),
            _ => name.strip_prefix("blocks.").and_then(|rest| {
                let (layer, suffix) = rest.split_once('.')?;
                let layer: usize = layer.parse().ok()?;
                let site = Site::ALL.into_iter().find(|s| s.suffix() == suffix)?;
                Some(HookPoint::Block { layer, site })
            }),
        };
        let Some(point) = point else {
            bail!("unknown hook point `{name}`; hook points are named {NAME_PATTERN}");
        };
        point.check(n_layers)?;
        Ok(point)
    }

    /// Errors when the layer does not exist in a model of `n_layers` blocks.
    pub fn check(&self, n_layers: usize) -> Result<()> {
        if let HookPoint::Block { layer, .. } = self {
            if *layer >= n_layers {
                bail!("hook point `{self}`: layer {layer} does not exist (the model has {n_layers} layers, 0..{n_layers})");
            }
        }
        Ok(())
    }

    /// The hook point holding Hugging Face's `output_hidden_states[index]` for a model of
    /// `n_layers` blocks: 0 -> `hook_embed`, l -> `blocks.{l-1}.hook_resid_post`,
    /// n_layers -> `ln_final.hook_normalized` (transformers normalises the last entry).
    pub fn hf_hidden_state(index: usize, n_layers: usize) -> Result<Self> {
        match index {
            0 => Ok(HookPoint::Embed),
            i if i < n_layers => Ok(HookPoint::resid_post(i - 1)),
            i if i == n_layers => Ok(HookPoint::LnFinal),
            i => bail!("hidden state {i} does not exist: a model of {n_layers} layers has hidden states 0..={n_layers}"),
        }
    }

    /// Index into a flat table of per-point slots: embed, the blocks' sites, ln_final, logits.
    pub(crate) fn slot(&self, n_layers: usize) -> usize {
        match self {
            HookPoint::Embed => 0,
            HookPoint::Block { layer, site } => 1 + layer * Site::COUNT + *site as usize,
            HookPoint::LnFinal => 1 + n_layers * Site::COUNT,
            HookPoint::Logits => 2 + n_layers * Site::COUNT,
        }
    }

    pub(crate) fn n_slots(n_layers: usize) -> usize {
        3 + n_layers * Site::COUNT
    }

    /// The dimension that indexes token positions.
    pub fn seq_dim(&self) -> usize {
        match self {
            HookPoint::Block { site, .. } => site.seq_dim(),
            _ => 1,
        }
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookPoint::Embed => f.write_str("hook_embed"),
            HookPoint::Block { layer, site } => write!(f, "blocks.{layer}.{}", site.suffix()),
            HookPoint::LnFinal => f.write_str("ln_final.hook_normalized"),
            HookPoint::Logits => f.write_str("hook_logits"),
        }
    }
}

/// Anything that names a hook point: a [`HookPoint`] or its string name.
pub trait IntoHookPoint {
    fn into_hook_point(self, n_layers: usize) -> Result<HookPoint>;
}

impl IntoHookPoint for HookPoint {
    fn into_hook_point(self, n_layers: usize) -> Result<HookPoint> {
        self.check(n_layers)?;
        Ok(self)
    }
}

impl IntoHookPoint for &str {
    fn into_hook_point(self, n_layers: usize) -> Result<HookPoint> {
        HookPoint::parse(self, n_layers)
    }
}

impl IntoHookPoint for &String {
    fn into_hook_point(self, n_layers: usize) -> Result<HookPoint> {
        HookPoint::parse(self, n_layers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_and_slots_are_distinct() {
        let n = 3;
        let mut names = vec![HookPoint::Embed, HookPoint::LnFinal, HookPoint::Logits];
        for l in 0..n {
            names.extend(Site::ALL.iter().map(|&s| HookPoint::block(l, s)));
        }
        let mut slots: Vec<usize> = names.iter().map(|p| p.slot(n)).collect();
        for p in &names {
            assert_eq!(HookPoint::parse(&p.to_string(), n).unwrap(), *p);
        }
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), names.len());
        assert_eq!(*slots.last().unwrap() + 1, HookPoint::n_slots(n));
    }

    #[test]
    fn hf_hidden_state_mapping() {
        assert_eq!(HookPoint::hf_hidden_state(0, 4).unwrap(), HookPoint::Embed);
        assert_eq!(
            HookPoint::hf_hidden_state(1, 4).unwrap(),
            HookPoint::resid_post(0)
        );
        assert_eq!(
            HookPoint::hf_hidden_state(3, 4).unwrap(),
            HookPoint::resid_post(2)
        );
        assert_eq!(
            HookPoint::hf_hidden_state(4, 4).unwrap(),
            HookPoint::LnFinal
        );
        assert!(HookPoint::hf_hidden_state(5, 4).is_err());
    }

    #[test]
    fn resid_indices_are_embeddings_then_block_outputs() {
        assert_eq!(HookPoint::resid(0), HookPoint::Embed);
        assert_eq!(HookPoint::resid(1), HookPoint::resid_post(0));
        assert_eq!(HookPoint::resid(4).to_string(), "blocks.3.hook_resid_post");
    }

    #[test]
    fn bad_names_are_explained() {
        let e = HookPoint::parse("blocks.1.hook_resid", 4)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("blocks.1.hook_resid") && e.contains("blocks.{l}.hook_resid_pre"),
            "{e}"
        );
        let e = HookPoint::parse("blocks.7.hook_resid_pre", 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("layer 7") && e.contains("4 layers"), "{e}");
        assert!(HookPoint::parse("blocks.x.hook_resid_pre", 4).is_err());
    }
}
