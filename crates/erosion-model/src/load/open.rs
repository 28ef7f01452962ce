//! A model spec opened: a folder, a `.gguf` file, a cached hub id, `BASE+ADAPTER`, or an
//! adapter alone on the base its `adapter_config.json` records; and what a checkpoint with an
//! adapter adds (merged loading, its files for provenance, its description).

use super::adapter::{self, Adapter, OpenOptions, PeftConfig};
use super::{escaped, hub, Checkpoint};
use crate::transformer::Transformer;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};

impl Checkpoint {
    /// [`Checkpoint::open`] with explicit options: the hub cache, a folder relative paths are
    /// read from first, and the adapter's scale.
    pub fn open_with(spec: &str, opts: &OpenOptions) -> Result<Self> {
        escaped(|| {
            if let Some(k) = opts.adapter_scale.filter(|k| !k.is_finite()) {
                bail!("the adapter scale must be a finite number, not {k}");
            }
            if let Some((base, adapter)) = adapter::split(spec, opts)? {
                return Self::open_adapted(Some(base), adapter, opts);
            }
            let alone = opts.adapter_dir(spec);
            if alone.is_some_and(|(dir, _)| !dir.join("config.json").is_file()) {
                return Self::open_adapted(None, spec, opts);
            }
            if opts.adapter_scale.is_some_and(|k| k != 1.0) {
                bail!("an adapter scale is set, but `{spec}` names no adapter (BASE+ADAPTER)");
            }
            Self::open_base(&opts.resolve(spec), opts)
        })
    }

    /// Like [`Checkpoint::load_model`], with the adapter folded into the weights
    /// (`W' = W + k s B A`, PEFT's `merge_and_unload`): plain weights, as fast as the base.
    pub fn load_model_merged(&self, dtype: DType, device: &Device) -> Result<Transformer> {
        let mut model = self.load_model(dtype, device)?;
        model.merge_lora()?;
        Ok(model)
    }

    /// The files a run on this checkpoint depends on, for provenance: the weight files, then
    /// the adapter's config and weights.
    pub fn provenance_files(&self) -> Vec<PathBuf> {
        let adapter = self.adapter.iter().flat_map(|a| a.files());
        self.weight_files.iter().cloned().chain(adapter).collect()
    }

    /// Where the checkpoint came from, with its adapter and the adapter's scale.
    pub fn describe(&self) -> String {
        match &self.adapter {
            None => self.source.to_string(),
            Some(a) if a.scale == 1.0 => format!("{} + adapter {}", self.source, a.source),
            Some(a) => format!(
                "{} + adapter {} (scaled x{})",
                self.source, a.source, a.scale
            ),
        }
    }

    /// `adapter_spec` on `base` (`None`: the base its config records).
    fn open_adapted(base: Option<&str>, adapter_spec: &str, opts: &OpenOptions) -> Result<Self> {
        let (dir, source) = opts
            .adapter_dir(adapter_spec)
            .with_context(|| format!("`{adapter_spec}` is not an adapter"))?;
        let config = PeftConfig::from_dir(&dir)?;
        let recorded = base.is_none();
        let base = match base {
            Some(b) => b.to_string(),
            None => config.base_model.clone().with_context(|| {
                format!(
                    "{} records no base_model_name_or_path: name the base, BASE+{adapter_spec}",
                    config.path.display()
                )
            })?,
        };
        let base_is_adapter = adapter::split(&base, opts).ok().flatten().is_some()
            || opts
                .adapter_dir(&base)
                .is_some_and(|(d, _)| !d.join("config.json").is_file());
        if base_is_adapter {
            bail!("base `{base}` of `{adapter_spec}` is itself an adapter: one adapter per model");
        }
        let mut ck = Self::open_base(&opts.resolve(&base), opts).with_context(|| {
            if recorded {
                format!(
                    "the base `{base}` that {} records (field base_model_name_or_path); name \
                     another as BASE+{adapter_spec}",
                    config.path.display()
                )
            } else {
                format!("the base `{base}` of adapter `{adapter_spec}`")
            }
        })?;
        let mut adapter = Adapter::open(source, &dir, config, &ck.config)?;
        adapter.scale = opts.adapter_scale.unwrap_or(1.0);
        ck.adapter = Some(adapter);
        Ok(ck)
    }

    /// A model with no adapter: a path, or a hub id in the cache.
    fn open_base(spec: &str, opts: &OpenOptions) -> Result<Self> {
        let path = Path::new(spec);
        if path.exists() {
            return Self::open_path(path);
        }
        if let Some(hub) = hub::looks_like_hub_id(spec) {
            return Self::open_hub(&hub, &opts.cache()?);
        }
        if spec.to_lowercase().ends_with(".gguf") {
            bail!("GGUF file {spec} does not exist");
        }
        bail!(
            "`{spec}` does not exist: pass a model folder, a .gguf file, a hub id such as \
             Qwen/Qwen2.5-0.5B-Instruct, or BASE+ADAPTER"
        )
    }
}
