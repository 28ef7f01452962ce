//! Atomic file writes: every file the tool writes whole goes through here (checkpoints,
//! exports, results, figures, reports).
//!
//! The new content is written to a temporary file in the destination's own directory
//! (a rename is atomic only within one file system) with a unique random name, flushed and
//! fsynced, then renamed over the destination, and the directory is fsynced so the rename
//! itself survives a crash. A reader therefore sees either the old file or the complete new
//! one; if writing fails, the temporary file is removed and the old file is left as it was.
//!
//! Three ways in: [`write_bytes_atomic`] (the bytes are at hand), [`write_atomic`] (a closure
//! streams into a writer), [`write_atomic_via_path`] (a library that only writes to a path).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use tempfile::NamedTempFile;

/// Writes `path` atomically with the bytes `write` produces.
///
/// `write` gets a buffered writer on a temporary file next to `path`; if it returns an error
/// (or any later step fails) the temporary file is deleted and `path` is untouched.
/// A new file gets mode 0644 on Unix; a replaced file keeps its permissions.
pub fn write_atomic<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> Result<()>,
{
    with_temp_file(path, |tmp| {
        let mut buf = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        write(&mut buf)?;
        buf.flush()?;
        Ok(())
    })
}

/// Writes `bytes` to `path` atomically (see [`write_atomic`]).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| {
        w.write_all(bytes)?;
        Ok(())
    })
}

/// Writes `rows` to `path` atomically as JSON Lines: one compact JSON object per row, each
/// followed by a newline (an error names the row that failed to serialise).
pub fn write_jsonl_atomic<T: serde::Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    write_atomic(path, |w| {
        for (i, row) in rows.iter().enumerate() {
            serde_json::to_writer(&mut *w, row)
                .with_context(|| format!("{}: row {i}", path.display()))?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

/// Writes `path` atomically through a library call that can only write to a path (a
/// safetensors file streamed tensor by tensor, a tokenizer's `save`): `write` gets the
/// temporary file's path and fills it; then as [`write_atomic`].
pub fn write_atomic_via_path<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    with_temp_file(path, |tmp| write(tmp.path()))
}

/// The one sequence behind the three entry points: a uniquely named temporary file beside
/// `path`, `fill`, permissions, fsync, rename, fsync of the directory. The temporary file is
/// deleted when any step fails (`NamedTempFile` removes it on drop).
fn with_temp_file<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut NamedTempFile) -> Result<()>,
{
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("cannot write {}: the path names no file", path.display()))?;
    // The temporary name starts with a dot and the final name, so a leftover after a
    // crash (never after an error) is recognisable; tempfile adds random characters, so
    // concurrent writers (threads or processes) never share one.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    fill(&mut tmp).with_context(|| format!("writing {}", path.display()))?;
    set_permissions(tmp.as_file(), path)?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("fsync of the temporary file for {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming the temporary file onto {}", path.display()))?;
    sync_dir(dir);
    Ok(())
}

/// tempfile creates files with mode 0600; an output should be readable like any file the
/// user makes, and a replaced file should keep the mode it had.
#[cfg(unix)]
fn set_permissions(tmp: &File, path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(_) => 0o644,
    };
    tmp.set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| {
            format!(
                "setting the mode of the temporary file for {}",
                path.display()
            )
        })
}

#[cfg(not(unix))]
fn set_permissions(_tmp: &File, _path: &Path) -> Result<()> {
    Ok(())
}

/// Makes the rename durable. Best effort: some file systems refuse to fsync a directory,
/// and the data itself is already on disk.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        write_bytes_atomic(&p, b"first").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        write_bytes_atomic(&p, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second, longer");
        assert_eq!(entries(dir.path()), vec!["out.txt"]);
    }

    #[test]
    fn json_lines_are_one_compact_object_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rows.jsonl");
        let rows = [
            serde_json::json!({"a": 1, "b": "x\ny"}),
            serde_json::json!({"a": 2}),
        ];
        write_jsonl_atomic(&p, &rows).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, "{\"a\":1,\"b\":\"x\\ny\"}\n{\"a\":2}\n");
        write_jsonl_atomic::<serde_json::Value>(&p, &[]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
    }

    #[test]
    fn failed_write_leaves_old_file_intact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results.json");
        std::fs::write(&p, b"old content").unwrap();
        let err = write_atomic(&p, |w| {
            // Half of the new content is written before the failure.
            w.write_all(b"new con")?;
            anyhow::bail!("simulated failure mid-write")
        })
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("results.json"), "{msg}");
        assert!(msg.contains("simulated failure"), "{msg}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old content");
        // No temporary file is left behind.
        assert_eq!(entries(dir.path()), vec!["results.json"]);
    }

    #[test]
    fn failed_write_of_a_new_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.safetensors");
        write_atomic(&p, |w| {
            w.write_all(&[7u8; 3 << 20])?; // past the 1 MiB buffer: bytes reach the file
            anyhow::bail!("simulated failure")
        })
        .unwrap_err();
        assert!(!p.exists());
        assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    }

    #[test]
    fn streamed_content_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.bin");
        let want: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        write_atomic(&p, |w| {
            for chunk in want.chunks(4096) {
                w.write_all(chunk)?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), want);
        assert_eq!(entries(dir.path()), vec!["big.bin"]);
    }

    #[test]
    fn via_path_writes_and_cleans_up_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        write_atomic_via_path(&p, |tmp| {
            assert_eq!(tmp.parent(), Some(dir.path()));
            std::fs::write(tmp, b"{}")?;
            Ok(())
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        let err = write_atomic_via_path(&p, |tmp| {
            std::fs::write(tmp, b"{\"half")?;
            anyhow::bail!("library failed")
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("library failed"));
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        assert_eq!(entries(dir.path()), vec!["tokenizer.json"]);
    }

    #[test]
    fn concurrent_writers_of_one_file_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("shared.json");
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let p = &p;
                s.spawn(move || write_bytes_atomic(p, &[t; 1000]).unwrap());
            }
        });
        let got = std::fs::read(&p).unwrap();
        assert_eq!(got.len(), 1000);
        assert!(got.iter().all(|&b| b == got[0]), "a mix of two writes");
        assert_eq!(entries(dir.path()), vec!["shared.json"]);
    }

    #[test]
    fn missing_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no-such-dir").join("x.npy");
        let msg = format!("{:#}", write_bytes_atomic(&p, b"x").unwrap_err());
        assert!(msg.contains("no-such-dir"), "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn new_file_is_world_readable_and_old_mode_is_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.svg");
        write_bytes_atomic(&p, b"1").unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_bytes_atomic(&p, b"2").unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }
}
