//! A checked request as the decoder runs it ([`Plan`]): prompts as ids, one row per choice
//! with its own sampling options and seed, stop strings, log-prob count and steering.
//! Every limit is checked here, so a request the engine accepts can be answered.

use std::sync::Arc;
use std::time::Duration;

use erosion_model::chat::Message;
use erosion_model::generate::SamplingOptions;
use erosion_model::LoadedModel;

use crate::error::{ApiError, ApiResult};
use crate::request::{
    check_extra, check_unsupported, prompts, stop_strings, ChatRequest, Common, CompletionRequest,
    PromptInput,
};
use crate::steer::{Directions, RequestSteering};

/// Most alternatives per token OpenAI returns (`top_logprobs` <= 20).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// What one request may ask for, and how much the server holds.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most new tokens per choice (also the default of `max_tokens`).
    pub max_tokens: usize,
    /// Most tokens in one prompt.
    pub max_prompt_tokens: usize,
    /// Most rows (choices) decoded together; a request's n x prompts must fit.
    pub max_batch: usize,
    /// Most rows waiting; beyond it requests get 429.
    pub queue_rows: usize,
    /// Wall-clock limit of one request, queueing included.
    pub timeout: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// How long the engine waits for more requests to join a batch.
    pub gather: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tokens: 1024,
            max_prompt_tokens: 4096,
            max_batch: 32,
            queue_rows: 256,
            timeout: Duration::from_secs(600),
            max_body_bytes: 4 << 20,
            gather: Duration::from_millis(3),
        }
    }
}

/// The model a server answers with.
pub struct Served {
    /// The name requests must give as `model`.
    pub name: String,
    pub loaded: LoadedModel,
    pub directions: Directions,
    /// Each token id's text, as log-probs name tokens (erosion-eval's judge reads the same).
    pub surfaces: Vec<String>,
    pub limits: Limits,
}

/// One choice to decode.
#[derive(Debug, Clone)]
pub struct Row {
    pub prompt: Arc<Vec<u32>>,
    pub opts: SamplingOptions,
}

/// A checked request.
#[derive(Debug, Clone)]
pub struct Plan {
    pub chat: bool,
    /// One per choice, in choice order (prompt-major, then sample).
    pub rows: Vec<Row>,
    /// Prompt tokens over all prompts (usage).
    pub prompt_tokens: usize,
    pub stop: Vec<String>,
    /// Some(k): each token's log-prob and its k most probable alternatives.
    pub logprobs: Option<usize>,
    pub stream: bool,
    pub include_usage: bool,
    pub steering: RequestSteering,
}

impl Served {
    /// Checks a chat request and renders its messages with the model's chat template.
    pub fn chat_plan(&self, req: ChatRequest) -> ApiResult<Plan> {
        check_extra(&req.extra)?;
        if req.messages.is_empty() {
            return Err(ApiError::invalid_param("messages", "messages is empty"));
        }
        let messages = req
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| Ok(Message::new(m.role.clone(), m.text(i)?)))
            .collect::<ApiResult<Vec<_>>>()?;
        let ids = self
            .loaded
            .tokenizer
            .encode_chat_prompt(&messages, true)
            .map_err(|e| ApiError::invalid_param("messages", format!("{e:#}")))?;
        let top = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
            (false, Some(k)) if k > 0 => {
                return Err(ApiError::invalid_param(
                    "top_logprobs",
                    "top_logprobs needs logprobs: true",
                ))
            }
            (false, _) => None,
            (true, k) => Some(top_count("top_logprobs", k.unwrap_or(0))?),
        };
        let max_tokens = req.max_completion_tokens.or(req.common.max_tokens);
        self.plan(&req.common, vec![ids], max_tokens, top, true)
    }

    /// Checks a text-completion request and tokenizes its prompts.
    pub fn completion_plan(&self, req: CompletionRequest) -> ApiResult<Plan> {
        check_extra(&req.extra)?;
        if req.echo == Some(true) {
            return Err(ApiError::invalid_param("echo", "echo is not supported"));
        }
        if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::invalid_param("suffix", "suffix is not supported"));
        }
        if req
            .best_of
            .is_some_and(|b| Some(b) != req.common.n && b != 1)
        {
            return Err(ApiError::invalid_param("best_of", "best_of must equal n"));
        }
        let vocab = self.loaded.model.config().vocab_size as i64;
        let ids = prompts(&req.prompt)?
            .into_iter()
            .map(|p| match p {
                PromptInput::Text(t) => self
                    .loaded
                    .tokenizer
                    .tokenizer
                    .encode(t.as_str(), true)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| ApiError::invalid_param("prompt", format!("tokenizing: {e}"))),
                PromptInput::Ids(ids) => match ids.iter().find(|&&t| t < 0 || t >= vocab) {
                    Some(t) => Err(ApiError::invalid_param(
                        "prompt",
                        format!("token id {t} is outside the vocabulary (0..{vocab})"),
                    )),
                    None => Ok(ids.iter().map(|&t| t as u32).collect()),
                },
            })
            .collect::<ApiResult<Vec<_>>>()?;
        let top = req.logprobs.map(|k| top_count("logprobs", k)).transpose()?;
        self.plan(&req.common, ids, req.common.max_tokens, top, false)
    }

    /// What both endpoints share: sampling, n, seeds, stops, limits, steering.
    fn plan(
        &self,
        c: &Common,
        prompts: Vec<Vec<u32>>,
        max_tokens: Option<i64>,
        logprobs: Option<usize>,
        chat: bool,
    ) -> ApiResult<Plan> {
        check_unsupported(c)?;
        if let Some(m) = c.model.as_deref() {
            if m != self.name {
                return Err(ApiError::model_not_found(m, &self.name));
            }
        }
        let lim = &self.limits;
        let opts = sampling(c, max_tokens, lim.max_tokens)?;
        let n = match c.n.unwrap_or(1) {
            n if n >= 1 && (n as usize) <= lim.max_batch => n as usize,
            n => {
                return Err(ApiError::invalid_param(
                    "n",
                    format!("n = {n}: it must be in 1..={}", lim.max_batch),
                ))
            }
        };
        if prompts.len() * n > lim.max_batch {
            return Err(ApiError::invalid_param(
                "n",
                format!(
                    "{} prompts x n = {n} make more choices than the {} one batch holds",
                    prompts.len(),
                    lim.max_batch
                ),
            ));
        }
        for p in &prompts {
            if p.is_empty() {
                return Err(ApiError::invalid_param(
                    "prompt",
                    "the prompt has no tokens",
                ));
            }
            if p.len() > lim.max_prompt_tokens {
                return Err(ApiError {
                    code: Some("context_length_exceeded"),
                    ..ApiError::invalid_param(
                        if chat { "messages" } else { "prompt" },
                        format!(
                            "the prompt has {} tokens; this server takes at most {}",
                            p.len(),
                            lim.max_prompt_tokens
                        ),
                    )
                });
            }
        }
        let steering = crate::steer::parse(
            c.steering.as_ref().unwrap_or(&serde_json::Value::Null),
            &self.directions,
            self.loaded.model.n_layers(),
        )?;
        // One seed per choice: the request's seed + choice index, or a fresh draw.
        let base = c.seed.map_or_else(rand::random::<u64>, |s| s as u64);
        let prompt_tokens = prompts.iter().map(Vec::len).sum();
        let mut rows = Vec::with_capacity(prompts.len() * n);
        for p in prompts {
            let p = Arc::new(p);
            for _ in 0..n {
                let seed = base.wrapping_add(rows.len() as u64);
                rows.push(Row {
                    prompt: p.clone(),
                    opts: SamplingOptions {
                        seed,
                        ..opts.clone()
                    },
                });
            }
        }
        Ok(Plan {
            chat,
            rows,
            prompt_tokens,
            stop: stop_strings(&c.stop)?,
            logprobs,
            stream: c.stream.unwrap_or(false),
            include_usage: c.stream_options.as_ref().is_some_and(|o| o.include_usage),
            steering,
        })
    }
}

