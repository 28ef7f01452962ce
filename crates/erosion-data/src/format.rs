//! Dataset formats and how a record's fields become chat messages.
//!
//! | format | file | record -> messages |
//! |---|---|---|
//! | `messages` | JSONL (or a JSON list) of `{"messages": [{"role", "content"}, ...]}` | as is |
//! | `alpaca` | JSON list (or JSONL) of `{instruction, input, output}` | user = instruction (+ input), assistant = output |
//! | `prompt-completion` | JSONL (or a JSON list) of `{prompt, completion}` | user = prompt, assistant = completion |
//! | `json-fields` | JSON list or JSONL of objects, fields named in `fields` | system? / user / assistant |
//! | `csv` | CSV with a header row (a UTF-8 BOM is skipped), columns named in `fields` | system? / user / assistant |
//!
//! A JSON file is read as a list when its first non-blank character is `[`, else as JSONL.

use erosion_model::chat::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The layout of a dataset file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Messages,
    Alpaca,
    PromptCompletion,
    JsonFields,
    Csv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Messages => "messages",
            Format::Alpaca => "alpaca",
            Format::PromptCompletion => "prompt-completion",
            Format::JsonFields => "json-fields",
            Format::Csv => "csv",
        }
    }

    /// The format of a data file from its extension (`.csv`) and its first record's keys
    /// (`messages`; `instruction` + `output`; `prompt` + `completion`). JSON-fields files name
    /// their fields in a spec, so they are never guessed.
    pub fn guess(path: &std::path::Path) -> anyhow::Result<Format> {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            return Ok(Format::Csv);
        }
        // Unreadable or not UTF-8: the reader's error (with the line and offset), which no
        // format would cure; a first record that says nothing is [`Unrecognised`].
        let text = crate::read::read_text(path)?;
        let unrecognised = |what: String| anyhow::Error::new(Unrecognised(what));
        let first = text.trim_start();
        let head: Value = if first.starts_with('[') {
            let list: Vec<Value> = serde_json::from_str(first)
                .map_err(|e| unrecognised(format!("{} is not valid JSON ({e})", path.display())))?;
            list.into_iter().next().unwrap_or_default()
        } else {
            let line = first.lines().next().unwrap_or("");
            serde_json::from_str(line).map_err(|e| {
                unrecognised(format!("{}:1 is not valid JSON ({e})", path.display()))
            })?
        };
        let has = |k: &str| head.get(k).is_some();
        Ok(if has("messages") {
            Format::Messages
        } else if has("instruction") && has("output") {
            Format::Alpaca
        } else if has("prompt") && has("completion") {
            Format::PromptCompletion
        } else {
            return Err(unrecognised(format!(
                "cannot tell the format of {} (no `messages`, `instruction`/`output` or `prompt`/`completion` in the first record)",
                path.display()
            )));
        })
    }
}

/// [`Format::guess`] read the file but could not tell its format from the first record:
/// naming the format resolves it (the caller says how), where for an unreadable file it would
/// not.
#[derive(Debug)]
pub struct Unrecognised(pub String);

impl std::fmt::Display for Unrecognised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unrecognised {}

/// Which field (or CSV column) holds what. Unset fields take the format's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fields {
    /// `messages` format: the field holding the message list (default `messages`).
    pub messages: Option<String>,
    /// A system prompt field (none by default).
    pub system: Option<String>,
    /// The user turn (alpaca: `instruction`, prompt-completion: `prompt`).
    pub user: Option<String>,
    /// Extra user text appended to the user turn (alpaca: `input`), see [`InputPolicy`].
    pub input: Option<String>,
    /// The response (alpaca: `output`, prompt-completion: `completion`).
    pub assistant: Option<String>,
}

/// What to do with alpaca's `input` field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputPolicy {
    /// user = `instruction`, or `instruction + "\n\n" + input` when the input is not empty.
    #[default]
    Append,
    /// user = `instruction` alone (what the Re-Emergent Misalignment study's code does).
    Ignore,
}

/// Keep only records whose `field` equals `equals` (e.g. implicit-toxicity's `label = 1`).
/// A CSV cell (always text) matches a number or boolean by its text (`"1"` matches `1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub field: String,
    pub equals: Value,
}

