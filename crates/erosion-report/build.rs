//! Records the git commit the tool is built from (for the provenance of every result).
//!
//! Sets `EROSION_GIT_COMMIT` when `git rev-parse HEAD` succeeds, or passes through an
//! `EROSION_GIT_COMMIT` from the environment (for builds from a source tarball). Without
//! git, nothing is set and the provenance says the commit is unknown.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=EROSION_GIT_COMMIT");
    if let Ok(c) = std::env::var("EROSION_GIT_COMMIT") {
        println!("cargo:rustc-env=EROSION_GIT_COMMIT={c}");
        return;
    }
    // Rebuild when HEAD moves: watch HEAD, the branch it names (or, before the first
    // commit, the folder the branch will appear in) and packed-refs. Only existing paths
    // are watched: cargo reruns the script on every build for a missing one.
    let watch = |p: PathBuf| {
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    };
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        watch(manifest.join(head));
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &branch]) {
            let p = manifest.join(p);
            match p.exists() {
                true => watch(p),
                false => {
                    if let Some(parent) = p.parent() {
                        watch(parent.to_path_buf());
                    }
                }
            }
        }
    }
    if let Some(p) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        watch(manifest.join(p));
    }
    if let Some(commit) = git(&["rev-parse", "HEAD"]) {
        println!("cargo:rustc-env=EROSION_GIT_COMMIT={commit}");
    }
}
