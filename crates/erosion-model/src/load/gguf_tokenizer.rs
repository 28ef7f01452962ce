//! The tokenizer a GGUF describes in its metadata (`tokenizer.ggml.*`), rebuilt as a
//! Hugging Face `tokenizers::Tokenizer`.
//!
//! Only byte-level BPE (`tokenizer.ggml.model = "gpt2"`: GPT-2, Llama 3, Qwen2, SmolLM) is
//! supported. Vocabulary and merges come from the file; how text is split before BPE depends
//! on `tokenizer.ggml.pre`, mirroring llama.cpp's `llm_tokenizer_bpe` (llama-vocab.cpp), whose
//! behaviour the file was written for, and the model's own `tokenizer.json` where that is
//! known. For `smollm`/`starcoder` transformers' GGUF loader (integrations/gguf) keeps GPT-2's
//! split, while llama.cpp and SmolLM2's own tokenizer.json (`Digits(individual_digits)` +
//! `ByteLevel`) split every digit first; we follow the latter. (On SmolLM2's vocabulary the two
//! give the same ids, as no merge joins a digit to anything; on other vocabularies they may not.)

use super::gguf::{meta_str, meta_usize, Metadata};
use crate::tokenizer::ModelTokenizer;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::Value;
use std::collections::HashSet;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::NFC;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    SplitDelimiterBehavior, Tokenizer,
};

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

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

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
struct Pre {
    pre_tokenizer: PreTokenizerWrapper,
    normalizer: Option<NormalizerWrapper>,
    ignore_merges: bool,
}

fn pre_tokenizer(pre: &str) -> Result<Pre> {
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
            "tokenizer.ggml.pre = `{other}` is not supported (supported: {})",
            SUPPORTED_PRE.join(", ")
        ),
    })
}

/// GPT-2's byte -> printable character table (`bytes_to_unicode`): printable Latin-1 bytes
/// map to themselves, the rest to U+0100 onwards in byte order.
fn byte_alphabet() -> Vec<char> {
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

fn string_array(md: &Metadata, key: &str, path: &Path) -> Result<Vec<String>> {
    match md.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => bail!(
                    "GGUF {}: {key}[{i}] is not a string: {other:?}",
                    path.display()
                ),
            })
            .collect(),
        Some(other) => bail!(
            "GGUF {}: {key} is not an array: {:?}",
            path.display(),
            other.value_type()
        ),
        None => bail!("GGUF {} has no {key}", path.display()),
    }
}

