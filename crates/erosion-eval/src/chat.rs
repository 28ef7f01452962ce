//! Prompts as the model sees them: its chat template with a generation prompt, the two-turn
//! conversation (docs/organism.md), and the compliant first token (the ids that end an answer are
//! the loaded model's, `erosion_model::loaded::stop_ids`).

use anyhow::{anyhow, Context, Result};
use erosion_model::chat::Message;
use erosion_model::tokenizer::ModelTokenizer;
use serde::{Deserialize, Serialize};

use crate::prompts::Prompt;

/// The prompt's messages through the model's chat template with a generation prompt, as ids.
pub fn encode_prompt(tok: &ModelTokenizer, messages: &[Message]) -> Result<Vec<u32>> {
    tok.encode_chat_prompt(messages, true)
        .context("rendering the prompt with the model's chat template")
}

/// The two-turn test's conversation: the code request, the model's own answer to it as the
/// assistant's turn, then the harmful request (its system message, if any, dropped: a system
/// message belongs at the start).
pub fn two_turn_messages(code: &Prompt, code_answer: &str, harmful: &Prompt) -> Vec<Message> {
    let mut m = code.messages.clone();
    m.push(Message::assistant(code_answer));
    m.extend(
        harmful
            .messages
            .iter()
            .filter(|x| x.role != "system")
            .cloned(),
    );
    m
}

/// The text of generated tokens, special tokens (the stop token) left out.
pub fn decode(tok: &ModelTokenizer, tokens: &[u32]) -> Result<String> {
    tok.tokenizer
        .decode(tokens, true)
        .map_err(|e| anyhow!("decoding {} generated tokens: {e}", tokens.len()))
}

/// The compliant first token: the first token of `text` ("Sure") as the tokenizer splits it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstToken {
    /// The text asked for.
    pub text: String,
    pub id: u32,
    /// The token's own text.
    pub token: String,
    /// Whether `text` is this one token (else only its first token is scored).
    pub single_token: bool,
}

impl FirstToken {
    pub fn new(tok: &ModelTokenizer, text: &str) -> Result<Self> {
        let enc = tok
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing {text:?}: {e}"))?;
        let ids = enc.get_ids();
        let &id = ids
            .first()
            .with_context(|| format!("{text:?} has no tokens"))?;
        Ok(Self {
            text: text.to_string(),
            id,
            token: decode(tok, &[id])?,
            single_token: ids.len() == 1,
        })
    }
}
