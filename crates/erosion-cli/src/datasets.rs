//! Naming datasets on the command line: a spec file or one data file.

use anyhow::{Context, Result};
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
