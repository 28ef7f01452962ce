//! `erosion eval --questions` split over processes. The work is cut into units of one model's
//! decoding batch ([`crate::sampler::answer_batches`]): an answer's bits depend on the batch it
//! was decoded in, so whole batches make the merged answers those of one process. The units are
//! ordered by model, then batch, and shard i of n takes a contiguous share of them (so a shard
//! loads one or two models). Shard i writes `OUT/shards/i-of-n/em-shard.json`, rewritten after
//! each unit so a stopped shard resumes where it stopped; the merge checks every shard (of this
//! run, finished, holding its share) and returns the answers in the order one run gives them.

use std::ops::Range;
use std::path::Path;

use anyhow::{bail, Context, Result};
use erosion_forward::notice::Notify;
use erosion_forward::out_lock::OutLock;
use erosion_forward::shard::{list_split, read_json, ShardIndex};
use erosion_model::atomic::write_bytes_atomic;
use serde::{Deserialize, Serialize};

use super::report::EmJudge;
use super::EmAnswer;

const FILE: &str = "em-shard.json";

/// One unit of work: rows `rows` of model `model`'s plan (one decoding batch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// Index into the run's models.
    pub model: usize,
    pub rows: Range<usize>,
}

/// A shard's file.
#[derive(Debug, Serialize, Deserialize)]
struct EmShard {
    written_by: String,
    /// Of everything that decides the answers (the caller's [`run_em_shard`] `identity`).
    identity: String,
    shard: ShardIndex,
    /// This shard's share of the units.
    units: Vec<Unit>,
    judge: EmJudge,
    /// The answers of each unit done so far, in order.
    answers: Vec<Vec<EmAnswer>>,
}

fn written_by() -> String {
    format!("erosion-eval {}", env!("CARGO_PKG_VERSION"))
}

/// Answers shard `shard`'s share of `units` into its folder under `out`, calling `answer` for
/// each unit not already on file; returns how many units it answered now. `identity` must hash
/// everything that decides the answers (models, questions, options, judge), so shards of
/// another run are refused.
pub fn run_em_shard(
    out: &Path,
    identity: &str,
    units: &[Unit],
    shard: ShardIndex,
    judge: &EmJudge,
    notices: &mut dyn Notify,
    answer: &mut dyn FnMut(&Unit) -> Result<Vec<EmAnswer>>,
) -> Result<usize> {
    let dir = shard.dir(out);
    let _lock = OutLock::acquire(&dir, "eval shard", notices)?;
    let path = dir.join(FILE);
    let mut file = EmShard {
        written_by: written_by(),
        identity: identity.to_string(),
        shard,
        units: units[shard.share(units.len())].to_vec(),
        judge: judge.clone(),
        answers: Vec::new(),
    };
    if let Some(old) = read_json::<EmShard>(&path, "an eval shard")? {
        let same = (&old.written_by, &old.identity, old.shard, &old.units)
            == (&file.written_by, &file.identity, shard, &file.units);
        if same {
            file.answers = old.answers;
        }
    }
    let mut answered = 0;
    for k in file.answers.len()..file.units.len() {
        let unit = file.units[k].clone();
        let answers = answer(&unit)
            .with_context(|| format!("model {} rows {:?} ({shard})", unit.model, unit.rows))?;
        if answers.len() != unit.rows.len() {
            bail!(
                "{} answers for rows {:?} of model {}",
                answers.len(),
                unit.rows,
                unit.model
            );
        }
        file.answers.push(answers);
        write_bytes_atomic(&path, &serde_json::to_vec(&file)?)?;
        answered += 1;
    }
    // Also a shard with no unit (more shards than units) says it is done.
    write_bytes_atomic(&path, &serde_json::to_vec(&file)?)?;
    Ok(answered)
}

/// Checks the shards under `out` (each of this run, finished, holding its share of `units`;
/// every problem listed, each naming its shard) and returns every unit's answers in unit order,
/// with the judge the shards recorded.
pub fn merge_em_shards(
    out: &Path,
    identity: &str,
    units: &[Unit],
    notices: &mut dyn Notify,
) -> Result<(Vec<EmAnswer>, EmJudge)> {
    let split = list_split(out, "erosion eval ... --shard {shard}")?;
    let (shards, mut problems) = (split.shards, split.missing);
    let mut answers: Vec<Option<Vec<EmAnswer>>> = vec![None; units.len()];
    let mut judge = None;
    let mut locks = Vec::new();
    for (s, dir) in &shards {
        locks.push(
            OutLock::acquire(dir, "eval merge", notices)
                .with_context(|| format!("{s} is still running"))?,
        );
        let path = dir.join(FILE);
        let Some(f) = read_json::<EmShard>(&path, "an eval shard")? else {
            problems.push(format!("{s} has not started (no {})", path.display()));
            continue;
        };
        let share = s.share(units.len());
        if f.shard != *s || f.identity != identity || f.written_by != written_by() {
            problems.push(format!(
                "{s} comes from another evaluation (other models, questions, options or judge, \
                 or {})",
                f.written_by
            ));
        } else if f.units != units[share.clone()] {
            problems.push(format!("{s} holds other units than its share"));
        } else if f.answers.len() != f.units.len() {
            problems.push(format!(
                "{s} has not finished ({} of {} batches)",
                f.answers.len(),
                f.units.len()
            ));
        } else {
            judge = Some(f.judge);
            for (i, a) in share.zip(f.answers) {
                answers[i] = Some(a);
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "cannot merge the eval shards under {}:\n  - {}",
            out.display(),
            problems.join("\n  - ")
        );
    }
    let judge = judge.context("no shard holds a unit")?;
    let answers = answers.into_iter().flatten().flatten().collect();
    Ok((answers, judge))
}
