//! `erosion eval`'s flags for OpenAI-compatible endpoints: a judge (`--judge-url`) and the
//! evaluated model (`--model-url`), each with its key read from a named environment variable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use erosion_eval::judge::{ServedJudge, ServedYesNoJudge};
use erosion_eval::remote::cache::Cache;
use erosion_eval::remote::top::TopLogprobs;
use erosion_eval::remote::{key_from_env, Endpoint};

/// The longest --http-timeout.
const MAX_HTTP_TIMEOUT_S: u64 = 24 * 3600;

#[derive(clap::Args, Debug, Clone)]
pub struct RemoteArgs {
    /// A judge behind an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 or
    /// https://api.openai.com/v1, read from its top 20 first tokens: 0-100 scores by the
    /// top-20 rule (--questions), else yes/no verdicts as a local --judge MODEL gives them.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "judge",
        requires = "judge_model"
    )]
    pub judge_url: Option<String>,
    /// The judge's model name at --judge-url (e.g. gpt-4o-2024-08-06).
    #[arg(long, value_name = "NAME", requires = "judge_url")]
    pub judge_model: Option<String>,
    /// The environment variable holding the judge's API key (sent as a bearer token).
    #[arg(long, value_name = "VAR", requires = "judge_url")]
    pub judge_key_env: Option<String>,
    /// Judgments cached by (endpoint, judge model, judge prompt) (default: OUT/judge-cache.jsonl).
    #[arg(long, value_name = "FILE", requires = "judge_url")]
    pub judge_cache: Option<PathBuf>,
    /// Sample the evaluated model's answers from an OpenAI-compatible server (with --questions)
    /// instead of loading a model here.
    #[arg(long, value_name = "URL", requires = "model_name")]
    pub model_url: Option<String>,
    /// The model's name at --model-url.
    #[arg(long, value_name = "NAME", requires = "model_url")]
    pub model_name: Option<String>,
    /// The environment variable holding --model-url's API key.
    #[arg(long, value_name = "VAR", requires = "model_url")]
    pub model_key_env: Option<String>,
    /// erosion serve's steering extension sent with every request to --model-url, as JSON:
    /// '{"direction": "align", "layers": [12], "scale": 4}'.
    #[arg(long, value_name = "JSON", requires = "model_url")]
    pub model_steering: Option<String>,
    /// Requests in flight at once to each endpoint.
    #[arg(long, default_value_t = 8)]
    pub http_concurrency: usize,
    /// Seconds one HTTP request may take.
    #[arg(long, default_value_t = 120)]
    pub http_timeout: u64,
    /// Retries of a request answered 429 or 5xx (or not answered), with exponential backoff.
    #[arg(long, default_value_t = 5)]
    pub http_retries: u32,
}

impl RemoteArgs {
    fn endpoint(&self, url: &str, model: &str, key_env: Option<&str>) -> Result<Endpoint> {
        // A deadline past what the clock holds panicked in the HTTP client.
        if self.http_timeout > MAX_HTTP_TIMEOUT_S {
            bail!(
                "--http-timeout {}: at most {MAX_HTTP_TIMEOUT_S} seconds (a day)",
                self.http_timeout
            );
        }
        let key = key_env.map(key_from_env).transpose()?;
        let mut ep = Endpoint::new(url, model, key);
        ep.concurrency = self.http_concurrency.max(1);
        ep.timeout = Duration::from_secs(self.http_timeout.max(1));
        ep.retries = self.http_retries;
        Ok(ep)
    }

    /// The served model, if --model-url names one, and the steering it is sent.
    pub fn model(&self) -> Result<Option<(Endpoint, Option<serde_json::Value>)>> {
        let (Some(url), Some(name)) = (&self.model_url, &self.model_name) else {
            return Ok(None);
        };
        let endpoint = self.endpoint(url, name, self.model_key_env.as_deref())?;
        let steering = self
            .model_steering
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--model-steering is not JSON: {e}"))?;
        Ok(Some((endpoint, steering)))
    }

    /// The judge endpoint, if --judge-url names one, with its cache (under `out` unless
    /// named).
    fn judge_top(&self, out: &Path) -> Result<Option<TopLogprobs>> {
        let (Some(url), Some(model)) = (&self.judge_url, &self.judge_model) else {
            return Ok(None);
        };
        let endpoint = self.endpoint(url, model, self.judge_key_env.as_deref())?;
        let path = self
            .judge_cache
            .clone()
            .unwrap_or_else(|| out.join("judge-cache.jsonl"));
        let cache = Cache::open(&path)?;
        eprintln!(
            "judge {}: {} cached judgments in {}",
            endpoint.label(),
            cache.len(),
            path.display()
        );
        Ok(Some(TopLogprobs { endpoint, cache }))
    }

    /// The served 0-100 judge (--questions), if --judge-url names one.
    pub fn judge(&self, out: &Path, min_mass: f64) -> Result<Option<ServedJudge>> {
        Ok(self
            .judge_top(out)?
            .map(|top| ServedJudge { top, min_mass }))
    }

    /// The served yes/no judge (the other prompts), if --judge-url names one.
    pub fn yes_no_judge(&self, out: &Path) -> Result<Option<ServedYesNoJudge>> {
        Ok(self.judge_top(out)?.map(|top| ServedYesNoJudge { top }))
    }

    /// The judge as provenance records it: `URL MODEL` for a served one, else `local`.
    pub fn judge_label(&self, local: Option<&str>) -> Option<String> {
        match (&self.judge_url, &self.judge_model) {
            (Some(u), m) => Some(format!("{u} {}", m.as_deref().unwrap_or_default())),
            (None, _) => local.map(str::to_string),
        }
    }
}
