//! Batching under a token budget, and progress reporting.
//!
//! Sequences are sorted by length (longest first, so a batch that does not fit in memory
//! fails at the start of a run, not at its end) and cut greedily into batches whose padded
//! size `batch * longest` stays within [`BatchOptions::max_tokens`]. Sorting keeps padding
//! small; every output of this crate is nevertheless returned in (or labelled with) the
//! original example order. Batches are right-padded; the model takes positions and
//! attention from the mask, so a padded row equals the sequence run alone.

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// How examples are grouped into forward passes. Results do not depend on it (up to float
/// rounding in differently shaped matrix products).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchOptions {
    /// Most tokens in one padded batch, padding included: `batch * longest <= max_tokens`.
    /// A sequence longer than this runs alone.
    pub max_tokens: usize,
    /// Most sequences in one batch.
    pub max_batch: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            max_tokens: 4096,
            max_batch: 64,
        }
    }
}

impl BatchOptions {
    fn check(&self) -> Result<()> {
        if self.max_tokens == 0 || self.max_batch == 0 {
            bail!(
                "batch options must be positive (max_tokens {}, max_batch {})",
                self.max_tokens,
                self.max_batch
            );
        }
        Ok(())
    }
}

/// Groups example indices into batches: `lens[i]` is the number of tokens example i will run
/// with. Examples with `lens[i] == 0` are left out. Within the plan, indices are ordered by
/// length, longest first, ties in input order.
pub fn plan_batches(lens: &[usize], opts: &BatchOptions) -> Result<Vec<Vec<usize>>> {
    opts.check()?;
    let mut order: Vec<usize> = (0..lens.len()).filter(|&i| lens[i] > 0).collect();
    order.sort_by(|&a, &b| lens[b].cmp(&lens[a]).then(a.cmp(&b)));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // The first member is the longest, so it sets the padded length.
        let longest = current.first().map_or(lens[i], |&j| lens[j]);
        let fits = (current.len() + 1) * longest <= opts.max_tokens;
        if !current.is_empty() && (!fits || current.len() == opts.max_batch) {
            batches.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    Ok(batches)
}

/// One right-padded batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The input index of each row.
    pub examples: Vec<usize>,
    /// Number of real tokens in each row.
    pub lens: Vec<usize>,
    /// Token ids, pads are 0. `[batch, seq]` u32
    pub ids: Tensor,
    /// 1 = token, 0 = pad. `[batch, seq]` u32
    pub mask: Tensor,
}

impl Batch {
    /// Right-pads `rows[k]` (the tokens of example `examples[k]`) to the longest row.
    pub fn new(examples: Vec<usize>, rows: &[&[u32]], device: &Device) -> Result<Self> {
        if rows.is_empty() || rows.len() != examples.len() {
            bail!(
                "a batch needs one row per example ({} rows, {} examples)",
                rows.len(),
                examples.len()
            );
        }
        let seq = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        if seq == 0 {
            bail!("every row of the batch is empty");
        }
        let b = rows.len();
        let mut ids = vec![0u32; b * seq];
        let mut mask = vec![0u32; b * seq];
        for (k, r) in rows.iter().enumerate() {
            ids[k * seq..k * seq + r.len()].copy_from_slice(r);
            mask[k * seq..k * seq + r.len()]
                .iter_mut()
                .for_each(|m| *m = 1);
        }
        Ok(Batch {
            examples,
            lens: rows.iter().map(|r| r.len()).collect(),
            ids: Tensor::from_vec(ids, (b, seq), device).context("batch ids")?,
            mask: Tensor::from_vec(mask, (b, seq), device).context("batch mask")?,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Padded length (columns).
    pub fn seq_len(&self) -> usize {
        self.lens.iter().copied().max().unwrap_or(0)
    }

    /// The mask, or `None` when no row is padded (the model then skips mask handling).
    pub fn mask_if_padded(&self) -> Option<&Tensor> {
        let s = self.seq_len();
        self.lens.iter().any(|&l| l != s).then_some(&self.mask)
    }
}

/// How a pass runs its batches: all together (`layer_major`, for a streamed model: each block is
/// read once and runs every batch) or one at a time, so only one batch's pass is in memory.
pub(crate) fn pass_groups(batches: &[Batch], layer_major: bool) -> Vec<&[Batch]> {
    match layer_major {
        true => vec![batches],
        false => batches.chunks(1).collect(),
    }
}

/// Progress of a long pass, counted in examples. `&mut dyn Progress` is passed to every pass
/// of this crate; [`NoProgress`] ignores it, an `indicatif::ProgressBar` shows it, and
/// [`ProgressFn`] adapts a closure.
pub trait Progress {
    /// The number of examples the pass will report (called once, before any `advance`).
    fn set_total(&mut self, _examples: usize) {}
    /// `examples` more examples are done.
    fn advance(&mut self, examples: usize);
    /// A short status of the pass so far (a training step's loss), for reports with room for
    /// one; ignored by default.
    fn message(&mut self, _text: &str) {}
}

/// Where the progress of a run's passes goes: the library names each pass, the caller decides
/// how to show it (a terminal bar, a log line, nothing), so library code never draws.
pub trait ProgressSink {
    /// A report for the pass `label`; the pass is over when the report is dropped.
    fn start(&self, label: &str) -> Box<dyn Progress>;
}

/// Shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl ProgressSink for Quiet {
    fn start(&self, _label: &str) -> Box<dyn Progress> {
        Box::new(NoProgress)
    }
}

/// A boxed report (what a [`ProgressSink`] hands out) reports like the one it holds.
impl<P: Progress + ?Sized> Progress for Box<P> {
    fn set_total(&mut self, examples: usize) {
        (**self).set_total(examples);
    }
    fn advance(&mut self, examples: usize) {
        (**self).advance(examples);
    }
    fn message(&mut self, text: &str) {
        (**self).message(text);
    }
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&mut self, _: usize) {}
}

/// Sets the bar's length and position; the caller styles and finishes the bar.
impl Progress for indicatif::ProgressBar {
    fn set_total(&mut self, examples: usize) {
        self.set_length(examples as u64);
        self.set_position(0);
    }
    fn advance(&mut self, examples: usize) {
        self.inc(examples as u64);
    }
    fn message(&mut self, text: &str) {
        self.set_message(text.to_string());
    }
}

/// A closure called with `(done, total)` examples after each step.
pub struct ProgressFn<F: FnMut(usize, usize)> {
    f: F,
    done: usize,
    total: usize,
}

impl<F: FnMut(usize, usize)> ProgressFn<F> {
    pub fn new(f: F) -> Self {
        ProgressFn {
            f,
            done: 0,
            total: 0,
        }
    }
}

impl<F: FnMut(usize, usize)> Progress for ProgressFn<F> {
    fn set_total(&mut self, examples: usize) {
        self.total = examples;
        self.done = 0;
    }
    fn advance(&mut self, examples: usize) {
        self.done += examples;
        (self.f)(self.done, self.total);
    }
}

/// Passes `advance` on and ignores `set_total`: for a pass run as one part of a larger one,
/// so one bar spans every part.
pub struct AdvanceOnly<'a>(pub &'a mut dyn Progress);

