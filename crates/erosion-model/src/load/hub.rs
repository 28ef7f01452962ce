//! Hub ids (`Qwen/Qwen2.5-0.5B-Instruct`, optionally `@revision`) resolved offline in the local
//! Hugging Face cache. Nothing here touches the network: a model that is not cached is an error
//! that says where we looked and how to download it.
//!
//! Cache layout (huggingface_hub's):
//! `{cache}/models--{owner}--{name}/refs/{branch}` holds a commit hash, and
//! `{cache}/models--{owner}--{name}/snapshots/{commit}/` holds the files (symlinks into `blobs/`).
//! hf-hub 0.5 knows this layout but not `HF_HUB_CACHE`, reads refs without trimming them and
//! panics when there is no home directory, so the cache root and the ref are resolved here and
//! hf-hub only names the folders.

use anyhow::{bail, Context, Result};
use hf_hub::{Cache, Repo, RepoType};
use std::path::{Path, PathBuf};

/// A hub id with the revision asked for (`main` when none was given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSpec {
    pub id: String,
    pub revision: String,
}

impl HubSpec {
    /// `owner/name` or `owner/name@revision`; `None` when `spec` cannot be a hub id.
    pub fn parse(spec: &str) -> Option<Self> {
        let (id, revision) = match spec.split_once('@') {
            Some((id, rev)) if !rev.is_empty() => (id, rev),
            Some(_) => return None,
            None => (spec, "main"),
        };
        let (owner, name) = id.split_once('/')?;
        let part_ok = |s: &str| {
            !s.is_empty()
                && !s.starts_with('.')
                && !s.starts_with('-')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !part_ok(owner) || !part_ok(name) {
            return None;
        }
        Some(Self {
            id: id.to_string(),
            revision: revision.to_string(),
        })
    }

    /// The command that puts this model in the cache.
    pub fn download_command(&self) -> String {
        if self.revision == "main" {
            format!("huggingface-cli download {}", self.id)
        } else {
            format!(
                "huggingface-cli download {} --revision {}",
                self.id, self.revision
            )
        }
    }
}

/// The cache root huggingface_hub uses: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`. Pure, so it is testable without touching the environment.
pub fn cache_dir_from(
    hf_hub_cache: Option<&str>,
    hf_home: Option<&str>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    let set = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(hf_hub_cache) {
        return Some(dir);
    }
    if let Some(dir) = set(hf_home) {
        return Some(dir.join("hub"));
    }
    home.map(|h| h.join(".cache").join("huggingface").join("hub"))
}

/// The cache root for this process's environment.
pub fn default_cache_dir() -> Result<PathBuf> {
    let var = |k: &str| std::env::var(k).ok();
    let home = var("HOME")
        .or_else(|| var("USERPROFILE"))
        .map(PathBuf::from);
    cache_dir_from(
        var("HF_HUB_CACHE").as_deref(),
        var("HF_HOME").as_deref(),
        home.as_deref(),
    )
    .context("cannot locate the Hugging Face cache: set HF_HUB_CACHE or HF_HOME")
}

/// A cached snapshot: the folder of one commit of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub commit: String,
}

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Finds the snapshot of `spec` in the cache at `cache`. A branch or tag is read from
/// `refs/`; a full commit hash names its snapshot directly.
pub fn resolve_snapshot(cache: &Path, spec: &HubSpec) -> Result<Snapshot> {
    let repo = Repo::with_revision(spec.id.clone(), RepoType::Model, spec.revision.clone());
    let repo_dir = cache.join(repo.folder_name());
    let cache_repo = Cache::new(cache.to_path_buf()).repo(repo);
    let not_cached = |what: String| -> anyhow::Error {
        anyhow::anyhow!(
            "{what}. The Hugging Face cache used is {} (from HF_HUB_CACHE, else HF_HOME/hub, \
             else ~/.cache/huggingface/hub); erosion never downloads. Download it with `{}`, \
             or pass the path of a model folder or .gguf file",
            cache.display(),
            spec.download_command()
        )
    };
    if !repo_dir.is_dir() {
        return Err(not_cached(format!(
            "`{}` is not a local path, and hub model `{}` is not in the cache (no {})",
            if spec.revision == "main" {
                spec.id.clone()
            } else {
                format!("{}@{}", spec.id, spec.revision)
            },
            spec.id,
            repo_dir.display()
        )));
    }
    let ref_path = repo_dir.join("refs").join(&spec.revision);
    let commit = match std::fs::read_to_string(&ref_path) {
        Ok(text) => text.trim().to_string(),
        Err(_) if is_commit_hash(&spec.revision) => spec.revision.clone(),
        Err(_) => {
            return Err(not_cached(format!(
                "revision `{}` of `{}` is not cached (no {}; cached snapshots: {})",
                spec.revision,
                spec.id,
                ref_path.display(),
                list_dir(&repo_dir.join("snapshots"))
            )))
        }
    };
    // A ref names a snapshot folder by its hash; anything else (`../..`) would lead elsewhere.
    if !is_commit_hash(&commit) {
        bail!(
            "{} holds `{}`, not a commit hash: the Hugging Face cache at {} is corrupt",
            ref_path.display(),
            crate::text::shown(&commit),
            cache.display()
        );
    }
    let dir = cache_repo.pointer_path(&commit);
    if !dir.is_dir() {
        return Err(not_cached(format!(
            "`{}` revision `{}` points to commit {commit}, whose snapshot {} is missing \
             (an interrupted download?)",
            spec.id,
            spec.revision,
            dir.display()
        )));
    }
    Ok(Snapshot { dir, commit })
}

/// The names in `dir`, for messages.
pub(crate) fn list_dir(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// The `.gguf` files in a snapshot without `config.json` (repositories that ship only GGUF).
pub(crate) fn gguf_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Whether a spec that is not an existing path should be tried as a hub id.
pub(crate) fn looks_like_hub_id(spec: &str) -> Option<HubSpec> {
    if spec.starts_with("./") || spec.starts_with('/') || spec.starts_with("../") {
        return None;
    }
    HubSpec::parse(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_revisions() {
        let s = HubSpec::parse("Qwen/Qwen2.5-0.5B-Instruct").unwrap();
        assert_eq!(
            (s.id.as_str(), s.revision.as_str()),
            ("Qwen/Qwen2.5-0.5B-Instruct", "main")
        );
        let s = HubSpec::parse("HuggingFaceTB/SmolLM2-135M@v1.0").unwrap();
        assert_eq!(
            (s.id.as_str(), s.revision.as_str()),
            ("HuggingFaceTB/SmolLM2-135M", "v1.0")
        );
        assert_eq!(HubSpec::parse("model.gguf"), None);
        assert_eq!(HubSpec::parse("a/b/c"), None);
        assert_eq!(HubSpec::parse("a/b@"), None);
        assert_eq!(HubSpec::parse("../b"), None);
        assert_eq!(looks_like_hub_id("./models/x"), None);
    }

    #[test]
    fn cache_dir_precedence() {
        let home = Path::new("/home/u");
        assert_eq!(
            cache_dir_from(Some("/c"), Some("/h"), Some(home)),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            cache_dir_from(None, Some("/h"), Some(home)),
            Some(PathBuf::from("/h/hub"))
        );
        assert_eq!(
            cache_dir_from(Some(""), None, Some(home)),
            Some(home.join(".cache/huggingface/hub"))
        );
        assert_eq!(cache_dir_from(None, None, None), None);
    }
}
