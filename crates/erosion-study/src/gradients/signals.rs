//! Per-example gradients into a Gram matrix without holding every gradient in memory.
//!
//! g_i = d loss_i / d theta (erosion-forward's GradientComputer) is produced one example at a
//! time and pushed into a row sink chosen by the memory budget (erosion-analysis'
//! `choose_gram_plan`):
//! - exact: rows appended to a file-backed row store under the study's cache folder, then
//!   G = X X^T by blocked products over the memory-mapped file (two blocks of rows in memory);
//!   the store is reused when the same gradients are asked for again (resume);
//! - sketch: each row projected on arrival by a seeded k x D random sign matrix S
//!   (y_i = S g_i, Rademacher entries / sqrt(k)), rows buffered in blocks that fit the budget;
//!   G ~ Y Y^T, every cosine within the stated bound of the truth with probability 1 - delta.
//!   Nothing is written to disk.

use crate::context::StudyContext;
use crate::keys::sequences_fingerprint;
use crate::spec::{GradientParams, GradientsSpec, LossOver};
use anyhow::{bail, Context, Result};
use erosion_analysis::cosine::{blocked_gram, MmapRows};
use erosion_analysis::matrix::{dot, Matrix};
use erosion_analysis::sketch::{choose_gram_plan, GramBudget, GramPlan, SketchKind, Sketcher};
use erosion_data::{Sequence, ShortResponse};
use erosion_forward::gradients::{
    GradientComputer, GradientRun, LossSpan, LossSpec, ParamSelection, Reduction, Targets,
};
use erosion_forward::row_store::{RowSink, RowStore, RowStoreWriter};
use erosion_model::seed::Fnv1a;
use erosion_model::transformer::Transformer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Most sweeps the exact Gram may take over the stored gradients (its I/O cost).
pub(crate) const MAX_PASSES: usize = 16;
/// Largest guaranteed cosine error a sketch may have, and the probability it may fail.
pub(crate) const MAX_COSINE_ERROR: f64 = 0.1;
pub(crate) const DELTA: f64 = 0.05;
/// Columns of one chunk of S (erosion-analysis' sketch regenerates S 256 columns at a time).
const SKETCH_CHUNK: usize = 256;

/// The spec's parameter choice as erosion-forward's selection.
pub(crate) fn param_selection(p: &GradientParams) -> ParamSelection {
    match p {
        GradientParams::OProj => ParamSelection::LastOProj,
        GradientParams::Attention => ParamSelection::LastAttention,
        GradientParams::Named(names) => ParamSelection::Named(names.clone()),
    }
}

/// The loss of each example's gradient, matched to the loss vectors (analysis 2a):
/// - `response-window`: the first `window_used` response tokens (T, or T' = the shortest
///   response under `truncate_to_shortest`). `use_available` counts missing positions as
///   cross-entropy 0, i.e. loss = (1/T) sum of the available tokens: the sum reduction (the
///   constant 1/T scales every gradient alike, which no cosine, centred or not, sees); the other
///   policies give every kept example exactly T tokens, where the mean is used. `skip` and
///   `error` map to the same policies.
/// - `response`, `sequence`: the mean over those tokens (transformers' loss; the study's code
///   passed the whole sequence as labels), with the tokens there are.
pub(crate) fn loss_spec(spec: &GradientsSpec, window_used: usize) -> LossSpec {
    match spec.loss_over {
        LossOver::ResponseWindow => {
            let (reduction, short) = match spec.short {
                ShortResponse::UseAvailable => (Reduction::Sum, ShortResponse::UseAvailable),
                // `window_used` is already the shortest response's length, so no example is
                // short; the loss reads one example at a time, where the policy reads as this.
                ShortResponse::TruncateToShortest => (Reduction::Mean, ShortResponse::UseAvailable),
                policy @ (ShortResponse::Skip | ShortResponse::Error) => (Reduction::Mean, policy),
            };
            LossSpec {
                span: LossSpan::ResponseWindow { t: window_used },
                reduction,
                short,
            }
        }
        LossOver::Response => LossSpec {
            span: LossSpan::Response,
            reduction: Reduction::Mean,
            short: ShortResponse::UseAvailable,
        },
        LossOver::Sequence => LossSpec {
            span: LossSpan::Sequence,
            reduction: Reduction::Mean,
            short: ShortResponse::UseAvailable,
        },
    }
}

