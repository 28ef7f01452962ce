//! OpenAI-compatible endpoints as judges and as the evaluated model: a blocking client
//! (ureq, rustls) with timeouts, retries with exponential backoff on 429, 5xx and transport
//! errors, and bounded concurrency ([`Endpoint::map`]); the judge's on-disk cache is [`cache`],
//! and [`top`] asks a judge for its first-token alternatives through both.

pub mod cache;
pub mod top;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One server and model, and how hard to try.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The API root, e.g. `http://127.0.0.1:8000/v1` or `https://api.openai.com/v1`.
    pub base_url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer KEY` (read from an environment variable; never logged).
    pub key: Option<String>,
    /// Per request, connection to last byte.
    pub timeout: Duration,
    /// Tries after the first, on 429, 5xx and transport errors.
    pub retries: u32,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// The first retry's wait; each later one doubles it (plus up to 50% jitter).
    pub backoff: Duration,
}

impl Endpoint {
    pub fn new(base_url: &str, model: &str, key: Option<String>) -> Self {
        Endpoint {
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            key,
            timeout: Duration::from_secs(120),
            retries: 5,
            concurrency: 8,
            backoff: Duration::from_millis(500),
        }
    }

    /// `base_url model`, as reports name the endpoint (never the key).
    pub fn label(&self) -> String {
        format!("{} {}", self.base_url, self.model)
    }

    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .build()
            .into()
    }

    /// POSTs `body` to `base_url/path` and returns the JSON answer, retrying what may pass.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}/{}", self.base_url, path.trim_start_matches('/'));
        let agent = self.agent();
        let mut wait = self.backoff;
        for attempt in 0..=self.retries {
            let mut req = agent.post(&url).header("Content-Type", "application/json");
            if let Some(k) = &self.key {
                req = req.header("Authorization", &format!("Bearer {k}"));
            }
            let outcome = req.send(body.to_string().as_bytes());
            let retry = match outcome {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let text = resp
                        .body_mut()
                        .read_to_string()
                        .with_context(|| format!("reading the answer of {url}"))?;
                    if status == 200 {
                        return serde_json::from_str(&text)
                            .with_context(|| format!("{url} answered with invalid JSON"));
                    }
                    let message = error_message(&text);
                    if status != 429 && status < 500 {
                        bail!("{url} answered {status}: {message}");
                    }
                    format!("{status}: {message}")
                }
                Err(e) => format!("{e}"),
            };
            if attempt == self.retries {
                bail!("{url}: gave up after {} tries; last: {retry}", attempt + 1);
            }
            let jitter = wait.mul_f64(rand::random::<f64>() * 0.5);
            std::thread::sleep(wait + jitter);
            // Capped: with many --http-retries, doubling would wait days (and overflow).
            wait = wait.saturating_mul(2).min(MAX_BACKOFF);
        }
        unreachable!("the loop returns or fails on its last try")
    }

    /// `f` over `items` with at most `concurrency` calls at once; results in item order, the
    /// first error (by item) returned.
    pub fn map<T: Sync, R: Send>(
        &self,
        items: &[T],
        f: impl Fn(&T) -> Result<R> + Sync,
    ) -> Result<Vec<R>> {
        let next = AtomicUsize::new(0);
        let out: Mutex<Vec<Option<Result<R>>>> =
            Mutex::new((0..items.len()).map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..self.concurrency.clamp(1, items.len().max(1)) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= items.len() {
                        break;
                    }
                    let r = f(&items[i]);
                    let failed = r.is_err();
                    out.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                    if failed {
                        // Stop handing out work: the first error ends the run.
                        next.store(items.len(), Ordering::Relaxed);
                    }
                });
            }
        });
        let out = out.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut results = Vec::with_capacity(items.len());
        for (i, r) in out.into_iter().enumerate() {
            match r {
                Some(r) => results.push(r.with_context(|| format!("request {i}"))?),
                None => bail!("request {i} was not sent (an earlier one failed)"),
            }
        }
        Ok(results)
    }
}

/// The `error.message` of an OpenAI-shaped error body, or the body itself (cut short).
fn error_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.chars().take(300).collect())
}

/// The key from environment variable `var` (an error names the variable, never a value).
pub fn key_from_env(var: &str) -> Result<String> {
    std::env::var(var)
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| anyhow!("environment variable {var} (named by --judge-key-env / --model-key-env) is not set"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_give_their_message() {
        let body = r#"{"error": {"message": "too many", "type": "rate_limit_error"}}"#;
        assert_eq!(error_message(body), "too many");
        assert_eq!(error_message("plain text"), "plain text");
    }

    #[test]
    fn map_keeps_order_and_stops_at_the_first_error() {
        let mut ep = Endpoint::new("http://127.0.0.1:1", "m", None);
        ep.concurrency = 3;
        let items: Vec<usize> = (0..20).collect();
        assert_eq!(ep.map(&items, |&i| Ok(i * 2)).unwrap()[7], 14);
        let err = ep
            .map(&items, |&i| if i == 5 { bail!("five") } else { Ok(i) })
            .unwrap_err();
        assert!(format!("{err:#}").contains("five"), "{err:#}");
    }

    #[test]
    fn a_refused_connection_is_retried_then_named() {
        let mut ep = Endpoint::new("http://127.0.0.1:9/v1/", "m", None);
        ep.retries = 2;
        ep.backoff = Duration::from_millis(1);
        let err = ep
            .post("chat/completions", &serde_json::json!({}))
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("http://127.0.0.1:9/v1/chat/completions") && msg.contains("3 tries"),
            "{msg}"
        );
    }
}
