//! The real SmolLM2-135M-Instruct tokenizer and chat template, rebuilt from the GGUF by
//! `Checkpoint::open_gguf`, against transformers' reading of the same file
//! (tests/fixtures/chat/smollm2_tokens.json, made by scripts/reference/make_chat_fixtures.py):
//! the same rendered text, the same token ids, and the same response span under each boundary
//! policy.
//!
//! The GGUF is not in the repository: scripts/fetch-smollm2.sh fetches it (CI runs it first).
//! Without it this test fails, on purpose, saying so.

use crate::chat_util;

use chat_util::{check_cases, fixtures, TokenCase};
use erosion_model::load::Checkpoint;
use serde::Deserialize;

#[derive(Deserialize)]
struct SmolTokens {
    cases: Vec<TokenCase>,
}

#[test]
fn smollm2_gguf_tokenizer_matches_transformers_ids_and_spans() {
    let path = erosion_testkit::smollm2_gguf();
    let ckpt = Checkpoint::open_gguf(&path).unwrap();
    let fixture: SmolTokens = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("smollm2_tokens.json")).unwrap(),
    )
    .unwrap();
    // The template is the one stored in the GGUF, which the fixture's templates/ copy was read from.
    let template =
        std::fs::read_to_string(fixtures().join("templates/smollm2-135m-instruct.jinja")).unwrap();
    assert_eq!(
        ckpt.tokenizer.chat_template.as_ref().unwrap().source(),
        template
    );
    check_cases(&ckpt.tokenizer, &fixture.cases);
}
