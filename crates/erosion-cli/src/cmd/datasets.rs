//! Naming datasets on the command line: a spec file or one data file.

use anyhow::{bail, Context, Result};
use erosion_data::{DatasetList, DatasetSpec, Format};
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
        None => guess_format(path)?,
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

/// The format from the extension and the first record's keys.
fn guess_format(path: &Path) -> Result<Format> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        return Ok(Format::Csv);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let first = text.trim_start();
    let head: serde_json::Value = if first.starts_with('[') {
        let list: Vec<serde_json::Value> = serde_json::from_str(first)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        list.into_iter().next().unwrap_or_default()
    } else {
        let line = first.lines().next().unwrap_or("");
        serde_json::from_str(line)
            .with_context(|| format!("{}:1 is not valid JSON", path.display()))?
    };
    let has = |k: &str| head.get(k).is_some();
    Ok(if has("messages") {
        Format::Messages
    } else if has("instruction") && has("output") {
        Format::Alpaca
    } else if has("prompt") && has("completion") {
        Format::PromptCompletion
    } else {
        bail!("cannot guess the format of {}: pass --format (messages, alpaca, prompt-completion, json-fields, csv)", path.display())
    })
}
