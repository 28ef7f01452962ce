//! Reading the records of a dataset file: JSONL, a JSON list, or CSV. Each record is a JSON
//! object (a CSV row becomes one with a string per column) with the line where it starts.
//! Errors name the file and the line (and column, for malformed JSON).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

/// One record and the 1-based line where it starts.
#[derive(Clone, Debug)]
pub struct Record {
    pub line: usize,
    pub fields: Map<String, Value>,
}

/// serde_json's message without its " at line L column C" tail (we give positions in the file).
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The file's text (a byte order mark dropped); bytes that are not UTF-8 are an error naming
/// the line, column and byte offset of the first one.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read dataset file {}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let offset = e.utf8_error().valid_up_to();
        // The valid prefix is UTF-8 by definition.
        let before = std::str::from_utf8(&bytes[..offset]).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        anyhow!(
            "{} line {line}, column {column}: not UTF-8 (byte 0x{:02x} at offset {offset}); save the file as UTF-8",
            path.display(),
            bytes[offset]
        )
    })?;
    // A UTF-8 byte order mark is not part of the data.
    Ok(text
        .strip_prefix('\u{feff}')
        .map(str::to_string)
        .unwrap_or(text))
}

/// A JSON file: a list when its first non-blank character is `[`, else JSON Lines.
pub fn read_json_records(path: &Path) -> Result<Vec<Record>> {
    let text = read_text(path)?;
    if text.trim_start().starts_with('[') {
        json_list(path, &text)
    } else {
        jsonl(path, &text)
    }
}

fn jsonl(path: &Path, text: &str) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| {
            anyhow!(
                "{} line {line_no}, column {}: invalid JSON: {}",
                path.display(),
                e.column(),
                json_message(&e)
            )
        })?;
        match value {
            Value::Object(fields) => records.push(Record {
                line: line_no,
                fields,
            }),
            other => bail!(
                "{} line {line_no}: expected a JSON object, found {}",
                path.display(),
                short(&other)
            ),
        }
    }
    Ok(records)
}

fn json_list(path: &Path, text: &str) -> Result<Vec<Record>> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        anyhow!(
            "{} line {}, column {}: invalid JSON: {}",
            path.display(),
            e.line(),
            e.column(),
            json_message(&e)
        )
    })?;
    let Value::Array(items) = value else {
        bail!("{}: expected a JSON list of objects", path.display());
    };
    let lines = element_lines(text);
    if lines.len() != items.len() {
        bail!(
            "{}: could not locate the list's elements ({} found, {} parsed)",
            path.display(),
            lines.len(),
            items.len()
        );
    }
    items
        .into_iter()
        .zip(lines)
        .enumerate()
        .map(|(i, (item, line))| match item {
            Value::Object(fields) => Ok(Record { line, fields }),
            other => bail!(
                "{} line {line} (element {i}): expected a JSON object, found {}",
                path.display(),
                short(&other)
            ),
        })
        .collect()
}

/// The 1-based line where each element of a top-level JSON list starts (for valid JSON).
fn element_lines(text: &str) -> Vec<usize> {
    let (mut line, mut depth) = (1usize, 0usize);
    let (mut in_string, mut escaped, mut expect_value) = (false, false, false);
    let mut lines = Vec::new();
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        if depth == 1 && expect_value && c != ']' {
            lines.push(line);
            expect_value = false;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 {
                    expect_value = true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expect_value = true,
            _ => {}
        }
    }
    lines
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

/// A CSV file with a header row; each row becomes an object of its columns' strings.
pub fn read_csv_records(path: &Path) -> Result<Vec<Record>> {
    let text = read_text(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| anyhow!("{}: cannot read the CSV header: {e}", path.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut records = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| match e.position() {
            Some(p) => anyhow!(
                "{} line {}: malformed CSV row: {}",
                path.display(),
                p.line(),
                csv_message(&e)
            ),
            None => anyhow!("{}: malformed CSV: {e}", path.display()),
        })?;
        let line = row.position().map(|p| p.line() as usize).unwrap_or(0);
        let fields = headers
            .iter()
            .cloned()
            .zip(row.iter().map(|s| Value::String(s.to_string())))
            .collect();
        records.push(Record { line, fields });
    }
    Ok(records)
}

fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("{len} fields, but the header has {expected_len}")
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stray Latin-1 byte is reported where it is, and guessing the format says the same
    /// (not that a format should be named).
    #[test]
    fn bytes_that_are_not_utf8_are_placed_by_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.jsonl");
        let mut bytes = b"{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"caf".to_vec();
        bytes.extend_from_slice(b"\xe9\", \"completion\": \"x\"}\n");
        std::fs::write(&path, &bytes).unwrap();
        let want = "line 2, column 16: not UTF-8 (byte 0xe9 at offset 50)";
        let err = format!("{:#}", read_json_records(&path).unwrap_err());
        assert!(err.contains("latin1.jsonl") && err.contains(want), "{err}");
        let err = crate::Format::guess(&path).unwrap_err();
        assert!(!err.is::<crate::format::Unrecognised>());
        assert!(format!("{err:#}").contains(want), "{err:#}");
    }

    #[test]
    fn element_lines_of_a_json_list() {
        let text = "[\n  {\"a\": \"x]\\\"[\"},\n  {\"b\": [1, 2]}, {\"c\": {}}\n,\n\n {}\n]";
        assert_eq!(element_lines(text), vec![2, 3, 3, 6]);
        assert_eq!(element_lines("[]"), Vec::<usize>::new());
        assert_eq!(element_lines("[ ]"), Vec::<usize>::new());
    }
}