impl Progress for AdvanceOnly<'_> {
    fn advance(&mut self, examples: usize) {
        self.0.advance(examples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_respects_the_budget_and_sorts_by_length() {
        let lens = [3, 10, 0, 4, 10, 2, 7];
        let opts = BatchOptions {
            max_tokens: 20,
            max_batch: 3,
        };
        let plan = plan_batches(&lens, &opts).unwrap();
        // Longest first, ties in input order; the empty example is left out.
        assert_eq!(plan, vec![vec![1, 4], vec![6, 3], vec![0, 5]]);
        for b in &plan {
            let longest = b.iter().map(|&i| lens[i]).max().unwrap();
            assert!(b.len() * longest <= 20);
        }
        // A sequence longer than the budget runs alone; max_batch caps the rows.
        let plan = plan_batches(
            &[50, 1, 1, 1, 1],
            &BatchOptions {
                max_tokens: 20,
                max_batch: 3,
            },
        )
        .unwrap();
        assert_eq!(plan, vec![vec![0], vec![1, 2, 3], vec![4]]);
        assert!(plan_batches(
            &[1],
            &BatchOptions {
                max_tokens: 0,
                max_batch: 1
            }
        )
        .is_err());
    }

    #[test]
    fn batch_is_right_padded_with_a_mask() {
        let rows: [&[u32]; 2] = [&[5, 6, 7], &[8]];
        let b = Batch::new(vec![4, 1], &rows, &Device::Cpu).unwrap();
        assert_eq!(
            b.ids.to_vec2::<u32>().unwrap(),
            vec![vec![5, 6, 7], vec![8, 0, 0]]
        );
        assert_eq!(
            b.mask.to_vec2::<u32>().unwrap(),
            vec![vec![1, 1, 1], vec![1, 0, 0]]
        );
        assert_eq!((b.seq_len(), b.len()), (3, 2));
        assert!(b.mask_if_padded().is_some());
        let full: [&[u32]; 2] = [&[1, 2], &[3, 4]];
        assert!(Batch::new(vec![0, 1], &full, &Device::Cpu)
            .unwrap()
            .mask_if_padded()
            .is_none());
    }

    #[test]
    fn progress_fn_counts() {
        let mut seen = Vec::new();
        {
            let mut p = ProgressFn::new(|d, t| seen.push((d, t)));
            p.set_total(5);
            p.advance(2);
            AdvanceOnly(&mut p).set_total(99);
            AdvanceOnly(&mut p).advance(3);
        }
        assert_eq!(seen, vec![(2, 5), (5, 5)]);
    }
}
