//! One run per output folder: an advisory lock that every library run writing into a folder
//! its caller named holds for as long as it runs (training, a study, an evaluation, the demo,
//! steering, drift), so that two runs into one `--out` cannot overwrite each other's files.
//!
//! It lives in this crate because erosion-forward is the lowest crate that every crate running
//! into a folder shares (train, eval, causal, study, demo), and it already carries the
//! [`Notify`] through which a taken-over lock is reported; erosion-model, below it, writes
//! files but runs nothing.
//!
//! `<dir>/.erosion.lock` names its holder in JSON ([`Holder`]: pid, task, command line, start,
//! host) and is `flock`ed (through fs4) while the run lasts; the holder removes it as it ends.
//! A second run finds the lock taken and fails with an error naming the holder. A lock file
//! whose lock is free was left by a run that was killed: it is taken over, with a notice.
//!
//! Within one process the lock belongs to a thread: a run that calls another library run on
//! the same folder (the demo calls the study; `erosion eval` locks its folder before
//! evaluating, and the writer locks it again) shares it, and the last one out releases it;
//! a run on another thread is refused like one in another process.
//!
//! On NFS, `flock` is forwarded to the server's lock manager (NFSv4, or NFSv3 with lockd
//! running): there it excludes runs on other machines too. On a mount without locking
//! (`nolock`) it excludes only runs on the same machine, and a lock left by a run on another
//! machine that still runs looks stale and is taken over (its host is in the notice).

use crate::notice::Notify;
use anyhow::{bail, Context, Result};
use fs4::{FileExt, TryLockError};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{SystemTime, UNIX_EPOCH};

/// The lock file in an output folder.
pub const LOCK_FILE: &str = ".erosion.lock";

/// Who holds an output folder, as its lock file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// What the run does (`train`, `study`, `eval`, ...).
    pub task: String,
    /// The process's command line.
    pub command: String,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub host: String,
}

impl Holder {
    /// This process, doing `task`.
    fn me(task: &str) -> Self {
        let mut command = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        if command.len() > 500 {
            let mut end = 500;
            while !command.is_char_boundary(end) {
                end -= 1;
            }
            command.truncate(end);
            command.push_str(" ...");
        }
        Holder {
            pid: std::process::id(),
            task: task.to_string(),
            command,
            started: now(),
            host: host_name(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a `{}` run (pid {} on {}, started {}): {}",
            self.task,
            self.pid,
            self.host,
            ago(now().saturating_sub(self.started)),
            self.command
        )
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ago(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s ago"),
        120..7200 => format!("{} min ago", secs / 60),
        7200..172800 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}

fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok());
    match name.map(|n| n.trim().to_string()) {
        Some(n) if !n.is_empty() => n,
        _ => "an unknown host".to_string(),
    }
}

/// A folder locked by this process: the lock file, which thread holds it and how many of
/// that thread's runs share it.
struct Held {
    dir: PathBuf,
    thread: ThreadId,
    depth: usize,
    holder: Holder,
    file: Option<File>,
    /// The folder did not exist before: removed at the end if nothing was written into it.
    created: bool,
}

static HELD: Mutex<Vec<Held>> = Mutex::new(Vec::new());

fn held() -> MutexGuard<'static, Vec<Held>> {
    // A panic while the list was locked leaves it consistent (each change is one push,
    // one increment or one removal).
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// An output folder locked for one run; dropping it releases the lock (the last of nested
/// runs on one thread removes the lock file).
#[derive(Debug)]
pub struct OutLock {
    dir: PathBuf,
    /// Whether this is the thread's first lock of the folder (not a run nested in another).
    outermost: bool,
}

impl OutLock {
    /// Creates `dir` if needed and locks it for `task`; fails at once, naming the holder, if
    /// another run holds it. A lock left by a run that was killed is taken over (a notice).
    pub fn acquire(dir: &Path, task: &str, notices: &mut dyn Notify) -> Result<OutLock> {
        let created = prepare_folder(dir)?;
        let canonical = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve output folder {}", dir.display()))?;
        let mut held = held();
        if let Some(h) = held.iter_mut().find(|h| h.dir == canonical) {
            if h.thread != std::thread::current().id() {
                bail!(
                    "{} is in use by another run of this process, {}; choose another output folder",
                    dir.display(),
                    h.holder
                );
            }
            h.depth += 1;
            return Ok(OutLock {
                dir: canonical,
                outermost: false,
            });
        }
        let me = Holder::me(task);
        let file = lock_file(dir, &canonical.join(LOCK_FILE), &me, notices)?;
        held.push(Held {
            dir: canonical.clone(),
            thread: std::thread::current().id(),
            depth: 1,
            holder: me,
            file,
            created,
        });
        Ok(OutLock {
            dir: canonical,
            outermost: true,
        })
    }

