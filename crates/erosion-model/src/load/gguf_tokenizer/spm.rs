//! Sentencepiece tokenizers as a GGUF stores them (`tokenizer.ggml.model = "llama"`: Llama 2,
//! Mistral, Gemma), rebuilt as transformers' GGUF loader rebuilds them (its
//! `integrations/gguf` builders over `LlamaTokenizer` and `GemmaTokenizer`), so a GGUF gives the
//! ids transformers gives:
//!
//! - Sentencepiece's BPE, whose merges the file does not store: they are recovered from the
//!   vocabulary. Every split of a piece into two pieces is a merge; merges rank by the piece they
//!   make (by its stored score, or for Gemma, whose scores do not follow its merge order, by its
//!   position), ties by the longer left part, then the longer right part. Byte fallback
//!   (`<0xNN>` pieces) and fused unknowns.
//! - Llama style: spaces become `▁` and one `▁` is put before the text unless it starts with a
//!   space (transformers' `Metaspace` with `prepend_scheme = "first"`; sentencepiece itself would
//!   add it there too, so text with leading spaces gets one `▁` fewer than sentencepiece gives);
//!   decoding drops that first space again.
//! - Gemma style: spaces normalised to `▁`, no prefix space (a file that asks for one is
//!   refused); pieces of spaces only, stored with real spaces, are spelled with `▁` (where two
//!   pieces then share a spelling, the later id keeps it).
//!
//! Special and user-defined tokens are kept whole by the caller.

use super::super::gguf::Metadata;
use super::meta_bool;
use anyhow::{anyhow, bail, Result};
use std::cmp::Reverse;
use std::path::Path;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

/// The two ways transformers rebuilds a sentencepiece GGUF.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    /// `LlamaTokenizer` (Llama 2, Mistral, and any architecture but Gemma's).
    Llama,
    /// `GemmaTokenizer` (`gemma*` architectures).
    Gemma,
}

impl Style {
    pub(super) fn of_arch(arch: &str) -> Self {
        if arch.starts_with("gemma") {
            Style::Gemma
        } else {
            Style::Llama
        }
    }
}

/// The BPE tokenizer of a sentencepiece GGUF's pieces (`tokens`, token i has id i; `scores`
/// from the file).
pub(super) fn sentencepiece_tokenizer(
    md: &Metadata,
    tokens: &[String],
    scores: &[f32],
    style: Style,
    path: &Path,
) -> Result<Tokenizer> {
    let pieces: Vec<String> = match style {
        Style::Llama => tokens.to_vec(),
        Style::Gemma => tokens.iter().map(|t| respelled(t)).collect(),
    };
    let vocab: Vocab = (pieces.iter().enumerate())
        .map(|(i, p)| (p.clone(), i as u32))
        .collect();
    let rank: Box<dyn Fn(usize) -> f64> = match style {
        Style::Llama => Box::new(|i| scores[i] as f64),
        Style::Gemma => Box::new(|i| -(i as f64)),
    };
    let merges = recovered_merges(&pieces, &vocab, rank);
    let has_unk = vocab.contains_key("<unk>");
    let mut bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .fuse_unk(true)
        .byte_fallback(true);
    let mut decoders = vec![
        DecoderWrapper::Replace(Replace::new("▁", " ").map_err(|e| anyhow!("{e}"))?),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ];
    let build = |bpe: tokenizers::models::bpe::BpeBuilder| {
        bpe.build()
            .map_err(|e| anyhow!("GGUF {}: cannot build the BPE model: {e}", path.display()))
    };
    let tok = match style {
        Style::Llama => {
            let mut tok = Tokenizer::new(build(bpe)?);
            let meta = Metaspace::new('▁', PrependScheme::First, false);
            tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Metaspace(meta)));
            decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
            tok
        }
        Style::Gemma => {
            if meta_bool(md, "tokenizer.ggml.add_space_prefix").unwrap_or(false) {
                bail!(
                    "GGUF {}: tokenizer.ggml.add_space_prefix is set in a Gemma file; Gemma's \
                     sentencepiece tokenizers add no prefix space",
                    path.display()
                );
            }
            if !has_unk {
                bail!(
                    "GGUF {}: a Gemma vocabulary must hold `<unk>`",
                    path.display()
                );
            }
            bpe = bpe.unk_token("<unk>".into());
            let mut tok = Tokenizer::new(build(bpe)?);
            let space = Replace::new(" ", "▁").map_err(|e| anyhow!("{e}"))?;
            tok.with_normalizer(Some(NormalizerWrapper::Replace(space)))
                .map_err(|e| anyhow!("{e}"))?;
            // GemmaTokenizer's split on spaces; after the normaliser there are none left, so it
            // keeps each text whole, as there.
            let split = Split::new(
                SplitPattern::String(" ".into()),
                SplitDelimiterBehavior::MergedWithPrevious,
                false,
            )
            .map_err(|e| anyhow!("{e}"))?;
            tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Split(split)));
            tok
        }
    };
    let mut tok = tok;
    tok.with_decoder(Some(DecoderWrapper::Sequence(Sequence::new(decoders))));
    Ok(tok)
}

