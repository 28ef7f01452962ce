//! Task (c): per-example gradients of the response loss with respect to the last layer's
//! `self_attn.o_proj.weight` (finding 2b's input).
//!
//! erosion runs [`GradientComputer`] with its defaults ([`ParamSelection::LastOProj`],
//! [`LossSpec::default`]: mean cross-entropy over the first T = 64 response tokens, fewer when
//! the response is shorter): the blocks below the last run batched with the fused kernels and
//! no graph, only the last block and the final norm per example with a graph. Each example is
//! fed `ids[..t_end - 1]`, t_end = the last target token + 1 (later tokens cannot change the
//! loss), and its flattened gradient is kept in memory ([`MemoryRows`]), as the peer keeps a
//! list of them.

use std::ops::Range;
use std::path::Path;

use anyhow::{bail, Context, Result};
use erosion_forward::gradients::{GradientComputer, LossSpec, ParamSelection, Targets};
use erosion_forward::row_store::{MemoryRows, RowSink, RowStoreWriter};

use super::{load, result, Inputs};
use crate::measure::{best_of, TaskResult};

/// Per-example gradients of every example; writes them (one f32 row per example, input
/// order) to the row store `values_out` (`values_out.json` its header) for the peer to
/// compare against.
pub fn gradients(inputs: &Inputs, reps: usize, values_out: &Path) -> Result<TaskResult> {
    let model = load(&inputs.model)?;
    let seqs = inputs.sequences()?;
    let loss = LossSpec::default();
    let gc = GradientComputer::new(&model, &ParamSelection::LastOProj, loss)?;
    drop(model); // the computer holds what it needs (tensors are shared, not copied)
    let fed: Vec<usize> = target_spans(inputs, &loss)?
        .iter()
        .map(|t| t.end - 1)
        .collect();
    // Lower blocks in groups of `batch` examples, under the same padded-token budget as the
    // other tasks.
    let longest = fed.iter().copied().max().unwrap_or(1).max(1);
    let batch = (inputs.max_tokens / longest).clamp(1, 64);
    let (runs, (run, rows)) = best_of(reps, || {
        let mut rows = MemoryRows::new(gc.dim())?;
        let run = gc.run(&seqs, batch, &mut rows, &mut |_| {})?;
        Ok((run, rows))
    })?;
    if run.rows.len() != seqs.len() || run.rows.iter().enumerate().any(|(k, r)| r.example != k) {
        bail!(
            "expected one gradient per example in input order, got {} (skipped {:?})",
            run.rows.len(),
            run.skipped
        );
    }
    let mut r = result("gradients", runs, fed.iter().sum())?;
    // Written after the timed runs and the peak-memory reading.
    let meta = serde_json::json!({ "layout": run.layout, "loss": run.loss });
    let mut store = RowStoreWriter::create(values_out, gc.dim(), meta)?;
    let mut norms = Vec::with_capacity(rows.n_rows());
    for k in 0..rows.n_rows() {
        let g = rows.row(k)?;
        norms.push(g.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt());
        store.push_row(g)?;
    }
    store
        .finish()
        .with_context(|| format!("writing {}", values_out.display()))?;
    let losses: Vec<f64> = run.rows.iter().map(|r| r.loss).collect();
    r.extra
        .insert("param".into(), run.layout.names().join(",").into());
    r.extra.insert("dim".into(), gc.dim().into());
    r.extra.insert("loss".into(), losses.into());
    r.extra.insert("grad_norm".into(), norms.into());
    Ok(r)
}

/// Each example's target tokens under `loss` (indices into its ids). It is fed
/// `ids[..end - 1]`: the last target is only predicted.
pub fn target_spans(inputs: &Inputs, loss: &LossSpec) -> Result<Vec<Range<usize>>> {
    inputs
        .sequences()?
        .iter()
        .enumerate()
        .map(|(i, s)| match loss.targets(i, s)? {
            Targets::Use { tokens, .. } => Ok(tokens),
            Targets::Skip(why) => bail!(why),
        })
        .collect()
}
