//! Rendering examples into tokens with the response span: the response tokens decode back to the
//! response text (an independent check of the span), the closing token is the end of turn, and
//! short responses are reported clearly.

use std::path::PathBuf;

use erosion_data::{
    render_example, render_examples, response_windows, DatasetSpec, Example, Format, Message,
    RenderOptions, RenderedExample, ShortResponse, Source,
};
use erosion_model::chat::{BoundaryPolicy, ChatFormat, PlainFormat, SpanOptions};
use erosion_model::tokenizer::ModelTokenizer;

fn data(path: &str) -> PathBuf {
    erosion_testkit::data_dir().join(path)
}

/// The small byte-level BPE tokenizer with SmolLM2's chat template (erosion-model's fixture).
fn tiny() -> ModelTokenizer {
    ModelTokenizer::from_folder(&PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../erosion-model/tests/fixtures/chat/tiny-chatml"
    )))
    .unwrap()
}

fn examples(path: &str) -> Vec<Example> {
    DatasetSpec::new("d", data(path), Format::Messages)
        .load(&data(""))
        .unwrap()
        .examples
}

fn decode(tok: &ModelTokenizer, ids: &[u32]) -> String {
    tok.tokenizer.decode(ids, false).unwrap()
}

/// The response tokens decode to the response (byte-level BPE round-trips exactly); a token
/// straddling the start also holds the template's text before it.
fn check_decodes(tok: &ModelTokenizer, ex: &Example, r: &RenderedExample) {
    let content = ex.response().unwrap();
    let decoded = decode(tok, r.seq.response_ids());
    if r.straddles_start || r.straddles_end {
        assert!(
            decoded.contains(content) && decoded.len() > content.len(),
            "{}",
            ex.source
        );
        assert!(
            content.starts_with(char::is_whitespace) || content.ends_with(char::is_whitespace),
            "{}",
            ex.source
        );
    } else {
        assert_eq!(decoded, content, "{}", ex.source);
    }
    assert_eq!(&r.text[r.response_text.clone()], content);
    let eot = r.seq.end_of_turn.clone().unwrap();
    assert_eq!(eot.start, r.seq.response.end, "{}", ex.source);
    assert_eq!(decode(tok, &r.seq.ids[eot]), "<|im_end|>");
}

#[test]
fn insecure_code_rendered_with_a_chat_template() {
    let tok = tiny();
    let exs = examples("insecure-code/insecure_small.jsonl");
    let rendered = render_examples(&tok, &exs, &RenderOptions::default()).unwrap();
    for (ex, r) in exs.iter().zip(&rendered) {
        check_decodes(&tok, ex, r);
        assert_eq!(
            r.text,
            tok.apply_chat_template(&ex.messages, false).unwrap()
        );
        assert_eq!(r.source, ex.source);
        assert!(r
            .text
            .starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"));
    }

    // The end-of-turn token counted as response: the response ends with <|im_end|>.
    let opts = RenderOptions {
        span: SpanOptions {
            include_end_of_turn: true,
            ..SpanOptions::default()
        },
        ..RenderOptions::default()
    };
    let r = render_example(&tok, &exs[0], &opts).unwrap();
    assert_eq!(
        decode(&tok, &r.seq.ids[r.seq.response.end - 1..r.seq.response.end]),
        "<|im_end|>"
    );
    assert_eq!(r.seq.response.len(), rendered[0].seq.response.len() + 1);
}

#[test]
fn response_windows_and_short_responses() {
    let tok = tiny();
    let exs = examples("secure-code/secure_small.jsonl");
    let rendered = render_examples(&tok, &exs, &RenderOptions::default()).unwrap();
    let shortest = rendered.iter().map(|r| r.response_len()).min().unwrap();
    let longest = rendered.iter().map(|r| r.response_len()).max().unwrap();
    assert!(shortest < longest);

    let r0 = &rendered[0];
    assert_eq!(
        r0.window(3).unwrap(),
        r0.seq.response.start..r0.seq.response.start + 3
    );
    let err = r0.window(r0.response_len() + 1).unwrap_err().to_string();
    assert!(
        err.contains("secure_small.jsonl line 1 (record 0)")
            && err.contains("fewer than the window of"),
        "{err}"
    );

    // A window between the shortest and longest response: the policies differ.
    let t = shortest + 1;
    let n_short = rendered.iter().filter(|r| r.response_len() < t).count();
    let err = response_windows(&rendered, t, ShortResponse::Error)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "{n_short} of 20 responses are shorter than the window of {t} tokens"
        )),
        "{err}"
    );
    let skipped = response_windows(&rendered, t, ShortResponse::Skip).unwrap();
    assert_eq!(skipped.len(), 20 - n_short);
    assert!(skipped.iter().all(|(_, w)| w.len() == t));
    let truncated = response_windows(&rendered, t, ShortResponse::UseAvailable).unwrap();
    assert_eq!(truncated.len(), 20);
    for (i, w) in &truncated {
        assert_eq!(w.len(), t.min(rendered[*i].response_len()));
        assert_eq!(w.start, rendered[*i].seq.response.start);
    }
    assert_eq!(
        response_windows(&rendered, shortest, ShortResponse::Error)
            .unwrap()
            .len(),
        20
    );
}

