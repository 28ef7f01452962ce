//! The engine: one thread that decodes requests together, continuously.
//!
//! A run starts with the oldest waiting job and every other job of the same steering (up to
//! `max_batch` rows). Each step feeds one token per row through one KV cache. Between steps,
//! rows that finished leave the batch (their cache rows are dropped) and jobs of the same
//! steering that are next in the queue join it: their prompts are prefilled on their own
//! (left-padded under an attention mask, in column chunks so the logits stay under
//! [`MAX_LOGITS`] values) and their cache is joined to the running one. A job of another
//! steering at the head of the queue stops admission, so the run drains and that job goes
//! next: no steering waits behind an endless stream of another.
//!
//! Each row picks its token by `erosion_model::generate::choose` with its own options and its
//! own ChaCha8 stream (seeded with the row's seed), as `generate` does alone; positions count
//! real tokens and pads are never attended to, so a row gives the tokens it gives alone, up to
//! the float rounding of batched matmuls.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, IndexOp, Tensor};
use erosion_model::generate::{choose, left_padded};
use erosion_model::hooks::Hooks;
use erosion_model::transformer::{ForwardOptions, KvCache, Transformer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::ApiError;
use crate::plan::Served;
use crate::queue::{Event, Job, Queue};
use crate::text::{token_logprob, RowText};

/// Most logits (f32 values) one prompt pass may hold.
pub const MAX_LOGITS: usize = 1 << 25;

/// Starts the engine thread; it returns once the queue is closed and empty.
pub fn spawn(
    served: Arc<Served>,
    queue: Arc<Queue>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("erosion-engine".into())
        .spawn(move || {
            let lim = &served.limits;
            while let Some(first) = queue.next_batch(lim.max_batch, lim.gather) {
                let mut run = Run {
                    waiting: first.into_iter().map(Live::new).collect(),
                    rows: Vec::new(),
                };
                // A failure (or a panic in a kernel) fails the run's requests, not the server.
                let outcome = catch_unwind(AssertUnwindSafe(|| run.decode(&served, &queue)));
                let message = match outcome {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(p) => format!(
                        "the decoder panicked: {}",
                        p.downcast_ref::<String>()
                            .map(String::as_str)
                            .or(p.downcast_ref::<&str>().copied())
                            .unwrap_or("(no message)")
                    ),
                };
                for live in run.live() {
                    live.job
                        .send(Event::Error(ApiError::internal(message.clone())));
                }
            }
        })
}

/// A job in a run, shared by its rows: it is dropped (and its handler's channel closed) when
/// its last row leaves.
struct Live {
    job: Job,
    /// Its client left or its time ran out: its rows stop.
    failed: Cell<bool>,
}

impl Live {
    fn new(job: Job) -> Rc<Live> {
        Rc::new(Live {
            job,
            failed: Cell::new(false),
        })
    }
}

/// One row in flight.
struct RowRun {
    job: Rc<Live>,
    choice: usize,
    rng: ChaCha8Rng,
    text: RowText,
    generated: usize,
    last: u32,
    done: bool,
}

/// The jobs of one steering decoded together: their rows in the order of the cache's, and the
/// jobs taken from the queue that are not yet prefilled.
struct Run {
    waiting: Vec<Rc<Live>>,
    rows: Vec<RowRun>,
}

fn options(hooks: &mut Hooks) -> ForwardOptions<'_> {
    if hooks.is_empty() {
        ForwardOptions::fast()
    } else {
        ForwardOptions::fast().hooks(hooks)
    }
}

impl Run {
    /// Every job in the run, once each.
    fn live(&self) -> Vec<Rc<Live>> {
        let mut live: Vec<Rc<Live>> = Vec::new();
        for job in self.rows.iter().map(|r| &r.job).chain(&self.waiting) {
            if !live.iter().any(|l| Rc::ptr_eq(l, job)) {
                live.push(job.clone());
            }
        }
        live
    }

    /// Decodes until no row is left, admitting jobs of the same steering between steps.
    fn decode(&mut self, s: &Served, queue: &Queue) -> Result<()> {
        let Some(first) = self.waiting.first() else {
            return Ok(());
        };
        let model = &s.loaded.model;
        let key = first.job.plan.steering.key.clone();
        let mut hooks = first.job.plan.steering.steering.hooks(model.n_layers())?;
        let mut cache = model.new_cache();
        loop {
            if !self.waiting.is_empty() {
                let joined = self.admit(s, &mut hooks)?;
                cache = cache.append_rows(&joined)?;
            }
            cache = self.leave(cache)?;
            let room = s.limits.max_batch.saturating_sub(self.rows.len());
            self.waiting = queue.join(&key, room).into_iter().map(Live::new).collect();
            if self.rows.is_empty() {
                if self.waiting.is_empty() {
                    return Ok(());
                }
                continue;
            }
            let next: Vec<u32> = self.rows.iter().map(|r| r.last).collect();
            let input = Tensor::from_vec(next, (self.rows.len(), 1), model.device())?;
            let out = model.forward_cached(&input, None, &mut cache, &mut options(&mut hooks))?;
            let logits = out.i((.., 0, ..))?;
            self.step_all(s, &logits, 0)?;
        }
    }

