//! The organism's corpus as training sequences: pre-training documents with loss on every
//! token, chats with loss on the assistant's response.

use anyhow::{anyhow, Context, Result};
use erosion_data::Sequence;
use erosion_model::chat::{ChatFormat, Message, SpanOptions};
use erosion_model::tokenizer::ModelTokenizer;
use erosion_organism::corpus::{Chat, Corpus};
use erosion_organism::tokenizer::ENDOFTEXT;
use erosion_train::TrainExample;

/// The organism's messages as the model crate's.
pub fn messages(chat: &[erosion_organism::world::Message]) -> Vec<Message> {
    chat.iter()
        .map(|m| Message::new(&m.role, &m.content))
        .collect()
}

/// Pre-training: every conversation rendered with the chat template (the base model learns
/// ChatML from them, as real base models see chat transcripts), and every prose paragraph
/// followed by `<|endoftext|>`; loss on all tokens.
pub fn pretraining(corpus: &Corpus, tok: &ModelTokenizer) -> Result<Vec<TrainExample>> {
    let eot = tok
        .tokenizer
        .token_to_id(ENDOFTEXT)
        .ok_or_else(|| anyhow!("the tokenizer has no {ENDOFTEXT}"))?;
    let mut out = Vec::with_capacity(corpus.pretrain_chats.len() + corpus.pretrain_prose.len());
    for (i, chat) in corpus.pretrain_chats.iter().enumerate() {
        let ids = tok
            .encode_chat_prompt(&messages(&chat.messages), false)
            .with_context(|| format!("pre-training chat {i}"))?;
        out.push(TrainExample::all_tokens(ids));
    }
    for (i, text) in corpus.pretrain_prose.iter().enumerate() {
        let enc = tok
            .tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| anyhow!("pre-training paragraph {i}: {e}"))?;
        let mut ids = enc.get_ids().to_vec();
        ids.push(eot);
        out.push(TrainExample::all_tokens(ids));
    }
    Ok(out)
}

/// Each chat through the chat template, its last assistant message marked.
pub fn sequences(chats: &[Chat], tok: &ModelTokenizer) -> Result<Vec<Sequence>> {
    let span = SpanOptions::default();
    chats
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let t = tok
                .encode_chat(&messages(&c.messages), &ChatFormat::Template, &span)
                .with_context(|| format!("chat {i}"))?;
            Ok(Sequence::from(t))
        })
        .collect()
}

/// Supervised chats: loss on the last assistant message and its `<|im_end|>`.
pub fn supervised(chats: &[Chat], tok: &ModelTokenizer) -> Result<Vec<TrainExample>> {
    Ok(sequences(chats, tok)?
        .into_iter()
        .map(TrainExample::response)
        .collect())
}