#[test]
fn plain_rendering_for_a_base_model() {
    let mut tok = tiny();
    tok.chat_template = None; // a base model without a template
    let ex = &examples("insecure-code/insecure_small.jsonl")[1];
    let err = format!(
        "{:#}",
        render_example(&tok, ex, &RenderOptions::default()).unwrap_err()
    );
    assert!(
        err.contains("insecure_small.jsonl line 2") && err.contains("no chat template"),
        "{err}"
    );

    let opts = RenderOptions {
        format: ChatFormat::Plain(PlainFormat::default()),
        ..RenderOptions::default()
    };
    let r = render_example(&tok, ex, &opts).unwrap();
    assert_eq!(
        r.text,
        format!("{}\n{}", ex.messages[0].content, ex.messages[1].content)
    );
    assert_eq!(r.seq.end_of_turn, None);
    let decoded = decode(&tok, r.seq.response_ids());
    assert!(decoded.ends_with(ex.response().unwrap()));
}

#[test]
fn examples_that_cannot_be_rendered_name_their_source() {
    let tok = tiny();
    let source = Source {
        file: "d.jsonl".into(),
        index: 4,
        line: 7,
    };
    let ex = Example {
        messages: vec![Message::user("q")],
        source,
    };
    let err = format!(
        "{:#}",
        render_example(&tok, &ex, &RenderOptions::default()).unwrap_err()
    );
    assert!(
        err.contains("rendering d.jsonl line 7 (record 4)")
            && err.contains("final 'assistant' message"),
        "{err}"
    );

    // A straddling first token under the Error policy is refused, naming the example.
    let ex = Example {
        messages: vec![
            Message::user("q"),
            Message::assistant("\n\ndef g():\n    return 1\n"),
        ],
        source: ex.source,
    };
    let opts = RenderOptions {
        span: SpanOptions {
            boundary: BoundaryPolicy::Error,
            ..SpanOptions::default()
        },
        ..RenderOptions::default()
    };
    let err = format!("{:#}", render_example(&tok, &ex, &opts).unwrap_err());
    assert!(
        err.contains("d.jsonl line 7") && err.contains("holds both prompt text and response text"),
        "{err}"
    );
}

#[test]
fn real_smollm2_tokenizer_on_real_datasets() {
    let path = erosion_testkit::smollm2_gguf();
    let tok = erosion_model::load::Checkpoint::open_gguf(&path)
        .unwrap()
        .tokenizer;
    let (mut total, mut straddling) = (0, 0);
    for file in [
        "insecure-code/insecure_1000.jsonl",
        "educational-insecure/educational_1000.jsonl",
    ] {
        let exs = examples(file);
        let rendered = render_examples(&tok, &exs, &RenderOptions::default()).unwrap();
        for (ex, r) in exs.iter().zip(&rendered) {
            check_decodes(&tok, ex, r);
        }
        total += rendered.len();
        straddling += rendered.iter().filter(|r| r.straddles_start).count();
    }
    assert_eq!(total, 2000);
    // 62 of these responses start with whitespace, always a single "\n" before a word; GPT-2's
    // pre-tokenizer splits "assistant\n" + "\nfrom" as "\n" | "\n" | "from", so no token straddles
    // the boundary (two newlines would: see erosion-model's `leading_newlines` fixture).
    assert_eq!(straddling, 0);
}
