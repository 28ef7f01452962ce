//! Chat templates, rendered byte-identically to Hugging Face transformers, and the exact location
//! of the response (the final assistant message) in the rendered text and in tokens.
//!
//! transformers renders `tokenizer.chat_template` with jinja2 configured as
//! `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])`,
//! its own `tojson` (Python's `json.dumps`, no HTML escaping), and the globals `raise_exception`
//! and `strftime_now`. The context is `messages`, `tools`, `documents`, `add_generation_prompt`,
//! the tokenizer's named special tokens that are set (`bos_token`, `eos_token`, ...), and any extra
//! keyword arguments. [`ChatTemplate`] sets minijinja up the same way; the fixture tests in
//! `tests/chat_fixtures.rs` compare it with transformers' output byte for byte.
//!
//! - [`span`]: where the assistant's answer is in the rendered text, found by rendering (no
//!   searching for role names), and a plain template-free format for base models.
//! - [`tokens`]: the same span in token positions, with an explicit policy for a token that
//!   straddles the prompt/response boundary.

mod pycompat;
mod pyjson;
pub mod span;
pub mod tokens;

pub use span::{find_response, ChatFormat, PlainFormat, ResponseLocation};
pub use tokens::{
    encode_with_offsets, tokenize_location, BoundaryPolicy, SpanOptions, TokenizedChat,
};

use std::collections::BTreeMap;
use std::fmt;

use crate::text::{escape_controls, shown};
use anyhow::{anyhow, bail, Result};
use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};

/// One chat message, as transformers' `{"role": ..., "content": ...}` dicts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// Everything a template sees besides `messages`.
#[derive(Clone, Debug, Default)]
pub struct ChatContext {
    /// Append the header of a new assistant turn (for generation).
    pub add_generation_prompt: bool,
    /// Named special tokens, as transformers passes them (only those that are set, so that
    /// `{{ bos_token }}` prints nothing when a tokenizer has none): `bos_token`, `eos_token`, ...
    pub special_tokens: BTreeMap<String, String>,
    /// Tool schemas (`tools=` in transformers); `None` renders as Python's `None`.
    pub tools: Option<serde_json::Value>,
    /// Extra keyword arguments (`date_string`, `enable_thinking`, ...). They override the above.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The clock `strftime_now` reads, in seconds since the Unix epoch, interpreted as UTC
    /// (transformers reads the machine's local time). `None`: the system clock at render time.
    pub now_unix: Option<i64>,
}

impl ChatContext {
    /// A context with the given named special tokens (`None`s are left out, as transformers does).
    pub fn with_tokens(add_generation_prompt: bool, tokens: &[(&str, Option<&str>)]) -> Self {
        let special_tokens = tokens
            .iter()
            .filter_map(|(name, value)| value.map(|v| (name.to_string(), v.to_string())))
            .collect();
        Self {
            add_generation_prompt,
            special_tokens,
            ..Self::default()
        }
    }
}

/// A compiled chat template.
#[derive(Clone)]
pub struct ChatTemplate {
    /// The template's Jinja source.
    pub source: String,
    /// Where the template came from (a file, a GGUF key), for messages.
    origin: Option<String>,
    env: Environment<'static>,
}

/// Fuel for one render: minijinja charges one unit per instruction and one per 64 bytes of
/// data a template makes or reads (strings, lists, output), checked before each allocation.
/// The real templates of the fixtures (Qwen2.5 with tools, Qwen3, Llama 3.x, SmolLM2,
/// Mistral) use under 400 on their conversations, and ChatML over a 4 MB conversation about
/// 190k; 4M lets a template make several passes over a conversation as long as
/// [`MAX_RENDERED_BYTES`], while a hostile one (nested `range(100000)` loops, a string doubled
/// in a loop) stops within about a second, having made at most 256 MiB of data.
pub const RENDER_FUEL: u64 = 4_000_000;

/// Longest rendered conversation, in bytes: 16 MiB is about 4M tokens, far past the context
/// of any model erosion runs, so only a runaway template reaches it.
pub const MAX_RENDERED_BYTES: usize = 16 << 20;

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .field("origin", &self.origin)
            .finish()
    }
}

