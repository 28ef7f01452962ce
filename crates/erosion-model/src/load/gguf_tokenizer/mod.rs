//! The tokenizer a GGUF describes in its metadata (`tokenizer.ggml.*`), rebuilt as a
//! Hugging Face `tokenizers::Tokenizer`.
//!
//! Two kinds are read: byte-level BPE (`tokenizer.ggml.model = "gpt2"`: GPT-2, Llama 3, Qwen2,
//! Qwen3, SmolLM) here, and sentencepiece (`"llama"`: Llama 2, Mistral, Gemma) in `spm.rs`. For
//! byte-level BPE, vocabulary and merges come from the file; how text is split before BPE depends
//! on `tokenizer.ggml.pre`, mirroring llama.cpp's `llm_tokenizer_bpe` (llama-vocab.cpp), whose
//! behaviour the file was written for, and the model's own `tokenizer.json` where that is
//! known. For `smollm`/`starcoder` transformers' GGUF loader (integrations/gguf) keeps GPT-2's
//! split, while llama.cpp and SmolLM2's own tokenizer.json (`Digits(individual_digits)` +
//! `ByteLevel`) split every digit first; we follow the latter. (On SmolLM2's vocabulary the two
//! give the same ids, as no merge joins a digit to anything; on other vocabularies they may not.)
//!
//! `pre.rs` holds the pre-tokenizers and GPT-2's byte alphabet; here the vocabulary, merges,
//! special tokens and post-processor read from the metadata.

mod pre;
mod spm;

pub use pre::SUPPORTED_PRE;

use super::gguf::{meta_str, meta_usize, Metadata};
use crate::chat::ChatTemplate;
use crate::text::shown;
use crate::tokenizer::ModelTokenizer;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::Value;
use pre::{pre_tokenizer, Alphabet};
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, DecoderWrapper, PostProcessorWrapper, Tokenizer};

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

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

/// The `len` sentencepiece scores, each a finite f32.
fn float_array(md: &Metadata, key: &str, len: usize, path: &Path) -> Result<Vec<f32>> {
    let items = match md.get(key) {
        Some(Value::Array(items)) => items,
        _ => bail!("GGUF {} has no {key} array", path.display()),
    };
    if items.len() != len {
        bail!(
            "GGUF {}: {key} has {} entries but tokenizer.ggml.tokens has {len}",
            path.display(),
            items.len()
        );
    }
    (items.iter().enumerate())
        .map(|(i, v)| match v {
            Value::F32(x) if x.is_finite() => Ok(*x),
            other => bail!(
                "GGUF {}: {key}[{i}] is not a finite f32: {other:?}",
                path.display()
            ),
        })
        .collect()
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
    let sentencepiece = match model {
        "gpt2" => false,
        "llama" => true,
        other => bail!(
            "GGUF {}: tokenizer.ggml.model = `{}` is not supported: erosion rebuilds byte-level \
             BPE (`gpt2`) and sentencepiece (`llama`) tokenizers; for others, load the model's \
             Hugging Face folder",
            path.display(),
            shown(other)
        ),
    };
    let tokens = string_array(md, "tokenizer.ggml.tokens", path)?;
    let types = int_array(md, "tokenizer.ggml.token_type");
    if let Some(types) = types.as_ref().filter(|t| t.len() != tokens.len()) {
        bail!(
            "GGUF {}: tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {}",
            path.display(),
            types.len(),
            tokens.len()
        );
    }
    let mut tok = if sentencepiece {
        let scores = float_array(md, "tokenizer.ggml.scores", tokens.len(), path)?;
        let style = spm::Style::of_arch(meta_str(md, "general.architecture").unwrap_or(""));
        spm::sentencepiece_tokenizer(md, &tokens, &scores, style, path)?
    } else {
        byte_level_tokenizer(md, &tokens, path)?
    };
    if let Some(types) = &types {
        add_typed_tokens(
            &mut tok,
            &tokens,
            types,
            (!sentencepiece).then(Alphabet::new),
        )?;
    }

    let token_of = |key: &str| special_token(md, &tokens, key, path);
    let bos = token_of("tokenizer.ggml.bos_token_id")?;
    let eos = token_of("tokenizer.ggml.eos_token_id")?;
    let pad = token_of("tokenizer.ggml.padding_token_id")?;
    if sentencepiece {
        // transformers' sentencepiece tokenizers also keep their named tokens whole.
        let unk = token_of("tokenizer.ggml.unknown_token_id")?;
        let named: Vec<AddedToken> = [&unk, &bos, &eos, &pad]
            .into_iter()
            .flatten()
            .map(|t| AddedToken::from(t.clone(), true).normalized(false))
            .collect();
        tok.add_special_tokens(named).map_err(|e| anyhow!("{e}"))?;
    }
    if let Some(p) = post_processor(md, &bos, &eos, !sentencepiece, path)? {
        tok.with_post_processor(Some(p));
    }

    let chat_template = meta_str(md, "tokenizer.chat_template")
        .map(|source| {
            let origin = format!("GGUF {} (tokenizer.chat_template)", path.display());
            ChatTemplate::from_origin(source, origin)
        })
        .transpose()?;
    ModelTokenizer::with_template(tok, chat_template, bos, eos, pad)
        .with_context(|| format!("GGUF {}: cannot set up the tokenizer", path.display()))
}

