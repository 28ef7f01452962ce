//! What a run wrote into its output folder, in `<out>/.erosion-manifest.json`: which run it
//! was and the top-level files and folders it created. Forcing another run into the folder
//! removes exactly those (a LoRA run's stale `adapter/` included) and never a file the user
//! keeps there; and a folder whose trainer state was deleted still says which run it held.
//!
//! What the run created is what appeared in the folder while it held the folder's lock
//! ([`crate::out_lock`]): entries there before it started are not its own, unless an
//! earlier session of the same run listed them.

use crate::out_lock::LOCK_FILE;
use anyhow::{bail, Context, Result};
use erosion_model::atomic::write_bytes_atomic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// The manifest's name in an output folder.
pub const MANIFEST_FILE: &str = ".erosion-manifest.json";

/// One run's record of its folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Identifies the run (a digest of its options, data and start).
    pub run: String,
    /// The run in words, for messages.
    pub describe: String,
    /// Names of the folder's entries the run created, sorted.
    pub files: Vec<String>,
}

impl Manifest {
    /// The manifest in `out`, if any.
    pub fn read(out: &Path) -> Result<Option<Manifest>> {
        let path = out.join(MANIFEST_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let m = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not erosion's manifest; remove it to treat the folder's files as \
                     yours (no run will remove them)",
                path.display()
            )
        })?;
        Ok(Some(m))
    }

    /// The listed entries still in `out`.
    pub fn existing(&self, out: &Path) -> Vec<String> {
        self.files
            .iter()
            .filter(|f| entry(out, f).map_or(true, |p| p.symlink_metadata().is_ok()))
            .cloned()
            .collect()
    }

    /// Removes the listed entries from `out`, then the manifest; nothing else.
    pub fn remove_files(&self, out: &Path) -> Result<()> {
        // Every name is checked before any is removed: a bad one must not leave the folder
        // half cleared.
        let paths = (self.files.iter())
            .map(|name| entry(out, name))
            .collect::<Result<Vec<_>>>()?;
        for path in paths {
            let Ok(meta) = path.symlink_metadata() else {
                continue;
            };
            let removed = if meta.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.with_context(|| format!("cannot remove {}", path.display()))?;
        }
        let path = out.join(MANIFEST_FILE);
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))
    }
}

/// `out/name` for a listed name, which must be one plain entry: a manifest edited by hand
/// must not make `force` remove anything outside the folder, nor the lock of the run that
/// forces.
fn entry(out: &Path, name: &str) -> Result<PathBuf> {
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(n)), None) if n != LOCK_FILE && n != MANIFEST_FILE => {
            Ok(out.join(name))
        }
        _ => bail!(
            "{}: `{name}` is not an entry of the folder",
            out.join(MANIFEST_FILE).display()
        ),
    }
}

/// Keeps a run's manifest as it writes: what it creates is listed at each [`Tracker::record`].
#[derive(Debug)]
pub struct Tracker {
    out: PathBuf,
    run: String,
    describe: String,
    /// Entries that are not the run's: there before it, and not listed by an earlier session.
    others: BTreeSet<String>,
}

