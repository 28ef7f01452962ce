//! One model spec everywhere a model is named: `BASE+ADAPTER`, or an adapter alone (its base
//! is the one `adapter_config.json` records).
//!
//! How a spec is split, since `+` may be part of a path: a spec that exists as a path is never
//! split; otherwise it is split at the last `+` whose right side is an adapter (a folder holding
//! `adapter_config.json`, or a hub id whose cached snapshot holds one) and whose left side is
//! not empty. A spec with a `+` that no such split explains is an error naming what was tried.

use super::config::CONFIG_FILE;
use crate::load::hub::{self, HubSpec};
use crate::load::Source;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// How a spec is opened: where its relative paths and hub ids are looked up, and the adapter's
/// scale.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// The Hugging Face cache for hub ids (default: the environment's).
    pub cache_dir: Option<PathBuf>,
    /// A folder searched first for relative paths (a study file's folder): a relative path
    /// that exists there wins over the working directory and over a hub id of that name.
    pub relative_to: Option<PathBuf>,
    /// k: the adapter's update is k times the trained one (`None` = 1, as trained). Set for a
    /// spec with no adapter it is an error, unless it is 1.
    pub adapter_scale: Option<f64>,
}

impl OpenOptions {
    /// `part` as a path under `relative_to` when one exists there, else as given.
    pub fn resolve(&self, part: &str) -> String {
        if let Some(dir) = &self.relative_to {
            let p = dir.join(part);
            if Path::new(part).is_relative() && p.exists() {
                return p.to_string_lossy().into_owned();
            }
        }
        part.to_string()
    }

    /// The cache root hub ids are resolved in.
    pub fn cache(&self) -> Result<PathBuf> {
        match &self.cache_dir {
            Some(dir) => Ok(dir.clone()),
            None => hub::default_cache_dir(),
        }
    }

    /// The folder of the adapter `part` names, and where it came from, if it names one: a
    /// folder with `adapter_config.json`, or a cached hub snapshot with one.
    pub fn adapter_dir(&self, part: &str) -> Option<(PathBuf, Source)> {
        let p = PathBuf::from(self.resolve(part));
        if p.exists() {
            let source = Source::Folder { dir: p.clone() };
            return p.join(CONFIG_FILE).is_file().then_some((p, source));
        }
        let spec = HubSpec::parse(part)?;
        let snap = hub::resolve_snapshot(&self.cache().ok()?, &spec).ok()?;
        let source = Source::Hub {
            id: spec.id,
            revision: spec.revision,
            commit: snap.commit,
            snapshot: snap.dir.clone(),
        };
        snap.dir
            .join(CONFIG_FILE)
            .is_file()
            .then_some((snap.dir, source))
    }
}

/// `spec` split into (base, adapter) by the rule in the module docs; `None` when it names no
/// adapter on a base (it may still be an adapter alone).
pub fn split<'a>(spec: &'a str, lookup: &OpenOptions) -> Result<Option<(&'a str, &'a str)>> {
    if Path::new(&lookup.resolve(spec)).exists() || !spec.contains('+') {
        return Ok(None);
    }
    for (i, _) in spec.rmatch_indices('+') {
        let (base, adapter) = (&spec[..i], &spec[i + 1..]);
        if !base.is_empty() && lookup.adapter_dir(adapter).is_some() {
            return Ok(Some((base, adapter)));
        }
    }
    // An adapter with nothing before its `+`: not an adapter folder without a config.
    if let Some(rest) = spec
        .strip_prefix('+')
        .filter(|r| lookup.adapter_dir(r).is_some())
    {
        bail!(
            "`{spec}` names no base before its `+`: write BASE+{rest}, or {rest} alone for the \
             base its {CONFIG_FILE} records"
        );
    }
    if let Some((_, last)) = spec.rsplit_once('+') {
        let dir = PathBuf::from(lookup.resolve(last));
        if dir.is_dir() {
            bail!(
                "no {CONFIG_FILE} in {}: an adapter folder (the ADAPTER of BASE+ADAPTER) holds \
                 {CONFIG_FILE} and adapter_model.safetensors",
                dir.display()
            );
        }
    }
    let tried: Vec<String> = spec
        .rmatch_indices('+')
        .map(|(i, _)| format!("`{}`", &spec[i + 1..]))
        .collect();
    bail!(
        "`{spec}` is not a path, and no `+` in it splits it into BASE+ADAPTER: none of {} is an \
         adapter folder (with {CONFIG_FILE}) or a cached hub adapter",
        tried.join(", ")
    )
}

/// The specs a model spec is made of, for hashing what it names: `[base, adapter]` for
/// `BASE+ADAPTER` and for an adapter alone (its recorded base, when it records one), else
/// `[spec]`; each resolved as [`OpenOptions::resolve`] does.
pub fn parts(spec: &str, opts: &OpenOptions) -> Vec<String> {
    if let Ok(Some((base, adapter))) = split(spec, opts) {
        return vec![opts.resolve(base), opts.resolve(adapter)];
    }
    match opts.adapter_dir(spec) {
        Some((dir, _)) if !dir.join("config.json").is_file() => {
            let base = super::PeftConfig::from_dir(&dir)
                .ok()
                .and_then(|c| c.base_model);
            let dir = dir.to_string_lossy().into_owned();
            base.map(|b| opts.resolve(&b))
                .into_iter()
                .chain([dir])
                .collect()
        }
        _ => vec![opts.resolve(spec)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_last_plus_with_an_adapter_on_its_right() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let look = OpenOptions {
            cache_dir: Some(tmp.path().join("no-cache")),
            relative_to: Some(tmp.path().to_path_buf()),
            adapter_scale: None,
        };
        std::fs::create_dir_all(tmp.path().join("a+b"))?;
        std::fs::write(tmp.path().join("a+b").join(CONFIG_FILE), "{}")?;
        std::fs::create_dir_all(tmp.path().join("base+x"))?;
        // The adapter's folder name holds a `+`: the split is before it.
        assert_eq!(split("base+x+a+b", &look)?, Some(("base+x", "a+b")));
        // An existing path is never split.
        assert_eq!(split("base+x", &look)?, None);
        assert_eq!(split("plain", &look)?, None);
        let err = split("m+nothing", &look).unwrap_err().to_string();
        assert!(err.contains("`nothing`"), "{err}");
        // Said to lack the adapter_config.json it has, before.
        let err = split("+a+b", &look).unwrap_err().to_string();
        assert!(
            err.contains("names no base") && err.contains("BASE+a+b"),
            "{err}"
        );
        Ok(())
    }
}
