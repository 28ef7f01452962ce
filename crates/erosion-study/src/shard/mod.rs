//! A study split over processes (a Slurm job array, or several machines sharing a folder):
//! `erosion study FILE --shard i/n` runs shard i of n, `erosion study FILE --merge` checks the
//! shards and runs the study on their results.
//!
//! What is split: the cached forward passes the analyses name ([`crate::pass::Pass`]: every
//! model's hidden-state windows and response log-probs over every dataset). Each pass's cache
//! chunks are units of work, dealt to the shards by tokens, each model's kept together ([`plan::Plan::deal`]). A shard
//! computes its units into its own folder, `OUT/shards/i-of-n/` (under its own lock; a shard
//! that is stopped resumes from its finished chunks), and writes `shard.json` last: the spec's
//! hash, the plan's hash, every unit with its chunk's SHA-256.
//!
//! The merge refuses, naming each, a shard that is missing, unfinished, still running, from
//! another study, model or dataset, or another version of erosion, and a unit held twice or
//! not at all. It then copies every chunk (verified) into the study's cache and runs the study
//! as usual: every cached pass is read, none recomputed, so the results are bit-identical to a
//! run in one process (a chunk is computed the same way whichever process computes it).
//! What is not cached (the gradients' backward passes, sampled evaluations, causal tests,
//! drift and protection) runs at the merge.

pub mod merge;
pub mod plan;
pub mod record;

use crate::context::StudyContext;
use crate::run::{run_study_with, Caller, StudyOutcome};
use crate::spec::{Preset, StudySpec};
use anyhow::{Context, Result};
use erosion_forward::cache::canonical_sha256;
use erosion_forward::out_lock::OutLock;
use plan::Plan;
use record::{DoneUnit, ShardRecord};
use std::path::{Path, PathBuf};

pub use record::ShardIndex;

/// A hash of what the study computes: the spec with its output and cache folders left out,
/// so shards written in one place merge in another.
pub fn spec_hash(spec: &StudySpec) -> Result<String> {
    let mut v = serde_json::to_value(spec)?;
    if let Some(m) = v.as_object_mut() {
        m.remove("output");
        m.remove("cache");
    }
    Ok(canonical_sha256(&v))
}

/// What one shard did.
#[derive(Debug)]
pub struct ShardOutcome {
    pub dir: PathBuf,
    /// Units dealt to this shard, of all the study's.
    pub units: usize,
    pub of_units: usize,
    /// Their tokens, of all the study's.
    pub tokens: usize,
    pub of_tokens: usize,
    /// Chunks computed now (the others were on disk from an earlier, stopped run).
    pub computed: usize,
}

/// Runs shard `shard` of the study `spec` (relative paths relative to `base_dir`): its units'
/// chunks into `OUT/shards/i-of-n/cache`, then `shard.json`.
pub fn run_shard(
    mut spec: StudySpec,
    base_dir: &Path,
    shard: ShardIndex,
    caller: Caller<'_>,
) -> Result<ShardOutcome> {
    spec.choose_defaults()?;
    spec.validate()?;
    let hash = spec_hash(&spec)?;
    let dir = shard.dir(&base_dir.join(&spec.output));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the shard folder {}", dir.display()))?;
    let notices = caller.notices;
    let _lock = OutLock::acquire(&dir, "study shard", &mut *notices)?;
    let own = StudySpec {
        output: dir.clone(),
        cache: None,
        ..spec
    };
    let ctx =
        StudyContext::open(own, base_dir, caller.command_line)?.with_progress(caller.progress);
    let plan = Plan::new(&ctx)?;
    let model_order = |p: usize| {
        let m = plan.passes[p].pass.model();
        ctx.models.iter().position(|x| x.name == m)
    };
    let deal = plan.deal(shard.count, model_order);
    // One model loaded at a time: a shard's units grouped by model.
    let mut mine: Vec<(usize, &plan::Unit)> = (plan.all())
        .filter(|(_, u)| deal[&(u.entry.clone(), u.chunk)] == shard.index)
        .collect();
    mine.sort_by_key(|&(p, u)| (model_order(p), p, u.chunk));
    let outcome = |computed| ShardOutcome {
        dir: dir.clone(),
        units: mine.len(),
        of_units: plan.all().count(),
        tokens: mine.iter().map(|(_, u)| u.tokens).sum(),
        of_tokens: plan.all().map(|(_, u)| u.tokens).sum(),
        computed,
    };
    let path = dir.join("shard.json");
    let mut record = ShardRecord::new(shard, hash, plan.hash());
    if let Some(done) = ShardRecord::read(&path)? {
        let same_units = done
            .units
            .iter()
            .map(|d| &d.unit)
            .eq(mine.iter().map(|(_, u)| *u));
        let same_study = (&done.written_by, &done.spec_hash, &done.plan_hash)
            == (&record.written_by, &record.spec_hash, &record.plan_hash);
        if same_units && same_study && done.shard == shard {
            notices.notice(&format!(
                "{shard} was already finished ({})",
                path.display()
            ));
            return Ok(outcome(0));
        }
        // Another study's record must not vouch for this run while it computes.
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    let o = outcome(0);
    notices.notice(&format!(
        "{shard}: {} of {} chunks, {} of {} tokens",
        o.units, o.of_units, o.tokens, o.of_tokens
    ));
    let before = ctx.cache.chunks_computed();
    let mut bar = ctx.progress(format!("{shard}"));
    bar.set_total(mine.iter().map(|(_, u)| u.examples.len()).sum());
    for &(p, unit) in &mine {
        let pass = &plan.passes[p];
        pass.compute(&ctx, unit.chunk, &mut *bar)?;
        // Written or verified just now: its record is the chunk's.
        let sha = pass.entry.recorded_sha256(unit.chunk)?;
        record.units.push(DoneUnit {
            unit: unit.clone(),
            sha256: sha,
        });
    }
    record.write(&path)?;
    Ok(outcome(ctx.cache.chunks_computed() - before))
}

/// Merges the shards under the study's output folder ([`merge::install_shards`]), then runs
/// the study there as [`crate::run::run_study`] does, reading every cached pass from the
/// shards' chunks. A merge that had to compute a chunk says so (its plan missed a pass).
pub fn merge_study(
    spec: StudySpec,
    base_dir: &Path,
    preset: Option<Preset>,
    caller: Caller<'_>,
) -> Result<StudyOutcome> {
    run_study_with(spec, base_dir, preset, caller, |ctx, notices| {
        let done = merge::install_shards(ctx, notices)?;
        notices.notice(&format!(
            "merged {} shards: {} cache chunks",
            done.shards, done.chunks
        ));
        Ok(())
    })
}

#[cfg(test)]
mod tests;
