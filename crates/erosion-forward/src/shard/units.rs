//! A command's work cut into units that a shard takes a contiguous share of (`erosion drift`:
//! checkpoints; `erosion eval`: models, or one model's decoding batches). Shard i writes one
//! JSON file in its folder, rewritten after each unit, so a stopped shard resumes where it
//! stopped; the merge checks every shard (of this run, holding its share, finished; every
//! problem listed, each naming its shard) and returns the units' results in order.

use super::{list_split, read_json, ShardIndex};
use crate::notice::Notify;
use crate::out_lock::OutLock;
use anyhow::{bail, Context, Result};
use erosion_model::atomic::write_bytes_atomic;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What a command's shards share, and how its files and messages are named.
pub struct UnitRun<'a> {
    /// The output folder; shards go in `OUT/shards/i-of-n/`.
    pub out: &'a Path,
    /// The shard file's name (`drift-shard.json`).
    pub file: &'a str,
    /// The command, for messages (`drift`, `eval`).
    pub command: &'a str,
    /// The command line that makes a missing shard, `{shard}` standing for `i/n`.
    pub rerun: &'a str,
    /// The crate and version that writes the files (a merge refuses another's).
    pub written_by: String,
    /// A hash of everything that decides the results: a merge refuses shards of another run.
    pub identity: String,
}

/// A shard's file: its share of the units, what the command records beside the results
/// (`meta`), and the results of the units done so far, in order.
#[derive(Debug, Serialize, Deserialize)]
struct UnitShard<U, M, R> {
    written_by: String,
    identity: String,
    shard: ShardIndex,
    units: Vec<U>,
    meta: M,
    results: Vec<R>,
}

impl UnitRun<'_> {
    fn what(&self) -> String {
        format!("a shard file of erosion {}", self.command)
    }

    /// Computes shard `shard`'s share of `units` into its folder, calling `compute` for each
    /// unit not already on file (with `notices`, for its messages); returns how many it
    /// computed now.
    pub fn run_shard<U, M, R>(
        &self,
        units: &[U],
        shard: ShardIndex,
        meta: M,
        notices: &mut dyn Notify,
        compute: &mut dyn FnMut(&U, &mut dyn Notify) -> Result<R>,
    ) -> Result<usize>
    where
        U: Serialize + DeserializeOwned + Clone + PartialEq,
        M: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let dir = shard.dir(self.out);
        let _lock = OutLock::acquire(&dir, &format!("{} shard", self.command), notices)?;
        let path = dir.join(self.file);
        let mut file = UnitShard {
            written_by: self.written_by.clone(),
            identity: self.identity.clone(),
            shard,
            units: units[shard.share(units.len())].to_vec(),
            meta,
            results: Vec::new(),
        };
        if let Some(old) = read_json::<UnitShard<U, M, R>>(&path, &self.what())? {
            let same = (&old.written_by, &old.identity, old.shard, &old.units)
                == (&file.written_by, &file.identity, shard, &file.units);
            if same {
                file.results = old.results;
            }
        }
        let mut computed = 0;
        for k in file.results.len()..file.units.len() {
            let result = compute(&file.units[k], &mut *notices)?;
            file.results.push(result);
            write_bytes_atomic(&path, &serde_json::to_vec(&file)?)?;
            computed += 1;
        }
        // Also a shard with no unit (more shards than units) says it is done.
        write_bytes_atomic(&path, &serde_json::to_vec(&file)?)?;
        Ok(computed)
    }

    /// Checks the shards under `out` against `units` and returns every unit's result in unit
    /// order, with the `meta` of the first shard (every shard of one run records the same).
    pub fn merge<U, M, R>(&self, units: &[U], notices: &mut dyn Notify) -> Result<(Vec<R>, M)>
    where
        U: Serialize + DeserializeOwned + Clone + PartialEq,
        M: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let split = list_split(self.out, self.rerun)?;
        let (shards, mut problems) = (split.shards, split.missing);
        let mut results: Vec<Option<R>> = (0..units.len()).map(|_| None).collect();
        let mut meta = None;
        let mut locks = Vec::new();
        for (s, dir) in &shards {
            locks.push(
                OutLock::acquire(dir, &format!("{} merge", self.command), notices)
                    .with_context(|| format!("{s} is still running"))?,
            );
            let path = dir.join(self.file);
            let Some(f) = read_json::<UnitShard<U, M, R>>(&path, &self.what())? else {
                problems.push(format!("{s} has not started (no {})", path.display()));
                continue;
            };
            let share = s.share(units.len());
            if f.shard != *s || f.identity != self.identity || f.written_by != self.written_by {
                problems.push(format!(
                    "{s} comes from another {} run (other inputs or options, or {})",
                    self.command, f.written_by
                ));
            } else if f.units != units[share.clone()] {
                problems.push(format!("{s} holds other units than its share"));
            } else if f.results.len() != f.units.len() {
                problems.push(format!(
                    "{s} has not finished ({} of {} done)",
                    f.results.len(),
                    f.units.len()
                ));
            } else {
                meta.get_or_insert(f.meta);
                for (i, r) in share.zip(f.results) {
                    results[i] = Some(r);
                }
            }
        }
        if !problems.is_empty() {
            bail!(
                "cannot merge the {} shards under {}:\n  - {}",
                self.command,
                self.out.display(),
                problems.join("\n  - ")
            );
        }
        let meta = meta.context("no shard to merge")?;
        let results = results.into_iter().map(|r| r.expect("every share checked"));
        Ok((results.collect(), meta))
    }
}
