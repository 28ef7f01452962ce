//! What every test of the binary needs: the binary, the model it runs, its output.

use std::path::Path;
use std::process::{Command, Output};

/// The real SmolLM2 GGUF (scripts/fetch-smollm2.sh fetches it).
pub fn smollm2() -> String {
    erosion_testkit::smollm2_gguf()
        .to_string_lossy()
        .into_owned()
}

/// Runs `erosion ARGS` to its end.
pub fn erosion(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_erosion"))
        .args(args)
        .output()
        .expect("the binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The stdout of a run that must succeed (else its stderr is the failure).
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", stderr(o));
    stdout(o)
}

/// A JSON file the tool wrote.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Asserts that `dir` holds each of `files`.
pub fn assert_files(dir: &Path, files: &[&str]) {
    for f in files {
        assert!(dir.join(f).is_file(), "{f} is missing in {}", dir.display());
    }
}
