//! What the behaviour and gradients sections share: response log-probabilities of a dataset
//! under one model, served from the activation cache (so the gradients section's loss vectors
//! reuse the behaviour section's pass, and a stopped study resumes), seed derivation, and a
//! stable fingerprint of token sequences for cache keys.

use crate::context::StudyContext;
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use erosion_data::Sequence;
use erosion_forward::batch::{AdvanceOnly, Progress};
use erosion_forward::cache::{CacheEntry, CacheKey, Origin};
use erosion_forward::logprobs::{response_logprobs, ResponseLogprobs};
use erosion_model::transformer::Transformer;
use std::collections::HashMap;

/// Examples per cache chunk of a log-prob pass.
const CHUNK: usize = 256;

/// Why an example cannot be scored: an empty response, or one at token 0 (nothing predicts it).
pub(crate) fn unscorable(seq: &Sequence) -> Option<String> {
    if seq.response.is_empty() {
        Some("the response has no tokens".into())
    } else if seq.response.start == 0 {
        Some("the response starts at token 0 (nothing precedes it)".into())
    } else {
        None
    }
}

/// A dataset's response log-probs under one model: `examples[i]` is example i's, `None`
/// when it cannot be scored (`skipped` says why).
pub(crate) struct DatasetLogprobs {
    pub examples: Vec<Option<ResponseLogprobs>>,
    pub skipped: Vec<(usize, String)>,
}

/// Response log-probs and entropies of the first `limit` examples (all when `None`) of
/// `dataset` as rendered for model `name` (`model` is its loaded transformer), collected.
pub(crate) fn dataset_logprobs(
    ctx: &StudyContext,
    name: &str,
    model: &Transformer,
    dataset: &str,
    limit: Option<usize>,
) -> Result<DatasetLogprobs> {
    let mut out = DatasetLogprobs {
        examples: Vec::new(),
        skipped: Vec::new(),
    };
    for_each_logprobs(ctx, name, model, dataset, limit, &mut |i, lp, why| {
        if let Some(why) = why {
            out.skipped.push((i, why.to_string()));
        }
        out.examples.push(lp);
        Ok(())
    })?;
    Ok(out)
}

/// Receives (example index, its log-probs, why it could not be scored).
pub(crate) type LogprobSink<'a> =
    dyn FnMut(usize, Option<ResponseLogprobs>, Option<&str>) -> Result<()> + 'a;

/// Streams the response log-probs of the first `limit` examples (all when `None`) of `dataset`
/// as rendered for model `name` to `f(index, log-probs, why unscorable)`, in order, one cache
/// chunk at a time (memory holds one chunk, whatever the dataset's size). Read from and
/// written to the study's cache: chunks of [`CHUNK`] examples keyed by the model's and
/// dataset's identities and a fingerprint of the token sequences; only the chunks covering
/// `0..limit` are computed.
///
/// Chunk tensors: `lens` u32 `[chunk]` (0 for an unscorable example), `logprobs` and `entropy`
/// f32 `[sum(lens) + 1]` (the responses concatenated, then one 0 so no tensor is empty).
pub(crate) fn for_each_logprobs(
    ctx: &StudyContext,
    name: &str,
    model: &Transformer,
    dataset: &str,
    limit: Option<usize>,
    f: &mut LogprobSink<'_>,
) -> Result<()> {
    let seqs = ctx.sequences(name, dataset)?;
    if seqs.is_empty() {
        bail!("dataset `{dataset}` has no examples");
    }
    let want = limit.unwrap_or(seqs.len()).min(seqs.len());
    let entry = logprobs_entry(ctx, name, dataset, &seqs)?;
    let mut bar = ctx.progress(format!("log-probs: {name} on {dataset}"));
    bar.set_total(want);
    for chunk in 0..entry.n_chunks() {
        let range = entry.chunk_examples(chunk);
        if range.start >= want {
            break;
        }
        let (tensors, origin) = entry.get_or_compute(chunk, |range| {
            logprobs_chunk(ctx, model, &seqs[range], &mut *bar)
        })?;
        // Computed chunks advanced the bar as their batches ran.
        if origin == Origin::Disk {
            bar.advance(range.len());
        }
        let decoded = decode_chunk(&tensors, &seqs[range.clone()]).with_context(|| {
            format!(
                "cache chunk {chunk} of the log-probs of `{dataset}` under `{name}` ({})",
                entry.dir().display()
            )
        })?;
        for (k, lp) in decoded.into_iter().enumerate() {
            let i = range.start + k;
            if i >= want {
                break;
            }
            let why = if lp.is_none() {
                unscorable(&seqs[i])
            } else {
                None
            };
            f(i, lp, why.as_deref())?;
        }
    }
    Ok(())
}

/// The cache entry of the response log-probs of `dataset` rendered for model `name` as `seqs`.
pub(crate) fn logprobs_entry(
    ctx: &StudyContext,
    name: &str,
    dataset: &str,
    seqs: &[Sequence],
) -> Result<CacheEntry> {
    let key = CacheKey::new(
        ctx.model_identity(name)?,
        ctx.dataset_identity(dataset)?,
        &serde_json::json!({ "pass": "response_logprobs", "version": 1, "sequences": crate::keys::sequences_fingerprint(seqs) }),
    )?;
    ctx.cache.entry(&key, seqs.len(), CHUNK)
}

