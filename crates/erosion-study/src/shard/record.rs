//! A shard's name (`i/n` on the command line, folder `i-of-n`) and its record, `shard.json`:
//! written last, so its presence marks the shard finished.

use super::plan::Unit;
use anyhow::{bail, Context, Result};
use erosion_model::atomic::write_bytes_atomic;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// Version of shard.json's layout.
const FORMAT: u32 = 1;

/// Shard `index` of `count` (0-based, as Slurm numbers array tasks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShardIndex {
    pub index: usize,
    pub count: usize,
}

impl ShardIndex {
    /// `i/n` with 0 <= i < n.
    pub fn parse(s: &str) -> Result<Self> {
        let parsed = s
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if index < count => Ok(ShardIndex { index, count }),
            _ => bail!("`{s}` is not a shard I/N with 0 <= I < N (e.g. 0/3, 1/3, 2/3)"),
        }
    }

    /// The folder name `i-of-n`, or `None` for any other name.
    pub fn from_folder(name: &str) -> Option<Self> {
        let (i, n) = name.split_once("-of-")?;
        let (index, count) = (i.parse().ok()?, n.parse().ok()?);
        (index < count && format!("{index}-of-{count}") == name)
            .then_some(ShardIndex { index, count })
    }

    pub fn folder(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }
}

impl fmt::Display for ShardIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard {}", self.folder())
    }
}

/// A unit a shard computed, with the SHA-256 of its chunk file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneUnit {
    #[serde(flatten)]
    pub unit: Unit,
    pub sha256: String,
}

/// shard.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub format: u32,
    /// The tool that wrote it: a merge refuses shards of another version.
    pub written_by: String,
    pub shard: ShardIndex,
    /// Of the study spec, output and cache folders left out ([`super::spec_hash`]).
    pub spec_hash: String,
    /// Of every unit of the whole study ([`super::plan::Plan::hash`]).
    pub plan_hash: String,
    pub units: Vec<DoneUnit>,
}

impl ShardRecord {
    pub fn new(shard: ShardIndex, spec_hash: String, plan_hash: String) -> Self {
        ShardRecord {
            format: FORMAT,
            written_by: written_by(),
            shard,
            spec_hash,
            plan_hash,
            units: Vec::new(),
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        write_bytes_atomic(path, &serde_json::to_vec_pretty(self)?)
    }

    /// `None` when the file does not exist (the shard has not finished).
    pub fn read(path: &Path) -> Result<Option<Self>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let r: ShardRecord = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a shard record", path.display()))?;
        if r.format != FORMAT {
            bail!(
                "{} has format {}, this erosion reads {FORMAT}",
                path.display(),
                r.format
            );
        }
        Ok(Some(r))
    }
}

pub fn written_by() -> String {
    format!("erosion-study {}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_parse_and_refuse() {
        let s = ShardIndex::parse("2/3").unwrap();
        assert_eq!((s.index, s.count), (2, 3));
        assert_eq!(s.folder(), "2-of-3");
        assert_eq!(ShardIndex::from_folder("2-of-3"), Some(s));
        for bad in ["3/3", "1", "-1/3", "a/b", "0/0", "1/"] {
            assert!(ShardIndex::parse(bad).is_err(), "{bad}");
        }
        for bad in ["3-of-3", "02-of-3", "x-of-3", "cache", "1-of-"] {
            assert_eq!(ShardIndex::from_folder(bad), None, "{bad}");
        }
    }
}
