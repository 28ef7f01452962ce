//! Checking a study's shards against its plan, and copying their chunks into its cache.

use super::plan::Plan;
use super::record::{written_by, ShardIndex, ShardRecord};
use crate::context::StudyContext;
use anyhow::{bail, Context, Result};
use erosion_forward::notice::Notify;
use erosion_forward::out_lock::OutLock;
use erosion_forward::shard::{list_split, shards_dir};
use std::collections::BTreeMap;

/// What a merge installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub shards: usize,
    /// Chunks copied into the study's cache (or found there already, the same bytes).
    pub chunks: usize,
}

/// Checks the shards under `ctx`'s output folder against the study (its spec's hash, the plan of
/// `ctx`'s analyses) and copies each planned chunk, verified, into `ctx`'s cache. Every
/// problem is listed in one error, each naming its shard; nothing is copied then. The shards
/// stay locked while they are read, so a shard still running is named, not half-read.
pub fn install_shards(ctx: &StudyContext, notices: &mut dyn Notify) -> Result<Installed> {
    let spec_hash = super::spec_hash(&ctx.spec)?;
    let dir = shards_dir(&ctx.out);
    let split = list_split(&ctx.out, "erosion study ... --shard {shard}")?;
    let (shards, mut problems) = (split.shards, split.missing);
    let plan = Plan::new(ctx)?;
    let plan_hash = plan.hash();
    let mut locks = Vec::new();
    let mut records = Vec::new();
    for (s, path) in &shards {
        locks.push(
            OutLock::acquire(path, "study merge", &mut *notices)
                .with_context(|| format!("{s} is still running"))?,
        );
        let file = path.join("shard.json");
        let Some(r) = ShardRecord::read(&file)? else {
            problems.push(format!("{s} has not finished (no {})", file.display()));
            continue;
        };
        if r.shard != *s {
            problems.push(format!(
                "{} holds the record of {}: a foreign shard",
                path.display(),
                r.shard
            ));
        } else if r.written_by != written_by() {
            problems.push(format!(
                "{s} was written by {}, this is {}",
                r.written_by,
                written_by()
            ));
        } else if r.spec_hash != spec_hash {
            problems.push(format!(
                "{s} comes from another study (spec hash {}, this study's {spec_hash})",
                short(&r.spec_hash)
            ));
        } else if r.plan_hash != plan_hash {
            problems.push(format!("{s} was planned over other models, data or options (plan hash {}, this study's {})", short(&r.plan_hash), short(&plan_hash)));
        } else {
            records.push((path.clone(), r));
        }
    }
    // Each planned unit in exactly one shard.
    let mut holders: BTreeMap<(&str, usize), Vec<(ShardIndex, &str)>> = BTreeMap::new();
    for (_, r) in &records {
        for d in &r.units {
            holders
                .entry(d.unit.id())
                .or_default()
                .push((r.shard, d.sha256.as_str()));
        }
    }
    let mut copy = Vec::new();
    for (p, u) in plan.all() {
        let what = || {
            format!(
                "chunk {} (examples {:?}) of the {}",
                u.chunk,
                u.examples,
                plan.passes[p].pass.label()
            )
        };
        match holders.remove(&u.id()).as_deref() {
            None if problems.is_empty() => problems.push(format!("{} is in no shard", what())),
            None => {}
            Some([(s, sha)]) => copy.push((p, u.chunk, *s, sha.to_string())),
            Some(many) => {
                let names: Vec<String> = many.iter().map(|(s, _)| s.folder()).collect();
                problems.push(format!(
                    "{} is in {} shards: {}",
                    what(),
                    many.len(),
                    names.join(", ")
                ));
            }
        }
    }
    for ((entry, chunk), held) in holders {
        let names: Vec<String> = held.iter().map(|(s, _)| s.folder()).collect();
        problems.push(format!("{} holds chunk {chunk} of cache entry {entry}, which this study does not plan: a foreign shard", names.join(", ")));
    }
    if !problems.is_empty() {
        bail!(
            "cannot merge the shards under {}:\n  - {}",
            dir.display(),
            problems.join("\n  - ")
        );
    }
    let shard_cache = |s: ShardIndex| -> Result<erosion_forward::cache::DiskCache> {
        erosion_forward::cache::DiskCache::new(dir.join(s.folder()).join("cache"))
    };
    for (p, chunk, s, sha) in &copy {
        let to = &plan.passes[*p].entry;
        let from = shard_cache(*s)?.entry(to.key(), to.n_examples(), to.chunk_size())?;
        to.copy_chunk_from(&from, *chunk, Some(sha))
            .with_context(|| {
                format!(
                    "{s}: copying chunk {chunk} of the {} (run the shard again if it is damaged)",
                    plan.passes[*p].pass.label()
                )
            })?;
    }
    Ok(Installed {
        shards: shards.len(),
        chunks: copy.len(),
    })
}

/// The first 12 hex digits of a hash, for messages.
fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