/// What the gradient pass produced.
pub(crate) struct GradientGram {
    pub run: GradientRun,
    /// Blocks after the lowest chosen weight that ran with a graph start here.
    pub first_differentiable_layer: usize,
    pub budget: GramBudget,
    pub plan: GramPlan,
    /// G = X X^T (exact) or Y Y^T (sketch), uncentred. // [rows, rows]
    pub gram: Matrix,
    /// The exact route's row store.
    pub store: Option<PathBuf>,
}

/// Gradients of every sequence (`key` identifies them for the store) and their Gram matrix,
/// holding at most `memory_bytes` of gradient data at once (the n x n result aside).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gradient_gram(
    ctx: &StudyContext,
    model: &Transformer,
    seqs: &[Sequence],
    spec: &GradientsSpec,
    loss: LossSpec,
    key: Value,
    memory_bytes: usize,
    sketch_seed: u64,
) -> Result<GradientGram> {
    let computer = GradientComputer::new(model, &param_selection(&spec.params), loss)?;
    let dim = computer.dim();
    let mut n_rows = 0;
    for (i, s) in seqs.iter().enumerate() {
        if let Targets::Use { .. } = loss.targets(i, s)? {
            n_rows += 1;
        }
    }
    if n_rows == 0 {
        bail!(
            "no example has a gradient under the short-response policy {}",
            spec.short
        );
    }
    let budget = GramBudget {
        memory_bytes,
        max_passes: MAX_PASSES,
        max_cosine_error: MAX_COSINE_ERROR,
        delta: DELTA,
    };
    let plan = choose_gram_plan(n_rows, dim, &budget).context("[gradients] memory_budget_mb")?;
    let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
    let batch = (ctx.spec.batch_tokens / longest).clamp(1, ctx.batch_options().max_batch);
    let mut bar = ctx.progress(format!("gradients: {}", spec.model));
    bar.set_total(seqs.len());
    let mut shown = 0;
    let mut progress = |done: usize| {
        bar.advance(done.saturating_sub(shown));
        shown = shown.max(done);
    };
    let first = computer.first_differentiable_layer();
    match &plan {
        GramPlan::Exact { block_rows, .. } => {
            let (run, path) = stored_run(ctx, &computer, seqs, &key, batch, &mut progress)?;
            let mut rows = MmapRows::open(&path, dim)?;
            let gram = blocked_gram(&mut rows, *block_rows)
                .with_context(|| format!("the Gram matrix of {}", path.display()))?;
            Ok(GradientGram {
                run,
                first_differentiable_layer: first,
                budget,
                plan,
                gram,
                store: Some(path),
            })
        }
        GramPlan::Sketch { bound } => {
            let k = bound.sketch_dim;
            let held = n_rows * k * 8 + k * SKETCH_CHUNK * 4;
            let block = (budget.memory_bytes.saturating_sub(held) / (4 * dim)).clamp(1, n_rows);
            let mut sink = SketchSink::new(
                Sketcher::new(dim, k, SketchKind::Rademacher, sketch_seed)?,
                block,
            );
            let run = computer.run(seqs, batch, &mut sink, &mut progress)?;
            let y = sink.finish()?;
            Ok(GradientGram {
                run,
                first_differentiable_layer: first,
                budget,
                plan,
                gram: gram_of(&y),
                store: None,
            })
        }
    }
}