/// A piece of spaces only (and perhaps other whitespace) with `▁` for each character.
fn respelled(piece: &str) -> String {
    if piece.contains(' ') && piece.trim().is_empty() {
        "▁".repeat(piece.chars().count())
    } else {
        piece.to_string()
    }
}

/// The merges a vocabulary implies, best first: for each piece (in order of first appearance,
/// ranked by `rank` of the last id that spells it, higher first), every split into two pieces of
/// the vocabulary (by the ids of the parts); then a stable sort by rank, then by the lengths of
/// the left and right parts, longest first.
fn recovered_merges(
    pieces: &[String],
    vocab: &Vocab,
    rank: impl Fn(usize) -> f64,
) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for piece in pieces {
        if !seen.insert(piece.as_str()) {
            continue;
        }
        let r = rank(vocab[piece] as usize);
        let mut local: Vec<(&str, &str)> = (piece.char_indices().skip(1))
            .map(|(at, _)| piece.split_at(at))
            .filter(|(l, r)| vocab.contains_key(*l) && vocab.contains_key(*r))
            .collect();
        local.sort_by_key(|(l, r)| (vocab[*l], vocab[*r]));
        merges.extend(local.into_iter().map(|(l, right)| (l, right, r)));
    }
    // Stable: merges of equal rank and lengths keep the order they were found in.
    let len = |s: &str| Reverse(s.chars().count());
    merges.sort_by(|a, b| {
        (b.2.total_cmp(&a.2)).then_with(|| (len(a.0), len(a.1)).cmp(&(len(b.0), len(b.1))))
    });
    (merges.into_iter())
        .map(|(l, r, _)| (l.to_string(), r.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_pieces_are_respelled() {
        assert_eq!(respelled("   "), "▁▁▁");
        assert_eq!(respelled(" \n"), "▁▁");
        assert_eq!(respelled("\n\n"), "\n\n");
        assert_eq!(respelled("▁the"), "▁the");
    }

    #[test]
    fn merges_rank_by_the_piece_they_make() {
        // ids: a b c ab bc abc. "abc" splits as a+bc and ab+c (by the parts' ids: a=0 first).
        let pieces: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"].map(String::from).into();
        let vocab: Vocab = (pieces.iter().enumerate())
            .map(|(i, p)| (p.clone(), i as u32))
            .collect();
        let pairs = |m: Vec<(String, String)>| -> Vec<String> {
            m.into_iter().map(|(l, r)| format!("{l}+{r}")).collect()
        };
        let by_position = recovered_merges(&pieces, &vocab, |i| -(i as f64));
        assert_eq!(pairs(by_position), ["a+b", "b+c", "ab+c", "a+bc"]);
        // By score, "bc" (score 5) before "ab" (score 1).
        let scores = [0.0, 0.0, 0.0, 1.0, 5.0, 3.0];
        let by_score = recovered_merges(&pieces, &vocab, |i| scores[i]);
        assert_eq!(pairs(by_score), ["b+c", "ab+c", "a+bc", "a+b"]);
    }
}