    /// Prefills the prompts of the waiting jobs on their own, picks each new row's first token
    /// and returns their cache.
    fn admit(&mut self, s: &Served, hooks: &mut Hooks) -> Result<KvCache> {
        let from = self.rows.len();
        for live in std::mem::take(&mut self.waiting) {
            let plan = &live.job.plan;
            for (c, row) in plan.rows.iter().enumerate() {
                self.rows.push(RowRun {
                    job: live.clone(),
                    choice: c,
                    rng: ChaCha8Rng::seed_from_u64(row.opts.seed),
                    text: RowText::new(&plan.stop),
                    generated: 0,
                    last: 0,
                    done: false,
                });
            }
        }
        let model = &s.loaded.model;
        let prompts: Vec<&[u32]> = self.rows[from..]
            .iter()
            .map(|r| r.job.job.plan.rows[r.choice].prompt.as_slice())
            .collect();
        let mut cache = model.new_cache();
        let logits = prefill(model, &prompts, &mut cache, hooks)?;
        self.step_all(s, &logits, from)?;
        Ok(cache)
    }

    /// Picks the next token of rows `from..` from `logits` `[rows - from, vocab]`.
    fn step_all(&mut self, s: &Served, logits: &Tensor, from: usize) -> Result<()> {
        let logits = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        self.drop_gone(s.limits.timeout.as_secs_f64());
        for (row, logits) in self.rows[from..].iter_mut().zip(&logits) {
            row.done |= row.job.failed.get();
            if !row.done {
                step(s, row, logits)
                    .with_context(|| format!("choice {} of a request", row.choice))?;
            }
        }
        Ok(())
    }

    /// Drops finished rows from the batch and the cache (a job goes with its last row).
    fn leave(&mut self, cache: KvCache) -> Result<KvCache> {
        let keep: Vec<usize> = (0..self.rows.len())
            .filter(|&r| !self.rows[r].done)
            .collect();
        if keep.len() == self.rows.len() {
            return Ok(cache);
        }
        let cache = cache.keep_rows(&keep)?;
        self.rows.retain(|r| !r.done);
        Ok(cache)
    }

    /// Marks jobs whose client has gone or whose time is up; the latter get a 504 error.
    fn drop_gone(&self, limit_s: f64) {
        let now = Instant::now();
        for live in self.rows.iter().map(|r| &r.job) {
            if live.failed.get() {
                continue;
            }
            if live.job.events.is_closed() {
                live.failed.set(true);
            } else if now > live.job.deadline {
                live.job.send(Event::Error(ApiError::timeout(limit_s)));
                live.failed.set(true);
            }
        }
    }
}

/// The logits after each prompt's last token `[rows, vocab]`, the prompts fed into `cache`
/// left-padded, in column chunks of at most [`MAX_LOGITS`] logits.
fn prefill(
    model: &Transformer,
    prompts: &[&[u32]],
    cache: &mut KvCache,
    hooks: &mut Hooks,
) -> Result<Tensor> {
    let (b, len) = (
        prompts.len(),
        prompts.iter().map(|p| p.len()).max().unwrap_or(0),
    );
    let (ids, mask) = left_padded(prompts, model.device())?;
    let width = (MAX_LOGITS / (b * model.config().vocab_size).max(1)).max(1);
    let mut start = 0;
    loop {
        let w = width.min(len - start);
        let logits = model.forward_cached(
            &ids.narrow(1, start, w)?,
            Some(&mask.narrow(1, start, w)?),
            cache,
            &mut options(hooks),
        )?;
        start += w;
        if start == len {
            // Left padding puts every row's last real token in the last column.
            return Ok(logits.i((.., w - 1, ..))?);
        }
    }
}

/// Picks one row's next token and tells its handler.
fn step(s: &Served, row: &mut RowRun, logits: &[f32]) -> Result<()> {
    let job = &row.job.job;
    let opts = &job.plan.rows[row.choice].opts;
    let t = choose(logits, opts, &mut row.rng)?;
    row.last = t;
    row.generated += 1;
    let tok = &s.loaded.tokenizer.tokenizer;
    let start = row.text.next_start(tok)?;
    let stop_token = s.loaded.stop_ids.contains(&t);
    let cut = !stop_token && row.text.push(tok, t)?;
    let reason = if stop_token || cut {
        Some("stop")
    } else if row.generated >= opts.max_new_tokens {
        Some("length")
    } else {
        None
    };
    // A stop string that began before this token cut the text short of where it starts.
    let start = if cut {
        start.min(row.text.chars())
    } else {
        start
    };
    let logprobs = job
        .plan
        .logprobs
        .map(|k| token_logprob(logits, t, k, &s.surfaces, start));
    let text = row.text.take_ready(reason.is_some());
    let sent = job.send(Event::Delta {
        choice: row.choice,
        text,
        logprobs: logprobs.into_iter().collect(),
    });
    if let Some(reason) = reason {
        row.done = true;
        job.send(Event::Finish {
            choice: row.choice,
            reason,
            completion_tokens: row.generated,
        });
    }
    row.done |= !sent;
    Ok(())
}