/// The tensors of one log-probs chunk: `model`'s response log-probs of the scorable `seqs`.
pub(crate) fn logprobs_chunk(
    ctx: &StudyContext,
    model: &Transformer,
    seqs: &[Sequence],
    bar: &mut dyn Progress,
) -> Result<HashMap<String, Tensor>> {
    let scored: Vec<Sequence> = seqs
        .iter()
        .filter(|s| unscorable(s).is_none())
        .cloned()
        .collect();
    let lps = if scored.is_empty() {
        Vec::new()
    } else {
        response_logprobs(
            model,
            &scored,
            &ctx.batch_options(),
            None,
            &mut AdvanceOnly(bar),
        )?
    };
    encode_chunk(seqs, &lps)
}

/// The chunk's tensors from the log-probs of its scorable sequences (in order).
fn encode_chunk(seqs: &[Sequence], lps: &[ResponseLogprobs]) -> Result<HashMap<String, Tensor>> {
    let mut lens = Vec::with_capacity(seqs.len());
    let (mut lp, mut ent) = (Vec::new(), Vec::new());
    let mut it = lps.iter();
    for s in seqs {
        if unscorable(s).is_some() {
            lens.push(0u32);
            continue;
        }
        let r = it
            .next()
            .context("fewer log-prob results than scorable examples")?;
        lens.push(r.logprobs.len() as u32);
        lp.extend_from_slice(&r.logprobs);
        ent.extend_from_slice(&r.entropy);
    }
    lp.push(0.0);
    ent.push(0.0);
    let (n, m) = (lens.len(), lp.len());
    Ok(HashMap::from([
        ("lens".to_string(), Tensor::from_vec(lens, n, &Device::Cpu)?),
        (
            "logprobs".to_string(),
            Tensor::from_vec(lp, m, &Device::Cpu)?,
        ),
        (
            "entropy".to_string(),
            Tensor::from_vec(ent, m, &Device::Cpu)?,
        ),
    ]))
}

/// Inverse of [`encode_chunk`]; checks every length against the sequences' responses.
fn decode_chunk(
    t: &HashMap<String, Tensor>,
    seqs: &[Sequence],
) -> Result<Vec<Option<ResponseLogprobs>>> {
    let get = |k: &str| t.get(k).with_context(|| format!("tensor `{k}` is missing"));
    let lens = get("lens")?.to_vec1::<u32>()?;
    let lp = get("logprobs")?.to_vec1::<f32>()?;
    let ent = get("entropy")?.to_vec1::<f32>()?;
    let total: usize = lens.iter().map(|&l| l as usize).sum();
    if lens.len() != seqs.len() || lp.len() != total + 1 || ent.len() != total + 1 {
        bail!(
            "{} lengths for {} examples, {} log-probs and {} entropies for {total} tokens",
            lens.len(),
            seqs.len(),
            lp.len(),
            ent.len()
        );
    }
    let mut at = 0;
    let mut out = Vec::with_capacity(seqs.len());
    for (i, (s, &l)) in seqs.iter().zip(&lens).enumerate() {
        let l = l as usize;
        let want = if unscorable(s).is_some() {
            0
        } else {
            s.response.len()
        };
        if l != want {
            bail!("example {i} has {l} cached log-probs, its response has {want} tokens");
        }
        if l == 0 {
            out.push(None);
            continue;
        }
        out.push(Some(ResponseLogprobs {
            ids: s.response_ids().to_vec(),
            logprobs: lp[at..at + l].to_vec(),
            entropy: ent[at..at + l].to_vec(),
        }));
        at += l;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(ids: Vec<u32>, r: std::ops::Range<usize>) -> Sequence {
        Sequence {
            ids,
            response: r,
            end_of_turn: None,
        }
    }

    #[test]
    fn chunks_round_trip_through_safetensors_with_unscorable_examples() {
        let seqs = vec![
            seq(vec![1, 2, 3], 1..3),
            seq(vec![4, 5], 2..2),
            seq(vec![6, 7, 8, 9], 3..4),
        ];
        let lps = vec![
            ResponseLogprobs {
                ids: vec![2, 3],
                logprobs: vec![-0.5, -1.5],
                entropy: vec![1.0, 2.0],
            },
            ResponseLogprobs {
                ids: vec![9],
                logprobs: vec![-3.0],
                entropy: vec![0.25],
            },
        ];
        let t = encode_chunk(&seqs, &lps).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chunk.safetensors");
        candle_core::safetensors::save(&t, &path).unwrap();
        let back = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        let d = decode_chunk(&back, &seqs).unwrap();
        assert_eq!(d[0].as_ref(), Some(&lps[0]));
        assert!(d[1].is_none());
        assert_eq!(d[2].as_ref(), Some(&lps[1]));
        // A chunk whose lengths disagree with the sequences is refused.
        let other = vec![seq(vec![1, 2, 3], 0..3), seqs[1].clone(), seqs[2].clone()];
        assert!(decode_chunk(&back, &other).is_err());
        // Every example unscorable: the tensors are still non-empty.
        let t = encode_chunk(&seqs[1..2], &[]).unwrap();
        assert_eq!(t["logprobs"].dims(), &[1]);
        assert_eq!(decode_chunk(&t, &seqs[1..2]).unwrap(), vec![None]);
    }

    #[test]
    fn unscorable_examples_are_named() {
        assert!(unscorable(&seq(vec![1, 2], 1..2)).is_none());
        assert!(unscorable(&seq(vec![1, 2], 2..2))
            .unwrap()
            .contains("no tokens"));
        assert!(unscorable(&seq(vec![1, 2], 0..2))
            .unwrap()
            .contains("token 0"));
    }
}
