//! Naming datasets on the command line: a spec file or one data file.

use anyhow::bail;
use anyhow::{Context, Result};
use erosion_data::Sequence;
use erosion_data::{render_examples, DatasetList, DatasetSpec, Format, RenderOptions};
use erosion_model::tokenizer::ModelTokenizer;
use std::path::{Path, PathBuf};

/// The datasets a command reads: a spec file (`.toml`, relative paths relative to it) or one
/// data file in `format` (guessed when `None`). Returns the specs and the folder their paths
/// are relative to.
pub fn dataset_specs(dataset: &str, format: Option<&str>) -> Result<(Vec<DatasetSpec>, PathBuf)> {
    let path = Path::new(dataset);
    if path.extension().is_some_and(|e| e == "toml") {
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        return Ok((DatasetList::from_file(path)?.datasets, base));
    }
    let format = match format {
        Some(name) => serde_json::from_value::<Format>(serde_json::Value::String(name.to_string()))
            .with_context(|| format!("unknown --format `{name}` (messages, alpaca, prompt-completion, json-fields, csv)"))?,
        None => Format::guess(path).context(
            "pass --format (messages, alpaca, prompt-completion, json-fields, csv)",
        )?,
    };
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((
        vec![DatasetSpec::new(&name, path, format)],
        PathBuf::from("."),
    ))
}

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
