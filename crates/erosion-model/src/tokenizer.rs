//! A checkpoint's tokenizer together with its chat template and special tokens.
//!
//! Read from a Hugging Face folder the way transformers reads it: `tokenizer.json` (required),
//! `tokenizer_config.json` (the chat template, as a string or a list of named templates, and the
//! special tokens, as strings or `AddedToken` objects), `special_tokens_map.json` for older
//! checkpoints, and a separate `chat_template.jinja` (which wins over the config, as in
//! transformers) or `chat_template.json`.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value as Json;

use crate::chat::span::find_response;
use crate::chat::tokens::tokenize_location;
use crate::chat::{ChatContext, ChatFormat, ChatTemplate, Message, SpanOptions, TokenizedChat};

#[derive(Clone)]
pub struct ModelTokenizer {
    pub tokenizer: tokenizers::Tokenizer,
    pub chat_template: Option<crate::chat::ChatTemplate>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
}

impl std::fmt::Debug for ModelTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelTokenizer")
            .field("vocab_size", &self.tokenizer.get_vocab_size(true))
            .field("chat_template", &self.chat_template.is_some())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("pad_token", &self.pad_token)
            .finish()
    }
}

/// A special token in tokenizer_config.json: `"<s>"`, `{"content": "<s>", ...}` or `null`.
fn token_text(value: Option<&Json>, file: &Path, field: &str) -> Result<Option<String>> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(Json::Object(o)) => match o.get("content") {
            Some(Json::String(s)) => Ok(Some(s.clone())),
            _ => bail!(
                "{}: field `{field}` is an object without a string `content`",
                file.display()
            ),
        },
        Some(other) => bail!(
            "{}: field `{field}` must be a string or an AddedToken object, not {other}",
            file.display()
        ),
    }
}

/// The `chat_template` field: a string, or a list of `{"name", "template"}` of which transformers
/// uses the one named `default`.
fn template_field(value: &Json, file: &Path) -> Result<Option<String>> {
    match value {
        Json::Null => Ok(None),
        Json::String(s) => Ok(Some(s.clone())),
        Json::Array(items) => {
            let mut names = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let name = item.get("name").and_then(Json::as_str);
                let template = item.get("template").and_then(Json::as_str);
                match (name, template) {
                    (Some("default"), Some(t)) => return Ok(Some(t.to_string())),
                    (Some(n), Some(_)) => names.push(n.to_string()),
                    _ => bail!(
                        "{}: chat_template[{i}] needs string fields `name` and `template`",
                        file.display()
                    ),
                }
            }
            bail!(
                "{}: the chat templates are named {names:?} and none is named `default` (transformers would ask which to use)",
                file.display()
            )
        }
        other => bail!(
            "{}: `chat_template` must be a string or a list of named templates, not {other}",
            file.display()
        ),
    }
}

fn read_json(path: &Path) -> Result<Json> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

