//! The paired datasets of causal tests and drift probes: messages files rendered with a
//! model's chat template.

use anyhow::{bail, Result};
use erosion_data::{render_examples, DatasetSpec, Format, RenderOptions, Sequence};
use erosion_model::tokenizer::ModelTokenizer;
use std::path::Path;

/// Examples `range` of a messages file (`start..usize::MAX`: from `start` to the end),
/// rendered with `tok`'s chat template.
pub fn chat_sequences(
    path: &Path,
    tok: &ModelTokenizer,
    range: std::ops::Range<usize>,
) -> Result<Vec<Sequence>> {
    let data = DatasetSpec::new("data", path, Format::Messages).load(Path::new("."))?;
    let len = data.examples.len();
    let end = if range.end == usize::MAX {
        len
    } else {
        range.end
    };
    if range.start >= end || end > len {
        bail!(
            "{} has {len} examples; examples {}..{end} were asked for",
            path.display(),
            range.start
        );
    }
    let start = range.start;
    let rendered = render_examples(tok, &data.examples[start..end], &RenderOptions::default())?;
    Ok(rendered.into_iter().map(|r| r.seq).collect())
}
