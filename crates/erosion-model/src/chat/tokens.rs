//! The response span in token positions.
//!
//! The rendered text is tokenized once, with byte offsets; a token belongs to the response when its
//! bytes lie inside the response's bytes. A token can straddle the boundary: e.g. Qwen's
//! pre-tokenizer merges the `\n` that ends `<|im_start|>assistant\n` with a response that begins
//! with `\n`, and a plain format `"Answer: {response}"` merges the space with the first word.
//! [`BoundaryPolicy`] says what to do with such a token, and [`TokenizedChat`] reports whether it
//! happened.
//!
//! Offsets are taken before post-processing: a byte-level post-processor with `trim_offsets`
//! moves offsets off the spaces a token holds (a `"  "` token gets an empty span), which would
//! hide straddling tokens. Tokens the post-processor adds (a BOS) have no text and are never part
//! of the response.

use std::ops::Range;

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::Tokenizer;

use super::span::ResponseLocation;

/// What to do with a token that holds text from both sides of a response boundary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BoundaryPolicy {
    /// Count it as a response token (it carries response text the model must predict).
    #[default]
    Include,
    /// Leave it out of the response (only tokens made purely of response text count).
    Exclude,
    /// Refuse: an error names the token and the boundary.
    Error,
}

/// How the response span is turned into token positions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpanOptions {
    /// Count the closing end-of-turn token (`<|im_end|>`, `<|eot_id|>`, `</s>`) as a response
    /// token. When the format has none, the response is the content alone either way.
    pub include_end_of_turn: bool,
    pub boundary: BoundaryPolicy,
}

/// A rendered, tokenized conversation with its response span.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizedChat {
    /// The rendered text and the response's byte ranges in it.
    pub location: ResponseLocation,
    pub ids: Vec<u32>,
    /// Byte offsets of each token in `location.text` (empty for tokens added by the
    /// post-processor).
    pub offsets: Vec<(usize, usize)>,
    /// The response tokens (with the end-of-turn token when asked for and present).
    pub response: Range<usize>,
    /// The end-of-turn token(s), whether or not they count as response.
    pub end_of_turn: Option<Range<usize>>,
    /// A token held prompt text and the first response text (see [`BoundaryPolicy`]).
    pub straddles_start: bool,
    /// A token held the last response text and text after it.
    pub straddles_end: bool,
}

impl TokenizedChat {
    /// Number of response tokens.
    pub fn response_len(&self) -> usize {
        self.response.len()
    }
}

/// Whether a post-processor moves offsets (byte-level or RoBERTa `trim_offsets`).
fn trims_offsets(pp: &PostProcessorWrapper) -> bool {
    match pp {
        PostProcessorWrapper::ByteLevel(b) => b.trim_offsets,
        PostProcessorWrapper::Roberta(r) => r.trim_offsets,
        PostProcessorWrapper::Sequence(s) => s.as_ref().iter().any(trims_offsets),
        PostProcessorWrapper::Bert(_) | PostProcessorWrapper::Template(_) => false,
    }
}

/// Token ids and the byte offsets of each token.
pub type IdsAndOffsets = (Vec<u32>, Vec<(usize, usize)>);

/// Tokenizes `text`, returning ids and the untrimmed byte offsets of each token (`(0, 0)` for
/// tokens the post-processor adds). `add_special_tokens` is passed to the tokenizer.
pub fn encode_with_offsets(
    tokenizer: &Tokenizer,
    text: &str,
    add_special_tokens: bool,
) -> Result<IdsAndOffsets> {
    let enc = tokenizer
        .encode(text, add_special_tokens)
        .map_err(|e| anyhow!("tokenizing the rendered text failed: {e}"))?;
    let ids = enc.get_ids().to_vec();
    let added = enc.get_special_tokens_mask();
    let mut offsets: Vec<(usize, usize)> = enc.get_offsets().to_vec();
    for (o, &a) in offsets.iter_mut().zip(added) {
        if a == 1 {
            *o = (0, 0);
        }
    }
    if tokenizer.get_post_processor().is_some_and(trims_offsets) {
        // Re-tokenize without the post-processor for the raw offsets of the text's own tokens.
        let mut raw_tk = tokenizer.clone();
        raw_tk.with_post_processor(None::<PostProcessorWrapper>);
        let raw = raw_tk
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing the rendered text failed: {e}"))?;
        let own: Vec<usize> = (0..ids.len()).filter(|&i| added[i] == 0).collect();
        let same =
            own.len() == raw.len() && own.iter().zip(raw.get_ids()).all(|(&i, &id)| ids[i] == id);
        if !same {
            bail!("the tokenizer's post-processor changes more than offsets and added tokens; cannot map the response to tokens");
        }
        for (&i, &o) in own.iter().zip(raw.get_offsets()) {
            offsets[i] = o;
        }
    }
    Ok((ids, offsets))
}

