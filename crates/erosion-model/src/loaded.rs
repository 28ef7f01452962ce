//! A model ready to answer: the transformer with its tokenizer (and chat template), the ids
//! that end an answer, and the steering applied to its forward passes. What evaluation, the
//! causal tests and the demo hold a loaded checkpoint as.

use anyhow::Result;
use candle_core::{DType, Device};

use crate::hooks::Steering;
use crate::load::{Checkpoint, OpenOptions};
use crate::tokenizer::ModelTokenizer;
use crate::transformer::Transformer;

/// A loaded model, named.
pub struct LoadedModel {
    pub name: String,
    /// Where it was loaded from, if known.
    pub source: Option<String>,
    pub model: Transformer,
    pub tokenizer: ModelTokenizer,
    /// Ids that end an answer.
    pub stop_ids: Vec<u32>,
    /// Applied to every forward pass (causal tests); empty by default.
    pub steering: Steering,
}

impl LoadedModel {
    /// A loaded model; `eos` are the checkpoint's EOS ids (the tokenizer's end-of-turn
    /// markers are added to them).
    pub fn new(name: &str, model: Transformer, tokenizer: ModelTokenizer, eos: &[u32]) -> Self {
        let stop_ids = stop_ids(&tokenizer, eos);
        Self {
            name: name.to_string(),
            source: None,
            model,
            tokenizer,
            stop_ids,
            steering: Steering::default(),
        }
    }

    /// Opens a checkpoint (folder, .gguf, hub id or `BASE+ADAPTER`), named `name` (default:
    /// the spec).
    pub fn open(spec: &str, name: Option<&str>, dtype: DType, device: &Device) -> Result<Self> {
        Self::open_with(spec, &OpenOptions::default(), name, dtype, device)
    }

    /// [`LoadedModel::open`] with the options of [`Checkpoint::open_with`] (the adapter's
    /// scale among them).
    pub fn open_with(
        spec: &str,
        opts: &OpenOptions,
        name: Option<&str>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let ck = Checkpoint::open_with(spec, opts)?;
        let model = ck.load_model(dtype, device)?;
        let eos = ck.eos_token_ids();
        let source = ck.describe();
        let mut m = Self::new(name.unwrap_or(spec), model, ck.tokenizer, &eos);
        m.source = Some(source);
        Ok(m)
    }
}

/// Ids that end an answer: every end-of-turn marker of the tokenizer (its special added tokens
/// and EOS) and the checkpoint's EOS ids (`eos`), sorted and deduplicated.
pub fn stop_ids(tok: &ModelTokenizer, eos: &[u32]) -> Vec<u32> {
    let mut ids: Vec<u32> = tok
        .end_of_turn_markers()
        .iter()
        .filter_map(|m| tok.tokenizer.token_to_id(m))
        .chain(eos.iter().copied())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}
