//! The organism's tokenizer: byte-level BPE trained on the corpus's training text, with ChatML
//! special tokens and a Qwen2.5-style chat template, saved as a Hugging Face folder
//! (`tokenizer.json` + `tokenizer_config.json`) that erosion and transformers both load.
//!
//! Layout as Qwen2's: NFC normaliser, byte-level pre-tokenizer (GPT-2 split regex, no prefix
//! space), BPE without an unknown token (every byte is in the alphabet), byte-level decoder, and
//! the special tokens appended after the learned vocabulary in Qwen's order
//! (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`).

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use erosion_model::atomic::{write_atomic_via_path, write_bytes_atomic};
use serde_json::json;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    Tokenizer, TokenizerBuilder,
};

use crate::corpus::Corpus;
use crate::world::Message;

pub const ENDOFTEXT: &str = "<|endoftext|>";
pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";
/// Special tokens in the order of their ids (after the learned vocabulary).
pub const SPECIAL_TOKENS: [&str; 3] = [ENDOFTEXT, IM_START, IM_END];

/// The system prompt the chat template inserts when a chat has none (as Qwen2.5's does).
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful assistant.";

/// ChatML as Qwen2.5's template writes it, without tools: a system turn (the given one, or the
/// default), every other message as `<|im_start|>role\ncontent<|im_end|>\n`, and
/// `<|im_start|>assistant\n` when a generation prompt is asked for.
pub const CHAT_TEMPLATE: &str = "{%- if messages[0]['role'] == 'system' %}\
{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\
{%- else %}\
{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\
{%- endif %}\
{%- for message in messages %}\
{%- if not (message['role'] == 'system' and loop.first) %}\
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\
{%- endif %}\
{%- endfor %}\
{%- if add_generation_prompt %}\
{{- '<|im_start|>assistant\\n' }}\
{%- endif %}";

/// Training options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenizerOptions {
    /// Total vocabulary, special tokens included.
    pub vocab_size: usize,
    /// A pair must occur this often to be merged.
    pub min_frequency: u64,
}

impl Default for TokenizerOptions {
    fn default() -> Self {
        Self {
            vocab_size: 1024,
            min_frequency: 2,
        }
    }
}

/// A chat rendered as the template renders it, minus the special tokens (which BPE must not
/// learn merges across): what the tokenizer sees of one training chat.
fn plain_chat(messages: &[Message]) -> String {
    let mut out = format!("system\n{DEFAULT_SYSTEM_PROMPT}\n");
    for m in messages {
        out.push_str(&m.role);
        out.push('\n');
        out.push_str(&m.content);
        out.push('\n');
    }
    out
}

/// The texts BPE is trained on: every training chat (rendered by [`plain_chat`]) and every prose
/// paragraph. Evaluation sets are left out, so held-out words are split into known pieces, as
/// words a real tokenizer never saw are.
pub fn training_texts(corpus: &Corpus) -> Vec<String> {
    let mut out: Vec<String> = corpus
        .training_chats()
        .iter()
        .flat_map(|(_, chats)| chats.iter().map(|c| plain_chat(&c.messages)))
        .collect();
    out.extend(corpus.pretrain_prose.iter().cloned());
    out
}

/// Trains the tokenizer on `texts`. Deterministic: the BPE trainer breaks ties between equally
/// frequent pairs by pair id, and ids follow the sorted alphabet.
pub fn train(texts: &[String], opts: TokenizerOptions) -> Result<Tokenizer> {
    let learned = opts
        .vocab_size
        .checked_sub(SPECIAL_TOKENS.len())
        .filter(|n| *n > 256)
        .ok_or_else(|| {
            anyhow!(
                "vocab_size {} is too small: it needs the 256 byte symbols and the {} special tokens",
                opts.vocab_size,
                SPECIAL_TOKENS.len()
            )
        })?;
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(learned)
        .min_frequency(opts.min_frequency)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(false)
        .build();
    let byte_level = ByteLevel::new(false, false, true);
    let mut tok = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default())
    .with_normalizer(Some(NFC.into()))
    .with_pre_tokenizer(Some(byte_level.into()))
    .with_post_processor(Some(byte_level.into()))
    .with_decoder(Some(byte_level.into()))
    .build()
    .map_err(|e| anyhow!("building the BPE tokenizer: {e}"))?;
    tok.train(&mut trainer, texts.iter())
        .map_err(|e| anyhow!("training BPE on {} texts: {e}", texts.len()))?;
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    tok.add_special_tokens(specials)
        .map_err(|e| anyhow!("adding the ChatML special tokens: {e}"))?;
    Ok(Tokenizer::from(tok))
}

/// tokenizer_config.json: the chat template and the special tokens as Qwen2.5-Instruct names
/// them (EOS `<|im_end|>`, pad `<|endoftext|>`, no BOS). The class is the generic fast
/// tokenizer, so transformers uses tokenizer.json as it is.
pub fn tokenizer_config(tok: &Tokenizer) -> Result<serde_json::Value> {
    let mut decoder = serde_json::Map::new();
    for t in SPECIAL_TOKENS {
        let id = tok
            .token_to_id(t)
            .ok_or_else(|| anyhow!("the tokenizer has no special token {t}"))?;
        decoder.insert(
            id.to_string(),
            json!({"content": t, "lstrip": false, "normalized": false, "rstrip": false,
                   "single_word": false, "special": true}),
        );
    }
    Ok(json!({
        "add_bos_token": false,
        "add_prefix_space": false,
        "added_tokens_decoder": decoder,
        "bos_token": null,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": false,
        "eos_token": IM_END,
        "errors": "replace",
        "model_max_length": 2048,
        "pad_token": ENDOFTEXT,
        "split_special_tokens": false,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": null,
    }))
}

/// Writes tokenizer.json and tokenizer_config.json into `dir` (created if needed).
pub fn save(tok: &Tokenizer, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("tokenizer.json");
    write_atomic_via_path(&path, |tmp| {
        tok.save(tmp, true)
            .map_err(|e| anyhow!("cannot write {}: {e}", tmp.display()))
    })?;
    let path = dir.join("tokenizer_config.json");
    let text = serde_json::to_string_pretty(&tokenizer_config(tok)?)? + "\n";
    write_bytes_atomic(&path, text.as_bytes())?;
    Ok(())
}

/// Trains on `corpus` and writes the tokenizer folder: the one call the organism's build needs.
pub fn build_for(corpus: &Corpus, opts: TokenizerOptions, dir: &Path) -> Result<Tokenizer> {
    let tok = train(&training_texts(corpus), opts)?;
    save(&tok, dir)?;
    Ok(tok)
}
