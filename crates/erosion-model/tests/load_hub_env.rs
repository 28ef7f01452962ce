//! `Checkpoint::open` finds the cache through the environment: HF_HUB_CACHE first, else
//! HF_HOME/hub. One test in its own binary, as it sets process-wide variables.

#[path = "suite/load_util/mod.rs"]
mod load_util;

use erosion_model::load::{Checkpoint, Source};
use load_util::*;

#[test]
fn open_reads_hf_hub_cache_then_hf_home() {
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("hub");
    let snap = cache.join("models--org--tiny/snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    write_tiny_gguf(&snap.join("tiny.gguf"), &GgufSpec::default());
    std::fs::create_dir_all(cache.join("models--org--tiny/refs")).unwrap();
    std::fs::write(cache.join("models--org--tiny/refs/main"), commit).unwrap();

    // SAFETY (edition 2021: safe fn): this binary has a single test, so no other thread reads
    // the environment meanwhile.
    std::env::remove_var("HF_HOME");
    std::env::set_var("HF_HUB_CACHE", &cache);
    let ckpt = Checkpoint::open("org/tiny").unwrap();
    assert!(matches!(&ckpt.source, Source::Hub { commit: c, .. } if c == commit));

    std::env::remove_var("HF_HUB_CACHE");
    std::env::set_var("HF_HOME", home.path());
    let ckpt = Checkpoint::open("org/tiny@main").unwrap();
    assert!(matches!(&ckpt.source, Source::Hub { snapshot, .. } if snapshot == &snap));

    // HF_HUB_CACHE wins over HF_HOME.
    let empty = tempfile::tempdir().unwrap();
    std::env::set_var("HF_HUB_CACHE", empty.path());
    let msg = format!("{:#}", Checkpoint::open("org/tiny").unwrap_err());
    assert!(
        msg.contains(&empty.path().display().to_string())
            && msg.contains("huggingface-cli download org/tiny"),
        "{msg}"
    );
}
