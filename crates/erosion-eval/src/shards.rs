//! `erosion eval` split over processes ([`UnitRun`]: each shard answers a contiguous share of
//! the units, resumably; the merge returns every unit's results in order).
//!
//! - With `--questions`, a unit is one model's decoding batch ([`BatchUnit`], planned by
//!   [`crate::sampler::answer_batches`]): an answer's bits depend on the batch it was decoded
//!   in, so whole batches make the merged answers those of one process. Units are ordered by
//!   model, then batch, so a shard loads one or two models.
//! - Otherwise a unit is one model: its measures and answers are computed as one run computes
//!   them (the two-turn test reuses the model's own earlier answers).

use std::ops::Range;
use std::path::Path;

use erosion_forward::shard::UnitRun;
use serde::{Deserialize, Serialize};

/// Rows `rows` of model `model`'s plan (index into the run's models): one decoding batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchUnit {
    pub model: usize,
    pub rows: Range<usize>,
}

/// The shards of an evaluation under `out`. `identity` must hash everything that decides the
/// answers (models, prompts or questions, options, judge), so shards of another run are
/// refused; `questions` picks the protocol's file.
pub fn eval_shards<'a>(out: &'a Path, identity: String, questions: bool) -> UnitRun<'a> {
    UnitRun {
        out,
        file: if questions {
            "em-shard.json"
        } else {
            "eval-shard.json"
        },
        command: "eval",
        rerun: "erosion eval ... --shard {shard}",
        written_by: format!("erosion-eval {}", env!("CARGO_PKG_VERSION")),
        identity,
    }
}