/// The exact route's gradients, in a row store under [`store_dir`] named by `key` and the
/// sequences: reused when a finished store made for `key` is there, else computed and stored
/// with its run record.
fn stored_run(
    ctx: &StudyContext,
    computer: &GradientComputer,
    seqs: &[Sequence],
    key: &Value,
    batch: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<(GradientRun, PathBuf)> {
    let dim = computer.dim();
    let dir = store_dir(ctx);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{}.f32", fingerprint(key, seqs)));
    if let Some(run) = reusable(&path, key, dim) {
        return Ok((run, path));
    }
    let mut writer = RowStoreWriter::create(&path, dim, json!({ "key": key }))?;
    let run = computer.run(seqs, batch, &mut writer, progress)?;
    writer.finish()?;
    let record = serde_json::to_vec_pretty(
        &json!({ "key": key, "run": run, "loss_bits": loss_bits(&run) }),
    )?;
    erosion_model::atomic::write_bytes_atomic(&run_path(&path), &record)?;
    Ok((run, path))
}

/// The folder of the exact route's row stores, under the study's cache folder.
pub(crate) fn store_dir(ctx: &StudyContext) -> PathBuf {
    ctx.cache.root().join("gradients")
}

/// File name of a store: FNV-1a of the key's JSON and the sequences.
fn fingerprint(key: &Value, seqs: &[Sequence]) -> String {
    let mut h = Fnv1a::new();
    h.write(key.to_string().as_bytes());
    h.write(sequences_fingerprint(seqs).as_bytes());
    format!("gradients-{:016x}", h.finish())
}

/// Each row's loss as its f64 bits: JSON numbers do not round-trip every f64 exactly, and a
/// resumed study must report the same numbers.
fn loss_bits(run: &GradientRun) -> Vec<u64> {
    run.rows.iter().map(|r| r.loss.to_bits()).collect()
}

/// `PATH.run.json`: the run record (losses, skipped examples, layout) beside a finished store.
fn run_path(store: &Path) -> PathBuf {
    let mut s = store.as_os_str().to_os_string();
    s.push(".run.json");
    PathBuf::from(s)
}

/// The run of a finished store made for `key`, when the store, its header and its run record
/// all agree; `None` means compute again.
fn reusable(path: &Path, key: &Value, dim: usize) -> Option<GradientRun> {
    let store = RowStore::open(path).ok()?;
    if store.dim() != dim || store.meta().get("key") != Some(key) {
        return None;
    }
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(run_path(path)).ok()?).ok()?;
    if record.get("key") != Some(key) {
        return None;
    }
    let mut run: GradientRun = serde_json::from_value(record.get("run")?.clone()).ok()?;
    let bits: Vec<u64> = serde_json::from_value(record.get("loss_bits")?.clone()).ok()?;
    if run.rows.len() != store.n_rows() || bits.len() != run.rows.len() || run.layout.dim != dim {
        return None;
    }
    run.rows
        .iter_mut()
        .zip(bits)
        .for_each(|(r, b)| r.loss = f64::from_bits(b));
    Some(run)
}

/// G = Y Y^T of rows held in memory (f64). // [n, k] -> [n, n]
pub(crate) fn gram_of(y: &Matrix) -> Matrix {
    let n = y.rows;
    let mut g = Matrix::zeros(n, n);
    for i in 0..n {
        for j in i..n {
            let v = dot(y.row(i), y.row(j));
            g.set(i, j, v);
            g.set(j, i, v);
        }
    }
    g
}

/// A row sink that sketches rows as they arrive, `block` rows at a time (S is regenerated
/// once per block, so larger blocks cost less), keeping only the n x k sketch.
pub(crate) struct SketchSink {
    sketcher: Sketcher,
    block: usize,
    buf: Vec<f32>,
    pending: usize,
    out: Vec<f64>,
    n: usize,
}

impl SketchSink {
    pub fn new(sketcher: Sketcher, block: usize) -> Self {
        SketchSink {
            sketcher,
            block: block.max(1),
            buf: Vec::new(),
            pending: 0,
            out: Vec::new(),
            n: 0,
        }
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending > 0 {
            let y = self.sketcher.project_block(&self.buf, self.pending)?;
            self.out.extend_from_slice(&y.data);
            self.buf.clear();
            self.pending = 0;
        }
        Ok(())
    }

    /// The sketch of every row pushed. // [n, k]
    pub fn finish(mut self) -> Result<Matrix> {
        self.flush()?;
        Matrix::from_vec(self.n, self.sketcher.sketch_dim, self.out)
    }
}

