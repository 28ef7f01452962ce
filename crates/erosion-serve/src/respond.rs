//! Responses in OpenAI's shapes: the whole answer (`chat.completion`, `text_completion`) and
//! the streamed chunks (`chat.completion.chunk`), with log-probs as each endpoint writes them
//! and the steering extension echoed as `steering`.

use serde_json::{json, Value};

use crate::plan::Plan;
use crate::queue::Event;
use crate::text::TokenLogprob;

/// What every response and chunk of one request carries.
#[derive(Debug, Clone)]
pub struct Meta {
    pub id: String,
    pub created: u64,
    pub model: String,
}

/// `{"token", "logprob", "bytes"}` as the chat endpoint writes one token.
fn chat_token(token: &str, logprob: f32) -> Value {
    json!({"token": token, "logprob": logprob, "bytes": token.as_bytes()})
}

/// Log-probs of `tokens` as the endpoint writes them: chat `{"content": [...]}`, completions
/// `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}` (each token's character
/// offset in the answer, as OpenAI defines `text_offset`).
pub fn logprobs_json(chat: bool, tokens: &[TokenLogprob]) -> Value {
    if chat {
        let content: Vec<Value> = tokens
            .iter()
            .map(|t| {
                let mut v = chat_token(&t.token, t.logprob);
                v["top_logprobs"] = t.top.iter().map(|(s, lp)| chat_token(s, *lp)).collect();
                v
            })
            .collect();
        return json!({ "content": content });
    }
    json!({
        "tokens": tokens.iter().map(|t| t.token.as_str()).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": tokens.iter().map(|t| {
            t.top.iter().map(|(s, lp)| (s.clone(), json!(lp))).collect::<serde_json::Map<_, _>>()
        }).collect::<Vec<_>>(),
        "text_offset": tokens.iter().map(|t| t.offset).collect::<Vec<_>>(),
    })
}

/// One choice, gathered from the engine's events.
#[derive(Debug, Clone, Default)]
pub struct Choice {
    pub text: String,
    pub logprobs: Vec<TokenLogprob>,
    pub finish: Option<&'static str>,
    pub tokens: usize,
}

/// The choices of a request as its events arrive.
#[derive(Debug, Clone)]
pub struct Gathered {
    pub choices: Vec<Choice>,
}

impl Gathered {
    pub fn new(plan: &Plan) -> Self {
        Gathered {
            choices: vec![Choice::default(); plan.rows.len()],
        }
    }

    /// Adds an event (not an error).
    pub fn add(&mut self, e: &Event) {
        match e {
            Event::Delta {
                choice,
                text,
                logprobs,
            } => {
                let c = &mut self.choices[*choice];
                c.text.push_str(text);
                c.logprobs.extend(logprobs.iter().cloned());
            }
            Event::Finish {
                choice,
                reason,
                completion_tokens,
            } => {
                let c = &mut self.choices[*choice];
                c.finish = Some(reason);
                c.tokens = *completion_tokens;
            }
            Event::Error(_) => {}
        }
    }

    pub fn finished(&self) -> bool {
        self.choices.iter().all(|c| c.finish.is_some())
    }

    pub fn completion_tokens(&self) -> usize {
        self.choices.iter().map(|c| c.tokens).sum()
    }
}

pub fn usage(plan: &Plan, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": plan.prompt_tokens + completion_tokens,
    })
}

fn object(plan: &Plan, chunk: bool) -> &'static str {
    match (plan.chat, chunk) {
        (true, false) => "chat.completion",
        (true, true) => "chat.completion.chunk",
        (false, _) => "text_completion",
    }
}

/// The whole answer.
pub fn full(meta: &Meta, plan: &Plan, g: &Gathered) -> Value {
    let choices: Vec<Value> = g
        .choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let lp = plan.logprobs.map(|_| logprobs_json(plan.chat, &c.logprobs));
            let mut v = json!({"index": i, "logprobs": lp, "finish_reason": c.finish});
            if plan.chat {
                v["message"] = json!({"role": "assistant", "content": c.text});
            } else {
                v["text"] = json!(c.text);
            }
            v
        })
        .collect();
    let mut v = json!({
        "id": meta.id,
        "object": object(plan, false),
        "created": meta.created,
        "model": meta.model,
        "choices": choices,
        "usage": usage(plan, g.completion_tokens()),
    });
    echo_steering(&mut v, plan);
    v
}

fn echo_steering(v: &mut Value, plan: &Plan) {
    if !plan.steering.applied.is_empty() {
        v["steering"] = json!(plan.steering.applied);
    }
}

/// One streamed chunk for choice `index`: new text (the role too in a chat's first chunk), its
/// log-probs, and the finish reason on the last.
pub fn chunk(
    meta: &Meta,
    plan: &Plan,
    index: usize,
    text: &str,
    logprobs: Option<Value>,
    finish: Option<&str>,
    first: bool,
) -> Value {
    let mut choice = json!({"index": index, "logprobs": logprobs, "finish_reason": finish});
    if plan.chat {
        choice["delta"] = match (first, finish.is_some() && text.is_empty()) {
            (true, _) => json!({"role": "assistant", "content": text}),
            (false, true) => json!({}),
            (false, false) => json!({"content": text}),
        };
    } else {
        choice["text"] = json!(text);
    }
    let mut v = json!({
        "id": meta.id,
        "object": object(plan, true),
        "created": meta.created,
        "model": meta.model,
        "choices": [choice],
    });
    if plan.include_usage {
        v["usage"] = Value::Null;
    }
    if first {
        echo_steering(&mut v, plan);
    }
    v
}

/// The last chunk when `stream_options.include_usage` is set: no choices, the usage.
pub fn usage_chunk(meta: &Meta, plan: &Plan, completion_tokens: usize) -> Value {
    json!({
        "id": meta.id,
        "object": object(plan, true),
        "created": meta.created,
        "model": meta.model,
        "choices": [],
        "usage": usage(plan, completion_tokens),
    })
}
