//! `erosion drift` split over processes: shard i of n measures its share of the checkpoints
//! (contiguous, in order) into `OUT/shards/i-of-n/drift-shard.json`, rewritten after each
//! point so a stopped shard resumes; the merge checks the shards and writes `drift.json` and
//! `report.html` as one run would. A checkpoint's point depends on nothing but the checkpoint
//! and the probe, so the merged points are bit-identical to one process's.

use anyhow::Result;
use erosion_forward::cache::canonical_sha256;
use erosion_forward::notice::Notify;
use erosion_forward::out_lock::OutLock;
use erosion_forward::shard::{ShardIndex, UnitRun};

use crate::drift::DriftPoint;
use crate::drift_series::{finish, fixed_probe, measure, DriftOutcome, DriftSpec};

/// What every shard of one drift run shares: the checkpoints as named, the probe, the dtype,
/// the adapter scale.
/// The device is left out, so shards may run on different machines.
fn run(spec: &DriftSpec) -> UnitRun<'_> {
    let p = &spec.probe;
    let identity = canonical_sha256(&serde_json::json!({
        "checkpoints": spec.checkpoints, "directions": p.directions, "toxic": p.toxic,
        "reject": p.reject, "probe_size": p.probe_size, "window": p.window, "seed": p.seed,
        "dtype": format!("{:?}", spec.dtype), "adapter_scale": spec.adapter_scale,
    }));
    UnitRun {
        out: &spec.out,
        file: "drift-shard.json",
        command: "drift",
        rerun: "erosion drift ... --shard {shard}",
        written_by: format!("erosion-causal {}", env!("CARGO_PKG_VERSION")),
        identity,
    }
}

/// Measures shard `shard`'s checkpoints of `spec` into its folder; returns how many it
/// measured now (the others were on file from a stopped run).
pub fn run_drift_shard(
    spec: &DriftSpec,
    shard: ShardIndex,
    notices: &mut dyn Notify,
) -> Result<usize> {
    let probe = fixed_probe(spec)?;
    let checkpoints: Vec<usize> = (0..spec.checkpoints.len()).collect();
    // The probe's size goes beside the points, for the merged provenance.
    run(spec).run_shard(
        &checkpoints,
        shard,
        probe.toxic.len(),
        notices,
        &mut |&i, notices| {
            let name = &spec.checkpoints[i];
            let point: DriftPoint = measure(spec, &probe, name)?;
            notices.notice(&format!("{name}: margin {:.3}", point.margin.estimate));
            Ok(point)
        },
    )
}

/// Checks the shards under `spec.out` (each finished, of this run, covering every checkpoint
/// once; every problem listed, each naming its shard) and writes the run's files from them.
pub fn merge_drift(spec: &DriftSpec, notices: &mut dyn Notify) -> Result<DriftOutcome> {
    let _lock = OutLock::acquire(&spec.out, "drift", notices)?;
    let checkpoints: Vec<usize> = (0..spec.checkpoints.len()).collect();
    let (points, probe_examples): (Vec<DriftPoint>, usize) =
        run(spec).merge(&checkpoints, notices)?;
    finish(spec, points, probe_examples)
}
