//! Where the response (the final assistant message) lies in a rendered conversation.
//!
//! Found by rendering, for any template: the conversation is rendered three times, with the final
//! message's content replaced by two different sentinels and with the real content. The two
//! sentinel renderings share a prefix `P` and a suffix `S`; between them each must hold exactly
//! its own sentinel (else the template prints the message twice, or rewrites it, and we refuse).
//! The real rendering must then read `P + r + S`, and `r` is the response as the template
//! printed it: this is exact even when the template transforms the content (Llama 3 `| trim`s
//! it, so leading/trailing whitespace is not part of the response). No role name is searched for.
//!
//! The end-of-turn marker is the part of `S` right after the response that is one of the
//! tokenizer's special tokens (`<|im_end|>`, `<|eot_id|>`, `</s>`), if any.

use std::ops::Range;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::Message;

/// Two sentinels that differ in their first and last characters (so the shared prefix and suffix
/// stop exactly at them), start and end with non-whitespace (so `trim` leaves them alone), and use
/// private-use characters no template or tokenizer treats specially.
const SENTINELS: [&str; 2] = ["\u{E000}erosion-a\u{E001}", "\u{E002}erosion-b\u{E003}"];

/// The response's place in one rendered conversation. Ranges are byte offsets into `text`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseLocation {
    /// The whole rendered conversation.
    pub text: String,
    /// The final assistant message as rendered (after any transformation by the template).
    pub content: Range<usize>,
    /// The special token that closes the assistant turn, right after `content`, if there is one.
    pub end_of_turn: Option<Range<usize>>,
}

impl ResponseLocation {
    /// The response text as rendered.
    pub fn content_text(&self) -> &str {
        &self.text[self.content.clone()]
    }
    /// The text before the response (the prompt, including the assistant header).
    pub fn prompt_text(&self) -> &str {
        &self.text[..self.content.start]
    }
}

/// Locates the final message of `messages` (which must be an assistant message) in its rendering.
/// `render` renders a whole conversation (it is called three times; it must be deterministic, so
/// a template that reads a clock must be given a fixed one). `end_of_turn_markers` are candidate
/// closing strings, typically the tokenizer's special tokens; the longest one found at the end of
/// the response is reported.
pub fn find_response(
    messages: &[Message],
    end_of_turn_markers: &[String],
    mut render: impl FnMut(&[Message]) -> Result<String>,
) -> Result<ResponseLocation> {
    let Some(last) = messages.last() else {
        bail!("cannot locate a response in an empty conversation");
    };
    if last.role != "assistant" {
        bail!("the final message is a '{}' message; the response must be the final 'assistant' message", last.role);
    }
    let with_content = |content: &str| {
        let mut m = messages.to_vec();
        if let Some(last) = m.last_mut() {
            last.content = content.to_string();
        }
        m
    };
    let a = render(&with_content(SENTINELS[0]))?;
    let b = render(&with_content(SENTINELS[1]))?;
    let prefix = common_prefix(&a, &b);
    let suffix = common_suffix(&a[prefix..], &b[prefix..]);
    let middle_a = &a[prefix..a.len() - suffix];
    let middle_b = &b[prefix..b.len() - suffix];
    if middle_a != SENTINELS[0] || middle_b != SENTINELS[1] {
        bail!(
            "the template does not print the final assistant message exactly once and unchanged \
             (a probe message came back as {middle_a:?}); its response span cannot be located"
        );
    }
    let (head, tail) = (&a[..prefix], &a[a.len() - suffix..]);
    let text = render(messages)?;
    if text.len() < head.len() + tail.len() || !text.starts_with(head) || !text.ends_with(tail) {
        bail!(
            "the template renders the text around the final assistant message differently for this \
             content than for a probe content (it depends on the content); the response span \
             cannot be located"
        );
    }
    let content = head.len()..text.len() - tail.len();
    let after = &text[content.end..];
    let end_of_turn = end_of_turn_markers
        .iter()
        .filter(|m| !m.is_empty() && after.starts_with(m.as_str()))
        .map(|m| m.len())
        .max()
        .map(|len| content.end..content.end + len);
    Ok(ResponseLocation {
        text,
        content,
        end_of_turn,
    })
}

/// Length in bytes of the longest common prefix, cut back to a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    let mut n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !a.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// Length in bytes of the longest common suffix, cut back to a character boundary.
fn common_suffix(a: &str, b: &str) -> usize {
    let mut n = a
        .bytes()
        .rev()
        .zip(b.bytes().rev())
        .take_while(|(x, y)| x == y)
        .count();
    while !a.is_char_boundary(a.len() - n) {
        n -= 1;
    }
    n
}

/// How a conversation becomes text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChatFormat {
    /// The checkpoint's own chat template (tokenized without adding special tokens, as
    /// transformers' `apply_chat_template` does: the template writes them itself).
    #[default]
    Template,
    /// A plain format without template, for base models.
    Plain(PlainFormat),
}

/// A template-free rendering for base models: each message is its role's prefix followed by its
/// content, messages joined by `separator`. The default is `"{user}\n{assistant}"` with a system
/// message, if any, as a first paragraph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlainFormat {
    pub system_prefix: String,
    pub user_prefix: String,
    pub assistant_prefix: String,
    /// Text between consecutive messages.
    pub separator: String,
    /// Keep system messages (else they are dropped).
    pub include_system: bool,
    /// Append the tokenizer's EOS token text after the final assistant message.
    pub append_eos: bool,
    /// Let the tokenizer's post-processor add its special tokens (e.g. Llama's BOS), as
    /// `tokenizer(text)` does in transformers.
    pub add_special_tokens: bool,
}

