//! The on-disk cache of judgments: one JSON line per judged prompt, keyed by
//! sha256(endpoint URL, judge model, the filled judge prompt) (the prompt holds the question
//! and the answer), so a stopped or repeated evaluation never asks twice. Lines are appended
//! and flushed one at a time; a torn last line (a killed run) is skipped on reading.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How every line [`Cache::put`] writes begins.
const LINE_START: &str = "{\"key\":";

#[derive(Serialize, Deserialize)]
struct Line {
    key: String,
    value: Value,
}

/// Cached answers, by key.
pub struct Cache {
    path: PathBuf,
    entries: Mutex<HashMap<String, Value>>,
    file: Mutex<File>,
}

/// The cache key of `prompt` judged by `model` at `url`.
pub fn key(url: &str, model: &str, prompt: &str) -> String {
    let mut h = Sha256::new();
    for part in [url, model, prompt] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Cache {
    /// Opens (or creates) the cache file.
    pub fn open(path: &Path) -> Result<Self> {
        let mut entries = HashMap::new();
        if path.is_file() {
            let f = File::open(path).with_context(|| format!("reading {}", path.display()))?;
            for (i, line) in BufReader::new(f).lines().enumerate() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                match serde_json::from_str::<Line>(&line) {
                    Ok(l) => {
                        entries.insert(l.key, l.value);
                    }
                    // A line torn by a killed run starts as every line this cache writes.
                    Err(_) if line.is_empty() || line.starts_with(LINE_START) => {}
                    // Anything else is another file: appending to it would spoil it.
                    Err(e) => bail!(
                        "{} is not a judge cache (line {}: {e}); name another file with \
                         --judge-cache",
                        path.display(),
                        i + 1
                    ),
                }
            }
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {} to append", path.display()))?;
        // A torn last line gets its newline, so the next entry starts a line of its own.
        let torn = std::fs::read(path).is_ok_and(|b| b.last().is_some_and(|&c| c != b'\n'));
        if torn {
            writeln!(file).with_context(|| format!("appending to {}", path.display()))?;
        }
        Ok(Cache {
            path: path.to_path_buf(),
            entries: Mutex::new(entries),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &str) -> Option<Value> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Records `value` under `key`, on disk first.
    pub fn put(&self, key: &str, value: Value) -> Result<()> {
        let line = serde_json::to_string(&Line {
            key: key.to_string(),
            value: value.clone(),
        })?;
        {
            let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
            writeln!(f, "{line}")
                .and_then(|_| f.flush())
                .with_context(|| format!("appending to {}", self.path.display()))?;
        }
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_reopen_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/judge.jsonl");
        let k = key("u", "m", "p");
        assert_ne!(k, key("u", "m", "p2"));
        assert_ne!(
            key("ab", "c", "p"),
            key("a", "bc", "p"),
            "parts are length-prefixed"
        );
        let c = Cache::open(&path).unwrap();
        c.put(&k, serde_json::json!([["7", -0.1]])).unwrap();
        drop(c);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"key\": \"torn")
            .unwrap();
        let c = Cache::open(&path).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&k).unwrap()[0][0], "7");
        c.put("k2", serde_json::json!(2)).unwrap();
        drop(c);
        assert_eq!(
            Cache::open(&path).unwrap().len(),
            2,
            "an entry after a torn line is kept"
        );
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .all(|l| l.starts_with(LINE_START)));
    }

    #[test]
    fn another_file_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("results.json", &b"{\n  \"schema_version\": 1\n}\n"[..]),
            ("notes.txt", b"my notes\n"),
            ("binary", b"\x00\x01\x02\n\x03"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let err = format!("{:#}", Cache::open(&path).err().expect(name));
            assert!(
                err.contains("not a judge cache") && err.contains(name),
                "{err}"
            );
            assert_eq!(std::fs::read(&path).unwrap(), text, "{name} was changed");
        }
    }
}