/// The name the template is stored under in its environment; minijinja's messages cite it.
const TEMPLATE_NAME: &str = "chat_template";

thread_local! {
    /// The message of the last `raise_exception` call on this thread, so that a failed render
    /// reports the template's own words rather than minijinja's wrapper.
    static RAISED: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

fn raise_exception(message: String) -> Result<Value, Error> {
    RAISED.with(|r| *r.borrow_mut() = Some(message.clone()));
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

impl ChatTemplate {
    /// Compiles a Jinja chat template. A template that does not parse is an error carrying
    /// minijinja's message and line.
    pub fn new(source: &str) -> Result<Self> {
        Self::compile(source, None)
    }

    /// [`ChatTemplate::new`] for a template read from `origin` (a file, or a GGUF's metadata
    /// key), which every error message names.
    pub fn from_origin(source: &str, origin: impl Into<String>) -> Result<Self> {
        Self::compile(source, Some(origin.into()))
    }

    fn compile(source: &str, origin: Option<String>) -> Result<Self> {
        let label = label(origin.as_deref());
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| anyhow!("{label}: cannot configure the Jinja syntax: {e}"))?;
        env.set_syntax(syntax);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_unknown_method_callback(pycompat::unknown_method);
        env.set_formatter(pycompat::python_formatter);
        env.add_filter("tojson", pyjson::tojson_filter);
        env.add_filter("trim", pycompat::trim_filter);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", pycompat::strftime_now);
        env.set_fuel(Some(RENDER_FUEL));
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|e| anyhow!("{label} does not compile: {}", describe(&e)))?;
        Ok(Self {
            source: source.to_string(),
            origin,
            env,
        })
    }

    /// Where the template came from, when it was compiled with [`ChatTemplate::from_origin`].
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages` as transformers' `apply_chat_template(messages, tokenize=False, ...)`.
    /// A failing template is an error with minijinja's message, or with the template's own message
    /// when it called `raise_exception`.
    pub fn render(&self, messages: &[Message], ctx: &ChatContext) -> Result<String> {
        let mut map = serde_json::Map::new();
        for (name, value) in &ctx.special_tokens {
            map.insert(name.clone(), serde_json::Value::String(value.clone()));
        }
        map.insert("messages".into(), serde_json::to_value(messages)?);
        map.insert(
            "tools".into(),
            ctx.tools.clone().unwrap_or(serde_json::Value::Null),
        );
        map.insert("documents".into(), serde_json::Value::Null);
        map.insert(
            "add_generation_prompt".into(),
            ctx.add_generation_prompt.into(),
        );
        for (name, value) in &ctx.extra {
            map.insert(name.clone(), value.clone());
        }
        let context = Value::from(minijinja::value::Serde(&map));

        let label = label(self.origin.as_deref());
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| anyhow!("{label}: {}", describe(&e)))?;
        let now = ctx.now_unix.unwrap_or_else(pycompat::system_now);
        RAISED.with(|r| *r.borrow_mut() = None);
        pycompat::RENDER_NOW.with(|c| c.set(Some(now)));
        let mut out = LimitedOutput::default();
        let result = template.render_captured_to(context, &mut out);
        pycompat::RENDER_NOW.with(|c| c.set(None));
        let raised = RAISED.with(|r| r.borrow_mut().take());
        match result {
            Ok(_) => String::from_utf8(out.bytes)
                .map_err(|_| anyhow!("{label} rendered text that is not UTF-8")),
            Err(_) if out.overflowed => bail!(
                "{label} renders more than {MAX_RENDERED_BYTES} bytes (a runaway template; no \
                 conversation is that long)"
            ),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => bail!(
                "{label} ran out of fuel: rendering took more than {RENDER_FUEL} steps (a \
                 runaway loop or a string grown without bound){}",
                at_line(&e)
            ),
            Err(e) => match raised {
                Some(message) => bail!(
                    "{label} raised an exception: {}{}",
                    shown(&message),
                    at_line(&e)
                ),
                None => bail!("{label} failed to render: {}", describe(&e)),
            },
        }
    }
}

/// "chat template", or "chat template from ORIGIN".
fn label(origin: Option<&str>) -> String {
    match origin {
        Some(o) => format!("chat template from {}", shown(o)),
        None => "chat template".to_string(),
    }
}

/// " (template line N)" where minijinja knows the line.
fn at_line(e: &Error) -> String {
    e.line()
        .map(|l| format!(" (template line {l})"))
        .unwrap_or_default()
}

/// The render's output, refusing to grow past [`MAX_RENDERED_BYTES`] (minijinja then stops
/// with a write error, which `render` reports as the size limit).
#[derive(Default)]
struct LimitedOutput {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for LimitedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("rendered text too long"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The system clock in seconds since the Unix epoch (what `strftime_now` reads by default).
pub(crate) fn pycompat_now() -> i64 {
    pycompat::system_now()
}

/// minijinja's message with its cause chain and the template line, on one line, escaped (it
/// can quote the template).
fn describe(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    escape_controls(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(add_generation_prompt: bool) -> ChatContext {
        ChatContext::with_tokens(
            add_generation_prompt,
            &[("bos_token", Some("<s>")), ("eos_token", Some("</s>"))],
        )
    }

    #[test]
    fn trim_and_lstrip_blocks_as_jinja2() {
        // jinja2(trim_blocks=True, lstrip_blocks=True) renders this as "A\nB\n" (checked in Python).
        let t = ChatTemplate::new("{% for m in messages %}\n    {% if true %}\n{{ m.content }}\n    {% endif %}\n{% endfor %}").unwrap();
        let out = t
            .render(&[Message::user("A"), Message::user("B")], &ctx(false))
            .unwrap();
        assert_eq!(out, "A\nB\n");
    }

    #[test]
    fn special_tokens_that_are_unset_print_nothing() {
        let t = ChatTemplate::new("[{{ bos_token }}|{{ pad_token }}]").unwrap();
        assert_eq!(t.render(&[], &ctx(false)).unwrap(), "[<s>|]");
    }

    #[test]
    fn python_values_print_like_python() {
        let t = ChatTemplate::new(
            "{{ tools }} {{ add_generation_prompt }} {{ 1e16 * 1.0 }} {{ 'a b '.strip().upper() }}",
        )
        .unwrap();
        assert_eq!(t.render(&[], &ctx(true)).unwrap(), "None True 1e+16 A B");
    }

    #[test]
    fn raise_exception_carries_the_template_message() {
        let t = ChatTemplate::new("{% if messages[0].role != 'user' %}{{ raise_exception('roles must alternate') }}{% endif %}ok").unwrap();
        let err = t
            .render(&[Message::system("x")], &ctx(false))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("chat template raised an exception: roles must alternate"),
            "{err}"
        );
        // The next successful render is not affected by the earlier exception.
        assert_eq!(t.render(&[Message::user("x")], &ctx(false)).unwrap(), "ok");
    }

    #[test]
    fn broken_templates_are_errors_with_minijinja_messages() {
        let err = ChatTemplate::new("{% for m in messages %}{{ m.content }}")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("chat template does not compile:"), "{err}");
        assert!(err.contains("chat_template:1"), "{err}");
        let t = ChatTemplate::new("{{ messages[0].content.nosuchmethod() }}").unwrap();
        let err = t
            .render(&[Message::user("x")], &ctx(false))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("chat template failed to render:"), "{err}");
        assert!(
            err.contains("nosuchmethod") || err.contains("unknown method"),
            "{err}"
        );
    }

    #[test]
    fn strftime_now_reads_the_context_clock() {
        let t = ChatTemplate::new("{{ strftime_now('%d %b %Y') }}").unwrap();
        let mut c = ctx(false);
        c.now_unix = Some(1_721_999_109);
        assert_eq!(t.render(&[], &c).unwrap(), "26 Jul 2024");
    }
}