impl Default for PlainFormat {
    fn default() -> Self {
        Self {
            system_prefix: String::new(),
            user_prefix: String::new(),
            assistant_prefix: String::new(),
            separator: "\n".into(),
            include_system: true,
            append_eos: false,
            add_special_tokens: true,
        }
    }
}

impl PlainFormat {
    /// Renders a conversation; `eos` is appended when `append_eos` is set.
    pub fn render(&self, messages: &[Message], eos: Option<&str>) -> Result<String> {
        let mut parts = Vec::with_capacity(messages.len());
        for m in messages {
            let prefix = match m.role.as_str() {
                "system" if !self.include_system => continue,
                "system" => &self.system_prefix,
                "user" => &self.user_prefix,
                "assistant" => &self.assistant_prefix,
                other => {
                    bail!("plain format: unsupported role '{other}' (system, user, assistant)")
                }
            };
            parts.push(format!("{prefix}{}", m.content));
        }
        let mut text = parts.join(&self.separator);
        if self.append_eos {
            match eos {
                Some(eos) => text.push_str(eos),
                None => bail!("plain format: append_eos is set but the tokenizer has no EOS token"),
            }
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chatml(messages: &[Message]) -> Result<String> {
        Ok(messages
            .iter()
            .map(|m| format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content))
            .collect())
    }

    #[test]
    fn chatml_span_and_end_of_turn() {
        let msgs = [Message::user("Hi"), Message::assistant("Hello there")];
        let loc = find_response(
            &msgs,
            &["<|im_end|>".to_string(), "<|im_start|>".into()],
            chatml,
        )
        .unwrap();
        assert_eq!(loc.content_text(), "Hello there");
        assert_eq!(
            loc.prompt_text(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(&loc.text[loc.end_of_turn.clone().unwrap()], "<|im_end|>");
    }

    #[test]
    fn a_trimming_template_gives_the_trimmed_span() {
        let trim = |ms: &[Message]| -> Result<String> {
            Ok(ms
                .iter()
                .map(|m| format!("[{}]{}<eot>", m.role, m.content.trim()))
                .collect())
        };
        let msgs = [Message::user("q"), Message::assistant("  \n  answer  \n")];
        let loc = find_response(&msgs, &["<eot>".to_string()], trim).unwrap();
        assert_eq!(loc.content_text(), "answer");
        assert_eq!(loc.text, "[user]q<eot>[assistant]answer<eot>");
    }

    #[test]
    fn a_content_that_equals_the_template_text_is_still_exact() {
        // The response repeats the closing text; search-based methods would stop early.
        let msgs = [
            Message::user("x"),
            Message::assistant("a<|im_end|>\n<|im_start|>assistant\nb"),
        ];
        let loc = find_response(&msgs, &[], chatml).unwrap();
        assert_eq!(loc.content_text(), "a<|im_end|>\n<|im_start|>assistant\nb");
        assert_eq!(loc.end_of_turn, None);
    }

    #[test]
    fn refuses_templates_that_print_the_response_twice_or_rewrite_it() {
        let twice = |ms: &[Message]| -> Result<String> {
            let last = &ms[ms.len() - 1].content;
            Ok(format!("{last}|{last}"))
        };
        let msgs = [Message::user("x"), Message::assistant("y")];
        assert!(find_response(&msgs, &[], twice)
            .unwrap_err()
            .to_string()
            .contains("exactly once"));
        let upper =
            |ms: &[Message]| -> Result<String> { Ok(ms[ms.len() - 1].content.to_uppercase()) };
        assert!(find_response(&msgs, &[], upper).is_err());
        let depends = |ms: &[Message]| -> Result<String> {
            let c = &ms[ms.len() - 1].content;
            Ok(if c.starts_with('y') {
                format!("<think>{c}")
            } else {
                format!("<plain>{c}")
            })
        };
        assert!(find_response(&msgs, &[], depends)
            .unwrap_err()
            .to_string()
            .contains("depends on the content"));
    }

    #[test]
    fn the_final_message_must_be_the_assistant() {
        let msgs = [Message::user("x")];
        let err = find_response(&msgs, &[], chatml).unwrap_err().to_string();
        assert!(err.contains("'user'"), "{err}");
        assert!(find_response(&[], &[], chatml).is_err());
    }

    #[test]
    fn plain_format() {
        let msgs = [
            Message::system("S"),
            Message::user("Q"),
            Message::assistant("A"),
        ];
        let f = PlainFormat::default();
        assert_eq!(f.render(&msgs, None).unwrap(), "S\nQ\nA");
        let f = PlainFormat {
            user_prefix: "User: ".into(),
            assistant_prefix: "Assistant: ".into(),
            include_system: false,
            append_eos: true,
            ..PlainFormat::default()
        };
        assert_eq!(
            f.render(&msgs, Some("</s>")).unwrap(),
            "User: Q\nAssistant: A</s>"
        );
        let loc = find_response(&msgs, &["</s>".into()], |m| f.render(m, Some("</s>"))).unwrap();
        assert_eq!(loc.content_text(), "A");
        assert_eq!(&loc.text[loc.end_of_turn.unwrap()], "</s>");
        assert!(f.render(&[Message::new("tool", "x")], None).is_err());
    }
}
