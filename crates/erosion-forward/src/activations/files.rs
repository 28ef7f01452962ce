//! The output folder of an activation dump: the `.partial` files being filled, the record of
//! finished chunks (`progress.json`), and the finished files with `activations.json`.

use super::ActivationOptions;
use anyhow::{bail, Context, Result};
use erosion_data::Sequence;
use erosion_model::atomic::write_bytes_atomic;
use erosion_model::hooks::HookPoint;
use erosion_model::npy::NpyRowFile;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const FORMAT: &str = "erosion-activations";
const VERSION: u32 = 1;
const MANIFEST: &str = "activations.json";
const PROGRESS: &str = "progress.json";
const INDEX: &str = "index.npy";
/// The columns of `index.npy`.
const INDEX_COLUMNS: [&str; 3] = ["example", "position", "token_id"];

/// Everything that decides the rows: a dump resumes, or counts as done, only under an equal key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct DumpKey {
    format: String,
    version: u32,
    source: serde_json::Value,
    hooks: Vec<String>,
    positions: String,
    n_examples: usize,
    pub n_rows: usize,
    chunk_examples: usize,
    pub n_chunks: usize,
    /// SHA-256 over every sequence's token ids and response span.
    sequences_sha256: String,
}

impl DumpKey {
    pub fn new(
        seqs: &[Sequence],
        opts: &ActivationOptions,
        source: &serde_json::Value,
        n_rows: usize,
    ) -> Result<Self> {
        let mut h = Sha256::new();
        for s in seqs {
            h.update((s.ids.len() as u64).to_le_bytes());
            s.ids.iter().for_each(|id| h.update(id.to_le_bytes()));
            h.update((s.response.start as u64).to_le_bytes());
            h.update((s.response.end as u64).to_le_bytes());
        }
        Ok(DumpKey {
            format: FORMAT.into(),
            version: VERSION,
            source: source.clone(),
            hooks: opts.hooks.iter().map(HookPoint::to_string).collect(),
            positions: opts.positions.to_string(),
            n_examples: seqs.len(),
            n_rows,
            chunk_examples: opts.chunk_examples,
            n_chunks: seqs.len().div_ceil(opts.chunk_examples),
            sequences_sha256: format!("{:x}", h.finalize()),
        })
    }

    /// The first field where `self` and `other` differ, for an error.
    fn difference(&self, other: &DumpKey) -> String {
        let (a, b) = (serde_json::to_value(self), serde_json::to_value(other));
        if let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) {
            for (k, v) in &a {
                if b.get(k) != Some(v) {
                    return format!(
                        "{k}: {} there, {} here",
                        b.get(k).unwrap_or(&serde_json::Value::Null),
                        v
                    );
                }
            }
        }
        "another format".into()
    }
}

/// `progress.json`: the chunks finished and the row shape of every file, so the files reopen.
#[derive(Debug, Serialize, Deserialize)]
struct ProgressRecord {
    key: DumpKey,
    chunks_done: usize,
    /// Hook file name -> shape (the index's is `[n_rows, 3]`).
    shapes: BTreeMap<String, Vec<usize>>,
}

/// One file of the finished dump, in `activations.json`.
#[derive(Debug, Serialize, Deserialize)]
struct FileEntry {
    file: String,
    dtype: String,
    shape: Vec<usize>,
}

/// `activations.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    key: DumpKey,
    /// Hook name -> its rows.
    hooks: BTreeMap<String, FileEntry>,
    index: FileEntry,
    index_columns: Vec<String>,
    erosion_version: String,
}

