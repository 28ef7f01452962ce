//! Answers: many prompts decoded together with one KV cache, each row with its own seed.
//!
//! The per-token rule is `erosion_model::generate`'s: greedy (argmax, ties to the lowest id) at
//! temperature 0, else softmax(z / T), the top-k most probable tokens (ties by id), cut to the
//! smallest prefix whose mass reaches top-p, and one uniform draw u * mass from the row's own
//! ChaCha8 stream seeded with its seed. A row decoded here therefore gives the tokens
//! `generate` gives for the same prompt and seed (up to float rounding of batched matmuls);
//! the tests check it. Batching only saves time: prompts are left-padded under an attention
//! mask, and positions count real tokens, so padding changes nothing.

use anyhow::{bail, Context, Result};
use candle_core::{DType, IndexOp, Tensor};
use erosion_model::generate::{choose, left_padded, SamplingOptions};
use erosion_model::hooks::Steering;
use erosion_model::transformer::Transformer;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::ops::Range;

use crate::forward::{rows_for, steered};

/// One generated answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    /// New tokens, without the prompt; the stop token is included when one was produced.
    pub tokens: Vec<u32>,
    /// Whether a stop token ended it (false: `max_new_tokens` did).
    pub stopped: bool,
}

/// Generates after each prompt until a token of `stop` or `opts.max_new_tokens`; row i draws
/// from `ChaCha8Rng::seed_from_u64(seeds[i])` (`opts.seed` is not used). At most `batch_size`
/// rows are decoded together (fewer when their logits would be large). `steering` is applied
/// at every position, prompt and answer alike.
pub fn generate_many(
    model: &Transformer,
    steering: &Steering,
    prompts: &[Vec<u32>],
    seeds: &[u64],
    stop: &[u32],
    opts: &SamplingOptions,
    batch_size: usize,
) -> Result<Vec<Generated>> {
    opts.validate()?;
    if prompts.len() != seeds.len() {
        bail!("{} prompts but {} seeds", prompts.len(), seeds.len());
    }
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        bail!("prompt {i} is empty: cannot generate from an empty prompt");
    }
    let lens: Vec<usize> = prompts.iter().map(Vec::len).collect();
    let mut out = Vec::with_capacity(prompts.len());
    for rows in batch_rows(&lens, model.config().vocab_size, batch_size) {
        out.extend(
            generate_batch(
                model,
                steering,
                &prompts[rows.clone()],
                &seeds[rows.clone()],
                stop,
                opts,
            )
            .with_context(|| format!("generating answers {rows:?}"))?,
        );
    }
    Ok(out)
}

/// The rows [`generate_many`] decodes together, in order, for prompts of `lens` tokens: at most
/// `batch_size` consecutive rows, fewer when their logits would be large. An answer depends on
/// the batch it was decoded in (float rounding of batched matmuls), so a split run generates
/// whole batches of this plan to give the bits of a whole one.
pub fn batch_rows(lens: &[usize], vocab: usize, batch_size: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < lens.len() {
        let len = lens[start..]
            .iter()
            .take(batch_size.max(1))
            .max()
            .copied()
            .unwrap_or(1);
        let end = start + rows_for(len, vocab, batch_size).min(lens.len() - start);
        out.push(start..end);
        start = end;
    }
    out
}

/// `prompts` decoded as one batch, whatever their size: left-padded under a mask, then one
/// token per row per step through one KV cache; row i draws from its own stream seeded with
/// `seeds[i]`. [`generate_many`] cuts its prompts into such batches.
pub fn generate_batch(
    model: &Transformer,
    steering: &Steering,
    prompts: &[Vec<u32>],
    seeds: &[u64],
    stop: &[u32],
    opts: &SamplingOptions,
) -> Result<Vec<Generated>> {
    let b = prompts.len();
    let device = model.device();
    let (ids, mask) = left_padded(prompts, device)?;
    let mut rngs: Vec<ChaCha8Rng> = seeds
        .iter()
        .map(|&s| ChaCha8Rng::seed_from_u64(s))
        .collect();
    let mut out = vec![
        Generated {
            tokens: Vec::new(),
            stopped: false,
        };
        b
    ];
    if opts.max_new_tokens == 0 {
        return Ok(out);
    }
    let mut cache = model.new_cache();
    let mut hooks = steering.hooks(model.n_layers())?;
    // Left padding puts every row's last real token in the last column.
    let mut last = model.prefill(&ids, Some(&mask), &mut cache, &mut steered(&mut hooks))?; // [b, vocab]
    for step in 0..opts.max_new_tokens {
        let rows = last.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let mut next = Vec::with_capacity(b);
        for (r, row) in rows.iter().enumerate() {
            let g = &mut out[r];
            if g.stopped {
                // A finished row is fed its stop token again; its outputs are ignored.
                next.push(*g.tokens.last().expect("a stopped row has its stop token"));
                continue;
            }
            let t =
                choose(row, opts, &mut rngs[r]).with_context(|| format!("row {r}, step {step}"))?;
            g.tokens.push(t);
            g.stopped = stop.contains(&t);
            next.push(t);
        }
        if out.iter().all(|g| g.stopped) || step + 1 == opts.max_new_tokens {
            break;
        }
        let input = Tensor::from_vec(next, (b, 1), device)?;
        let logits = model.forward_cached(&input, None, &mut cache, &mut steered(&mut hooks))?;
        last = logits.i((.., 0, ..))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum_and_top_k_one_is_greedy() {
        let greedy = SamplingOptions::default();
        let mut rng0 = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(
            choose(&[0.1, 3.0, 3.0, -1.0], &greedy, &mut rng0).unwrap(),
            1
        );
        let opts = SamplingOptions {
            temperature: 3.0,
            top_k: 1,
            ..Default::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..20 {
            assert_eq!(choose(&[0.5, 2.0, 1.9], &opts, &mut rng).unwrap(), 1);
        }
    }
}