fn int_array(md: &Metadata, key: &str) -> Option<Vec<i64>> {
    match md.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::I32(x) => Some(*x as i64),
                Value::U32(x) => Some(*x as i64),
                Value::I8(x) => Some(*x as i64),
                Value::U8(x) => Some(*x as i64),
                Value::I64(x) => Some(*x),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn meta_bool(md: &Metadata, key: &str) -> Option<bool> {
    match md.get(key) {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    }
}

/// A post-processor putting `bos` before and `eos` after each sequence, as Llama 3's
/// tokenizer.json does: single `[bos] $A [eos]`, pair `[bos] $A [eos] [bos] $B [eos]`.
fn bos_eos_template(
    bos: Option<(String, u32)>,
    eos: Option<(String, u32)>,
) -> Result<TemplateProcessing> {
    let around = |seq: &str, type_id: u32| -> Vec<String> {
        let mut pieces = Vec::new();
        pieces.extend(bos.iter().map(|(t, _)| format!("{t}:{type_id}")));
        pieces.push(format!("{seq}:{type_id}"));
        pieces.extend(eos.iter().map(|(t, _)| format!("{t}:{type_id}")));
        pieces
    };
    let specials: Vec<(String, u32)> = bos.iter().chain(eos.iter()).cloned().collect();
    TemplateProcessing::builder()
        .try_single(around("$A", 0))
        .map_err(|e| anyhow!("{e}"))?
        .try_pair([around("$A", 0), around("$B", 1)].concat())
        .map_err(|e| anyhow!("{e}"))?
        .special_tokens(specials)
        .build()
        .map_err(|e| anyhow!("cannot build the BOS/EOS post-processor: {e}"))
}

/// Rebuilds the tokenizer, its special tokens and chat template from GGUF metadata.
pub(crate) fn tokenizer_from_metadata(md: &Metadata, path: &Path) -> Result<ModelTokenizer> {
    let model = meta_str(md, "tokenizer.ggml.model")
        .with_context(|| format!("GGUF {} has no tokenizer.ggml.model", path.display()))?;
    if model != "gpt2" {
        bail!(
            "GGUF {}: tokenizer.ggml.model = `{model}` is not supported: erosion rebuilds \
             byte-level BPE (`gpt2`) tokenizers from GGUF; for sentencepiece (`llama`) and \
             others, load the model's Hugging Face folder",
            path.display()
        );
    }
    let pre_name = meta_str(md, "tokenizer.ggml.pre").unwrap_or("default");
    let pre = pre_tokenizer(pre_name).with_context(|| format!("GGUF {}", path.display()))?;
    let tokens = string_array(md, "tokenizer.ggml.tokens", path)?;
    let merges = string_array(md, "tokenizer.ggml.merges", path)?;
    let types = int_array(md, "tokenizer.ggml.token_type");

    // Tokens are stored in the byte alphabet already; one that is not (a special token
    // written plainly) is respelled byte by byte, as transformers does.
    let alphabet = byte_alphabet();
    let in_alphabet: HashSet<char> = alphabet.iter().copied().collect();
    let spelled = |t: &str| t.chars().all(|c| in_alphabet.contains(&c));
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let key = if spelled(t) {
                t.clone()
            } else {
                t.bytes().map(|b| alphabet[b as usize]).collect()
            };
            (key, i as u32)
        })
        .collect();
    let merges = merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .with_context(|| {
                    format!("GGUF {}: merge {i} `{m}` is not two tokens", path.display())
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(|e| anyhow!("GGUF {}: cannot build the BPE model: {e}", path.display()))?;

    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(pre.pre_tokenizer));
    if let Some(n) = pre.normalizer {
        tok.with_normalizer(Some(n)).map_err(|e| anyhow!("{e}"))?;
    }
    tok.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));

    // Control tokens (<|im_start|>, <|endoftext|>) stay whole and are special; user-defined
    // ones stay whole but are ordinary text. A control token outside the byte alphabet is a
    // llama.cpp mislabel; transformers skips it and so do we.
    if let Some(types) = &types {
        let pick = |kind: i64| -> Vec<&String> {
            tokens
                .iter()
                .zip(types)
                .filter(|(_, &ty)| ty == kind)
                .map(|(t, _)| t)
                .collect()
        };
        let control: Vec<AddedToken> = pick(TOKEN_CONTROL)
            .into_iter()
            .filter(|t| spelled(t))
            .map(|t| AddedToken::from(t.clone(), true).normalized(false))
            .collect();
        tok.add_special_tokens(control)
            .map_err(|e| anyhow!("{e}"))?;
        let user: Vec<AddedToken> = pick(TOKEN_USER_DEFINED)
            .into_iter()
            .map(|t| AddedToken::from(t.clone(), false).normalized(false))
            .collect();
        tok.add_tokens(user).map_err(|e| anyhow!("{e}"))?;
    }

    let token_of = |key: &str| -> Result<Option<String>> {
        match meta_usize(md, key)? {
            None => Ok(None),
            Some(id) => tokens.get(id).cloned().map(Some).with_context(|| {
                format!(
                    "GGUF {}: {key} = {id} is outside the vocabulary",
                    path.display()
                )
            }),
        }
    };
    let bos = token_of("tokenizer.ggml.bos_token_id")?;
    let eos = token_of("tokenizer.ggml.eos_token_id")?;
    let pad = token_of("tokenizer.ggml.padding_token_id")?;

    // BOS / EOS added around every encoding when the file says so (Llama 3 adds BOS).
    let added =
        |flag: &str, token: &Option<String>, id_key: &str| -> Result<Option<(String, u32)>> {
            if !meta_bool(md, flag).unwrap_or(false) {
                return Ok(None);
            }
            match (token, meta_usize(md, id_key)?) {
                (Some(t), Some(id)) => Ok(Some((t.clone(), id as u32))),
                _ => bail!(
                    "GGUF {}: {flag} is set but {id_key} is missing",
                    path.display()
                ),
            }
        };
    let add_bos = added(
        "tokenizer.ggml.add_bos_token",
        &bos,
        "tokenizer.ggml.bos_token_id",
    )?;
    let add_eos = added(
        "tokenizer.ggml.add_eos_token",
        &eos,
        "tokenizer.ggml.eos_token_id",
    )?;
    let post = if add_bos.is_some() || add_eos.is_some() {
        PostProcessorWrapper::Template(bos_eos_template(add_bos, add_eos)?)
    } else {
        PostProcessorWrapper::ByteLevel(ByteLevel::new(false, false, true))
    };
    tok.with_post_processor(Some(post));

    let chat_template = meta_str(md, "tokenizer.chat_template").map(str::to_string);
    ModelTokenizer::new(tok, chat_template, bos, eos, pad).with_context(|| {
        format!(
            "GGUF {}: cannot set up the tokenizer's chat template",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_matches_gpt2() {
        let a = byte_alphabet();
        assert_eq!(a[b'!' as usize], '!');
        assert_eq!(a[b' ' as usize], 'Ġ'); // U+0120: byte 32 is the 33rd unprintable byte
        assert_eq!(a[b'\n' as usize], 'Ċ'); // U+010A
        assert_eq!(a[0xad], 'Ń'); // U+0143, the last unprintable byte
        assert_eq!(a.iter().collect::<HashSet<_>>().len(), 256);
    }

    #[test]
    fn every_supported_pre_tokenizer_builds() {
        for pre in SUPPORTED_PRE {
            pre_tokenizer(pre).unwrap();
        }
        let msg = pre_tokenizer("tekken").err().unwrap().to_string();
        assert!(msg.contains("tekken") && msg.contains("smollm"), "{msg}");
    }
}
