//! `generation_config.json`: the token ids that end generation and the sampling defaults a
//! checkpoint ships with. Every field is optional, as in transformers' `GenerationConfig`.

use crate::config::TokenIds;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    /// One id, or several (Qwen2.5 and Llama 3 stop on any of a list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub do_sample: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
}

impl GenerationConfig {
    /// Reads `path` if it exists. A missing file is `None` (it is optional in a checkpoint);
    /// a malformed one is an error naming the file.
    pub fn from_file_if_present(path: &Path) -> Result<Option<Self>> {
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let cfg = serde_json::from_str(&text)
            .with_context(|| format!("malformed generation config {}", path.display()))?;
        Ok(Some(cfg))
    }

    /// Checks that every id names a row of a `vocab_size` embedding.
    pub fn check_ids(&self, vocab_size: usize) -> Result<()> {
        crate::config::check_token_ids(
            vocab_size,
            self.bos_token_id,
            self.eos_token_id.as_ref(),
            self.pad_token_id,
        )
    }

    pub fn eos_token_ids(&self) -> Vec<u32> {
        self.eos_token_id
            .as_ref()
            .map(TokenIds::to_vec)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen_generation_config_parses() {
        // Qwen2.5-0.5B-Instruct's file (transformers_version and other keys are ignored).
        let text = r#"{"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": true,
            "eos_token_id": [151645, 151643], "repetition_penalty": 1.1, "temperature": 0.7,
            "top_p": 0.8, "top_k": 20, "transformers_version": "4.37.0"}"#;
        let g: GenerationConfig = serde_json::from_str(text).unwrap();
        assert_eq!(g.eos_token_ids(), vec![151645, 151643]);
        assert_eq!(g.top_k, Some(20));
        assert_eq!(g.temperature, Some(0.7));
        assert_eq!(g.max_new_tokens, None);
    }
}
