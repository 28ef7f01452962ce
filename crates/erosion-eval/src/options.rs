//! How an evaluation samples and measures.

use anyhow::{bail, Result};
use erosion_model::generate::SamplingOptions;
use serde::{Deserialize, Serialize};

/// Options of [`crate::evaluate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalOptions {
    /// Answers per prompt (more than 1 needs a temperature above 0).
    pub samples: usize,
    pub max_new_tokens: usize,
    /// 0 = greedy.
    pub temperature: f64,
    /// Keep the k most probable tokens (0 = all).
    pub top_k: usize,
    /// Nucleus mass (1 = all).
    pub top_p: f64,
    /// Base seed of every answer's seed and of the bootstraps.
    pub seed: u64,
    /// Prompts decoded together.
    pub batch_size: usize,
    /// Run the two-turn test when there is a harmful and a code set.
    pub two_turn: bool,
    /// The compliant first token's text ("Sure").
    pub compliant_text: String,
    /// Resamples of each bootstrap CI.
    pub bootstrap_resamples: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            samples: 1,
            max_new_tokens: 128,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            batch_size: 32,
            two_turn: true,
            compliant_text: "Sure".into(),
            bootstrap_resamples: 2000,
        }
    }
}

impl EvalOptions {
    /// Fails on options that cannot give a meaningful evaluation.
    pub fn validate(&self) -> Result<()> {
        if self.samples == 0 {
            bail!("samples must be at least 1");
        }
        if self.temperature == 0.0 && self.samples > 1 {
            bail!(
                "greedy decoding (temperature 0) gives the same answer for every sample: \
                 use a temperature above 0 or 1 sample"
            );
        }
        if self.max_new_tokens == 0 {
            bail!("max_new_tokens must be at least 1");
        }
        if self.bootstrap_resamples < 2 {
            bail!("bootstrap_resamples must be at least 2");
        }
        if self.compliant_text.is_empty() {
            bail!("the compliant first token's text is empty");
        }
        self.sampling().validate()
    }

    /// The per-token sampling rule (the seed is set per answer).
    pub fn sampling(&self) -> SamplingOptions {
        SamplingOptions {
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
        }
    }

    /// Greedy decoding with the same length limit (the two-turn test's first answer).
    pub fn greedy(&self) -> SamplingOptions {
        SamplingOptions {
            temperature: 0.0,
            ..self.sampling()
        }
    }
}
