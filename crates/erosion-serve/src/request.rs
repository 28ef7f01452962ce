//! The two request bodies as OpenAI defines them, and their checks: every field this server
//! reads, the fields it accepts and ignores (`user`, `metadata`, ...), and a 400 naming any
//! other field, or a field whose value asks for something it does not do (penalties, logit
//! bias, tools), rather than silently answering another question.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// Fields both endpoints take.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Common {
    pub model: Option<String>,
    pub max_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Not in OpenAI's API; vLLM's spelling (0 or -1 = all tokens).
    pub top_k: Option<i64>,
    pub n: Option<i64>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// The steering extension ([`crate::steer`]).
    pub steering: Option<Value>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub logit_bias: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    #[serde(flatten)]
    pub common: Common,
    /// Every other field (checked by [`check_extra`]).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    /// A string, a list of `{"type": "text", "text": ...}` parts, or null.
    #[serde(default)]
    pub content: Value,
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// A string, a list of strings, a list of token ids, or a list of such lists.
    pub prompt: Value,
    /// The chosen token's log-prob and this many alternatives (0..=20).
    pub logprobs: Option<i64>,
    pub echo: Option<bool>,
    pub suffix: Option<String>,
    pub best_of: Option<i64>,
    #[serde(flatten)]
    pub common: Common,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Fields the openai clients may send that change nothing here.
const IGNORED: [&str; 5] = [
    "user",
    "metadata",
    "store",
    "service_tier",
    "parallel_tool_calls",
];

/// Refuses fields this server does not know, and known ones set to what it does not do.
pub fn check_extra(extra: &Map<String, Value>) -> ApiResult<()> {
    for (k, v) in extra {
        if IGNORED.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        let ok = match k.as_str() {
            "response_format" => v.get("type").and_then(Value::as_str) == Some("text"),
            "tool_choice" => v.as_str() == Some("none"),
            "tools" | "functions" => v.as_array().is_some_and(Vec::is_empty),
            _ => {
                return Err(ApiError::invalid_param(
                    k,
                    format!(
                    "unknown field `{k}` (see the server's documentation for the fields it takes)"
                ),
                ))
            }
        };
        if !ok {
            return Err(ApiError::invalid_param(
                k,
                format!("`{k}` = {v} is not supported by this server"),
            ));
        }
    }
    Ok(())
}

/// Refuses sampling changes this server does not make.
pub fn check_unsupported(c: &Common) -> ApiResult<()> {
    for (name, v) in [
        ("frequency_penalty", c.frequency_penalty),
        ("presence_penalty", c.presence_penalty),
    ] {
        if v.is_some_and(|v| v != 0.0) {
            return Err(ApiError::invalid_param(
                name,
                format!("{name} is not supported (only 0)"),
            ));
        }
    }
    if c.logit_bias.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(ApiError::invalid_param(
            "logit_bias",
            "logit_bias is not supported",
        ));
    }
    Ok(())
}

impl ChatMessage {
    /// The text of the message's content.
    pub fn text(&self, i: usize) -> ApiResult<String> {
        let param = format!("messages[{i}].content");
        match &self.content {
            Value::String(s) => Ok(s.clone()),
            Value::Null => Ok(String::new()),
            Value::Array(parts) => parts
                .iter()
                .map(|p| match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => Ok(t.as_str()),
                    _ => Err(ApiError::invalid_param(
                        &param,
                        format!("{param}: only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported"),
                    )),
                })
                .collect::<ApiResult<Vec<_>>>()
                .map(|t| t.concat()),
            other => Err(ApiError::invalid_param(
                &param,
                format!("{param} must be a string or a list of text parts, not {other}"),
            )),
        }
    }
}

/// A completion prompt: text to tokenize, or ids.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptInput {
    Text(String),
    Ids(Vec<i64>),
}

