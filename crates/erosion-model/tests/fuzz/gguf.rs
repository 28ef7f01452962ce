//! GGUF files: mutations of the real SmolLM2 header (1.8 MB of metadata, its 49k-token
//! tokenizer) and of tiny complete files, and random bytes.

use crate::load_util::{write_tiny_gguf, GgufSpec};
use crate::refused;
use candle_core::{DType, Device};
use erosion_model::load::gguf_header::check_header;
use erosion_model::load::Checkpoint;
use erosion_testkit::fuzz::{self, Budget, Seeds};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// The header walk alone reads a few fields at a time: no more than a small buffer beyond
/// the names it keeps.
const HEADER_BUDGET: Budget = Budget {
    per_byte: 2,
    constant: 1 << 20,
    time: Duration::from_secs(2),
};

/// Opening a file: candle keeps every metadata array element as a 32-byte value and the
/// tokenizer's vocabulary and merges are rebuilt from them, about 40 bytes live per byte of
/// the real header; plus the weights of a tiny model.
const OPEN_BUDGET: Budget = Budget {
    per_byte: 64,
    constant: 16 << 20,
    time: Duration::from_secs(20),
};

/// The real header: everything before the tensor data of SmolLM2's GGUF.
fn real_header() -> (Vec<u8>, u64) {
    let path = erosion_testkit::smollm2_gguf();
    let summary = check_header(&path).expect("the real SmolLM2 GGUF passes the header walk");
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .unwrap()
        .take(summary.data_offset)
        .read_to_end(&mut bytes)
        .unwrap();
    (bytes, std::fs::metadata(&path).unwrap().len())
}

/// Writes `bytes` to `path`, then extends the file (sparse, zeros) to `len` bytes, so the
/// real header's tensors lie inside the file without copying 98 MB per case.
fn write_with_tail(path: &Path, bytes: &[u8], len: u64) {
    std::fs::write(path, bytes).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len.max(bytes.len() as u64)).unwrap();
}

#[test]
fn fuzz_gguf_header_walk() {
    let _serial = fuzz::serial();
    // The real header (its tensors in a sparse tail) and a tiny complete file; truncations
    // among the mutations cut them anywhere.
    let (header, len) = real_header();
    let tmp = tempfile::tempdir().unwrap();
    let tiny = tmp.path().join("tiny.gguf");
    write_tiny_gguf(&tiny, &GgufSpec::default());
    let seeds = vec![header, std::fs::read(&tiny).unwrap()];
    let path = tmp.path().join("case.gguf");
    fuzz::run(
        "gguf_header",
        300,
        HEADER_BUDGET,
        Seeds {
            files: seeds,
            head: 2048,
            binary: true,
        },
        |bytes| {
            // The tail only where the real header's tensors need it.
            let tail = if bytes.len() > 1 << 20 { len } else { 0 };
            write_with_tail(&path, bytes, tail);
            refused(check_header(&path)).map(|_| ())
        },
    );
}

#[test]
fn fuzz_gguf_real_header_open() {
    let _serial = fuzz::serial();
    let (header, len) = real_header();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("case.gguf");
    fuzz::run(
        "gguf_real_open",
        24,
        OPEN_BUDGET,
        Seeds {
            files: vec![header],
            head: 2048,
            binary: true,
        },
        |bytes| {
            write_with_tail(&path, bytes, len);
            // The header only: the weights are 98 MB of zeros here.
            refused(Checkpoint::open_path(&path)).map(|_| ())
        },
    );
}

#[test]
fn fuzz_gguf_tiny_open_and_load() {
    let _serial = fuzz::serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut seeds = Vec::new();
    for spec in [
        GgufSpec::default(),
        GgufSpec {
            arch: "qwen2".into(),
            tied: false,
            q8_embedding: true,
            ..GgufSpec::default()
        },
    ] {
        let p = tmp.path().join("seed.gguf");
        write_tiny_gguf(&p, &spec);
        seeds.push(std::fs::read(&p).unwrap());
    }
    let path = tmp.path().join("case.gguf");
    fuzz::run(
        "gguf_tiny_open",
        150,
        OPEN_BUDGET,
        Seeds {
            files: seeds,
            head: 4096,
            binary: true,
        },
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            let ckpt = refused(Checkpoint::open_path(&path))?;
            refused(ckpt.load_model(DType::F32, &Device::Cpu)).map(|_| ())
        },
    );
}