/// The open output folder of one dump.
pub(super) struct DumpFiles {
    dir: PathBuf,
    progress: ProgressRecord,
    /// The open `.partial` files: the index (`None` once the dump is finished), and each hook's by
    /// file name.
    index: Option<NpyRowFile<i64>>,
    hooks: BTreeMap<String, NpyRowFile<f32>>,
    /// `activations.json` already describes this dump.
    finished: bool,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is damaged; remove the folder to start over",
                path.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn partial(dir: &Path, file: &str) -> PathBuf {
    dir.join(format!("{file}.partial"))
}

fn hook_file(hook: &HookPoint) -> String {
    format!("{hook}.npy")
}

impl DumpFiles {
    /// Opens `dir` for the dump `key`: finished, resumable, or new. A folder holding a dump of
    /// other work is refused.
    pub fn open(dir: &Path, key: DumpKey) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut files = DumpFiles {
            dir: dir.to_path_buf(),
            progress: ProgressRecord {
                key: key.clone(),
                chunks_done: 0,
                shapes: BTreeMap::new(),
            },
            index: None,
            hooks: BTreeMap::new(),
            finished: false,
        };
        if let Some(m) = read_json::<Manifest>(&dir.join(MANIFEST))? {
            if m.key != key {
                bail!(
                    "{} holds a finished activation dump of other work ({}); choose another output folder or remove it",
                    dir.display(),
                    key.difference(&m.key)
                );
            }
            files.finished = true;
            files.progress.chunks_done = key.n_chunks;
            return Ok(files);
        }
        let index_shape = [key.n_rows, INDEX_COLUMNS.len()];
        let index = NpyRowFile::open_or_create(&partial(dir, INDEX), &index_shape)?;
        let index_kept = index.reopened();
        files.index = Some(index);
        let Some(p) = read_json::<ProgressRecord>(&dir.join(PROGRESS))? else {
            return Ok(files);
        };
        if p.key != key {
            bail!(
                "{} holds an unfinished activation dump of other work ({}); choose another output folder or remove it",
                dir.display(),
                key.difference(&p.key)
            );
        }
        // Reopen every file the finished chunks wrote; one that is gone or changed means
        // starting over (its rows would be zeros).
        let mut intact = index_kept;
        for (file, shape) in &p.shapes {
            let f = NpyRowFile::open_or_create(&partial(dir, file), shape)?;
            intact &= f.reopened();
            files.hooks.insert(file.clone(), f);
        }
        files.progress.shapes = p.shapes;
        files.progress.chunks_done = if intact { p.chunks_done } else { 0 };
        Ok(files)
    }

    pub fn chunks_done(&self) -> usize {
        self.progress.chunks_done
    }

    /// Writes index rows (3 values each) from `first_row` on.
    pub fn write_index(&mut self, first_row: usize, data: &[i64]) -> Result<()> {
        let index = self.index.as_mut().context("the dump is finished")?;
        index.write_rows(first_row, data)
    }

    /// Writes `hook`'s rows from `first_row` on; `dims` is the shape of the recorded tensor
    /// they came from, `[rows, ...]`.
    pub fn write_rows(
        &mut self,
        hook: &HookPoint,
        dims: &[usize],
        first_row: usize,
        data: &[f32],
    ) -> Result<()> {
        let name = hook_file(hook);
        if !self.hooks.contains_key(&name) {
            let mut shape = vec![self.progress.key.n_rows];
            shape.extend_from_slice(&dims[1..]);
            let f = NpyRowFile::open_or_create(&partial(&self.dir, &name), &shape)?;
            self.progress.shapes.insert(name.clone(), shape);
            self.hooks.insert(name.clone(), f);
        }
        let f = self
            .hooks
            .get_mut(&name)
            .context("hook file opened above")?;
        if f.shape()[1..] != dims[1..] {
            bail!(
                "`{hook}` gave rows of shape {:?}, earlier rows had {:?}",
                &dims[1..],
                &f.shape()[1..]
            );
        }
        f.write_rows(first_row, data)
    }

    /// Records that chunks `0..chunks_done` are written: every file synced first.
    pub fn chunk_done(&mut self, chunks_done: usize) -> Result<()> {
        self.index.iter().try_for_each(NpyRowFile::sync)?;
        self.hooks.values().try_for_each(NpyRowFile::sync)?;
        self.progress.chunks_done = chunks_done;
        write_bytes_atomic(
            &self.dir.join(PROGRESS),
            &serde_json::to_vec_pretty(&self.progress)?,
        )
    }

    /// Gives every file its final name, then writes `activations.json` and drops the record of
    /// progress. Nothing to do for a dump that was already finished.
    pub fn finish(self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        let entry = |file: &str, dtype: &str| FileEntry {
            file: file.into(),
            dtype: dtype.into(),
            shape: self.progress.shapes.get(file).cloned().unwrap_or_default(),
        };
        let mut hooks = BTreeMap::new();
        for name in &self.progress.key.hooks {
            let file = format!("{name}.npy");
            if !self.hooks.contains_key(&file) {
                bail!("no rows were written for `{name}`");
            }
            hooks.insert(name.clone(), entry(&file, "<f4"));
        }
        let manifest = Manifest {
            key: self.progress.key.clone(),
            hooks,
            index: FileEntry {
                file: INDEX.into(),
                dtype: "<i8".into(),
                shape: vec![self.progress.key.n_rows, INDEX_COLUMNS.len()],
            },
            index_columns: INDEX_COLUMNS.iter().map(|c| c.to_string()).collect(),
            erosion_version: env!("CARGO_PKG_VERSION").into(),
        };
        let index = self.index.context("no index rows were written")?;
        index.finish(&self.dir.join(INDEX))?;
        for (file, f) in self.hooks {
            f.finish(&self.dir.join(file))?;
        }
        write_bytes_atomic(
            &self.dir.join(MANIFEST),
            &serde_json::to_vec_pretty(&manifest)?,
        )?;
        std::fs::remove_file(self.dir.join(PROGRESS)).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        })?;
        Ok(())
    }
}
