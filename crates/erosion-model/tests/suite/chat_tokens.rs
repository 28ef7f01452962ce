//! Response spans in tokens, and reading a tokenizer folder, against transformers.
//!
//! tests/fixtures/chat/tiny-chatml is a small byte-level BPE tokenizer (GPT-2 pre-tokenizer, as
//! SmolLM2's) with SmolLM2's chat template, made by scripts/reference/make_chat_fixtures.py.
//! tiny_tokens.json holds the ids transformers' `apply_chat_template(tokenize=True)` gives and the
//! response's token range found independently from each token's bytes.

use crate::chat_util;

use std::path::Path;

use chat_util::{check_cases, fixtures, opts, tiny, tiny_cases};
use erosion_model::chat::{BoundaryPolicy, ChatFormat, Message, PlainFormat, SpanOptions};
use erosion_model::tokenizer::ModelTokenizer;

#[test]
fn tiny_tokenizer_matches_transformers_ids_and_spans() {
    check_cases(&tiny(), &tiny_cases().cases);
}

#[test]
fn trimmed_offsets_do_not_hide_straddling_tokens() {
    // The same tokenizer with a post-processor that trims spaces off offsets (as GPT-2's and the
    // GGUF-derived SmolLM2 tokenizer do): spans must not change.
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("tiny-chatml");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("tokenizer.json")).unwrap())
            .unwrap();
    json["post_processor"]["trim_offsets"] = true.into();
    std::fs::write(dir.path().join("tokenizer.json"), json.to_string()).unwrap();
    std::fs::copy(
        src.join("tokenizer_config.json"),
        dir.path().join("tokenizer_config.json"),
    )
    .unwrap();
    let tok = ModelTokenizer::from_folder(dir.path()).unwrap();
    // The tokenizer's own offsets are trimmed for some case (else this test proves nothing).
    let cases = tiny_cases().cases;
    let trimmed = cases.iter().any(|c| {
        let plain = tiny().tokenizer.encode(c.text.as_str(), false).unwrap();
        let trim = tok.tokenizer.encode(c.text.as_str(), false).unwrap();
        plain.get_offsets() != trim.get_offsets()
    });
    assert!(trimmed);
    check_cases(&tok, &cases);
}

#[test]
fn plain_format_spans_match_the_reference() {
    let tok = tiny();
    let plain = tiny_cases().plain;
    assert!(plain.iter().any(|c| c.straddles) && plain.iter().any(|c| !c.straddles));
    for case in plain {
        let format = ChatFormat::Plain(PlainFormat {
            user_prefix: case.user_prefix.clone(),
            assistant_prefix: case.assistant_prefix.clone(),
            ..PlainFormat::default()
        });
        let inc = tok
            .encode_chat(
                &case.messages,
                &format,
                &opts(BoundaryPolicy::Include, false),
            )
            .unwrap();
        assert_eq!(inc.location.text, case.text);
        assert_eq!(inc.ids, case.ids);
        assert_eq!(
            inc.response,
            case.response_include[0]..case.response_include[1],
            "{:?}",
            case.text
        );
        assert_eq!(inc.end_of_turn, None);
        let exc = tok
            .encode_chat(
                &case.messages,
                &format,
                &opts(BoundaryPolicy::Exclude, false),
            )
            .unwrap();
        assert_eq!(
            exc.response,
            case.response_exclude[0]..case.response_exclude[1],
            "{:?}",
            case.text
        );
        let err = tok.encode_chat(&case.messages, &format, &opts(BoundaryPolicy::Error, true));
        assert_eq!(err.is_err(), case.straddles);
        if case.straddles {
            // The error names the token: " Paris" holds the prompt's space and the answer's word.
            let msg = err.unwrap_err().to_string();
            assert!(msg.contains("\" Paris\""), "{msg}");
        }
    }
}

#[test]
fn tokenizer_config_is_read_like_transformers() {
    let tok = tiny();
    // bos_token is an AddedToken object in this config, eos/pad plain strings.
    assert_eq!(tok.bos_token.as_deref(), Some("<|im_start|>"));
    assert_eq!(tok.eos_token.as_deref(), Some("<|im_end|>"));
    assert_eq!(tok.pad_token.as_deref(), Some("<|im_end|>"));
    let template =
        std::fs::read_to_string(fixtures().join("templates/smollm2-135m-instruct.jinja")).unwrap();
    assert_eq!(tok.chat_template.as_ref().unwrap().source(), template);
    let markers = tok.end_of_turn_markers();
    assert_eq!(markers, ["<|endoftext|>", "<|im_end|>", "<|im_start|>"]);
}

