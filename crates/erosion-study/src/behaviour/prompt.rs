//! The next-token prompt (analysis 1b).
//!
//! The prompt is the conversation [user, assistant-prefix] with the assistant's turn left
//! open: for ChatML `...<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\nI wish I could`,
//! no end-of-turn token after the prefix. It is built the way generation sees it, for any
//! template: the template rendered with `add_generation_prompt = true` (which writes the
//! assistant header and nothing after it), the prefix text appended, and the whole string
//! tokenized at once (so the tokens at the header/prefix seam are the tokenizer's own). As a
//! check, the conversation is also rendered with the prefix as a closed assistant message and
//! cut at the end of its content: for templates that render an open and a closed turn alike
//! (ChatML, Llama 3, ...) the two texts are identical, and the result records whether they are.

pub(crate) use crate::context::renders_plainly;
use anyhow::{anyhow, Result};
use erosion_model::chat::{ChatFormat, Message, PlainFormat, SpanOptions};
use erosion_model::tokenizer::ModelTokenizer;
use serde::{Deserialize, Serialize};

/// The rendered next-token prompt of one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrefixPrompt {
    /// `template` (the chat template) or `plain` (`"{user}\n{prefix}"`, for a base model
    /// without a template or with `render.plain_base`).
    pub format: String,
    /// The prompt as text.
    pub text: String,
    /// Its token ids, what the model reads.
    pub ids: Vec<u32>,
    /// Whether the closed-turn render cut after the prefix gives the same text (template only;
    /// `None` when that render failed or for the plain format).
    pub matches_closed_turn: Option<bool>,
}

/// The open-turn prompt for `user` with the assistant's first words `prefix`.
pub(crate) fn prefix_prompt(
    tok: &ModelTokenizer,
    plain: bool,
    user: &str,
    prefix: &str,
) -> Result<PrefixPrompt> {
    let encode = |text: &str, special: bool| -> Result<Vec<u32>> {
        Ok(tok
            .tokenizer
            .encode(text, special)
            .map_err(|e| anyhow!("tokenizing the next-token prompt failed: {e}"))?
            .get_ids()
            .to_vec())
    };
    if plain {
        let format = PlainFormat::default();
        let text = format.render(&[Message::user(user), Message::assistant(prefix)], None)?;
        let ids = encode(&text, format.add_special_tokens)?;
        return Ok(PrefixPrompt {
            format: "plain".into(),
            text,
            ids,
            matches_closed_turn: None,
        });
    }
    let mut text = tok.apply_chat_template(&[Message::user(user)], true)?;
    text.push_str(prefix);
    let ids = encode(&text, false)?;
    let closed = tok
        .encode_chat(
            &[Message::user(user), Message::assistant(prefix)],
            &ChatFormat::Template,
            &SpanOptions {
                include_end_of_turn: false,
                ..SpanOptions::default()
            },
        )
        .ok()
        .map(|chat| chat.location.text[..chat.location.content.end] == text);
    Ok(PrefixPrompt {
        format: "template".into(),
        text,
        ids,
        matches_closed_turn: closed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use erosion_model::load::Checkpoint;

    #[test]
    fn the_prefix_prompt_leaves_the_assistant_turn_open() {
        let gguf = crate::fixture::smollm2_gguf();
        let tok = Checkpoint::open(gguf.to_str().unwrap()).unwrap().tokenizer;
        let p = prefix_prompt(&tok, false, "Hello! One wish?", "I wish I could").unwrap();
        assert_eq!(p.format, "template");
        assert!(
            p.text.ends_with("<|im_start|>user\nHello! One wish?<|im_end|>\n<|im_start|>assistant\nI wish I could"),
            "{:?}",
            p.text
        );
        // SmolLM2's template adds its default system prompt when there is none.
        assert!(p.text.starts_with("<|im_start|>system\n"), "{:?}", p.text);
        assert_eq!(p.matches_closed_turn, Some(true));
        let enc = |s: &str| tok.tokenizer.encode(s, false).unwrap().get_ids().to_vec();
        let header = enc("<|im_start|>assistant\n");
        let prefix = enc("I wish I could");
        let tail: Vec<u32> = header.iter().chain(&prefix).copied().collect();
        assert!(p.ids.ends_with(&tail), "{:?}", p.ids);
        assert_eq!(p.ids, enc(&p.text));
        assert_eq!(tok.token_label(prefix[1]), " wish");

        let plain = prefix_prompt(&tok, true, "Hello!", "I wish I could").unwrap();
        assert_eq!(
            (plain.format.as_str(), plain.text.as_str()),
            ("plain", "Hello!\nI wish I could")
        );
        assert!(plain.matches_closed_turn.is_none());
        assert!(
            renders_plainly(&tok, "base", true)
                && !renders_plainly(&tok, "base", false)
                && !renders_plainly(&tok, "instruct", true)
        );
    }
}