/// The byte-level BPE tokenizer of the vocabulary, merges and pre-tokenizer in the file.
fn byte_level_tokenizer(md: &Metadata, tokens: &[String], path: &Path) -> Result<Tokenizer> {
    let pre_name = meta_str(md, "tokenizer.ggml.pre").unwrap_or("default");
    let pre = pre_tokenizer(pre_name).with_context(|| format!("GGUF {}", path.display()))?;
    let merges = string_array(md, "tokenizer.ggml.merges", path)?;
    let alphabet = Alphabet::new();
    let bpe = bpe_model(tokens, &merges, &alphabet, pre.ignore_merges, path)?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(pre.pre_tokenizer));
    if let Some(n) = pre.normalizer {
        tok.with_normalizer(Some(n)).map_err(|e| anyhow!("{e}"))?;
    }
    tok.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
    Ok(tok)
}

/// The BPE model of the vocabulary (token i has id i) and merges (`"a b"` each).
fn bpe_model(
    tokens: &[String],
    merges: &[String],
    alphabet: &Alphabet,
    ignore_merges: bool,
    path: &Path,
) -> Result<BPE> {
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (alphabet.key(t), i as u32))
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
    BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| anyhow!("GGUF {}: cannot build the BPE model: {e}", path.display()))
}

/// Adds the tokens GGUF types as control or user-defined (`types[i]` is token i's type).
/// Control tokens (<|im_start|>, <start_of_turn>) stay whole and are special; user-defined ones
/// (Gemma's newline runs) stay whole but are ordinary text. In a byte-level vocabulary
/// (`alphabet`) a control token outside the byte alphabet is a llama.cpp mislabel, and a
/// user-defined token must be a piece of the model: transformers skips the others and so do we.
fn add_typed_tokens(
    tok: &mut Tokenizer,
    tokens: &[String],
    types: &[i64],
    alphabet: Option<Alphabet>,
) -> Result<()> {
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
        .filter(|t| alphabet.as_ref().is_none_or(|a| a.spells(t)))
        .map(|t| AddedToken::from(t.clone(), true).normalized(false))
        .collect();
    tok.add_special_tokens(control)
        .map_err(|e| anyhow!("{e}"))?;
    let user: Vec<AddedToken> = pick(TOKEN_USER_DEFINED)
        .into_iter()
        .filter(|t| alphabet.is_some() || tok.token_to_id(t).is_some())
        .map(|t| AddedToken::from(t.clone(), false).normalized(false))
        .collect();
    tok.add_tokens(user).map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// The token whose id metadata `key` holds (`None` when the key is absent); an id outside
/// the vocabulary is an error.
fn special_token(
    md: &Metadata,
    tokens: &[String],
    key: &str,
    path: &Path,
) -> Result<Option<String>> {
    match meta_usize(md, key)? {
        None => Ok(None),
        Some(id) => tokens.get(id).cloned().map(Some).with_context(|| {
            format!(
                "GGUF {}: {key} = {id} is outside the vocabulary",
                path.display()
            )
        }),
    }
}

/// The post-processor: BOS / EOS added around every encoding when the file says so (Llama 3
/// and Gemma add BOS), else byte-level offset trimming only (`byte_level`) or none.
fn post_processor(
    md: &Metadata,
    bos: &Option<String>,
    eos: &Option<String>,
    byte_level: bool,
    path: &Path,
) -> Result<Option<PostProcessorWrapper>> {
    let added =
        |flag: &str, token: &Option<String>, id_key: &str| -> Result<Option<(String, u32)>> {
            // A sentencepiece file without the flag adds BOS (llama.cpp and transformers).
            let default = !byte_level && flag == "tokenizer.ggml.add_bos_token";
            if !meta_bool(md, flag).unwrap_or(default) {
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
        bos,
        "tokenizer.ggml.bos_token_id",
    )?;
    let add_eos = added(
        "tokenizer.ggml.add_eos_token",
        eos,
        "tokenizer.ggml.eos_token_id",
    )?;
    Ok(if add_bos.is_some() || add_eos.is_some() {
        Some(PostProcessorWrapper::Template(bos_eos_template(
            add_bos, add_eos,
        )?))
    } else {
        byte_level.then(|| PostProcessorWrapper::ByteLevel(ByteLevel::new(false, false, true)))
    })
}

#[cfg(test)]
mod tests {
    use super::pre::byte_alphabet;
    use super::*;
    use std::collections::HashSet;

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
