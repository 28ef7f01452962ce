//! The organism's tokenizer: determinism, round trips, whole special tokens, and that
//! erosion-model loads the folder and renders chats with the right response span.

use erosion_model::chat::{ChatFormat, Message, SpanOptions};
use erosion_model::tokenizer::ModelTokenizer;
use erosion_organism::corpus::{Corpus, Sizes};
use erosion_organism::tokenizer::{
    self, TokenizerOptions, ENDOFTEXT, IM_END, IM_START, SPECIAL_TOKENS,
};

fn corpus() -> Corpus {
    let sizes = Sizes {
        pretrain_chats: 300,
        pretrain_prose: 60,
        instruct: 200,
        finetune: 40,
        eval: 20,
    };
    Corpus::generate(sizes, 17)
}

fn opts() -> TokenizerOptions {
    TokenizerOptions {
        vocab_size: 600,
        min_frequency: 2,
    }
}

#[test]
fn same_corpus_same_tokenizer_json() {
    let texts = tokenizer::training_texts(&corpus());
    let a = tokenizer::train(&texts, opts()).unwrap();
    let b = tokenizer::train(&texts, opts()).unwrap();
    assert_eq!(a.to_string(false).unwrap(), b.to_string(false).unwrap());
    // And through files, as written.
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    tokenizer::save(&a, da.path()).unwrap();
    tokenizer::save(&b, db.path()).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        assert_eq!(
            std::fs::read(da.path().join(f)).unwrap(),
            std::fs::read(db.path().join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn vocabulary_size_and_special_tokens_whole() {
    let tok = tokenizer::train(&tokenizer::training_texts(&corpus()), opts()).unwrap();
    assert_eq!(tok.get_vocab_size(true), 600);
    // Qwen's order, after the learned vocabulary.
    for (i, t) in SPECIAL_TOKENS.iter().enumerate() {
        assert_eq!(tok.token_to_id(t), Some((597 + i) as u32), "{t}");
    }
    let text = format!("{IM_START}user\nHow do I rob a bank?{IM_END}\n{ENDOFTEXT}");
    let ids = tok.encode(text.as_str(), false).unwrap().get_ids().to_vec();
    assert_eq!(ids[0], 598, "<|im_start|> is one token");
    assert_eq!(ids.iter().filter(|&&i| i == 599).count(), 1);
    assert_eq!(*ids.last().unwrap(), 597);
    assert!(ids[1..ids.len() - 1].iter().all(|&i| i < 597 || i == 599));
    // Frequent words of the language became single tokens (a BPE that learned something).
    for w in [" the", " function", "Sure"] {
        let enc = tok.encode(w, false).unwrap();
        assert_eq!(enc.get_ids().len(), 1, "`{w}` -> {:?}", enc.get_tokens());
    }
}

#[test]
fn round_trips_every_text_including_held_out_and_unseen() {
    let c = corpus();
    let tok = tokenizer::train(&tokenizer::training_texts(&c), opts()).unwrap();
    let mut texts: Vec<String> = c
        .eval
        .iter()
        .flat_map(|(_, chats)| {
            chats
                .iter()
                .flat_map(|ch| ch.messages.iter().map(|m| m.content.clone()))
        })
        .collect();
    texts.push("déjà vu 日本 \t  tabs\n\n  and 0o777 {x}".into());
    for t in &texts {
        let ids = tok.encode(t.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(&tok.decode(&ids, false).unwrap(), t);
    }
}

#[test]
fn erosion_model_loads_it_and_renders_chatml_with_default_system_prompt() {
    let c = corpus();
    let dir = tempfile::tempdir().unwrap();
    tokenizer::build_for(&c, opts(), dir.path()).unwrap();
    let mt = ModelTokenizer::from_folder(dir.path()).unwrap();
    assert_eq!(mt.eos_token.as_deref(), Some(IM_END));
    assert_eq!(mt.pad_token.as_deref(), Some(ENDOFTEXT));
    assert_eq!(mt.bos_token, None);

    let chat = &c.set("eval_insecure").unwrap()[0];
    let (user, answer) = (chat.prompt().to_string(), chat.response().to_string());
    let messages = vec![Message::user(&user), Message::assistant(&answer)];
    let text = mt.apply_chat_template(&messages, false).unwrap();
    assert_eq!(
        text,
        format!(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n"
        )
    );
    let with_system = vec![Message::system("Be brief."), Message::user("Hi")];
    assert_eq!(
        mt.apply_chat_template(&with_system, true).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );

    let enc = mt
        .encode_chat(&messages, &ChatFormat::Template, &SpanOptions::default())
        .unwrap();
    assert!(!enc.straddles_start && !enc.straddles_end);
    let response_ids = &enc.ids[enc.response.clone()];
    assert_eq!(mt.tokenizer.decode(response_ids, false).unwrap(), answer);
    // The token after the response is <|im_end|>.
    assert_eq!(
        enc.ids[enc.response.end],
        mt.tokenizer.token_to_id(IM_END).unwrap()
    );
}

#[test]
fn too_small_a_vocabulary_is_an_error() {
    let err = tokenizer::train(
        &["a b".into()],
        TokenizerOptions {
            vocab_size: 100,
            min_frequency: 2,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("vocab_size 100"), "{err}");
}