/// Reads `prompt`: a string, a list of strings, a list of ids, or a list of id lists.
pub fn prompts(v: &Value) -> ApiResult<Vec<PromptInput>> {
    let bad = || {
        ApiError::invalid_param(
            "prompt",
            "prompt must be a string, a list of strings, a list of token ids or a list of such lists",
        )
    };
    let ids = |v: &Vec<Value>| -> ApiResult<Vec<i64>> {
        v.iter().map(|x| x.as_i64().ok_or_else(bad)).collect()
    };
    match v {
        Value::String(s) => Ok(vec![PromptInput::Text(s.clone())]),
        Value::Array(items) if items.iter().all(Value::is_number) && !items.is_empty() => {
            Ok(vec![PromptInput::Ids(ids(items)?)])
        }
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(PromptInput::Text(s.clone())),
                Value::Array(a) => Ok(PromptInput::Ids(ids(a)?)),
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

/// The stop strings (at most 4, none empty, as OpenAI allows).
pub fn stop_strings(stop: &Option<Stop>) -> ApiResult<Vec<String>> {
    let list = match stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    if list.len() > 4 || list.iter().any(String::is_empty) {
        return Err(ApiError::invalid_param(
            "stop",
            "stop takes up to 4 non-empty strings",
        ));
    }
    Ok(list)
}

/// Parses a body, answering malformed JSON with a 400 that says where.
pub fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| ApiError::invalid(format!("invalid request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn malformed_bodies_are_400s_that_say_why() {
        let e = parse_body::<ChatRequest>(b"{not json").unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = parse_body::<ChatRequest>(b"[1, 2]").unwrap_err();
        assert!(e.message.contains("JSON object"), "{}", e.message);
        let e = parse_body::<ChatRequest>(br#"{"messages": "hi"}"#).unwrap_err();
        assert!(e.message.contains("invalid request"), "{}", e.message);
        let e =
            parse_body::<ChatRequest>(br#"{"messages": [], "temperature": "hot"}"#).unwrap_err();
        assert!(e.message.contains("hot"), "{}", e.message);
        let e = parse_body::<CompletionRequest>(br#"{"model": "m"}"#).unwrap_err();
        assert!(e.message.contains("prompt"), "{}", e.message);
    }

    #[test]
    fn known_fields_are_read_and_the_rest_kept_for_checking() {
        let r: ChatRequest = parse_body(
            br#"{"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2,
                "steering": {"direction": "a", "layers": 3}, "user": "u", "colour": 1}"#,
        )
        .unwrap();
        assert_eq!(r.common.n, Some(2));
        assert!(r.common.steering.is_some());
        assert_eq!(r.extra.keys().collect::<Vec<_>>(), ["user", "colour"]);
        let e = check_extra(&r.extra).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("colour"));
    }

    #[test]
    fn ignored_fields_pass_and_unsupported_values_are_named() {
        let ok = json!({"user": "u", "metadata": {"a": 1}, "response_format": {"type": "text"},
                        "tools": [], "tool_choice": "none", "seed_extra": null});
        check_extra(ok.as_object().unwrap()).unwrap();
        for (field, v) in [
            ("response_format", json!({"type": "json_object"})),
            ("tools", json!([{"type": "function"}])),
            ("tool_choice", json!("auto")),
        ] {
            let m: Map<String, Value> = [(field.to_string(), v)].into_iter().collect();
            let e = check_extra(&m).unwrap_err();
            assert!(e.message.contains("not supported") && e.param.as_deref() == Some(field));
        }
        let c = Common {
            presence_penalty: Some(0.5),
            ..Default::default()
        };
        assert_eq!(
            check_unsupported(&c).unwrap_err().param.as_deref(),
            Some("presence_penalty")
        );
        let c = Common {
            frequency_penalty: Some(0.0),
            logit_bias: Some(Map::new()),
            ..Default::default()
        };
        check_unsupported(&c).unwrap();
    }

    #[test]
    fn prompts_take_every_openai_form() {
        assert_eq!(
            prompts(&json!("a")).unwrap(),
            [PromptInput::Text("a".into())]
        );
        assert_eq!(
            prompts(&json!([1, 2])).unwrap(),
            [PromptInput::Ids(vec![1, 2])]
        );
        assert_eq!(
            prompts(&json!(["a", [3]])).unwrap(),
            [PromptInput::Text("a".into()), PromptInput::Ids(vec![3])]
        );
        for bad in [
            json!([]),
            json!(5),
            json!([1.5]),
            json!([{"a": 1}]),
            json!(null),
        ] {
            assert_eq!(
                prompts(&bad).unwrap_err().param.as_deref(),
                Some("prompt"),
                "{bad}"
            );
        }
    }

    #[test]
    fn stops_and_message_content() {
        assert_eq!(stop_strings(&Some(Stop::One("x".into()))).unwrap(), ["x"]);
        let five = Stop::Many(vec!["a".into(); 5]);
        assert!(stop_strings(&Some(five)).is_err());
        assert!(stop_strings(&Some(Stop::One(String::new()))).is_err());
        let m = |content: Value| ChatMessage {
            role: "user".into(),
            content,
        };
        let parts = json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]);
        assert_eq!(m(parts).text(0).unwrap(), "ab");
        assert_eq!(m(Value::Null).text(0).unwrap(), "");
        let e = m(json!([{"type": "image_url"}])).text(2).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[2].content"));
        assert!(m(json!(7)).text(0).is_err());
    }
}
