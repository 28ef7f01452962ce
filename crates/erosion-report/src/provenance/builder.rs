//! Assembling a [`Provenance`]: every run records its options, then whichever of the command
//! line, seed, models and datasets it has.

use std::path::Path;

use anyhow::Result;

use super::{utc_now, DatasetHash, FileSetHash, HashCache, Provenance, ToolInfo};

/// Builds a [`Provenance`]; start with [`Provenance::builder`].
#[derive(Debug, Clone)]
pub struct ProvenanceBuilder(Provenance);

impl Provenance {
    /// A provenance of a run started now by `erosion` at this build, with every option the
    /// run resolved. The command line is empty unless given: library code never reads the
    /// process's arguments, the binary passes them.
    pub fn builder(options: serde_json::Value) -> ProvenanceBuilder {
        ProvenanceBuilder(Provenance {
            tool: ToolInfo::erosion(),
            created: utc_now(),
            command_line: Vec::new(),
            seed: None,
            options,
            models: Vec::new(),
            datasets: Vec::new(),
        })
    }
}

impl ProvenanceBuilder {
    /// The program's arguments, the program itself first.
    pub fn command_line(mut self, args: Vec<String>) -> Self {
        self.0.command_line = args;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = Some(seed);
        self
    }

    /// Adds hashed models, in order.
    pub fn models(mut self, models: impl IntoIterator<Item = FileSetHash>) -> Self {
        self.0.models.extend(models);
        self
    }

    /// Adds the model at `source` as the user named it, hashed: every file of a folder, or
    /// the one file; for `BASE+ADAPTER` (or an adapter alone on its recorded base) both, as
    /// one set. A hub id (neither) adds nothing.
    pub fn model_at(self, name: &str, source: &str, cache: &mut HashCache) -> Result<Self> {
        let opts = erosion_model::load::OpenOptions::default();
        let mut files = Vec::new();
        for part in erosion_model::load::adapter::parts(source, &opts) {
            let p = Path::new(&part);
            if p.is_dir() {
                files.extend(FileSetHash::from_dir(name, source, p, cache)?.files);
            } else if p.is_file() {
                files.push(cache.hash(p)?);
            }
        }
        let hashed = (!files.is_empty()).then(|| FileSetHash {
            name: name.to_string(),
            source: source.to_string(),
            files,
        });
        Ok(self.models(hashed))
    }

    /// Adds hashed datasets, in order.
    pub fn datasets(mut self, datasets: impl IntoIterator<Item = DatasetHash>) -> Self {
        self.0.datasets.extend(datasets);
        self
    }

    pub fn build(self) -> Provenance {
        self.0
    }
}
