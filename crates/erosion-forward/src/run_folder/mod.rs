//! A run's output folder: locked while it runs ([`crate::out_lock`]), and kept by one kind of
//! run at a time. The folder's manifest ([`manifest`]) names the run that wrote there and the
//! entries it created; a run of another kind (another task, other models; for training also
//! LoRA where it was full, other data) is refused, or with `--force` that run's files are
//! removed first — only those, never a file the user keeps there. The same run again is
//! not another run: it resumes or rewrites its own files.
//!
//! A run that another run of the same thread calls into the same folder (the demo runs a
//! study into its own folder) shares the outer run's lock and manifest: only the outermost
//! [`RunFolder`] checks and records.

pub mod manifest;

use crate::notice::Notify;
use crate::out_lock::OutLock;
use anyhow::{bail, Context, Result};
use erosion_model::load::adapter::{self, OpenOptions};
use manifest::{clear_folder, Manifest, Tracker, MANIFEST_FILE};
use sha2::{Digest, Sha256};
use std::path::Path;

/// What a run does with an output folder that holds another run's files. The same run
/// resumes or is reused whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtherRun {
    /// An error naming that run: nothing is lost.
    #[default]
    Refuse,
    /// Remove the files that run's manifest lists (what erosion wrote there) and keep the
    /// rest (`--force`); a folder without a manifest is refused.
    Force,
    /// The folder is a cache the caller owns (the demo's organism): empty it and start anew.
    Replace,
}

impl OtherRun {
    /// `Force` when `force`, else `Refuse`: what a command's `--force` flag means.
    pub fn forced(force: bool) -> Self {
        if force {
            Self::Force
        } else {
            Self::Refuse
        }
    }

    /// `out` holds `what`, of another run: an error (which tells to pass `--force` to
    /// `command`), or its files removed as this says (a notice).
    pub fn settle(
        self,
        out: &Path,
        what: &str,
        command: &str,
        notices: &mut dyn Notify,
    ) -> Result<()> {
        match self {
            Self::Refuse => bail!(
                "{} already holds {what}; choose another output folder, or force it (`erosion {command} --force`), which removes only the files erosion wrote there",
                out.display()
            ),
            Self::Force => {
                let m = Manifest::read(out)?.with_context(|| {
                    format!(
                        "{} holds {what}, but no list of the files erosion wrote there ({MANIFEST_FILE}; folders written before it existed have none), so forcing would not know what is yours; remove that run's files yourself or choose another output folder",
                        out.display()
                    )
                })?;
                notices.notice(&format!(
                    "{}: removing {what}: {}",
                    out.display(),
                    m.existing(out).join(", ")
                ));
                m.remove_files(out)
            }
            Self::Replace => {
                notices.notice(&format!("{}: replacing {what}", out.display()));
                clear_folder(out)
            }
        }
    }
}

/// Which run writes into a folder: its task (`eval`, `steer`, ...) and what makes two runs of
/// the task the same (the models it reads, by name and checkpoint).
#[derive(Debug, Clone)]
pub struct RunIdentity {
    /// The command that runs it, as `erosion <task>`.
    pub task: String,
    /// The run in words, for messages: `eval of base=out/base, ft=out/ft`.
    pub describe: String,
    id: String,
}

impl RunIdentity {
    /// A run of `task` over `parts` (each `name=checkpoint` or another fact that makes it
    /// this run); their order does not matter.
    pub fn new(task: &str, parts: &[String]) -> Self {
        let mut parts = parts.to_vec();
        parts.sort();
        let text = format!("{task}\n{}", parts.join("\n"));
        RunIdentity {
            task: task.to_string(),
            describe: format!("a `{task}` run of {}", parts.join(", ")),
            id: format!("{:x}", Sha256::digest(text.as_bytes())),
        }
    }
}

/// `name=checkpoint`, a part of a [`RunIdentity`]: each path the spec names (the base and
/// the adapter of `BASE+ADAPTER`) made absolute where `base` holds it (relative paths are
/// relative to `base`), so that the same model named from another folder makes the same run.
pub fn model_part(name: &str, spec: &str, base: &Path) -> String {
    let opts = OpenOptions {
        relative_to: Some(base.to_path_buf()),
        ..OpenOptions::default()
    };
    let parts: Vec<String> = (adapter::parts(spec, &opts).iter())
        .map(|p| {
            base.join(p)
                .canonicalize()
                .map_or_else(|_| p.clone(), |c| c.to_string_lossy().into_owned())
        })
        .collect();
    format!("{name}={}", parts.join("+"))
}

