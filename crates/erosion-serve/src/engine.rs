//! The engine: one thread that takes batches from the [`Queue`] and decodes them together.
//!
//! A batch is every waiting job with the same steering (up to `max_batch` rows): the prompts
//! are left-padded under an attention mask and fed through the KV cache (in column chunks, so
//! the prompt logits stay under [`MAX_LOGITS`] values), then one token per row per step. Each
//! row picks its token by `erosion_model::generate::choose` with its own options and its own
//! ChaCha8 stream (seeded with the row's seed), as `generate` does alone: a row decoded in a
//! batch gives the tokens it gives alone, up to the float rounding of batched matmuls. Rows
//! that finish are fed their last token (outputs ignored) until the batch is done.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, IndexOp, Tensor};
use erosion_model::generate::choose;
use erosion_model::hooks::Hooks;
use erosion_model::transformer::{ForwardOptions, KvCache, Transformer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::ApiError;
use crate::plan::{Row, Served};
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
            while let Some(jobs) = queue.next_batch(lim.max_batch, lim.gather) {
                // A failure (or a panic in a kernel) fails this batch's requests, not the server.
                let outcome = catch_unwind(AssertUnwindSafe(|| decode_batch(&served, &jobs)));
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
                for j in &jobs {
                    j.send(Event::Error(ApiError::internal(message.clone())));
                }
            }
        })
}

/// One row in flight.
struct RowRun<'a> {
    job: usize,
    choice: usize,
    row: &'a Row,
    rng: ChaCha8Rng,
    text: RowText,
    generated: usize,
    last: u32,
    done: bool,
}

fn options(hooks: &mut Hooks) -> ForwardOptions<'_> {
    if hooks.is_empty() {
        ForwardOptions::fast()
    } else {
        ForwardOptions::fast().hooks(hooks)
    }
}

/// Decodes every row of `jobs` (one steering) to its end, sending events as tokens come.
fn decode_batch(s: &Served, jobs: &[Job]) -> Result<()> {
    let model = &s.loaded.model;
    let mut rows: Vec<RowRun> = jobs
        .iter()
        .enumerate()
        .flat_map(|(j, job)| {
            job.plan
                .rows
                .iter()
                .enumerate()
                .map(move |(c, row)| RowRun {
                    job: j,
                    choice: c,
                    row,
                    rng: ChaCha8Rng::seed_from_u64(row.opts.seed),
                    text: RowText::new(&job.plan.stop),
                    generated: 0,
                    last: 0,
                    done: false,
                })
        })
        .collect();
    let mut hooks = jobs[0].plan.steering.steering.hooks(model.n_layers())?;
    let mut cache = model.new_cache();
    let prompts: Vec<&[u32]> = rows.iter().map(|r| r.row.prompt.as_slice()).collect();
    let mut last = prefill(model, &prompts, &mut cache, &mut hooks)?;
    let mut failed = vec![false; jobs.len()];
    loop {
        let logits = last.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        drop_gone(jobs, &mut failed, s.limits.timeout.as_secs_f64());
        for (r, row) in rows.iter_mut().enumerate() {
            row.done |= failed[row.job];
            if !row.done {
                step(s, &jobs[row.job], row, &logits[r])
                    .with_context(|| format!("choice {} of a request", row.choice))?;
            }
        }
        if rows.iter().all(|r| r.done) {
            return Ok(());
        }
        let next: Vec<u32> = rows.iter().map(|r| r.last).collect();
        let input = Tensor::from_vec(next, (rows.len(), 1), model.device())?;
        let out = model.forward_cached(&input, None, &mut cache, &mut options(&mut hooks))?;
        last = out.i((.., 0, ..))?;
    }
}

/// Marks jobs whose client has gone or whose time is up; the latter get a 504 error.
fn drop_gone(jobs: &[Job], failed: &mut [bool], limit_s: f64) {
    let now = Instant::now();
    for (j, job) in jobs.iter().enumerate() {
        if failed[j] {
            continue;
        }
        if job.events.is_closed() {
            failed[j] = true;
        } else if now > job.deadline {
            job.send(Event::Error(ApiError::timeout(limit_s)));
            failed[j] = true;
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
    let b = prompts.len();
    let len = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
    let (mut ids, mut mask) = (Vec::with_capacity(b * len), Vec::with_capacity(b * len));
    for p in prompts {
        let pad = len - p.len();
        ids.extend(std::iter::repeat_n(0u32, pad));
        ids.extend_from_slice(p);
        mask.extend(std::iter::repeat_n(0f32, pad));
        mask.extend(std::iter::repeat_n(1f32, p.len()));
    }
    let dev = model.device();
    let ids = Tensor::from_vec(ids, (b, len), dev)?;
    let mask = Tensor::from_vec(mask, (b, len), dev)?;
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
fn step(s: &Served, job: &Job, row: &mut RowRun, logits: &[f32]) -> Result<()> {
    let opts = &row.row.opts;
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
