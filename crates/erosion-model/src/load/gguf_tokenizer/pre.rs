//! How text is split and spelled before BPE: the pre-tokenizer (and normalizer) of each
//! supported `tokenizer.ggml.pre`, and GPT-2's byte alphabet.

use anyhow::{anyhow, bail, Result};
use std::collections::HashSet;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::normalizers::NFC;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

/// GPT-2's split (also the regex of `ByteLevel(use_regex=true)`).
const GPT2_SPLIT: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama 3's split (its tokenizer.json; llama.cpp spells the case-insensitive group out).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split: like Llama 3's, but one digit per piece.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizer.ggml.pre` values erosion understands.
pub const SUPPORTED_PRE: &[&str] = &[
    "default",
    "gpt-2",
    "gpt2",
    "smollm",
    "starcoder",
    "refact",
    "codeshell",
    "llama-bpe",
    "llama3",
    "llama-v3",
    "smaug-bpe",
    "dbrx",
    "falcon3",
    "qwen2",
    "deepseek-r1-qwen",
];

/// A split on `pattern`, each match its own piece.
fn split(pattern: &str) -> Result<PreTokenizerWrapper> {
    let s = Split::new(
        SplitPattern::Regex(pattern.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| anyhow!("bad pre-tokenizer regex {pattern}: {e}"))?;
    Ok(PreTokenizerWrapper::Split(s))
}

/// Byte-level mapping applied after the splits (no regex of its own).
fn bytes_only() -> PreTokenizerWrapper {
    PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false))
}

/// The pre-tokenizer (and normalizer) for `tokenizer.ggml.pre`; `ignore_merges` for Llama 3.
pub(super) struct Pre {
    pub pre_tokenizer: PreTokenizerWrapper,
    pub normalizer: Option<NormalizerWrapper>,
    pub ignore_merges: bool,
}

/// The pre-tokenizer of `tokenizer.ggml.pre = pre`, following llama.cpp (module docs of
/// [`super`]); an unsupported name is an error listing the supported ones.
pub(super) fn pre_tokenizer(pre: &str) -> Result<Pre> {
    let seq = |v: Vec<PreTokenizerWrapper>| PreTokenizerWrapper::Sequence(Sequence::new(v));
    let plain = |pt| Pre {
        pre_tokenizer: pt,
        normalizer: None,
        ignore_merges: false,
    };
    Ok(match pre {
        // llama.cpp's fallback for files whose pre-tokenizer its converter did not recognise.
        "default" => plain(seq(vec![
            split(r"[\p{P}\$\+<=>\^~\|]+")?,
            split(GPT2_SPLIT)?,
            split(r"\p{N}+")?,
            split(r"[0-9][0-9][0-9]")?,
            bytes_only(),
        ])),
        "gpt-2" | "gpt2" => plain(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
            false, false, true,
        ))),
        // StarCoder family (SmolLM2): every digit alone, then GPT-2's split.
        "smollm" | "starcoder" | "refact" | "codeshell" => plain(seq(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, true)),
        ])),
        "llama-bpe" | "llama3" | "llama-v3" | "smaug-bpe" | "dbrx" | "falcon3" => Pre {
            pre_tokenizer: seq(vec![split(LLAMA3_SPLIT)?, bytes_only()]),
            normalizer: None,
            ignore_merges: true,
        },
        // Qwen2's tokenizer.json normalises to NFC first.
        "qwen2" => Pre {
            pre_tokenizer: seq(vec![split(QWEN2_SPLIT)?, bytes_only()]),
            normalizer: Some(NormalizerWrapper::NFC(NFC)),
            ignore_merges: false,
        },
        "deepseek-r1-qwen" => plain(seq(vec![split(QWEN2_SPLIT)?, bytes_only()])),
        other => bail!(
            "tokenizer.ggml.pre = `{}` is not supported (supported: {})",
            crate::text::shown(other),
            SUPPORTED_PRE.join(", ")
        ),
    })
}

/// GPT-2's byte -> printable character table (`bytes_to_unicode`): printable Latin-1 bytes
/// map to themselves, the rest to U+0100 onwards in byte order.
pub(super) fn byte_alphabet() -> Vec<char> {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut next = 256u32;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                let c = char::from_u32(next).unwrap();
                next += 1;
                c
            }
        })
        .collect()
}

/// GPT-2's byte alphabet ([`byte_alphabet`]) with a membership test.
pub(super) struct Alphabet {
    chars: Vec<char>,
    set: HashSet<char>,
}

impl Alphabet {
    pub(super) fn new() -> Self {
        let chars = byte_alphabet();
        let set = chars.iter().copied().collect();
        Alphabet { chars, set }
    }

    /// Whether `t` is written in the byte alphabet already (as GGUF stores tokens).
    pub(super) fn spells(&self, t: &str) -> bool {
        t.chars().all(|c| self.set.contains(&c))
    }

    /// `t` as the vocabulary keys it: as stored when spelled in the alphabet, else (a
    /// special token written plainly) respelled byte by byte, as transformers does.
    pub(super) fn key(&self, t: &str) -> String {
        if self.spells(t) {
            t.to_string()
        } else {
            t.bytes().map(|b| self.chars[b as usize]).collect()
        }
    }
}
