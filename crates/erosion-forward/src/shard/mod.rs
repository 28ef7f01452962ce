//! Work split over processes: shard `i` of `n` (`--shard i/n`, 0-based as Slurm numbers array
//! tasks) writes only its own folder, `OUT/shards/i-of-n`, and a merge reads them all. What a
//! shard holds is the command's business; naming, listing and the checks every merge makes
//! (one split, none missing) are here.

mod units;

pub use units::UnitRun;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShardIndex {
    pub index: usize,
    pub count: usize,
}

impl ShardIndex {
    /// `i/n` with 0 <= i < n.
    pub fn parse(s: &str) -> Result<Self> {
        let parsed = s
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if index < count => Ok(ShardIndex { index, count }),
            _ => bail!("`{s}` is not a shard I/N with 0 <= I < N (e.g. 0/3, 1/3, 2/3)"),
        }
    }

    /// The folder name `i-of-n`, or `None` for any other name.
    pub fn from_folder(name: &str) -> Option<Self> {
        let (i, n) = name.split_once("-of-")?;
        let (index, count) = (i.parse().ok()?, n.parse().ok()?);
        (index < count && format!("{index}-of-{count}") == name)
            .then_some(ShardIndex { index, count })
    }

    pub fn folder(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }

    /// This shard's folder under the output folder `out`.
    pub fn dir(&self, out: &Path) -> PathBuf {
        shards_dir(out).join(self.folder())
    }

    /// The part of `0..n` items this shard takes: contiguous, sizes differing by at most one.
    pub fn share(&self, n: usize) -> std::ops::Range<usize> {
        n * self.index / self.count..n * (self.index + 1) / self.count
    }
}

impl fmt::Display for ShardIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard {}", self.folder())
    }
}

/// A shard's JSON file (`what` names its kind in the error), or `None` when there is none yet
/// (the shard has not started, or not finished, depending on when the command writes it).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => {
            Ok(Some(serde_json::from_slice(&b).with_context(|| {
                format!("{} is not {what}", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The folder of the shards under an output folder.
pub fn shards_dir(out: &Path) -> PathBuf {
    out.join("shards")
}

/// The shard folders of one split, as a merge finds them.
pub struct Split {
    /// Each shard found and its folder, in order.
    pub shards: Vec<(ShardIndex, PathBuf)>,
    /// A problem for each shard of the split that is missing, with the command that makes it.
    pub missing: Vec<String>,
}

/// The shards under `out`'s shards folder (`rerun` is the command line that makes a missing
/// one, `{shard}` standing for `i/n`). Anything else in the folder, or folders of two splits,
/// is an error.
pub fn list_split(out: &Path, rerun: &str) -> Result<Split> {
    let dir = shards_dir(out);
    let read = std::fs::read_dir(&dir).with_context(|| {
        format!(
            "no shards to merge: cannot read {} (run with --shard I/N first)",
            dir.display()
        )
    })?;
    let mut found = Vec::new();
    for e in read {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        match ShardIndex::from_folder(&name) {
            Some(s) if e.path().is_dir() => found.push((s, e.path())),
            _ => bail!(
                "{} is not a shard folder (shards are named I-of-N); move it out of {}",
                e.path().display(),
                dir.display()
            ),
        }
    }
    found.sort();
    let Some(&(first, _)) = found.first() else {
        bail!(
            "no shards to merge in {} (run with --shard I/N first)",
            dir.display()
        );
    };
    if let Some((other, _)) = found.iter().find(|(s, _)| s.count != first.count) {
        bail!(
            "the shards under {} come from different splits ({} and {}); keep one split's folders",
            dir.display(),
            first.folder(),
            other.folder()
        );
    }
    let missing = (0..first.count)
        .map(|index| ShardIndex {
            index,
            count: first.count,
        })
        .filter(|s| !found.iter().any(|(f, _)| f == s))
        .map(|s| {
            let cmd = rerun.replace("{shard}", &format!("{}/{}", s.index, s.count));
            format!(
                "{s} is missing ({} does not exist): run `{cmd}`",
                s.dir(out).display()
            )
        })
        .collect();
    Ok(Split {
        shards: found,
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_parse_and_refuse() {
        let s = ShardIndex::parse("2/3").unwrap();
        assert_eq!((s.index, s.count), (2, 3));
        assert_eq!(s.folder(), "2-of-3");
        assert_eq!(ShardIndex::from_folder("2-of-3"), Some(s));
        for bad in ["3/3", "1", "-1/3", "a/b", "0/0", "1/"] {
            assert!(ShardIndex::parse(bad).is_err(), "{bad}");
        }
        for bad in ["3-of-3", "02-of-3", "x-of-3", "cache", "1-of-"] {
            assert_eq!(ShardIndex::from_folder(bad), None, "{bad}");
        }
    }

    #[test]
    fn shares_cover_everything_once() {
        for n in [0, 1, 5, 7, 100] {
            for count in 1..=6 {
                let parts: Vec<_> = (0..count)
                    .map(|index| ShardIndex { index, count }.share(n))
                    .collect();
                assert_eq!(parts.first().unwrap().start, 0);
                assert_eq!(parts.last().unwrap().end, n);
                assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
                assert!(parts.iter().all(|p| p.len() + 1 >= n / count));
            }
        }
    }
}
