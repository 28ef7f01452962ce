//! Hub ids resolved offline in a Hugging Face cache laid out here the way huggingface_hub
//! writes it: `models--{owner}--{name}/refs/{branch}` -> commit,
//! `models--{owner}--{name}/snapshots/{commit}/` -> files.

use crate::load_util;

use candle_core::DType;
use erosion_model::load::{Checkpoint, SaveOptions, Source};
use load_util::*;
use std::path::PathBuf;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const OLD_COMMIT: &str = "fedcba9876543210fedcba9876543210fedcba98";

fn err_of<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

/// A cache holding `org/tiny-gguf` (a snapshot with one GGUF) at `main` -> COMMIT, plus an
/// older snapshot reachable only by its hash.
fn gguf_cache() -> (tempfile::TempDir, PathBuf) {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--org--tiny-gguf");
    for commit in [COMMIT, OLD_COMMIT] {
        let snap = repo.join("snapshots").join(commit);
        std::fs::create_dir_all(&snap).unwrap();
        write_tiny_gguf(&snap.join("tiny.Q8_0.gguf"), &GgufSpec::default());
    }
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    // huggingface_hub writes the hash without a newline; be lenient with one.
    std::fs::write(repo.join("refs").join("main"), format!("{COMMIT}\n")).unwrap();
    let root = cache.path().to_path_buf();
    (cache, root)
}

#[test]
fn hub_id_resolves_to_cached_snapshot() {
    let (_c, cache) = gguf_cache();
    let ckpt = Checkpoint::open_with_cache("org/tiny-gguf", &cache).unwrap();
    let snapshot = cache.join("models--org--tiny-gguf/snapshots").join(COMMIT);
    assert_eq!(
        ckpt.source,
        Source::Hub {
            id: "org/tiny-gguf".into(),
            revision: "main".into(),
            commit: COMMIT.into(),
            snapshot: snapshot.clone()
        }
    );
    assert_eq!(ckpt.weight_files, vec![snapshot.join("tiny.Q8_0.gguf")]);
    assert_eq!(ckpt.config.hidden_size, HIDDEN);
}

#[test]
fn a_ref_that_is_not_a_commit_hash_is_refused() {
    let (_c, cache) = gguf_cache();
    let main = cache.join("models--org--tiny-gguf/refs/main");
    // A snapshot reachable through the path, so only the check stops it.
    std::fs::write(&main, format!("../snapshots/{COMMIT}")).unwrap();
    let msg = err_of(Checkpoint::open_with_cache("org/tiny-gguf", &cache));
    assert!(msg.contains("not a commit hash"), "{msg}");
    std::fs::write(&main, "\x1b[2J").unwrap();
    let msg = err_of(Checkpoint::open_with_cache("org/tiny-gguf", &cache));
    assert!(
        msg.contains("`\\u{1b}[2J`, not a commit hash") && !msg.contains('\x1b'),
        "{msg}"
    );
}

#[test]
fn commit_hash_revision_names_its_snapshot() {
    let (_c, cache) = gguf_cache();
    let ckpt = Checkpoint::open_with_cache(&format!("org/tiny-gguf@{OLD_COMMIT}"), &cache).unwrap();
    match &ckpt.source {
        Source::Hub {
            commit, revision, ..
        } => assert_eq!(
            (commit.as_str(), revision.as_str()),
            (OLD_COMMIT, OLD_COMMIT)
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn uncached_model_says_where_and_how_to_download() {
    let (_c, cache) = gguf_cache();
    let msg = err_of(Checkpoint::open_with_cache(
        "Qwen/Qwen2.5-0.5B-Instruct",
        &cache,
    ));
    assert!(msg.contains(&cache.display().to_string()), "{msg}");
    assert!(msg.contains("models--Qwen--Qwen2.5-0.5B-Instruct"), "{msg}");
    assert!(
        msg.contains("huggingface-cli download Qwen/Qwen2.5-0.5B-Instruct"),
        "{msg}"
    );
}

#[test]
fn uncached_revision_lists_snapshots() {
    let (_c, cache) = gguf_cache();
    let msg = err_of(Checkpoint::open_with_cache("org/tiny-gguf@v2", &cache));
    assert!(
        msg.contains("revision `v2`") && msg.contains(COMMIT) && msg.contains(OLD_COMMIT),
        "{msg}"
    );
    assert!(
        msg.contains("huggingface-cli download org/tiny-gguf --revision v2"),
        "{msg}"
    );
}

#[test]
fn ref_to_missing_snapshot_is_reported() {
    let (_c, cache) = gguf_cache();
    let repo = cache.join("models--org--tiny-gguf");
    std::fs::write(
        repo.join("refs").join("dev"),
        "1111111111111111111111111111111111111111",
    )
    .unwrap();
    let msg = err_of(Checkpoint::open_with_cache("org/tiny-gguf@dev", &cache));
    assert!(
        msg.contains("1111111111111111111111111111111111111111") && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn folder_snapshot_opens_as_folder() {
    let cache = tempfile::tempdir().unwrap();
    let snap = cache
        .path()
        .join("models--org--tiny/snapshots")
        .join(COMMIT);
    let gguf = cache.path().join("src.gguf");
    write_tiny_gguf(&gguf, &GgufSpec::default());
    Checkpoint::open_path(&gguf)
        .unwrap()
        .save_hf(&snap, DType::F32, &SaveOptions::default())
        .unwrap();
    let refs = cache.path().join("models--org--tiny/refs");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::write(refs.join("main"), COMMIT).unwrap();
    let ckpt = Checkpoint::open_with_cache("org/tiny", cache.path()).unwrap();
    assert_eq!(ckpt.weight_files, vec![snap.join("model.safetensors")]);
    assert!(matches!(&ckpt.source, Source::Hub { snapshot, .. } if snapshot == &snap));
    // A file missing from the snapshot is reported with the snapshot named.
    std::fs::remove_file(snap.join("tokenizer.json")).unwrap();
    let msg = err_of(Checkpoint::open_with_cache("org/tiny", cache.path()));
    assert!(
        msg.contains("org/tiny@main") && msg.contains("tokenizer.json"),
        "{msg}"
    );
}
