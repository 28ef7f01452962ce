//! Test fixtures: the tiny random-weight models of erosion-model's tests (2 layers, d 32,
//! vocabulary 128) with a character-level ChatML tokenizer that fits their vocabulary, and the
//! organism's own tokenizer trained on a small corpus.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use erosion_eval::EvalModel;
use erosion_model::load::Checkpoint;
use erosion_organism::corpus::{Corpus, Sizes};
use serde_json::json;

/// The vocabulary: ids 0-2 the ChatML specials, then '\n' and printable ASCII, then filler
/// characters up to 128 ids, so every id a tiny model can produce decodes to a character.
pub fn char_vocab() -> Vec<String> {
    let mut v: Vec<String> = erosion_organism::tokenizer::SPECIAL_TOKENS
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.push("\n".into());
    v.extend((0x20u8..0x7f).map(|b| (b as char).to_string()));
    let mut c = 0xc0u32;
    while v.len() < 128 {
        v.push(char::from_u32(c).unwrap().to_string());
        c += 1;
    }
    v
}

/// tokenizer.json of a character-level tokenizer: BPE without merges and without a
/// pre-tokenizer (every character is a token), the ChatML specials as added tokens.
pub fn char_tokenizer_json() -> serde_json::Value {
    let vocab = char_vocab();
    let added: Vec<_> = (0..3)
        .map(|i| {
            json!({"id": i, "content": vocab[i], "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let map: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<|endoftext|>",
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": map, "merges": []}
    })
}

/// A model folder in `dir`: the tiny `arch` fixture's config and weights and the character
/// tokenizer with the organism's chat template.
pub fn tiny_folder(arch: &str, dir: &Path) -> PathBuf {
    let out = erosion_testkit::tiny_fixture_folder(arch, dir);
    std::fs::write(
        out.join("tokenizer.json"),
        serde_json::to_string(&char_tokenizer_json()).unwrap(),
    )
    .unwrap();
    let config = json!({
        "chat_template": erosion_organism::tokenizer::CHAT_TEMPLATE,
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": null,
        "tokenizer_class": "PreTrainedTokenizerFast"
    });
    std::fs::write(out.join("tokenizer_config.json"), config.to_string()).unwrap();
    out
}

/// The tiny `arch` model as an [`EvalModel`] named `arch`.
pub fn tiny_model(arch: &str, dir: &Path) -> EvalModel {
    let folder = tiny_folder(arch, dir);
    EvalModel::open(
        folder.to_str().unwrap(),
        Some(arch),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap()
}

/// The tiny qwen2 checkpoint, opened.
pub fn tiny_checkpoint(dir: &Path) -> Checkpoint {
    Checkpoint::open_folder(&tiny_folder("qwen2", dir)).unwrap()
}

/// A small organism corpus (fast to generate; eval sets of `eval` rows).
pub fn small_corpus(eval: usize) -> Corpus {
    Corpus::generate(
        Sizes {
            pretrain_chats: 300,
            pretrain_prose: 50,
            instruct: 200,
            finetune: 20,
            eval,
        },
        3,
    )
}
