//! Autoregressive generation with a KV cache: greedy, or sampled with temperature, top-k and
//! top-p from an explicit seed.

use crate::transformer::{ForwardOptions, Transformer};
use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How the next token is chosen. `temperature == 0` is greedy (argmax; ties go to the lowest id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingOptions {
    pub max_new_tokens: usize,
    pub temperature: f64,
    /// Keep only the k most probable tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1.0 = all).
    pub top_p: f64,
    pub seed: u64,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl SamplingOptions {
    /// Refuses numbers that would sample silently wrong: a temperature that is negative, NaN
    /// or infinite (logits / inf is a uniform draw), a top_p outside (0, 1] or NaN.
    pub fn validate(&self) -> Result<()> {
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) {
            bail!("temperature = {t}: it must be a finite number >= 0 (0 = greedy)");
        }
        // Written so that NaN fails.
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            bail!(
                "top_p = {}: it must be in (0, 1] (1 = all tokens)",
                self.top_p
            );
        }
        Ok(())
    }
}

/// The generated continuation and why it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// New tokens, without the prompt; includes the stop token when one was produced.
    pub tokens: Vec<u32>,
    /// True when a stop token ended generation, false when `max_new_tokens` did.
    pub stopped: bool,
}

/// Generates after `prompt` (token ids) until a token in `stop` or `max_new_tokens`.
pub fn generate(
    model: &Transformer,
    prompt: &[u32],
    stop: &[u32],
    opts: &SamplingOptions,
) -> Result<Generation> {
    if prompt.is_empty() {
        bail!("cannot generate from an empty prompt");
    }
    opts.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut cache = model.new_cache();
    let mut input = prompt.to_vec();
    let mut tokens = Vec::new();
    for _ in 0..opts.max_new_tokens {
        let ids = Tensor::new(input.as_slice(), model.device())?.unsqueeze(0)?;
        let logits = model.forward_cached(&ids, None, &mut cache, &mut ForwardOptions::fast())?;
        // [vocab] at the last fed position
        let last = logits
            .squeeze(0)?
            .get(input.len() - 1)?
            .to_dtype(DType::F32)?;
        let next = choose(&last.to_vec1::<f32>()?, opts, &mut rng)?;
        tokens.push(next);
        if stop.contains(&next) {
            return Ok(Generation {
                tokens,
                stopped: true,
            });
        }
        input = vec![next];
    }
    Ok(Generation {
        tokens,
        stopped: false,
    })
}

/// Prompts left-padded to the longest: ids `[batch, longest]` (pads 0) and the attention mask
/// (1 on real tokens), so every row's last real token sits in the last column, where a batched
/// decoder reads its next-token logits.
pub fn left_padded<P: AsRef<[u32]>>(prompts: &[P], device: &Device) -> Result<(Tensor, Tensor)> {
    let b = prompts.len();
    let len = prompts.iter().map(|p| p.as_ref().len()).max().unwrap_or(0);
    let (mut ids, mut mask) = (Vec::with_capacity(b * len), Vec::with_capacity(b * len));
    for p in prompts {
        let (p, pad) = (p.as_ref(), len - p.as_ref().len());
        ids.extend(std::iter::repeat_n(0u32, pad));
        ids.extend_from_slice(p);
        mask.extend(std::iter::repeat_n(0f32, pad));
        mask.extend(std::iter::repeat_n(1f32, p.len()));
    }
    Ok((
        Tensor::from_vec(ids, (b, len), device)?,
        Tensor::from_vec(mask, (b, len), device)?,
    ))
}

/// Picks the next token from `logits` `[vocab]`: the argmax at temperature 0, else a draw
/// from the softmax at `temperature`, cut to the top k and then to the top-p mass. Public so
/// that batched decoders (erosion-eval) choose exactly as [`generate`] does.
pub fn choose(logits: &[f32], opts: &SamplingOptions, rng: &mut ChaCha8Rng) -> Result<u32> {
    if logits.iter().any(|x| x.is_nan()) {
        bail!("the model produced NaN logits");
    }
    if opts.temperature == 0.0 {
        return Ok(argmax(logits));
    }
    let probs = candle_nn::ops::softmax_last_dim(
        &(Tensor::new(logits, &candle_core::Device::Cpu)? / opts.temperature)?,
    )?;
    let probs: Vec<f32> = probs.to_vec1()?;
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let k = if opts.top_k == 0 {
        order.len()
    } else {
        opts.top_k.min(order.len())
    };
    let mut kept = Vec::with_capacity(k);
    let mut mass = 0.0f64;
    for &i in &order[..k] {
        kept.push(i);
        mass += probs[i] as f64;
        if mass >= opts.top_p {
            break;
        }
    }
    let mut u = rng.random::<f64>() * mass;
    for &i in &kept {
        u -= probs[i] as f64;
        if u <= 0.0 {
            return Ok(i as u32);
        }
    }
    Ok(*kept.last().expect("top-k keeps at least one token") as u32)
}

fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in xs.iter().enumerate() {
        if *x > xs[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn non_finite_and_out_of_range_numbers_are_refused_by_name() {
        let with = |temperature: f64, top_p: f64| SamplingOptions {
            temperature,
            top_p,
            ..SamplingOptions::default()
        };
        for (t, p, needle) in [
            (f64::NAN, 1.0, "temperature = NaN"),
            (f64::INFINITY, 1.0, "temperature = inf"),
            (-0.5, 1.0, "temperature = -0.5"),
            (1.0, f64::NAN, "top_p = NaN"),
            (1.0, 0.0, "top_p = 0"),
            (1.0, f64::INFINITY, "top_p = inf"),
        ] {
            let msg = with(t, p).validate().unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg}");
        }
        assert!(with(0.7, 0.9).validate().is_ok());
    }

    #[test]
    fn top_k_one_is_greedy_at_any_temperature() {
        let logits = Tensor::new(&[0.5f32, 2.0, 1.9, -3.0], &candle_core::Device::Cpu).unwrap();
        let opts = SamplingOptions {
            temperature: 5.0,
            top_k: 1,
            ..Default::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..20 {
            assert_eq!(
                choose(&logits.to_vec1::<f32>().unwrap(), &opts, &mut rng).unwrap(),
                1
            );
        }
    }

    #[test]
    fn sampling_follows_the_distribution_and_is_seeded() {
        // softmax([ln 3, 0]) = [0.75, 0.25]
        let logits = Tensor::new(&[3f32.ln(), 0.0], &candle_core::Device::Cpu).unwrap();
        let opts = SamplingOptions {
            temperature: 1.0,
            ..Default::default()
        };
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..4000)
                .map(|_| choose(&logits.to_vec1::<f32>().unwrap(), &opts, &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        let a = draw(1);
        assert_eq!(a, draw(1));
        let share = a.iter().filter(|&&t| t == 0).count() as f64 / a.len() as f64;
        // binomial sd = sqrt(.75*.25/4000) = 0.0068: 5 sd
        assert!((share - 0.75).abs() < 0.035, "{share}");
    }

    #[test]
    fn top_p_cuts_the_tail() {
        // probabilities 0.6, 0.3, 0.1: top_p 0.8 keeps the first two only
        let logits = Tensor::new(
            &[0.6f32.ln(), 0.3f32.ln(), 0.1f32.ln()],
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let opts = SamplingOptions {
            temperature: 1.0,
            top_p: 0.8,
            ..Default::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        assert!((0..2000)
            .all(|_| choose(&logits.to_vec1::<f32>().unwrap(), &opts, &mut rng).unwrap() != 2));
    }
}
