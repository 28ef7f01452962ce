//! Chat templates render byte-identically to transformers' `apply_chat_template(tokenize=False)`.
//! The expected strings in tests/fixtures/chat/renders.json were made by
//! scripts/reference/make_chat_fixtures.py with transformers itself, for the real templates of
//! Qwen2.5-Instruct, Qwen3, SmolLM2-Instruct, Llama 3 / 3.1 / 3.2 Instruct and
//! Mistral-7B-Instruct-v0.2.

use std::collections::BTreeMap;
use std::path::PathBuf;

use erosion_model::chat::{find_response, ChatContext, ChatTemplate, Message};
use serde::Deserialize;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat")
}

#[derive(Deserialize)]
struct Conversation {
    name: String,
    messages: Vec<Message>,
    #[serde(default)]
    tools: Option<serde_json::Value>,
    #[serde(default)]
    kwargs: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Case {
    template: String,
    conversation: String,
    add_generation_prompt: bool,
    text: Option<String>,
    error: Option<String>,
    error_type: Option<String>,
}

#[derive(Deserialize)]
struct Renders {
    now_unix: i64,
    special_tokens: BTreeMap<String, BTreeMap<String, String>>,
    conversations: Vec<Conversation>,
    cases: Vec<Case>,
}

fn load() -> Renders {
    let text = std::fs::read_to_string(fixtures().join("renders.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn template(name: &str) -> ChatTemplate {
    let path = fixtures().join("templates").join(format!("{name}.jinja"));
    ChatTemplate::new(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn context(
    r: &Renders,
    template: &str,
    conv: &Conversation,
    add_generation_prompt: bool,
) -> ChatContext {
    ChatContext {
        add_generation_prompt,
        special_tokens: r.special_tokens[template].clone(),
        tools: conv.tools.clone(),
        extra: conv.kwargs.clone(),
        now_unix: Some(r.now_unix),
    }
}

#[test]
fn every_template_renders_byte_identically_to_transformers() {
    let r = load();
    let mut templates = BTreeMap::new();
    let (mut texts, mut errors) = (0, 0);
    for case in &r.cases {
        let t = templates
            .entry(case.template.clone())
            .or_insert_with(|| template(&case.template));
        let conv = r
            .conversations
            .iter()
            .find(|c| c.name == case.conversation)
            .unwrap();
        let ctx = context(&r, &case.template, conv, case.add_generation_prompt);
        let got = t.render(&conv.messages, &ctx);
        let label = format!(
            "{} / {} / add_generation_prompt={}",
            case.template, case.conversation, case.add_generation_prompt
        );
        match (&case.text, got) {
            (Some(want), Ok(got)) => {
                assert_eq!(&got, want, "{label}");
                texts += 1;
            }
            (Some(_), Err(e)) => panic!("{label}: transformers renders it, we fail: {e:#}"),
            (None, Ok(got)) => panic!(
                "{label}: transformers fails ({:?}), we render {got:?}",
                case.error
            ),
            (None, Err(e)) => {
                let msg = e.to_string();
                if case.error_type.as_deref() == Some("TemplateError") {
                    let want = case.error.as_deref().unwrap();
                    assert!(
                        msg.contains(want),
                        "{label}: want the template's message {want:?}, got {msg:?}"
                    );
                }
                errors += 1;
            }
        }
    }
    // Eight templates x eleven conversations x two, of which Mistral refuses a system and a tool
    // role, and Gemma 3 a tool role (its roles must alternate).
    assert_eq!((texts, errors), (168, 8));
}

#[test]
fn qwen_inserts_its_default_system_prompt() {
    let r = load();
    let conv = r
        .conversations
        .iter()
        .find(|c| c.name == "no_system")
        .unwrap();
    let text = template("qwen2.5-instruct")
        .render(
            &conv.messages,
            &context(&r, "qwen2.5-instruct", conv, false),
        )
        .unwrap();
    assert!(text.starts_with(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    ));
}

#[test]
fn response_spans_in_real_templates() {
    // For every template and conversation, the span found by rendering is the final message as
    // the template prints it: unchanged for ChatML and Mistral, `trim`med by Llama 3 and Gemma 3,
    // stripped of leading newlines by Qwen3.
    let r = load();
    for name in r.special_tokens.keys() {
        let t = template(name);
        let markers: Vec<String> = ["<|im_end|>", "<|eot_id|>", "</s>", "<end_of_turn>"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for conv in &r.conversations {
            let ctx = context(&r, name, conv, false);
            let found = find_response(&conv.messages, &markers, |m| t.render(m, &ctx));
            let loc = match (name.as_str(), conv.name.as_str(), found) {
                // Mistral refuses system and tool messages, Gemma 3 tool messages; that is the
                // template's own error.
                (n, c, Err(e))
                    if n.starts_with("mistral") || (n, c) == ("gemma-3-it", "tool_role") =>
                {
                    assert!(
                        e.to_string().contains("raised an exception"),
                        "{name}/{}: {e:#}",
                        conv.name
                    );
                    continue;
                }
                // Qwen3 moves a final answer's <think> block into its header: the text before
                // the answer depends on the answer, and the span is refused, not guessed.
                ("qwen3", "thinking", Err(e)) => {
                    assert!(e.to_string().contains("depends on the content"), "{e:#}");
                    continue;
                }
                (_, _, Ok(loc)) => loc,
                (_, _, Err(e)) => panic!("{name}/{}: {e:#}", conv.name),
            };
            let content = &conv.messages.last().unwrap().content;
            let want = match name.as_str() {
                n if n.starts_with("llama") || n.starts_with("gemma") => content.trim(),
                "qwen3" => content.trim_start_matches('\n'),
                _ => content.as_str(),
            };
            assert_eq!(loc.content_text(), want, "{name}/{}", conv.name);
            let eot = &loc.text[loc.end_of_turn.clone().unwrap()];
            let want_eot = match name.as_str() {
                n if n.starts_with("llama") => "<|eot_id|>",
                n if n.starts_with("mistral") => "</s>",
                n if n.starts_with("gemma") => "<end_of_turn>",
                _ => "<|im_end|>",
            };
            assert_eq!(eot, want_eot, "{name}/{}", conv.name);
            // For all but Qwen3 (which adds an empty <think> block to the final answer), the
            // prompt is what the template renders for the conversation without the answer, with
            // a generation prompt.
            if name != "qwen3" {
                let prompt_ctx = context(&r, name, conv, true);
                let prompt = t
                    .render(&conv.messages[..conv.messages.len() - 1], &prompt_ctx)
                    .unwrap();
                assert_eq!(loc.prompt_text(), prompt, "{name}/{}", conv.name);
            } else {
                assert!(loc
                    .prompt_text()
                    .ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
            }
        }
    }
}