    /// False for a run that another run of this thread called into the same folder (it
    /// shares the outer run's lock).
    pub fn is_outermost(&self) -> bool {
        self.outermost
    }
}

impl Drop for OutLock {
    fn drop(&mut self) {
        let mut held = held();
        let Some(i) = held.iter().position(|h| h.dir == self.dir) else {
            return;
        };
        held[i].depth -= 1;
        if held[i].depth > 0 {
            return;
        }
        let h = held.swap_remove(i);
        // Removed while still locked: a run that opened it meanwhile finds, once it has the
        // lock, that the path names another file (or none), and locks a new one.
        let _ = std::fs::remove_file(h.dir.join(LOCK_FILE));
        drop(h.file);
        if h.created {
            // Only when empty: a run that failed before writing anything leaves no folder.
            let _ = std::fs::remove_dir(&h.dir);
        }
    }
}

/// Creates `dir` (and its parents); whether it was created. An existing file, or a folder
/// that cannot be created, is an error before any work starts.
fn prepare_folder(dir: &Path) -> Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    if dir.exists() {
        bail!(
            "output folder {} is a file, not a folder; choose another",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output folder {}", dir.display()))?;
    Ok(true)
}

/// Opens and locks `path` for `me`, returning it (`None` on a file system without locks, a
/// notice); a taken lock is an error naming its holder, a free one with a holder recorded is
/// taken over (a notice).
fn lock_file(
    dir: &Path,
    path: &Path,
    me: &Holder,
    notices: &mut dyn Notify,
) -> Result<Option<File>> {
    // A few tries: each retry follows a holder that removed the file as we opened it.
    for _ in 0..8 {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot write into output folder {}", dir.display()))?;
        // Named through the trait: std's own `File::try_lock` needs a newer Rust than ours.
        let locked = match FileExt::try_lock(&file) {
            Ok(()) => true,
            Err(TryLockError::WouldBlock) => bail!("{}", in_use(dir, path)),
            Err(TryLockError::Error(e)) => {
                notices.notice(&format!(
                    "{}: cannot lock {LOCK_FILE} ({e}); this file system does not lock files, so another run writing there at once would not be detected",
                    dir.display()
                ));
                false
            }
        };
        if locked && !names_file(path, &file) {
            continue;
        }
        match (locked, read_holder(&mut file)) {
            (true, Some(dead)) => notices.notice(&format!(
                "{}: taking over the lock of {dead}, which ended without releasing it",
                dir.display()
            )),
            (false, Some(other)) => notices.notice(&format!(
                "{}: {LOCK_FILE} names {other}; without locks, whether it still runs cannot be told",
                dir.display()
            )),
            _ => {}
        }
        let json = serde_json::to_string(me).context("serialising the lock's holder")?;
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(json.as_bytes()))
            .and_then(|_| file.flush())
            .with_context(|| format!("cannot write {}", path.display()))?;
        return Ok(locked.then_some(file));
    }
    bail!("cannot lock {}: it keeps being replaced", path.display())
}

/// The error for a folder whose lock another run holds.
fn in_use(dir: &Path, path: &Path) -> String {
    let holder = File::open(path).ok().and_then(|mut f| read_holder(&mut f));
    let who = match holder {
        Some(h) => h.to_string(),
        None => format!(
            "another run (its lock file {} does not say which)",
            path.display()
        ),
    };
    format!(
        "output folder {} is in use by {who}; wait for it to end or choose another output folder",
        dir.display()
    )
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether `path` still names the open `file` (its holder may have removed it meanwhile).
#[cfg(unix)]
fn names_file(path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(p), Ok(f)) => p.dev() == f.dev() && p.ino() == f.ino(),
        _ => false,
    }
}