impl RowSink for SketchSink {
    fn dim(&self) -> usize {
        self.sketcher.input_dim
    }
    fn n_rows(&self) -> usize {
        self.n
    }
    fn push_row(&mut self, row: &[f32]) -> Result<()> {
        if row.len() != self.sketcher.input_dim {
            bail!(
                "sketch sink: row {} has {} values, expected {}",
                self.n,
                row.len(),
                self.sketcher.input_dim
            );
        }
        self.buf.extend_from_slice(row);
        self.pending += 1;
        self.n += 1;
        if self.pending == self.block {
            self.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sketching_rows_on_arrival_equals_sketching_them_together() {
        let (n, d, k) = (5, 700, 16);
        let rows: Vec<f32> = (0..n * d)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let sketcher = Sketcher::new(d, k, SketchKind::Rademacher, 11).unwrap();
        let all = sketcher.project_block(&rows, n).unwrap();
        for block in [1, 2, 5, 9] {
            let mut sink = SketchSink::new(sketcher.clone(), block);
            for r in rows.chunks(d) {
                sink.push_row(r).unwrap();
            }
            assert_eq!(sink.n_rows(), n);
            let y = sink.finish().unwrap();
            assert_eq!((y.rows, y.cols), (n, k));
            assert_eq!(y.data, all.data, "block {block}");
        }
        let mut sink = SketchSink::new(sketcher, 2);
        assert!(sink.push_row(&[1.0; 3]).is_err());
    }

    #[test]
    fn gram_of_rows_by_hand() {
        let y = Matrix::from_rows(&[vec![1.0, 2.0], vec![3.0, -1.0]]).unwrap();
        let g = gram_of(&y);
        assert_eq!(g.data, vec![5.0, 1.0, 1.0, 10.0]);
    }

    #[test]
    fn loss_follows_the_loss_vector_policy() {
        let mut spec = GradientsSpec {
            loss_over: LossOver::ResponseWindow,
            short: ShortResponse::UseAvailable,
            ..Default::default()
        };
        let l = loss_spec(&spec, 64);
        assert_eq!(l.span, LossSpan::ResponseWindow { t: 64 });
        assert_eq!(
            (l.reduction, l.short),
            (Reduction::Sum, ShortResponse::UseAvailable)
        );
        spec.short = ShortResponse::TruncateToShortest;
        assert_eq!(loss_spec(&spec, 7).span, LossSpan::ResponseWindow { t: 7 });
        spec.short = ShortResponse::Skip;
        assert_eq!(loss_spec(&spec, 64).short, ShortResponse::Skip);
        spec.short = ShortResponse::Error;
        assert_eq!(loss_spec(&spec, 64).short, ShortResponse::Error);
        spec.loss_over = LossOver::Sequence;
        let l = loss_spec(&spec, 64);
        assert_eq!((l.span, l.reduction), (LossSpan::Sequence, Reduction::Mean));
        spec.loss_over = LossOver::Response;
        assert_eq!(loss_spec(&spec, 64).span, LossSpan::Response);
        assert_eq!(
            param_selection(&GradientParams::OProj),
            ParamSelection::LastOProj
        );
        assert_eq!(
            param_selection(&GradientParams::Attention),
            ParamSelection::LastAttention
        );
        let named = vec!["model.norm.weight".to_string()];
        assert_eq!(
            param_selection(&GradientParams::Named(named.clone())),
            ParamSelection::Named(named)
        );
    }

    #[test]
    fn a_store_is_reused_only_for_its_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.f32");
        let key = json!({"model": "m", "n": 2});
        let mut w = RowStoreWriter::create(&path, 3, json!({ "key": key })).unwrap();
        w.push_row(&[1.0, 2.0, 3.0]).unwrap();
        w.push_row(&[4.0, 5.0, 6.0]).unwrap();
        w.finish().unwrap();
        // No run record yet (a run stopped between the store and its record): recompute.
        assert!(reusable(&path, &key, 3).is_none());
        let run = json!({
            "layout": {"params": [{"name": "w", "shape": [3], "offset": 0, "len": 3}], "dim": 3},
            "loss": LossSpec::default(),
            "rows": [{"example": 0, "loss": 1.0, "n_tokens": 2, "short": false}, {"example": 1, "loss": 2.0, "n_tokens": 2, "short": false}],
            "skipped": [],
        });
        // The losses come back bit for bit from their recorded bits (0.1 + 0.2 has no short
        // decimal form).
        let exact = 0.1f64 + 0.2;
        std::fs::write(
            run_path(&path),
            json!({"key": key, "run": run, "loss_bits": [exact.to_bits(), 2f64.to_bits()]})
                .to_string(),
        )
        .unwrap();
        let got = reusable(&path, &key, 3).unwrap();
        assert_eq!(got.rows.len(), 2);
        assert_eq!(got.rows[0].loss.to_bits(), exact.to_bits());
        assert!(reusable(&path, &json!({"model": "other", "n": 2}), 3).is_none());
        assert!(reusable(&path, &key, 4).is_none());
    }
}
