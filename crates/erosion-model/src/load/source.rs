//! Where a checkpoint came from and how its weights are stored.

use std::path::PathBuf;

/// Where a checkpoint came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A Hugging Face model folder.
    Folder { dir: PathBuf },
    /// A hub id resolved in the local cache: the revision asked for, the commit it resolved
    /// to, and the snapshot folder.
    Hub {
        id: String,
        revision: String,
        commit: String,
        snapshot: PathBuf,
    },
    /// A GGUF file.
    Gguf { path: PathBuf },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Folder { dir } => write!(f, "folder {}", dir.display()),
            Self::Hub {
                id,
                revision,
                commit,
                snapshot,
            } => {
                write!(
                    f,
                    "hub {id}@{revision} (commit {commit}, cached at {})",
                    snapshot.display()
                )
            }
            Self::Gguf { path } => write!(f, "GGUF {}", path.display()),
        }
    }
}

/// How the weights are stored, which decides how they are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// safetensors files, memory-mapped.
    Safetensors,
    /// One GGUF file, dequantised on load.
    Gguf,
}