/// An output folder claimed by one run: locked, and its manifest kept. Dropping it records
/// what the run created (also when it fails, so forcing later removes a partial run's
/// files) and releases the lock.
#[derive(Debug)]
pub struct RunFolder {
    tracker: Option<Tracker>,
    _lock: OutLock,
}

impl RunFolder {
    /// Locks `out` for `run` and checks what it holds: another run's files are refused or
    /// removed as `other` says; the same run's are kept as its own.
    pub fn claim(
        out: &Path,
        run: &RunIdentity,
        other: OtherRun,
        notices: &mut dyn Notify,
    ) -> Result<RunFolder> {
        let lock = OutLock::acquire(out, &run.task, notices)?;
        if !lock.is_outermost() {
            return Ok(RunFolder {
                tracker: None,
                _lock: lock,
            });
        }
        let mut earlier = Manifest::read(out)?;
        if let Some(m) = earlier.as_ref().filter(|m| m.run != run.id) {
            let left = m.existing(out);
            if !left.is_empty() {
                let what = format!("files of {} ({})", m.describe, left.join(", "));
                other.settle(out, &what, &run.task, notices)?;
            }
            earlier = None;
        }
        let tracker = Tracker::start(out, run.id.clone(), run.describe.clone(), earlier.as_ref())?;
        Ok(RunFolder {
            tracker: Some(tracker),
            _lock: lock,
        })
    }
}

impl Drop for RunFolder {
    fn drop(&mut self) {
        if let Some(t) = &self.tracker {
            // Best effort: a folder that became unwritable keeps its last manifest.
            let _ = t.record();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::Silent;

    fn eval_of(model: &str) -> RunIdentity {
        RunIdentity::new("eval", &[format!("ft={model}")])
    }

    /// The folder's entries but a held lock.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != crate::out_lock::LOCK_FILE)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_same_run_again_keeps_its_files_and_another_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        {
            let _f = RunFolder::claim(&out, &eval_of("a"), OtherRun::Refuse, &mut Silent).unwrap();
            std::fs::write(out.join("results.json"), "{}").unwrap();
        }
        // Rerunning it is the same run.
        drop(RunFolder::claim(&out, &eval_of("a"), OtherRun::Refuse, &mut Silent).unwrap());
        let err = RunFolder::claim(&out, &eval_of("b"), OtherRun::Refuse, &mut Silent)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a `eval` run of ft=a"), "{err}");
        assert!(err.contains("results.json"), "{err}");
        assert!(err.contains("erosion eval --force"), "{err}");
        assert_eq!(names(&out), [MANIFEST_FILE, "results.json"]);
    }

    #[test]
    fn force_removes_only_what_the_other_run_wrote() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        let train = RunIdentity::new("train", &["start=m".to_string()]);
        {
            let _f = RunFolder::claim(&out, &train, OtherRun::Refuse, &mut Silent).unwrap();
            std::fs::create_dir_all(out.join("adapter")).unwrap();
            std::fs::write(out.join("adapter/a.safetensors"), "x").unwrap();
        }
        let f = RunFolder::claim(&out, &eval_of("a"), OtherRun::Force, &mut Silent).unwrap();
        assert_eq!(names(&out), [MANIFEST_FILE, "notes.txt"]);
        std::fs::write(out.join("results.json"), "{}").unwrap();
        drop(f);
        // The eval's manifest lists its own file only: the user's stays the user's.
        let m = Manifest::read(&out).unwrap().unwrap();
        assert_eq!(m.files, ["results.json"]);
    }

    #[test]
    fn a_run_nested_in_another_on_its_folder_checks_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let outer = RunIdentity::new("demo", &[]);
        let _demo = RunFolder::claim(&out, &outer, OtherRun::Refuse, &mut Silent).unwrap();
        std::fs::write(out.join("organism"), "x").unwrap();
        let study = RunIdentity::new("study", &["base=b".to_string()]);
        let inner = RunFolder::claim(&out, &study, OtherRun::Refuse, &mut Silent).unwrap();
        drop(inner);
        assert_eq!(
            Manifest::read(&out).unwrap().unwrap().describe,
            "a `demo` run of "
        );
    }

    #[test]
    fn model_parts_name_a_folder_the_same_from_anywhere() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("models/ft")).unwrap();
        let from_root = model_part("ft", "models/ft", tmp.path());
        let from_models = model_part("ft", "ft", &tmp.path().join("models"));
        assert_eq!(from_root, from_models);
        assert_eq!(
            model_part("b", "Qwen/Qwen2.5-0.5B", tmp.path()),
            "b=Qwen/Qwen2.5-0.5B"
        );
    }
}
