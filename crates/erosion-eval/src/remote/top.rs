//! A judge model's first-token alternatives from an OpenAI-compatible chat endpoint: one
//! filled judge prompt as one user message, `max_tokens` 1, `temperature` 0, `seed` 0,
//! `logprobs` with `top_logprobs` 20 (as Betley et al. ask GPT-4o), cached by (endpoint, judge
//! model, prompt). The one way every served judge asks (0-100 scores and yes/no verdicts), so
//! they share a cache file and its answers.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::cache::{key, Cache};
use super::Endpoint;

/// Alternatives asked for (the most OpenAI returns).
pub const TOP_LOGPROBS: usize = 20;

/// Slack for a server's rounding: log-probs up to this above 0, and top-20 probabilities
/// summing to 1 plus this, pass.
const ROUNDING: f64 = 1e-2;

/// A judge endpoint and its cache of answers.
pub struct TopLogprobs {
    pub endpoint: Endpoint,
    pub cache: Cache,
}

impl TopLogprobs {
    /// The request for one filled judge prompt.
    pub fn request(&self, prompt: &str) -> Value {
        json!({
            "model": self.endpoint.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 1,
            "temperature": 0,
            "seed": 0,
            "logprobs": true,
            "top_logprobs": TOP_LOGPROBS,
        })
    }

    /// The first token's alternatives `[(text, log-prob)]` as the endpoint lists them, from
    /// the cache or the endpoint.
    pub fn get(&self, prompt: &str) -> Result<Vec<(String, f64)>> {
        let k = key(&self.endpoint.base_url, &self.endpoint.model, prompt);
        let value = match self.cache.get(&k) {
            Some(v) => v,
            None => {
                let answer = self
                    .endpoint
                    .post("chat/completions", &self.request(prompt))?;
                let top = answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"].clone();
                if !top.is_array() {
                    bail!(
                        "the judge's answer has no choices[0].logprobs.content[0].top_logprobs \
                         (does the endpoint return log-probs?): {}",
                        answer.to_string().chars().take(300).collect::<String>()
                    );
                }
                // Checked before it is cached, so that a bad answer is asked again next time.
                parse_top(&top)
                    .with_context(|| format!("the answer of judge {}", self.endpoint.label()))?;
                self.cache.put(&k, top.clone())?;
                top
            }
        };
        parse_top(&value).with_context(|| {
            format!(
                "the answer of judge {} (cached under {k} in {})",
                self.endpoint.label(),
                self.cache.path().display()
            )
        })
    }
}

/// `[{"token": .., "logprob": ..}, ...]` as pairs, checked to be log-probabilities: a server
/// that sends anything else would give scores and verdicts that mean nothing.
fn parse_top(v: &Value) -> Result<Vec<(String, f64)>> {
    let top = v
        .as_array()
        .context("top_logprobs is not a list")?
        .iter()
        .map(|e| {
            let t = e["token"]
                .as_str()
                .context("a top_logprobs entry without `token`")?;
            let lp = e["logprob"]
                .as_f64()
                .context("a top_logprobs entry without `logprob`")?;
            if lp > ROUNDING {
                bail!("top_logprobs: token {t:?} has logprob {lp}, above 0");
            }
            Ok((t.to_string(), lp))
        })
        .collect::<Result<Vec<_>>>()?;
    let mass: f64 = top.iter().take(TOP_LOGPROBS).map(|(_, lp)| lp.exp()).sum();
    if mass > 1.0 + ROUNDING {
        bail!("top_logprobs: the first {TOP_LOGPROBS} probabilities sum to {mass}, above 1");
    }
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_a_log_probability_is_refused() {
        let entry = |lp: f64| json!({"token": "80", "logprob": lp});
        assert_eq!(parse_top(&json!([entry(-0.1)])).unwrap().len(), 1);
        assert_eq!(parse_top(&json!([entry(0.0)])).unwrap().len(), 1);
        for bad in [
            json!([entry(700.0)]),
            json!([entry(2.0)]),
            json!([entry(-0.01), entry(-0.01)]),
            json!([{"token": "80", "logprob": "x"}]),
            json!([{"logprob": -1.0}]),
            json!({"token": "80"}),
        ] {
            assert!(parse_top(&bad).is_err(), "{bad}");
        }
    }
}
