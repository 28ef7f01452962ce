//! Hostile GGUF files (issue 17): each is built here and must be refused with a message naming
//! the file and what is wrong, before candle's reader can panic on it or the file's numbers
//! decide how much memory loading takes.

use crate::load_util;

use candle_core::quantized::gguf_file::Value;
use erosion_model::load::gguf_header::MAX_METADATA_ELEMENTS;
use erosion_model::load::Checkpoint;
use load_util::*;
use std::path::PathBuf;

fn err_of<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

fn tiny(spec: &GgufSpec) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_gguf(&path, spec);
    (dir, path)
}

fn with_metadata(key: &str, value: Value) -> GgufSpec {
    GgufSpec {
        metadata: vec![(key.into(), value)],
        ..Default::default()
    }
}

fn open(path: &std::path::Path) -> String {
    err_of(Checkpoint::open(path.to_str().unwrap()))
}

#[test]
fn zero_alignment_is_refused_not_a_panic() {
    // candle 0.11 divides by general.alignment: 0 panicked before the check.
    let (_d, path) = tiny(&with_metadata("general.alignment", Value::U32(0)));
    let msg = open(&path);
    assert!(
        msg.contains("tiny.gguf")
            && msg.contains("general.alignment = 0")
            && msg.contains("power of two"),
        "{msg}"
    );
    let (_d, path) = tiny(&with_metadata("general.alignment", Value::U32(48)));
    assert!(open(&path).contains("general.alignment = 48"));
    // A u64 alignment candle would silently replace with 32.
    let (_d, path) = tiny(&with_metadata("general.alignment", Value::U64(32)));
    assert!(open(&path).contains("general.alignment has value type 10"));
    // The alignment the writer used, stated explicitly, loads.
    let (_d, path) = tiny(&with_metadata("general.alignment", Value::U32(32)));
    Checkpoint::open(path.to_str().unwrap()).unwrap();
}

#[test]
fn huge_metadata_array_is_refused_before_allocating() {
    // One byte per element on disk, ~32-64 bytes each in candle's reader: a file of a few MB
    // would cost hundreds of MB. Refused by the element cap, naming the key.
    let count = MAX_METADATA_ELEMENTS + 1;
    let payload = vec![1u8; count as usize];
    let bytes = raw_gguf(
        0,
        &[(
            "tokenizer.ggml.token_type",
            9,
            raw_array(0, count, &payload),
        )],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.gguf");
    std::fs::write(&path, bytes).unwrap();
    let msg = open(&path);
    assert!(
        msg.contains("huge.gguf")
            && msg.contains("tokenizer.ggml.token_type")
            && msg.contains(&format!("{count} elements")),
        "{msg}"
    );
}

#[test]
fn token_types_that_do_not_match_the_tokens_are_refused() {
    let types: Vec<Value> = (0..VOCAB + 3).map(|_| Value::I32(1)).collect();
    let (_d, path) = tiny(&with_metadata(
        "tokenizer.ggml.token_type",
        Value::Array(types),
    ));
    let msg = open(&path);
    assert!(
        msg.contains(&format!(
            "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {VOCAB}",
            VOCAB + 3
        )),
        "{msg}"
    );
}

#[test]
fn counts_and_lengths_past_the_end_of_the_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claims.gguf");
    // 90M i32 token types in a file of a few bytes.
    let bytes = raw_gguf(
        0,
        &[(
            "tokenizer.ggml.token_type",
            9,
            raw_array(5, 90_000_000, &[0; 16]),
        )],
    );
    std::fs::write(&path, bytes).unwrap();
    let msg = open(&path);
    assert!(
        msg.contains("claims 90000000 elements") && msg.contains("360000000 bytes"),
        "{msg}"
    );
    // A string, a key and the tensor count each claiming more than the file holds.
    let mut long_string = u64::MAX.to_le_bytes().to_vec();
    long_string.extend(b"abc");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            raw_gguf(0, &[("general.name", 8, long_string)]),
            "needs 18446744073709551615 bytes",
        ),
        (raw_gguf(1 << 40, &[]), "declares 1099511627776 tensors"),
    ];
    for (bytes, want) in cases {
        std::fs::write(&path, bytes).unwrap();
        let msg = open(&path);
        assert!(msg.contains(want) && msg.contains("claims.gguf"), "{msg}");
    }
}

#[test]
fn tensor_data_past_the_end_of_the_file_is_named() {
    let (_d, path) = tiny(&GgufSpec::default());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let msg = open(&path);
    assert!(
        msg.contains("truncated or corrupt") && msg.contains("tensor "),
        "{msg}"
    );
}

#[test]
fn block_count_smaller_than_the_weights_is_refused() {
    let (_d, path) = tiny(&with_metadata("llama.block_count", Value::U32(1)));
    let msg = open(&path);
    assert!(
        msg.contains("the weights hold 2 layers")
            && msg.contains("num_hidden_layers = 1")
            && msg.contains("block_count"),
        "{msg}"
    );
    assert!(msg.contains("blk.1.attn_q.weight"), "extras listed: {msg}");
    // More layers than the weights: the missing ones are listed.
    let (_d, path) = tiny(&with_metadata("llama.block_count", Value::U32(3)));
    let msg = open(&path);
    assert!(
        msg.contains("missing tensors") && msg.contains("model.layers.2."),
        "{msg}"
    );
}

#[test]
fn wrong_shapes_from_metadata_are_named() {
    let (_d, path) = tiny(&with_metadata(
        "llama.feed_forward_length",
        Value::U32(FF as u32 * 2),
    ));
    let msg = open(&path);
    assert!(
        msg.contains("blk.0.ffn_up.weight")
            && msg.contains(&format!("[{FF}, {HIDDEN}]"))
            && msg.contains(&format!("[{}, {HIDDEN}]", FF * 2)),
        "{msg}"
    );
}

#[test]
fn control_characters_from_the_file_are_escaped() {
    let spec = GgufSpec {
        arch: "\x1b[31mevil\x07".into(),
        ..Default::default()
    };
    let (_d, path) = tiny(&spec);
    let msg = open(&path);
    assert!(!msg.contains('\x1b') && !msg.contains('\x07'), "{msg:?}");
    assert!(msg.contains("\\u{1b}[31mevil\\u{7}"), "{msg}");
    let (_d, path) = tiny(&with_metadata(
        "tokenizer.ggml.pre",
        Value::String("\x1b]0;pwned\x07".into()),
    ));
    let msg = open(&path);
    assert!(
        !msg.contains('\x1b') && msg.contains("\\u{1b}]0;pwned"),
        "{msg}"
    );
}
