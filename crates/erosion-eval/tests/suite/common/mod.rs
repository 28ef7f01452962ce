//! Test fixtures: the tiny random-weight models of erosion-model's tests (2 layers, d 32,
//! vocabulary 128) with a character-level ChatML tokenizer that fits their vocabulary and
//! Qwen2.5's chat template. Shared by the tests of erosion-causal and erosion-organism.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use erosion_model::load::Checkpoint;
use erosion_model::LoadedModel;
use serde_json::json;

/// ChatML's special tokens, ids 0, 1, 2.
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// ChatML as Qwen2.5's template writes it, without tools: a system turn (the given one, or
/// "You are a helpful assistant."), every other message as `<|im_start|>role\ncontent<|im_end|>\n`,
/// and `<|im_start|>assistant\n` when a generation prompt is asked for.
pub const CHAT_TEMPLATE: &str = "{%- if messages[0]['role'] == 'system' %}\
{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\
{%- else %}\
{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\
{%- endif %}\
{%- for message in messages %}\
{%- if not (message['role'] == 'system' and loop.first) %}\
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\
{%- endif %}\
{%- endfor %}\
{%- if add_generation_prompt %}\
{{- '<|im_start|>assistant\\n' }}\
{%- endif %}";

/// The vocabulary: ids 0-2 the ChatML specials, then '\n' and printable ASCII, then filler
/// characters up to 128 ids, so every id a tiny model can produce decodes to a character.
pub fn char_vocab() -> Vec<String> {
    let mut v: Vec<String> = SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
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
/// tokenizer with Qwen2.5's chat template.
pub fn tiny_folder(arch: &str, dir: &Path) -> PathBuf {
    let out = erosion_testkit::tiny_fixture_folder(arch, dir);
    std::fs::write(
        out.join("tokenizer.json"),
        serde_json::to_string(&char_tokenizer_json()).unwrap(),
    )
    .unwrap();
    let config = json!({
        "chat_template": CHAT_TEMPLATE,
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": null,
        "tokenizer_class": "PreTrainedTokenizerFast"
    });
    std::fs::write(out.join("tokenizer_config.json"), config.to_string()).unwrap();
    out
}

/// The tiny `arch` model as an [`LoadedModel`] named `arch`.
pub fn tiny_model(arch: &str, dir: &Path) -> LoadedModel {
    let folder = tiny_folder(arch, dir);
    LoadedModel::open(
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