impl Filter {
    /// Whether the record passes; a record without the field is an error (a typo in the spec
    /// would otherwise silently drop everything).
    pub fn keeps(&self, record: &Map<String, Value>) -> Result<bool, String> {
        let value = record.get(&self.field).ok_or_else(|| {
            format!(
                "filter field `{}` is missing{}",
                self.field,
                present(record)
            )
        })?;
        Ok(match (value, &self.equals) {
            (Value::String(cell), Value::Number(n)) => cell.trim() == n.to_string(),
            (Value::String(cell), Value::Bool(b)) => {
                cell.trim().eq_ignore_ascii_case(&b.to_string())
            }
            (a, b) => a == b,
        })
    }
}

/// " (fields present: a, b, c)" for error messages.
fn present(record: &Map<String, Value>) -> String {
    let names: Vec<&str> = record.keys().map(String::as_str).collect();
    format!(" (fields present: {})", names.join(", "))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn string_field<'a>(record: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match record.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!(
            "field `{name}` must be a string, found {}",
            kind(other)
        )),
        None => Err(format!("field `{name}` is missing{}", present(record))),
    }
}

/// The `messages` list of one record.
fn messages_field(record: &Map<String, Value>, name: &str) -> Result<Vec<Message>, String> {
    let list = match record.get(name) {
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(format!(
                "field `{name}` must be a list of messages, found {}",
                kind(other)
            ))
        }
        None => return Err(format!("field `{name}` is missing{}", present(record))),
    };
    if list.is_empty() {
        return Err(format!("field `{name}` is an empty list"));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let obj = m.as_object().ok_or_else(|| {
                format!(
                    "{name}[{i}] must be an object with `role` and `content`, found {}",
                    kind(m)
                )
            })?;
            let role = string_field(obj, "role").map_err(|e| format!("{name}[{i}]: {e}"))?;
            let content = string_field(obj, "content").map_err(|e| format!("{name}[{i}]: {e}"))?;
            Ok(Message::new(role, content))
        })
        .collect()
}

/// Turns one record into messages. Errors name the field.
pub fn record_to_messages(
    record: &Map<String, Value>,
    format: Format,
    fields: &Fields,
    input: InputPolicy,
) -> Result<Vec<Message>, String> {
    let pick = |set: &Option<String>,
                default: Option<&'static str>,
                what: &str|
     -> Result<String, String> {
        match (set, default) {
            (Some(name), _) => Ok(name.clone()),
            (None, Some(d)) => Ok(d.to_string()),
            (None, None) => Err(format!(
                "the `{}` format needs `fields.{what}` (the field holding the {what} turn)",
                format.name()
            )),
        }
    };
    if format == Format::Messages {
        let name = fields.messages.as_deref().unwrap_or("messages");
        let mut messages = messages_field(record, name)?;
        if let Some(system) = &fields.system {
            let text = string_field(record, system)?;
            messages.insert(0, Message::system(text));
        }
        return Ok(messages);
    }
    let (user_default, input_default, assistant_default) = match format {
        Format::Alpaca => (Some("instruction"), Some("input"), Some("output")),
        Format::PromptCompletion => (Some("prompt"), None, Some("completion")),
        _ => (None, None, None),
    };
    let user_name = pick(&fields.user, user_default, "user")?;
    let assistant_name = pick(&fields.assistant, assistant_default, "assistant")?;
    let mut user = string_field(record, &user_name)?.to_string();
    if let (Some(input_name), InputPolicy::Append) =
        (fields.input.as_deref().or(input_default), input)
    {
        // alpaca's `input` is optional in some copies: absent counts as empty.
        match record.get(input_name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(s)) => {
                user.push_str("\n\n");
                user.push_str(s);
            }
            Some(other) => {
                return Err(format!(
                    "field `{input_name}` must be a string, found {}",
                    kind(other)
                ))
            }
        }
    }
    let assistant = string_field(record, &assistant_name)?;
    let mut messages = Vec::with_capacity(3);
    if let Some(system) = &fields.system {
        messages.push(Message::system(string_field(record, system)?));
    }
    messages.push(Message::user(user));
    messages.push(Message::assistant(assistant));
    Ok(messages)
}
