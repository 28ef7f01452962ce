//! The HTTP surface: `/v1/chat/completions`, `/v1/completions`, `/v1/models`, `/health`, the
//! bearer-token check, and OpenAI-shaped errors for everything else (unknown paths, wrong
//! methods, oversized or malformed bodies).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::error::{ApiError, ApiResult};
use crate::plan::{Plan, Served};
use crate::queue::{Event, Job, Queue};
use crate::request::{parse_body, ChatRequest, CompletionRequest};
use crate::respond::{self, chunk, logprobs_json, usage_chunk, Gathered, Meta};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub served: Arc<Served>,
    pub queue: Arc<Queue>,
    /// Required as `Authorization: Bearer KEY` when set.
    pub api_key: Option<Arc<str>>,
    pub counter: Arc<AtomicU64>,
}

/// The server's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth))
        .route("/health", get(health))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                ..ApiError::invalid("method not allowed on this endpoint")
            }
        })
        .with_state(state)
}

/// Equal strings, compared in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &s.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.as_bytes(), key.as_bytes()) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

async fn health(State(s): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "model": s.served.name,
        "waiting_rows": s.queue.waiting_rows(),
        // Requests received on /v1 and /health (a client can tell whether it was answered from
        // its own cache).
        "requests": s.counter.fetch_add(1, Ordering::Relaxed) + 1,
    }))
}

async fn models(State(s): State<AppState>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{
        "id": s.served.name,
        "object": "model",
        "created": 0,
        "owned_by": "erosion",
        "directions": s.served.directions.names(),
        "n_layers": s.served.loaded.model.n_layers(),
    }]}))
}

/// How far past `--max-body-bytes` an oversized body is still read (and dropped) before the
/// connection is closed.
const DRAIN_FACTOR: usize = 16;

/// The request body, or 413 when it is longer than `limit`.
///
/// An oversized body is read to its end and dropped before the 413 goes out (up to
/// `DRAIN_FACTOR` times the limit). Closing the connection while the client is still sending
/// makes most clients (urllib, httpx) fail with a broken pipe instead of reading the 413.
async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    let too_long = || ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        ..ApiError::invalid(format!(
            "the request body is over the length limit of {limit} bytes (this server's \
             --max-body-bytes)"
        ))
    };
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("reading the body: {e}")))?;
        seen += chunk.len();
        if seen <= limit {
            kept.extend_from_slice(&chunk);
        } else if seen > limit.saturating_mul(DRAIN_FACTOR) {
            return Err(too_long());
        }
    }
    if seen > limit {
        return Err(too_long());
    }
    Ok(Bytes::from(kept))
}

async fn chat(State(s): State<AppState>, req: Request) -> Response {
    let plan = read_body(req.into_body(), s.served.limits.max_body_bytes)
        .await
        .and_then(|b| parse_body::<ChatRequest>(&b))
        .and_then(|r| s.served.chat_plan(r));
    answer(s, plan, "chatcmpl").await
}

async fn completions(State(s): State<AppState>, req: Request) -> Response {
    let plan = read_body(req.into_body(), s.served.limits.max_body_bytes)
        .await
        .and_then(|b| parse_body::<CompletionRequest>(&b))
        .and_then(|r| s.served.completion_plan(r));
    answer(s, plan, "cmpl").await
}

/// Queues a checked request and answers it whole or as a stream.
async fn answer(s: AppState, plan: ApiResult<Plan>, prefix: &str) -> Response {
    let plan = match plan {
        Ok(p) => Arc::new(p),
        Err(e) => return e.into_response(),
    };
    let meta = Meta {
        id: format!("{prefix}-{:x}", s.counter.fetch_add(1, Ordering::Relaxed)),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: s.served.name.clone(),
    };
    let limit = s.served.limits.timeout;
    let deadline = Instant::now() + limit;
    let (tx, rx) = unbounded_channel();
    let job = Job {
        plan: plan.clone(),
        events: tx,
        deadline,
    };
    if let Err(e) = s.queue.submit(job) {
        return e.into_response();
    }
    let until = tokio::time::Instant::from_std(deadline) + std::time::Duration::from_secs(1);
    if plan.stream {
        return stream(rx, meta, plan, until, limit.as_secs_f64()).into_response();
    }
    let mut rx = rx;
    let mut g = Gathered::new(&plan);
    while !g.finished() {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Err(_) => return ApiError::timeout(limit.as_secs_f64()).into_response(),
            Ok(None) => return ApiError::internal("the engine stopped").into_response(),
            Ok(Some(Event::Error(e))) => return e.into_response(),
            Ok(Some(e)) => g.add(&e),
        }
    }
    Json(respond::full(&meta, &plan, &g)).into_response()
}

/// The stream's state between chunks.
struct Streaming {
    rx: UnboundedReceiver<Event>,
    meta: Meta,
    plan: Arc<Plan>,
    until: tokio::time::Instant,
    limit_s: f64,
    g: Gathered,
    /// Per choice: whether its first chunk went out.
    started: Vec<bool>,
    pending: VecDeque<String>,
    done: bool,
}

impl Streaming {
    /// Turns one engine event into chunks.
    fn on(&mut self, e: Event) {
        let (choice, text, lps, finish) = match &e {
            Event::Error(err) => {
                self.pending.push_back(err.body().to_string());
                self.done = true;
                return;
            }
            Event::Delta {
                choice,
                text,
                logprobs,
            } => (*choice, text.as_str(), logprobs.as_slice(), None),
            Event::Finish { choice, reason, .. } => (*choice, "", &[][..], Some(*reason)),
        };
        let first = !self.started[choice];
        if text.is_empty() && lps.is_empty() && finish.is_none() && !first {
            self.g.add(&e);
            return;
        }
        let lp = self
            .plan
            .logprobs
            .map(|_| logprobs_json(self.plan.chat, lps));
        let c = chunk(&self.meta, &self.plan, choice, text, lp, finish, first);
        self.pending.push_back(c.to_string());
        self.started[choice] = true;
        self.g.add(&e);
        if self.g.finished() {
            if self.plan.include_usage {
                let u = usage_chunk(&self.meta, &self.plan, self.g.completion_tokens());
                self.pending.push_back(u.to_string());
            }
            self.pending.push_back("[DONE]".into());
            self.done = true;
        }
    }

    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Self)> {
        loop {
            if let Some(data) = self.pending.pop_front() {
                return Some((Ok(SseEvent::default().data(data)), self));
            }
            if self.done {
                return None;
            }
            match tokio::time::timeout_at(self.until, self.rx.recv()).await {
                Ok(Some(e)) => self.on(e),
                Ok(None) => self.on(Event::Error(ApiError::internal("the engine stopped"))),
                Err(_) => self.on(Event::Error(ApiError::timeout(self.limit_s))),
            }
        }
    }
}

/// Server-sent events as the openai clients read them: `data: {chunk}` lines, then `data: [DONE]`.
fn stream(
    rx: UnboundedReceiver<Event>,
    meta: Meta,
    plan: Arc<Plan>,
    until: tokio::time::Instant,
    limit_s: f64,
) -> impl IntoResponse {
    let n = plan.rows.len();
    let state = Streaming {
        rx,
        meta,
        g: Gathered::new(&plan),
        plan,
        until,
        limit_s,
        started: vec![false; n],
        pending: VecDeque::new(),
        done: false,
    };
    Sse::new(futures_util::stream::unfold(state, Streaming::next))
}
