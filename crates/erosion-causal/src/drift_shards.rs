//! `erosion drift` split over processes: shard i of n measures its share of the checkpoints
//! (contiguous, in order) into `OUT/shards/i-of-n/drift-shard.json`, rewritten after each
//! point so a stopped shard resumes; the merge checks the shards and writes `drift.json` and
//! `report.html` as one run would. A checkpoint's point depends on nothing but the checkpoint
//! and the probe, so the merged points are bit-identical to one process's.

use std::path::Path;

use anyhow::{bail, Context, Result};
use erosion_forward::cache::canonical_sha256;
use erosion_forward::notice::Notify;
use erosion_forward::out_lock::OutLock;
use erosion_forward::shard::{list_split, read_json, ShardIndex};
use erosion_model::atomic::write_bytes_atomic;
use serde::{Deserialize, Serialize};

use crate::drift::DriftPoint;
use crate::drift_series::{finish, fixed_probe, measure, DriftOutcome, DriftSpec};

const FILE: &str = "drift-shard.json";

/// A drift shard's file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DriftShard {
    written_by: String,
    /// Of the checkpoints and the probe ([`identity`]).
    identity: String,
    shard: ShardIndex,
    /// Indices (into the run's checkpoints) this shard measures.
    checkpoints: std::ops::Range<usize>,
    /// Examples the probe read (for the merged provenance).
    probe_examples: usize,
    /// One per checkpoint measured so far, in order.
    points: Vec<DriftPoint>,
}

impl DriftShard {
    fn finished(&self) -> bool {
        self.points.len() == self.checkpoints.len()
    }

    fn read(path: &Path) -> Result<Option<Self>> {
        read_json(path, "a drift shard")
    }
}

fn written_by() -> String {
    format!("erosion-causal {}", env!("CARGO_PKG_VERSION"))
}

/// What every shard of one drift run shares: the checkpoints as named, the probe, the dtype.
/// The device is left out, so shards may run on different machines.
fn identity(spec: &DriftSpec) -> String {
    let p = &spec.probe;
    canonical_sha256(&serde_json::json!({
        "checkpoints": spec.checkpoints, "directions": p.directions, "toxic": p.toxic,
        "reject": p.reject, "probe_size": p.probe_size, "window": p.window, "seed": p.seed,
        "dtype": format!("{:?}", spec.dtype),
    }))
}

/// Measures shard `shard`'s checkpoints of `spec` into its folder; returns how many it
/// measured now (the others were on file from a stopped run).
pub fn run_drift_shard(
    spec: &DriftSpec,
    shard: ShardIndex,
    notices: &mut dyn Notify,
) -> Result<usize> {
    let dir = shard.dir(&spec.out);
    let _lock = OutLock::acquire(&dir, "drift shard", notices)?;
    let path = dir.join(FILE);
    let range = shard.share(spec.checkpoints.len());
    let mut file = DriftShard {
        written_by: written_by(),
        identity: identity(spec),
        shard,
        checkpoints: range.clone(),
        probe_examples: 0,
        points: Vec::new(),
    };
    if let Some(old) = DriftShard::read(&path)? {
        let same = (&old.written_by, &old.identity, old.shard, &old.checkpoints)
            == (&file.written_by, &file.identity, shard, &file.checkpoints);
        if same {
            file = old;
        }
    }
    let probe = fixed_probe(spec)?;
    file.probe_examples = probe.toxic.len();
    let mut measured = 0;
    for i in range.start + file.points.len()..range.end {
        let name = &spec.checkpoints[i];
        let point = measure(spec, &probe, name)?;
        notices.notice(&format!("{name}: margin {:.3}", point.margin.estimate));
        file.points.push(point);
        write_bytes_atomic(&path, &serde_json::to_vec_pretty(&file)?)?;
        measured += 1;
    }
    // Also a shard with no checkpoint (more shards than checkpoints) says it is done.
    write_bytes_atomic(&path, &serde_json::to_vec_pretty(&file)?)?;
    Ok(measured)
}

/// Checks the shards under `spec.out` (each finished, of this run, covering every checkpoint
/// once; every problem listed, each naming its shard) and writes the run's files from them.
pub fn merge_drift(spec: &DriftSpec, notices: &mut dyn Notify) -> Result<DriftOutcome> {
    let _lock = OutLock::acquire(&spec.out, "drift", notices)?;
    let split = list_split(&spec.out, "erosion drift ... --shard {shard}")?;
    let (shards, mut problems) = (split.shards, split.missing);
    let (want, n) = (identity(spec), spec.checkpoints.len());
    let mut points: Vec<Option<DriftPoint>> = vec![None; n];
    let mut probe_examples = 0;
    let mut locks = Vec::new();
    for (s, dir) in &shards {
        locks.push(
            OutLock::acquire(dir, "drift merge", notices)
                .with_context(|| format!("{s} is still running"))?,
        );
        let path = dir.join(FILE);
        let Some(f) = DriftShard::read(&path)? else {
            problems.push(format!("{s} has not started (no {})", path.display()));
            continue;
        };
        if f.shard != *s || f.identity != want || f.written_by != written_by() {
            problems.push(format!(
                "{s} comes from another drift run (other checkpoints, probe or dtype, or {})",
                f.written_by
            ));
        } else if !f.finished() {
            problems.push(format!(
                "{s} has not finished ({} of {} checkpoints)",
                f.points.len(),
                f.checkpoints.len()
            ));
        } else if f.checkpoints != s.share(n) {
            problems.push(format!(
                "{s} holds checkpoints {:?}, not its share",
                f.checkpoints
            ));
        } else {
            probe_examples = f.probe_examples;
            for (i, p) in f.checkpoints.zip(f.points) {
                points[i] = Some(p);
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "cannot merge the drift shards under {}:\n  - {}",
            spec.out.display(),
            problems.join("\n  - ")
        );
    }
    let points: Vec<DriftPoint> = points
        .into_iter()
        .map(|p| p.expect("every share checked"))
        .collect();
    finish(spec, points, probe_examples)
}
