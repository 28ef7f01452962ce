//! Gemma's sentencepiece tokenizer as a GGUF stores it (`tokenizer.ggml.model = "llama"` in a
//! `gemma2` / `gemma3` file), rebuilt as transformers' GGUF loader rebuilds it
//! (`gemma_tokenizer` in its `integrations/gguf`), so a GGUF gives the ids transformers gives:
//!
//! - Gemma's sentencepiece model is BPE, but the file stores pieces without merges. The merges
//!   are recovered from the vocabulary: every split of a piece into two pieces is a merge, and
//!   merges rank by the position of the piece they make (the file lists pieces in merge order;
//!   Gemma's stored scores do not follow it), ties by the longer left then right part.
//! - A piece of spaces only is stored with real spaces; it is spelled with `▁`, as spaces are
//!   after normalisation. Where two pieces then share a spelling, the later id keeps it.
//! - Byte fallback (`<0xNN>` pieces) and fused unknowns; spaces normalised to `▁`, no prefix
//!   space; decoding turns `▁` back into spaces and byte pieces back into UTF-8.
//!
//! The control tokens (`<bos>`, `<start_of_turn>`, ...) and user-defined ones (newline runs)
//! are kept whole by the caller, as for byte-level BPE.

use super::super::gguf::Metadata;
use super::meta_bool;
use anyhow::{anyhow, bail, Result};
use std::cmp::Reverse;
use std::path::Path;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

/// The BPE tokenizer of a Gemma GGUF's pieces (`tokens`, token i has id i).
pub(super) fn gemma_tokenizer(md: &Metadata, tokens: &[String], path: &Path) -> Result<Tokenizer> {
    if meta_bool(md, "tokenizer.ggml.add_space_prefix").unwrap_or(false) {
        bail!(
            "GGUF {}: tokenizer.ggml.add_space_prefix is set; erosion reads Gemma's \
             sentencepiece tokenizers, which add no prefix space",
            path.display()
        );
    }
    let unk = "<unk>";
    let pieces: Vec<String> = tokens.iter().map(|t| respelled(t)).collect();
    let vocab: Vocab = (pieces.iter().enumerate())
        .map(|(i, p)| (p.clone(), i as u32))
        .collect();
    if !vocab.contains_key(unk) {
        bail!(
            "GGUF {}: a Gemma vocabulary must hold `{unk}`",
            path.display()
        );
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab.clone(), recovered_merges(&pieces, &vocab))
        .unk_token(unk.into())
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(|e| anyhow!("GGUF {}: cannot build the BPE model: {e}", path.display()))?;
    let mut tok = Tokenizer::new(bpe);
    let space = Replace::new(" ", "▁").map_err(|e| anyhow!("{e}"))?;
    tok.with_normalizer(Some(NormalizerWrapper::Replace(space)))
        .map_err(|e| anyhow!("{e}"))?;
    // GemmaTokenizer's split on spaces; after the normaliser there are none left, so it keeps
    // each text whole, as there.
    let split = Split::new(
        SplitPattern::String(" ".into()),
        SplitDelimiterBehavior::MergedWithPrevious,
        false,
    )
    .map_err(|e| anyhow!("{e}"))?;
    tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Split(split)));
    let unspace = DecoderWrapper::Replace(Replace::new("▁", " ").map_err(|e| anyhow!("{e}"))?);
    tok.with_decoder(Some(DecoderWrapper::Sequence(Sequence::new(vec![
        unspace,
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ]))));
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

/// The merges a vocabulary in merge order implies, best first: for each piece (in order of
/// first appearance, ranked by the last id that spells it), every split into two pieces of the
/// vocabulary (by the ids of the parts); then a stable sort by rank, then by the lengths of the
/// left and right parts, longest first.
fn recovered_merges(pieces: &[String], vocab: &Vocab) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut merges: Vec<(&str, &str, u32)> = Vec::new();
    for piece in pieces {
        if !seen.insert(piece.as_str()) {
            continue;
        }
        let rank = vocab[piece];
        let mut local: Vec<(&str, &str)> = (piece.char_indices().skip(1))
            .map(|(at, _)| piece.split_at(at))
            .filter(|(l, r)| vocab.contains_key(*l) && vocab.contains_key(*r))
            .collect();
        local.sort_by_key(|(l, r)| (vocab[*l], vocab[*r]));
        merges.extend(local.into_iter().map(|(l, r)| (l, r, rank)));
    }
    // Stable: merges of equal rank and lengths keep the order they were found in.
    let len = |s: &str| Reverse(s.chars().count());
    merges.sort_by_key(|&(l, r, rank)| (rank, len(l), len(r)));
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
    fn merges_rank_by_the_position_of_the_piece_they_make() {
        // ids: a b c ab bc abc. "abc" splits as a+bc and ab+c (by the parts' ids: a=0 first).
        let pieces: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"].map(String::from).into();
        let vocab = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i as u32))
            .collect();
        let merges = recovered_merges(&pieces, &vocab);
        let m: Vec<(&str, &str)> = merges
            .iter()
            .map(|(l, r)| (l.as_str(), r.as_str()))
            .collect();
        assert_eq!(m, [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")]);
    }
}
