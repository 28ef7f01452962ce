//! Where answers come from: a model loaded here (batched decoding with its steering), or any
//! OpenAI-compatible server (`--model-url`), with erosion's `steering` extension when the
//! server is `erosion serve`. The same conversations, seeds and sampling options either way;
//! a server is sent each answer's seed, so `erosion serve` gives the answers a local run gives.

use anyhow::{Context, Result};
use erosion_model::chat::Message;
use erosion_model::generate::SamplingOptions;
use erosion_model::LoadedModel;
use serde_json::{json, Value};

use crate::chat::{decode, encode_prompt};
use crate::generation::{batch_rows, generate_many};
use crate::remote::Endpoint;
use erosion_model::tokenizer::ModelTokenizer;
use std::ops::Range;

/// One sampled answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub text: String,
    /// Generated tokens (the stop token included, as the server counts them).
    pub tokens: usize,
    /// Whether the model ended it (false: max_new_tokens did).
    pub stopped: bool,
}

/// The evaluated model.
pub enum Sampler<'a> {
    Local(&'a LoadedModel),
    Served {
        endpoint: &'a Endpoint,
        /// Sent as the request's `steering` field (erosion serve's extension).
        steering: Option<Value>,
    },
}

impl Sampler<'_> {
    /// The model's name in reports.
    pub fn name(&self) -> &str {
        match self {
            Sampler::Local(m) => &m.name,
            Sampler::Served { endpoint, .. } => &endpoint.model,
        }
    }

    /// An answer to each conversation, answer i drawn with `seeds[i]`.
    pub fn answers(
        &self,
        conversations: &[&[Message]],
        seeds: &[u64],
        opts: &SamplingOptions,
        batch_size: usize,
    ) -> Result<Vec<Answer>> {
        match self {
            Sampler::Local(m) => {
                let encoded = conversations
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        encode_prompt(&m.tokenizer, c).with_context(|| format!("conversation {i}"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let gens = generate_many(
                    &m.model,
                    &m.steering,
                    &encoded,
                    seeds,
                    &m.stop_ids,
                    opts,
                    batch_size,
                )?;
                gens.into_iter()
                    .map(|g| {
                        Ok(Answer {
                            text: decode(&m.tokenizer, &g.tokens)?,
                            tokens: g.tokens.len(),
                            stopped: g.stopped,
                        })
                    })
                    .collect()
            }
            Sampler::Served { endpoint, steering } => {
                let items: Vec<(&[Message], u64)> = conversations
                    .iter()
                    .copied()
                    .zip(seeds.iter().copied())
                    .collect();
                endpoint.map(&items, |(c, seed)| {
                    let mut body = json!({
                        "model": endpoint.model,
                        "messages": c,
                        "max_tokens": opts.max_new_tokens,
                        "temperature": opts.temperature,
                        "top_p": opts.top_p,
                        // The same bits as the local seed (OpenAI's seed is a signed integer).
                        "seed": *seed as i64,
                    });
                    if let Some(s) = steering {
                        body["steering"] = s.clone();
                    }
                    answer(&endpoint.post("chat/completions", &body)?)
                })
            }
        }
    }
}

/// How [`Sampler::answers`] batches `conversations`, in order: for a local model (its
/// `tokenizer` and vocabulary size) the batches of [`batch_rows`] over the encoded prompts,
/// which decide the answers' bits; for a server (`None`), `batch_size` at a time (each answer
/// is its own request there, so any split gives the same answers).
pub fn answer_batches(
    local: Option<(&ModelTokenizer, usize)>,
    conversations: &[&[Message]],
    batch_size: usize,
) -> Result<Vec<Range<usize>>> {
    let Some((tokenizer, vocab)) = local else {
        let n = conversations.len();
        let size = batch_size.max(1);
        return Ok((0..n).step_by(size).map(|s| s..(s + size).min(n)).collect());
    };
    let lens = (conversations.iter().enumerate())
        .map(|(i, c)| {
            let ids = encode_prompt(tokenizer, c).with_context(|| format!("conversation {i}"))?;
            Ok(ids.len())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(batch_rows(&lens, vocab, batch_size))
}

/// The first choice of a chat completion.
fn answer(v: &Value) -> Result<Answer> {
    let choice = &v["choices"][0];
    let text = choice["message"]["content"]
        .as_str()
        .with_context(|| format!("no choices[0].message.content in the answer: {v}"))?;
    Ok(Answer {
        text: text.to_string(),
        tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0) as usize,
        stopped: choice["finish_reason"] == "stop",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_read_from_the_first_choice() {
        let v = json!({"choices": [{"message": {"role": "assistant", "content": "hi"},
                        "finish_reason": "stop"}], "usage": {"completion_tokens": 3}});
        assert_eq!(
            answer(&v).unwrap(),
            Answer {
                text: "hi".into(),
                tokens: 3,
                stopped: true
            }
        );
        assert!(answer(&json!({"error": {}})).is_err());
    }
}