/// Elsewhere an open file cannot be removed, so the path still names it.
#[cfg(not(unix))]
fn names_file(_: &Path, _: &File) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::Silent;

    fn holder(pid: u32) -> Holder {
        Holder {
            pid,
            task: "train".into(),
            command: "erosion train m d.jsonl --out x".into(),
            started: now() - 300,
            host: "node7".into(),
        }
    }

    /// Another process's lock: a lock file held through its own open file.
    fn lock_as_another_process(dir: &Path, h: &Holder) -> File {
        std::fs::create_dir_all(dir).unwrap();
        let mut f = File::create(dir.join(LOCK_FILE)).unwrap();
        FileExt::try_lock(&f).unwrap();
        f.write_all(serde_json::to_string(h).unwrap().as_bytes())
            .unwrap();
        f
    }

    #[test]
    fn a_second_run_is_refused_and_told_who_holds_the_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let other = lock_as_another_process(&dir, &holder(4242));
        let err = OutLock::acquire(&dir, "study", &mut Silent).unwrap_err();
        let msg = format!("{err:#}");
        for part in [
            "in use",
            "pid 4242",
            "node7",
            "`train`",
            "5 min ago",
            "--out x",
        ] {
            assert!(msg.contains(part), "{part}: {msg}");
        }
        drop(other);
        // Once that run has ended, the folder is free (its file, left behind, is taken over).
        let mut lines = Vec::new();
        let lock = OutLock::acquire(&dir, "study", &mut |l: &str| lines.push(l.to_string()));
        assert!(lock.is_ok(), "{lock:?}");
        assert!(lines
            .iter()
            .any(|l| l.contains("taking over") && l.contains("pid 4242")));
    }

    #[test]
    fn a_lock_left_by_a_killed_run_is_taken_over_and_removed_at_the_end() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(
            dir.join(LOCK_FILE),
            serde_json::to_string(&holder(7)).unwrap(),
        )
        .unwrap();
        let mut lines = Vec::new();
        let lock = OutLock::acquire(&dir, "eval", &mut |l: &str| lines.push(l.to_string()));
        let lock = lock.unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("pid 7 on node7"), "{lines:?}");
        let now: Holder =
            serde_json::from_str(&std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap()).unwrap();
        assert_eq!((now.pid, now.task.as_str()), (std::process::id(), "eval"));
        drop(lock);
        assert!(!dir.join(LOCK_FILE).exists());
    }

    /// Nested runs on one thread share the lock until the outer one ends; another thread of
    /// the same process is refused.
    #[test]
    fn nested_runs_share_the_lock_and_other_threads_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let outer = OutLock::acquire(&dir, "demo", &mut Silent).unwrap();
        let inner = OutLock::acquire(&tmp.path().join(".").join("out"), "study", &mut Silent);
        let inner = inner.unwrap();
        let d = dir.clone();
        let err =
            std::thread::spawn(move || OutLock::acquire(&d, "eval", &mut Silent).unwrap_err())
                .join()
                .unwrap();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("this process") && msg.contains("`demo`"),
            "{msg}"
        );
        drop(inner);
        let probe = File::open(dir.join(LOCK_FILE)).unwrap();
        assert!(matches!(
            FileExt::try_lock(&probe),
            Err(TryLockError::WouldBlock)
        ));
        drop(outer);
        assert!(!dir.join(LOCK_FILE).exists());
    }

    #[test]
    fn an_output_path_that_cannot_be_a_folder_fails_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("results.txt");
        std::fs::write(&file, "mine").unwrap();
        let err = format!(
            "{:#}",
            OutLock::acquire(&file, "eval", &mut Silent).unwrap_err()
        );
        assert!(
            err.contains("results.txt") && err.contains("is a file"),
            "{err}"
        );
        let below = file.join("out");
        let err = format!(
            "{:#}",
            OutLock::acquire(&below, "eval", &mut Silent).unwrap_err()
        );
        assert!(err.contains("cannot create output folder"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
    }

    /// A run that failed before writing anything leaves no folder behind; one that wrote
    /// keeps its folder, without the lock file.
    #[test]
    fn a_folder_created_for_nothing_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let (empty, used) = (tmp.path().join("a/empty"), tmp.path().join("used"));
        drop(OutLock::acquire(&empty, "train", &mut Silent).unwrap());
        assert!(!empty.exists() && tmp.path().join("a").is_dir());
        let lock = OutLock::acquire(&used, "train", &mut Silent).unwrap();
        std::fs::write(used.join("eval.json"), "{}").unwrap();
        drop(lock);
        let names: Vec<_> = std::fs::read_dir(&used)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["eval.json"]);
    }
}