/// `logprobs` / `top_logprobs` as a count in 0..=20.
fn top_count(param: &str, k: i64) -> ApiResult<usize> {
    if (0..=MAX_TOP_LOGPROBS as i64).contains(&k) {
        Ok(k as usize)
    } else {
        Err(ApiError::invalid_param(
            param,
            format!("{param} = {k}: it must be in 0..={MAX_TOP_LOGPROBS}"),
        ))
    }
}

/// The sampling options (seed filled in per row), checked: temperature in [0, 2] (0 =
/// greedy), top_p in (0, 1], top_k >= -1 (0 and -1 = all), max_tokens in 1..=limit.
fn sampling(c: &Common, max_tokens: Option<i64>, limit: usize) -> ApiResult<SamplingOptions> {
    let temperature = c.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid_param(
            "temperature",
            format!("temperature = {temperature}: it must be in [0, 2]"),
        ));
    }
    let top_p = c.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid_param(
            "top_p",
            format!("top_p = {top_p}: it must be in (0, 1]"),
        ));
    }
    let top_k = match c.top_k.unwrap_or(0) {
        -1 | 0 => 0,
        k if k > 0 => k as usize,
        k => {
            return Err(ApiError::invalid_param(
                "top_k",
                format!("top_k = {k}: it must be -1, 0 (all tokens) or positive"),
            ))
        }
    };
    let max_new_tokens = match max_tokens {
        None => limit,
        Some(m) if m >= 1 && m as u64 <= limit as u64 => m as usize,
        Some(m) => {
            return Err(ApiError::invalid_param(
                "max_tokens",
                format!("max_tokens = {m}: it must be in 1..={limit}"),
            ))
        }
    };
    Ok(SamplingOptions {
        max_new_tokens,
        temperature,
        top_k,
        top_p,
        seed: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(f: impl FnOnce(&mut Common)) -> Common {
        let mut c = Common::default();
        f(&mut c);
        c
    }

    #[test]
    fn sampling_defaults_follow_openai_and_bad_values_name_their_field() {
        let o = sampling(&Common::default(), None, 100).unwrap();
        assert_eq!(
            (o.temperature, o.top_p, o.top_k, o.max_new_tokens),
            (1.0, 1.0, 0, 100)
        );
        let o = sampling(&common(|c| c.top_k = Some(-1)), Some(5), 100).unwrap();
        assert_eq!((o.top_k, o.max_new_tokens), (0, 5));
        for (c, max, field) in [
            (common(|c| c.temperature = Some(2.5)), None, "temperature"),
            (
                common(|c| c.temperature = Some(f64::NAN)),
                None,
                "temperature",
            ),
            (common(|c| c.top_p = Some(0.0)), None, "top_p"),
            (common(|c| c.top_k = Some(-2)), None, "top_k"),
            (Common::default(), Some(0), "max_tokens"),
            (Common::default(), Some(101), "max_tokens"),
        ] {
            let e = sampling(&c, max, 100).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(field), "{}", e.message);
            assert_eq!(e.status.as_u16(), 400);
        }
    }

    #[test]
    fn top_logprobs_stop_at_twenty() {
        assert_eq!(top_count("top_logprobs", 20).unwrap(), 20);
        assert_eq!(top_count("logprobs", 0).unwrap(), 0);
        assert!(top_count("top_logprobs", 21)
            .unwrap_err()
            .message
            .contains("0..=20"));
        assert!(top_count("logprobs", -1).is_err());
    }
}
