//! Fuzz target of the study file parser (issue 17): the repository's studies/*.toml mutated,
//! and random bytes, through `StudySpec::from_toml` (parsing and the checks between tables).
//! In its own test binary because the counting allocator is process-wide. Properties and
//! budgets: `erosion_testkit::fuzz`; the long run: README, "Bad input and interrupted runs".

use erosion_study::spec::StudySpec;
use erosion_testkit::fuzz::{self, Budget, Seeds};
use std::time::Duration;

#[global_allocator]
static ALLOC: erosion_testkit::fuzz::Counting = erosion_testkit::fuzz::Counting;

/// toml's document tree and the typed spec: tens of bytes per byte of a small file, plus the
/// spec's defaults.
const PARSE_BUDGET: Budget = Budget {
    per_byte: 64,
    constant: 1 << 20,
    time: Duration::from_secs(5),
};

#[test]
fn fuzz_study_toml() {
    let _serial = fuzz::serial();
    let dir = erosion_testkit::workspace_root().join("studies");
    let mut files: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    files.sort();
    assert!(files.len() >= 2, "the studies in {}", dir.display());
    let seeds = Seeds {
        files,
        head: usize::MAX,
        binary: false,
    };
    fuzz::run("study_toml", 400, PARSE_BUDGET, seeds, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        StudySpec::from_toml(&text)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    });
}