/// Maps a located response to token positions.
pub fn tokenize_location(
    tokenizer: &Tokenizer,
    location: ResponseLocation,
    add_special_tokens: bool,
    opts: &SpanOptions,
) -> Result<TokenizedChat> {
    let (ids, offsets) = encode_with_offsets(tokenizer, &location.text, add_special_tokens)?;
    check_offsets(&offsets, location.text.len())?;
    let find = TextTokens::new(&offsets, ids.len());
    let start_byte = location.content.start;
    let end_byte = match (&location.end_of_turn, opts.include_end_of_turn) {
        (Some(eot), true) => eot.end,
        _ => location.content.end,
    };
    let (response, straddles_start, straddles_end) =
        response_tokens(&find, &location.text, start_byte..end_byte, opts.boundary)?;
    let end_of_turn = location.end_of_turn.as_ref().map(|eot| {
        let a = find
            .starting_from(eot.start)
            .min(find.ending_after(eot.start));
        let b = find.starting_from(eot.end).max(a);
        a..b
    });
    Ok(TokenizedChat {
        location,
        ids,
        offsets,
        response,
        end_of_turn,
        straddles_start,
        straddles_end,
    })
}

/// Offsets must not go backwards. They may overlap: the byte-level tokens of one character
/// that no token holds whole all carry that character's offsets.
fn check_offsets(offsets: &[(usize, usize)], text_len: usize) -> Result<()> {
    let mut last = (0, 0);
    for (i, &(s, e)) in offsets.iter().enumerate() {
        if s == e {
            continue;
        }
        if s < last.0 || e < last.1 || e < s || e > text_len {
            bail!("token {i} has offsets {s}..{e} out of order; cannot map the response to tokens");
        }
        last = (s, e);
    }
    Ok(())
}

/// The tokens that hold text (non-empty offsets), searched by byte position; a search that
/// finds none gives `n`, the number of tokens.
struct TextTokens<'a> {
    offsets: &'a [(usize, usize)],
    text: Vec<usize>,
    n: usize,
}

impl<'a> TextTokens<'a> {
    fn new(offsets: &'a [(usize, usize)], n: usize) -> Self {
        let text = (0..n).filter(|&i| offsets[i].0 < offsets[i].1).collect();
        TextTokens { offsets, text, n }
    }

    /// The first text token that ends after byte `pos`.
    fn ending_after(&self, pos: usize) -> usize {
        self.text
            .iter()
            .copied()
            .find(|&i| self.offsets[i].1 > pos)
            .unwrap_or(self.n)
    }

    /// The first text token that starts at or after byte `pos`.
    fn starting_from(&self, pos: usize) -> usize {
        self.text
            .iter()
            .copied()
            .find(|&i| self.offsets[i].0 >= pos)
            .unwrap_or(self.n)
    }
}

/// The response's tokens for its bytes `bytes` under `policy`, and whether a token straddles
/// its start and its end: (first..end, straddles_start, straddles_end).
fn response_tokens(
    find: &TextTokens,
    text: &str,
    bytes: Range<usize>,
    policy: BoundaryPolicy,
) -> Result<(Range<usize>, bool, bool)> {
    let (start_byte, end_byte) = (bytes.start, bytes.end);
    let (offsets, n) = (find.offsets, find.n);
    let describe = |i: usize| {
        let (s, e) = offsets[i];
        format!("token {i} ({:?}, bytes {s}..{e})", &text[s..e])
    };
    let mut first = find.ending_after(start_byte);
    let mut end = find.starting_from(end_byte).max(first);
    let straddles_start =
        first < n && offsets[first].0 < start_byte && offsets[first].1 > start_byte;
    let straddles_end = end > 0 && end > first && offsets[end - 1].1 > end_byte;
    // An empty response inside a single token: no token is purely response text.
    let swallowed = start_byte == end_byte && first < n && offsets[first].0 < start_byte;
    match policy {
        BoundaryPolicy::Include => {}
        BoundaryPolicy::Exclude => {
            if straddles_start {
                first += 1;
            }
            if straddles_end && end > first {
                end -= 1;
            }
            end = end.max(first);
        }
        BoundaryPolicy::Error => {
            if straddles_start || swallowed {
                bail!("{} holds both prompt text and response text (the response starts at byte {start_byte})", describe(first));
            }
            if straddles_end {
                bail!("{} holds both response text and the text after it (the response ends at byte {end_byte})", describe(end - 1));
            }
        }
    }
    Ok((first..end, straddles_start, straddles_end))
}