impl ModelTokenizer {
    /// From a Hugging Face folder: tokenizer.json, tokenizer_config.json (chat template and
    /// special tokens), and chat_template.jinja / chat_template.json where present.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        // Control characters a file (or a message quoting it) holds are escaped.
        (|| {
            let tokenizer_file = dir.join("tokenizer.json");
            if !tokenizer_file.is_file() {
                bail!(
                    "no tokenizer.json in {} (erosion needs the fast-tokenizer file that transformers saves)",
                    dir.display()
                );
            }
            let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_file)
                .map_err(|e| anyhow!("cannot load {}: {e}", tokenizer_file.display()))?;

            // The template and the file it came from (named in its error messages).
            let mut template: Option<(String, std::path::PathBuf)> = None;
            let (mut bos, mut eos, mut pad) = (None, None, None);
            let map_file = dir.join("special_tokens_map.json");
            if map_file.is_file() {
                let map = read_json(&map_file)?;
                bos = token_text(map.get("bos_token"), &map_file, "bos_token")?;
                eos = token_text(map.get("eos_token"), &map_file, "eos_token")?;
                pad = token_text(map.get("pad_token"), &map_file, "pad_token")?;
            }
            let config_file = dir.join("tokenizer_config.json");
            if config_file.is_file() {
                let config = read_json(&config_file)?;
                // tokenizer_config.json wins over special_tokens_map.json where it names a token.
                for (field, slot) in [
                    ("bos_token", &mut bos),
                    ("eos_token", &mut eos),
                    ("pad_token", &mut pad),
                ] {
                    if config.get(field).is_some() {
                        *slot = token_text(config.get(field), &config_file, field)?;
                    }
                }
                if let Some(t) = config.get("chat_template") {
                    template = template_field(t, &config_file)?.map(|t| (t, config_file.clone()));
                }
            }
            let json_template = dir.join("chat_template.json");
            if json_template.is_file() {
                let value = read_json(&json_template)?;
                let t = value.get("chat_template").ok_or_else(|| {
                    anyhow!("{} has no `chat_template` field", json_template.display())
                })?;
                template = template_field(t, &json_template)?
                    .map(|t| (t, json_template.clone()))
                    .or(template);
            }
            let jinja_template = dir.join("chat_template.jinja");
            if jinja_template.is_file() {
                let text = std::fs::read_to_string(&jinja_template)
                    .with_context(|| format!("cannot read {}", jinja_template.display()))?;
                template = Some((text, jinja_template.clone()));
            }
            let template = template
                .map(|(source, file)| ChatTemplate::from_origin(&source, file.display().to_string()))
                .transpose()?;
            Self::with_template(tokenizer, template, bos, eos, pad)
                .with_context(|| format!("tokenizer in {}", dir.display()))
        })()
        .map_err(crate::text::escape_error)
    }

    /// From parts (used by the GGUF loader, which rebuilds the tokenizer from metadata).
    /// Truncation and padding stored in the tokenizer are switched off: chat rendering needs
    /// every token, as transformers' `apply_chat_template` produces them.
    pub fn new(
        tokenizer: tokenizers::Tokenizer,
        chat_template: Option<String>,
        bos_token: Option<String>,
        eos_token: Option<String>,
        pad_token: Option<String>,
    ) -> Result<Self> {
        let chat_template = chat_template
            .map(|src| ChatTemplate::new(&src))
            .transpose()?;
        Self::with_template(tokenizer, chat_template, bos_token, eos_token, pad_token)
    }

    /// [`ModelTokenizer::new`] with the chat template already compiled (with its origin).
    pub fn with_template(
        tokenizer: tokenizers::Tokenizer,
        chat_template: Option<ChatTemplate>,
        bos_token: Option<String>,
        eos_token: Option<String>,
        pad_token: Option<String>,
    ) -> Result<Self> {
        let mut tokenizer = tokenizer;
        tokenizer
            .with_truncation(None)
            .map_err(|e| anyhow!("cannot switch off the tokenizer's truncation: {e}"))?;
        tokenizer.with_padding(None);
        Ok(Self {
            tokenizer,
            chat_template,
            bos_token,
            eos_token,
            pad_token,
        })
    }

    /// The chat template, or an error telling the user to pick a plain format.
    pub fn template(&self) -> Result<&ChatTemplate> {
        self.chat_template.as_ref().ok_or_else(|| {
            anyhow!("this tokenizer has no chat template; render with a plain format instead (e.g. for a base model)")
        })
    }

    /// A token's text for a label: the token decoded alone; when that is not whole UTF-8 (a
    /// byte-level token holding part of a character decodes to U+FFFD), the vocabulary's raw
    /// token string instead (e.g. `Ã¢`), so the label is never a bare replacement character.
    pub fn token_label(&self, id: u32) -> String {
        match self.tokenizer.decode(&[id], false) {
            Ok(s) if !s.contains('\u{FFFD}') => s,
            _ => self
                .tokenizer
                .id_to_token(id)
                .unwrap_or_else(|| format!("<{id}>")),
        }
    }

    /// The template context transformers would build: the named special tokens that are set.
    pub fn chat_context(&self, add_generation_prompt: bool) -> ChatContext {
        ChatContext::with_tokens(
            add_generation_prompt,
            &[
                ("bos_token", self.bos_token.as_deref()),
                ("eos_token", self.eos_token.as_deref()),
                ("pad_token", self.pad_token.as_deref()),
            ],
        )
    }

    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`.
    pub fn apply_chat_template(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.template()?
            .render(messages, &self.chat_context(add_generation_prompt))
    }

    /// `apply_chat_template(messages, tokenize=True, ...)`: the rendered text tokenized without
    /// adding special tokens (the template writes them).
    pub fn encode_chat_prompt(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        let text = self.apply_chat_template(messages, add_generation_prompt)?;
        let enc = self
            .tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| anyhow!("tokenizing the rendered chat failed: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Strings that can close an assistant turn: the tokenizer's special added tokens and the
    /// EOS token.
    pub fn end_of_turn_markers(&self) -> Vec<String> {
        let mut markers: Vec<String> = self
            .tokenizer
            .get_added_tokens_decoder()
            .into_values()
            .filter(|t| t.special)
            .map(|t| t.content)
            .collect();
        markers.extend(self.eos_token.iter().cloned());
        markers.sort();
        markers.dedup();
        markers
    }

    /// Renders `messages` (the last must be the assistant's response) and tokenizes it, with the
    /// response's exact token span. With [`ChatFormat::Template`] the text is what transformers
    /// renders and the ids what `apply_chat_template(tokenize=True)` returns.
    pub fn encode_chat(
        &self,
        messages: &[Message],
        format: &ChatFormat,
        opts: &SpanOptions,
    ) -> Result<TokenizedChat> {
        let markers = self.end_of_turn_markers();
        let (location, add_special_tokens) = match format {
            ChatFormat::Template => {
                let template = self.template()?;
                let mut ctx = self.chat_context(false);
                // One clock for the probe renders and the real one.
                ctx.now_unix = Some(crate::chat::pycompat_now());
                (
                    find_response(messages, &markers, |m| template.render(m, &ctx))?,
                    false,
                )
            }
            ChatFormat::Plain(plain) => {
                let eos = self.eos_token.as_deref();
                (
                    find_response(messages, &markers, |m| plain.render(m, eos))?,
                    plain.add_special_tokens,
                )
            }
        };
        tokenize_location(&self.tokenizer, location, add_special_tokens, opts)
    }
}