impl Tracker {
    /// Starts tracking `out` for the run `run`; what `earlier` (the folder's manifest, if this
    /// run's) lists stays the run's. Writes the manifest at once, so the folder names its run.
    pub fn start(
        out: &Path,
        run: String,
        describe: String,
        earlier: Option<&Manifest>,
    ) -> Result<Self> {
        let ours: BTreeSet<&str> = earlier
            .filter(|m| m.run == run)
            .map(|m| m.files.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let others = entries(out)?
            .into_iter()
            .filter(|e| !ours.contains(e.as_str()))
            .collect();
        let t = Tracker {
            out: out.to_path_buf(),
            run,
            describe,
            others,
        };
        t.record()?;
        Ok(t)
    }

    /// The output folder.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Rewrites the manifest with every entry the run has created so far.
    pub fn record(&self) -> Result<()> {
        let files = entries(&self.out)?
            .into_iter()
            .filter(|e| !self.others.contains(e))
            .collect();
        let m = Manifest {
            run: self.run.clone(),
            describe: self.describe.clone(),
            files,
        };
        let text = serde_json::to_string_pretty(&m).context("serialising the manifest")?;
        write_bytes_atomic(&self.out.join(MANIFEST_FILE), text.as_bytes())
    }
}

/// Names in `out`, without the lock and the manifest (and the atomic writer's temporary
/// files, which are never left for long); none when `out` does not exist.
fn entries(out: &Path) -> Result<Vec<String>> {
    let Ok(dir) = std::fs::read_dir(out) else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for e in dir {
        let e = e.with_context(|| format!("cannot list {}", out.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name != LOCK_FILE && name != MANIFEST_FILE {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Removes everything in `out` but its lock (a cache the caller owns, trained anew).
pub fn clear_folder(out: &Path) -> Result<()> {
    for e in std::fs::read_dir(out).with_context(|| format!("cannot list {}", out.display()))? {
        let path = e?.path();
        if path.file_name().is_some_and(|n| n == LOCK_FILE) {
            continue;
        }
        let removed = if path.symlink_metadata()?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_lists_what_it_created_and_removing_them_keeps_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        let t = Tracker::start(out, "r1".into(), "run one".into(), None).unwrap();
        std::fs::create_dir_all(out.join("adapter")).unwrap();
        std::fs::write(out.join("adapter/a.safetensors"), "x").unwrap();
        std::fs::write(out.join("config.json"), "{}").unwrap();
        t.record().unwrap();
        let m = Manifest::read(out).unwrap().unwrap();
        assert_eq!(m.files, ["adapter", "config.json"]);

        // A later session of the same run keeps them as its own.
        let again = Tracker::start(out, "r1".into(), "run one".into(), Some(&m)).unwrap();
        again.record().unwrap();
        assert_eq!(Manifest::read(out).unwrap().unwrap().files, m.files);

        m.remove_files(out).unwrap();
        let left: Vec<_> = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["notes.txt"]);
    }

    #[test]
    fn a_manifest_cannot_point_outside_its_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(tmp.path().join("precious"), "keep").unwrap();
        let m = Manifest {
            run: "r".into(),
            describe: "r".into(),
            files: vec!["../precious".into()],
        };
        let err = format!("{:#}", m.remove_files(&out).unwrap_err());
        assert!(err.contains("../precious"), "{err}");
        assert!(tmp.path().join("precious").is_file());

        // Nothing is removed when any name is bad, wherever it is in the list; the lock
        // and absolute paths are refused too.
        std::fs::write(out.join("results.json"), "{}").unwrap();
        std::fs::write(out.join(LOCK_FILE), "held").unwrap();
        for bad in [LOCK_FILE, "/etc/hostname", "a/../../precious", ".", ""] {
            let m = Manifest {
                run: "r".into(),
                describe: "r".into(),
                files: vec!["results.json".into(), bad.into()],
            };
            let err = format!("{:#}", m.remove_files(&out).unwrap_err());
            assert!(
                err.contains("is not an entry of the folder"),
                "{bad}: {err}"
            );
            assert!(out.join("results.json").is_file(), "{bad}");
            assert!(out.join(LOCK_FILE).is_file(), "{bad}");
            // Listed as left, so that the refusal names it.
            assert!(m.existing(&out).contains(&bad.to_string()), "{bad}");
        }
    }

    /// A symlink the run wrote is removed, never what it points to.
    #[cfg(unix)]
    #[test]
    fn a_listed_symlink_is_removed_not_its_target() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let keep = tmp.path().join("keep");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::write(keep.join("data"), "x").unwrap();
        std::os::unix::fs::symlink(&keep, out.join("link")).unwrap();
        std::fs::write(out.join(MANIFEST_FILE), "{}").unwrap();
        let m = Manifest {
            run: "r".into(),
            describe: "r".into(),
            files: vec!["link".into()],
        };
        m.remove_files(&out).unwrap();
        assert!(out.join("link").symlink_metadata().is_err());
        assert!(keep.join("data").is_file());
    }
}
