//! A study shard's record, `shard.json`: written last, so its presence marks the shard finished.

use super::plan::Unit;
use anyhow::{bail, Result};
use erosion_forward::shard::read_json;
pub use erosion_forward::shard::ShardIndex;
use erosion_model::atomic::write_bytes_atomic;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Version of shard.json's layout.
const FORMAT: u32 = 1;

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
        let Some(r) = read_json::<ShardRecord>(path, "a shard record")? else {
            return Ok(None);
        };
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
