//! A 0-100 judge behind an OpenAI-compatible endpoint (vLLM, llama.cpp's server, a hosted API,
//! `erosion serve`), asked as Betley et al. ask GPT-4o: the filled judge prompt as one user
//! message, `max_tokens` 1, `temperature` 0, `seed` 0, `logprobs` with `top_logprobs` 20.
//! Only the top 20 first tokens come back, so P(n) is always the top-20 rule
//! ([`super::score::Aggregation::Top20`]): each returned token whose trimmed text is an
//! integer 0..=100 adds its probability to P(n). Tokens are summed one by one as listed, so
//! two ids with the same text add up, exactly as the local top-20 rule sums ids.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::digits::MAX_SCORE;
use super::score::{add_number, aggregate, Score, RECORDED_MIN_P};
use crate::remote::cache::{key, Cache};
use crate::remote::Endpoint;

/// Alternatives asked for (the most OpenAI returns).
pub const TOP_LOGPROBS: usize = 20;

/// A judge over HTTP, with its cache.
pub struct ServedJudge {
    pub endpoint: Endpoint,
    pub cache: Cache,
    /// Least number mass that gives a score (0.25).
    pub min_mass: f64,
}

impl ServedJudge {
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

    /// The first token's alternatives `[(text, log-prob)]`, from the cache or the endpoint.
    pub fn top_logprobs(&self, prompt: &str) -> Result<Vec<(String, f64)>> {
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

    /// Scores one filled judge prompt by the top-20 rule.
    pub fn score(&self, prompt: &str) -> Result<Score> {
        Ok(score_top(&self.top_logprobs(prompt)?, self.min_mass))
    }

    /// Scores many prompts, `endpoint.concurrency` at a time.
    pub fn score_all(&self, prompts: &[String]) -> Result<Vec<Score>> {
        self.endpoint.map(prompts, |p| self.score(p))
    }
}

/// Slack for a server's rounding: log-probs up to this above 0, and top-20 probabilities
/// summing to 1 plus this, pass.
const ROUNDING: f64 = 1e-2;

/// `[{"token": .., "logprob": ..}, ...]` as pairs, checked to be log-probabilities: a server
/// that sends anything else would give scores and number masses that mean nothing.
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

/// The score of a first token's alternatives by the top-20 rule.
pub fn score_top(top: &[(String, f64)], min_mass: f64) -> Score {
    let mut p = vec![0.0; MAX_SCORE as usize + 1];
    for (text, lp) in top.iter().take(TOP_LOGPROBS) {
        add_number(&mut p, text, lp.exp());
    }
    let (score, number_mass) = aggregate(&p, min_mass);
    Score {
        score,
        number_mass,
        probs: p
            .iter()
            .enumerate()
            .filter(|(_, &q)| q >= RECORDED_MIN_P)
            .map(|(n, &q)| (n as u32, q))
            .collect(),
        unexpanded: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_tokens_add_up_and_non_numbers_are_left_out() {
        let top: Vec<(String, f64)> = [("80", 0.4f64), (" 80", 0.2), ("90", 0.2), ("CODE", 0.1)]
            .iter()
            .map(|(t, p)| (t.to_string(), p.ln()))
            .collect();
        let s = score_top(&top, 0.25);
        assert!((s.number_mass - 0.8).abs() < 1e-12);
        assert!((s.probs[&80] - 0.6).abs() < 1e-12);
        // (80 * 0.6 + 90 * 0.2) / 0.8 = 82.5
        assert!((s.score.unwrap() - 82.5).abs() < 1e-9);
        assert_eq!(
            score_top(&top[3..], 0.25).score,
            None,
            "no number: no score"
        );
    }

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
