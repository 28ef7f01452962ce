//! `erosion-serve`: an OpenAI-compatible HTTP server for one checkpoint, with per-request
//! steering along stored directions.
//!
//! | endpoint | what |
//! |---|---|
//! | `POST /v1/chat/completions` | messages through the checkpoint's chat template |
//! | `POST /v1/completions` | raw text (or token ids) |
//! | `GET /v1/models` | the served name, its directions and layer count |
//! | `GET /health` | `{"status": "ok"}` (no key needed) |
//!
//! Both generation endpoints take `temperature`, `top_p`, `top_k`, `max_tokens`, `stop`, `seed`,
//! `n`, log-probs (`logprobs` + `top_logprobs` up to 20 for chat, `logprobs` up to 20 for
//! completions), `stream` (server-sent events, `stream_options.include_usage`) and the
//! steering extension `steering` ([`steer`]), which the openai clients pass with `extra_body`.
//!
//! Requests go through a bounded [`queue`] (full: 429) to one [`engine`] thread, which decodes
//! requests with the same steering together with one KV cache, continuously: requests join a
//! running batch between two steps and leave it as they finish. [`plan`] checks every
//! field and limit first, so bad input is a 4xx with an OpenAI-shaped body ([`error`]).

pub mod engine;
pub mod error;
pub mod plan;
pub mod queue;
pub mod request;
pub mod respond;
pub mod routes;
pub mod server;
pub mod steer;
pub mod text;

pub use plan::{Limits, Served};
pub use server::{run, ServeOptions};
pub use steer::Directions;
