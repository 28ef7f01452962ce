//! Timing, peak memory and the per-task result record shared with `bench/peer.py`.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One side's measurement of one task, written as JSON by both sides (same fields in
/// `bench/peer.py`) and read back by the `table` subcommand.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    /// `erosion` or `peer`.
    pub side: String,
    /// `matmul`, `forward`, `logprobs`, `gradients` or `layers-<n examples>`.
    pub task: String,
    /// Best of the timed runs, seconds (after one untimed warm-up).
    pub wall_s: f64,
    /// Every timed run, seconds.
    pub runs_s: Vec<f64>,
    /// Tokens run through the model per timed run (0 for matmul).
    pub tokens: usize,
    /// Peak resident memory of the whole process (VmHWM), MiB.
    pub peak_rss_mb: f64,
    /// Task-specific numbers (achieved GFLOP/s for matmul, agreement checks for the peer,
    /// per-example losses and gradient norms, per-layer |v_l|).
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl TaskResult {
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        erosion_model::atomic::write_bytes_atomic(path, text.as_bytes())
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Runs `f` once untimed (warm-up: page faults, allocator, thread pools), then `reps` times
/// timed; returns the run times (seconds) and the last run's output.
pub fn best_of<T>(reps: usize, mut f: impl FnMut() -> Result<T>) -> Result<(Vec<f64>, T)> {
    let mut out = f().context("warm-up run")?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        out = f()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok((times, out))
}

/// Smallest run time.
pub fn min(times: &[f64]) -> f64 {
    times.iter().copied().fold(f64::INFINITY, f64::min)
}
