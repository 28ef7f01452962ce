//! Examples rendered into tokens with their exact response span.
//!
//! The response is the final assistant message; its tokens are found by rendering (see
//! `erosion_model::chat::span`), for the checkpoint's template or a plain format, with the
//! boundary and end-of-turn policies of [`RenderOptions`]. The analyses read "the first T
//! response tokens": [`RenderedExample::window`] gives them or says clearly why it cannot.

use std::ops::Range;

use anyhow::{bail, Context, Result};
use erosion_model::chat::{ChatFormat, SpanOptions};
use erosion_model::tokenizer::ModelTokenizer;
use serde::{Deserialize, Serialize};

use crate::example::{Example, Source};
use crate::sequence::Sequence;
use crate::short::ShortResponse;

/// How examples become tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RenderOptions {
    /// The checkpoint's chat template (default) or a plain format for base models.
    pub format: ChatFormat,
    /// Whether the end-of-turn token counts, and what to do with a token straddling a boundary.
    pub span: SpanOptions,
}

/// One example as tokens (a [`Sequence`]), with where it came from and its rendered text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedExample {
    pub source: Source,
    /// The rendered text.
    pub text: String,
    /// The token ids, the response tokens `ids[response]` and the end-of-turn token(s)
    /// (whether or not counted in `response`).
    #[serde(flatten)]
    pub seq: Sequence,
    /// The response's bytes in `text` (without the end-of-turn marker).
    pub response_text: Range<usize>,
    /// A token held both prompt and response text (kept or dropped per the boundary policy).
    pub straddles_start: bool,
    pub straddles_end: bool,
}

impl RenderedExample {
    pub fn response_len(&self) -> usize {
        self.seq.response_len()
    }

    /// The first `t` response tokens (token positions), or an error naming the example when
    /// the response is shorter.
    pub fn window(&self, t: usize) -> Result<Range<usize>> {
        self.seq.window(&self.source, t)
    }

    /// The first `t` response tokens under a policy: `None` when skipped.
    pub fn window_with(&self, t: usize, policy: ShortResponse) -> Result<Option<Range<usize>>> {
        self.seq.window_with(&self.source, t, policy)
    }
}

/// Renders one example (its final message must be the assistant's response).
pub fn render_example(
    tok: &ModelTokenizer,
    ex: &Example,
    opts: &RenderOptions,
) -> Result<RenderedExample> {
    let chat = tok
        .encode_chat(&ex.messages, &opts.format, &opts.span)
        .with_context(|| format!("rendering {}", ex.source))?;
    let (straddles_start, straddles_end) = (chat.straddles_start, chat.straddles_end);
    let response_text = chat.location.content.clone();
    let text = chat.location.text.clone();
    Ok(RenderedExample {
        source: ex.source.clone(),
        text,
        seq: Sequence::from(chat),
        response_text,
        straddles_start,
        straddles_end,
    })
}

/// Renders examples in order; the first failure is the error.
pub fn render_examples(
    tok: &ModelTokenizer,
    examples: &[Example],
    opts: &RenderOptions,
) -> Result<Vec<RenderedExample>> {
    examples
        .iter()
        .map(|ex| render_example(tok, ex, opts))
        .collect()
}

/// The first-`t` response windows of a batch: `(index into rendered, token range)` for each
/// example kept. With [`ShortResponse::Error`], the error counts the short examples and names
/// the first few.
pub fn response_windows(
    rendered: &[RenderedExample],
    t: usize,
    policy: ShortResponse,
) -> Result<Vec<(usize, Range<usize>)>> {
    if policy == ShortResponse::Error {
        let short: Vec<&RenderedExample> =
            rendered.iter().filter(|r| r.response_len() < t).collect();
        if !short.is_empty() {
            let names: Vec<String> = short
                .iter()
                .take(3)
                .map(|r| format!("{} ({} tokens)", r.source, r.response_len()))
                .collect();
            bail!(
                "{} of {} responses are shorter than the window of {t} tokens, e.g. {} (choose a smaller window, or truncate or skip short responses)",
                short.len(),
                rendered.len(),
                names.join("; ")
            );
        }
    }
    let mut out = Vec::with_capacity(rendered.len());
    for (i, r) in rendered.iter().enumerate() {
        if let Some(w) = r.window_with(t, policy)? {
            out.push((i, w));
        }
    }
    Ok(out)
}