/// A copy of the tiny tokenizer folder with `config` as tokenizer_config.json and extra files.
fn folder_with(config: serde_json::Value, extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("tiny-chatml/tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn render(dir: &Path) -> String {
    let tok = ModelTokenizer::from_folder(dir).unwrap();
    tok.apply_chat_template(&[Message::user("q")], false)
        .unwrap()
}

#[test]
fn chat_template_sources_and_their_precedence() {
    // A list of named templates: transformers uses the one named "default".
    let named = serde_json::json!({"chat_template": [
        {"name": "tool_use", "template": "TOOLS"},
        {"name": "default", "template": "DEFAULT {{ messages[0].content }}"}
    ]});
    assert_eq!(render(folder_with(named, &[]).path()), "DEFAULT q");
    // chat_template.jinja wins over the config (transformers >= 4.43 saves it there).
    let both = folder_with(
        serde_json::json!({"chat_template": "CONFIG"}),
        &[("chat_template.jinja", "JINJA {{ bos_token }}\n")],
    );
    let dir = both.path();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"chat_template": "CONFIG", "bos_token": null, "eos_token": {"content": "<|im_end|>"}}"#,
    )
    .unwrap();
    assert_eq!(render(dir), "JINJA "); // bos is null: prints nothing; one trailing newline is dropped, as jinja2 does
                                       // chat_template.json (the processor format) is read when there is no .jinja file.
    let json_only = folder_with(
        serde_json::json!({}),
        &[("chat_template.json", r#"{"chat_template": "JSON"}"#)],
    );
    assert_eq!(render(json_only.path()), "JSON");
    // special_tokens_map.json fills tokens the config does not name.
    let map = folder_with(
        serde_json::json!({"chat_template": "{{ eos_token }}"}),
        &[("special_tokens_map.json", r#"{"eos_token": "<|im_end|>"}"#)],
    );
    assert_eq!(render(map.path()), "<|im_end|>");
    // No template at all: a clear error that points to the plain format.
    let none = folder_with(serde_json::json!({}), &[]);
    let tok = ModelTokenizer::from_folder(none.path()).unwrap();
    let err = tok
        .apply_chat_template(&[Message::user("q")], false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no chat template") && err.contains("plain format"),
        "{err}"
    );
}

#[test]
fn bad_tokenizer_folders_are_clear_errors() {
    let empty = tempfile::tempdir().unwrap();
    let err = ModelTokenizer::from_folder(empty.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no tokenizer.json") && err.contains(&empty.path().display().to_string()),
        "{err}"
    );

    let named = serde_json::json!({"chat_template": [{"name": "a", "template": "A"}, {"name": "b", "template": "B"}]});
    let err = format!(
        "{:#}",
        ModelTokenizer::from_folder(folder_with(named, &[]).path()).unwrap_err()
    );
    assert!(
        err.contains("none is named `default`") && err.contains("\"a\""),
        "{err}"
    );

    let dir = folder_with(serde_json::json!({}), &[]);
    std::fs::write(dir.path().join("tokenizer_config.json"), "{ not json").unwrap();
    let err = format!("{:#}", ModelTokenizer::from_folder(dir.path()).unwrap_err());
    assert!(
        err.contains("tokenizer_config.json is not valid JSON"),
        "{err}"
    );

    let bad_token = folder_with(serde_json::json!({"eos_token": 7}), &[]);
    let err = format!(
        "{:#}",
        ModelTokenizer::from_folder(bad_token.path()).unwrap_err()
    );
    assert!(err.contains("`eos_token`"), "{err}");

    let broken = folder_with(serde_json::json!({"chat_template": "{% if %}"}), &[]);
    let err = format!(
        "{:#}",
        ModelTokenizer::from_folder(broken.path()).unwrap_err()
    );
    let file = broken.path().join("tokenizer_config.json");
    assert!(
        err.contains(&format!(
            "chat template from {} does not compile",
            file.display()
        )),
        "{err}"
    );

    let dir = folder_with(serde_json::json!({}), &[]);
    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    let err = format!("{:#}", ModelTokenizer::from_folder(dir.path()).unwrap_err());
    assert!(
        err.contains("cannot load") && err.contains("tokenizer.json"),
        "{err}"
    );
}

#[test]
fn a_response_that_is_not_last_or_missing_is_an_error() {
    let tok = tiny();
    let err = tok
        .encode_chat(
            &[Message::user("q")],
            &ChatFormat::Template,
            &SpanOptions::default(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("final 'assistant' message"), "{err}");
}
