//! Shared by the chat token tests: the fixture cases and the checks run on them.
#![allow(dead_code)]

use std::path::PathBuf;

use erosion_model::chat::{BoundaryPolicy, ChatFormat, Message, SpanOptions};
use erosion_model::tokenizer::ModelTokenizer;
use serde::Deserialize;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat")
}

#[derive(Deserialize)]
pub struct TokenCase {
    pub name: String,
    pub messages: Vec<Message>,
    pub text: String,
    pub ids: Vec<u32>,
    pub response_text: String,
    pub response_include: [usize; 2],
    pub response_exclude: [usize; 2],
    pub straddles: bool,
    pub end_of_turn: [usize; 2],
}

#[derive(Deserialize)]
pub struct PlainCase {
    pub user_prefix: String,
    pub assistant_prefix: String,
    pub messages: Vec<Message>,
    pub text: String,
    pub ids: Vec<u32>,
    pub response_include: [usize; 2],
    pub response_exclude: [usize; 2],
    pub straddles: bool,
}

#[derive(Deserialize)]
pub struct TinyTokens {
    pub cases: Vec<TokenCase>,
    pub plain: Vec<PlainCase>,
}

pub fn tiny_cases() -> TinyTokens {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("tiny_tokens.json")).unwrap())
        .unwrap()
}

pub fn tiny() -> ModelTokenizer {
    ModelTokenizer::from_folder(&fixtures().join("tiny-chatml")).unwrap()
}

pub fn opts(boundary: BoundaryPolicy, include_end_of_turn: bool) -> SpanOptions {
    SpanOptions {
        include_end_of_turn,
        boundary,
    }
}

/// Checks every fixture case against `tok` under the three boundary policies.
pub fn check_cases(tok: &ModelTokenizer, cases: &[TokenCase]) {
    let mut straddling = 0;
    for case in cases {
        let name = &case.name;
        let chat = tok
            .encode_chat(
                &case.messages,
                &ChatFormat::Template,
                &opts(BoundaryPolicy::Include, false),
            )
            .unwrap();
        assert_eq!(chat.location.text, case.text, "{name}: text");
        assert_eq!(chat.ids, case.ids, "{name}: ids");
        assert_eq!(
            chat.location.content_text(),
            case.response_text,
            "{name}: response text"
        );
        assert_eq!(
            chat.response,
            case.response_include[0]..case.response_include[1],
            "{name}: include"
        );
        assert_eq!(
            chat.end_of_turn,
            Some(case.end_of_turn[0]..case.end_of_turn[1]),
            "{name}: end of turn"
        );
        assert_eq!(
            chat.straddles_start || chat.straddles_end,
            case.straddles,
            "{name}: straddles"
        );
        assert_eq!(
            tok.encode_chat_prompt(&case.messages, false).unwrap(),
            case.ids,
            "{name}: encode_chat_prompt"
        );

        let excl = tok
            .encode_chat(
                &case.messages,
                &ChatFormat::Template,
                &opts(BoundaryPolicy::Exclude, false),
            )
            .unwrap();
        assert_eq!(
            excl.response,
            case.response_exclude[0]..case.response_exclude[1],
            "{name}: exclude"
        );

        let strict = tok.encode_chat(
            &case.messages,
            &ChatFormat::Template,
            &opts(BoundaryPolicy::Error, false),
        );
        assert_eq!(strict.is_err(), case.straddles, "{name}: error policy");
        if let Err(e) = strict {
            assert!(
                e.to_string()
                    .contains("holds both prompt text and response text"),
                "{name}: {e}"
            );
            straddling += 1;
        }

        // With the end-of-turn token, the response runs one token further (`<|im_end|>`).
        let eot = tok
            .encode_chat(
                &case.messages,
                &ChatFormat::Template,
                &opts(BoundaryPolicy::Include, true),
            )
            .unwrap();
        assert_eq!(
            eot.response,
            case.response_include[0]..case.end_of_turn[1],
            "{name}: with end of turn"
        );
        assert_eq!(
            tok.tokenizer
                .id_to_token(eot.ids[eot.response.end - 1])
                .as_deref(),
            Some("<|im_end|>")
        );
    }
    assert!(
        straddling > 0,
        "the fixture must hold a response whose first token straddles the boundary"
    );
}
