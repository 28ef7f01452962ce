//! PEFT LoRA adapters (`adapter_config.json` + `adapter_model.safetensors`) on their base
//! model, kept as a separate low-rank path in each adapted linear map:
//!
//! ```text
//! y = x W^T + k s_m (x A^T) B^T      A [r_m, in], B [out, r_m]   (transformer/lora.rs)
//! ```
//! with s_m the module's PEFT scale (config.rs) and k the adapter scale (1 = as trained;
//! Turner et al. scale their adapters x1-x5). The A/B tensors stay readable on the model
//! ([`Transformer::lora`](crate::transformer::Transformer::lora)); `merge_lora` folds them in.
//!
//! Everything is checked against the base from the file headers when the adapter is opened:
//! every tensor is a LoRA factor of a module the config targets (or a weight of a module in
//! `modules_to_save`), every targeted module has both factors, and every shape fits the base.

pub mod config;
pub mod spec;

pub use config::{PeftConfig, Targets};
pub use spec::{parts, split, OpenOptions};

use super::expect::expected_weights;
use super::folder::read_header;
use super::Source;
use crate::config::Config;
use crate::text::shown;
use crate::transformer::{LoraAdapter, Transformer};
use anyhow::{bail, Context, Result};
use candle_core::Device;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// PEFT prefixes every saved name with the wrapper's path; erosion before 0.4 did not.
const PEFT_PREFIX: &str = "base_model.model.";

/// One adapted linear map.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptedModule {
    /// `model.layers.{l}.mlp.down_proj`
    pub module: String,
    pub rank: usize,
    /// s_m, before the adapter scale.
    pub scaling: f64,
    /// The names of A and B in the weights file.
    pub a_name: String,
    pub b_name: String,
}

/// An opened adapter, checked against its base.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// A folder or a cached hub snapshot.
    pub source: Source,
    pub dir: PathBuf,
    pub config: PeftConfig,
    /// `adapter_model.safetensors`
    pub weights: PathBuf,
    pub modules: Vec<AdaptedModule>,
    /// Whole weights from `modules_to_save`: (Hugging Face name, name in the file).
    pub saved: Vec<(String, String)>,
    /// k: the update is k times the trained one.
    pub scale: f64,
}

impl Adapter {
    /// Opens the adapter in `dir` (config read as `config`) and checks it against the base
    /// model's `base` config.
    pub fn open(source: Source, dir: &Path, config: PeftConfig, base: &Config) -> Result<Self> {
        let weights = dir.join(WEIGHTS_FILE);
        if !weights.is_file() {
            if dir.join("adapter_model.bin").is_file() {
                bail!(
                    "{} holds adapter_model.bin (pickled): erosion reads {WEIGHTS_FILE}; \
                     convert it once with PeftModel.from_pretrained(...).save_pretrained(dir, \
                     safe_serialization=True)",
                    dir.display()
                );
            }
            bail!("no {WEIGHTS_FILE} in {}", dir.display());
        }
        let header = read_header(&weights)?;
        let shapes: BTreeMap<String, Vec<usize>> = expected_weights(base).into_iter().collect();
        let checked = check_tensors(&config, &header, &shapes, base)
            .with_context(|| format!("adapter {} on its base", weights.display()))?;
        Ok(Self {
            source,
            dir: dir.to_path_buf(),
            config,
            weights,
            modules: checked.modules,
            saved: checked.saved,
            scale: 1.0,
        })
    }

    /// The adapter's files, for provenance: its config and weights.
    pub fn files(&self) -> Vec<PathBuf> {
        vec![self.dir.join(config::CONFIG_FILE), self.weights.clone()]
    }

    /// Puts the adapter on `model` (built from the base): each module's factors as a separate
    /// path scaled by `k s_m`, and the saved modules' weights in place of the base's.
    pub fn attach(&self, model: &mut Transformer) -> Result<()> {
        let (dtype, device) = (model.dtype(), model.device().clone());
        let st = candle_core::safetensors::load(&self.weights, &Device::Cpu)
            .with_context(|| format!("cannot read {}", self.weights.display()))?;
        let get = |name: &str| -> Result<candle_core::Tensor> {
            let t = st
                .get(name)
                .context("listed in the header, missing in the data")?;
            let t = t.to_dtype(dtype)?.to_device(&device)?;
            super::ensure_finite(name, &t)?;
            Ok(t)
        };
        let mut read = || -> Result<()> {
            for m in &self.modules {
                let lora = LoraAdapter {
                    a: get(&m.a_name)?,
                    b: get(&m.b_name)?,
                    scale: self.scale * m.scaling,
                };
                model.set_lora(&m.module, lora)?;
            }
            for (hf, stored) in &self.saved {
                model.set_parameter(hf, get(stored)?)?;
            }
            Ok(())
        };
        read().with_context(|| format!("loading adapter {}", self.weights.display()))
    }
}

/// What an adapter file holds, checked against its base.
struct Checked {
    modules: Vec<AdaptedModule>,
    /// (Hugging Face name, name in the file)
    saved: Vec<(String, String)>,
}

/// The adapted modules and saved weights of `header`, checked (module docs).
fn check_tensors(
    cfg: &PeftConfig,
    header: &BTreeMap<String, (String, Vec<usize>)>,
    shapes: &BTreeMap<String, Vec<usize>>,
    base: &Config,
) -> Result<Checked> {
    let targeted = targeted_modules(cfg, shapes, base)?;
    let mut lora: BTreeMap<&str, [Option<&str>; 2]> = BTreeMap::new();
    let mut saved = Vec::new();
    for (name, (dtype, shape)) in header {
        let bare = name.strip_prefix(PEFT_PREFIX).unwrap_or(name);
        if !super::expect::is_float_dtype(dtype) {
            bail!(
                "tensor {} is stored as {}, not floating point",
                shown(name),
                shown(dtype)
            );
        }
        if bare.contains("lora_embedding_") || bare.contains("lora_magnitude_vector") {
            bail!(
                "tensor {}: LoRA on embeddings and DoRA are not supported",
                shown(name)
            );
        }
        match lora_factor(cfg, name, bare, shape, shapes, &targeted)? {
            Some((module, which)) => lora.entry(module).or_default()[which] = Some(name),
            None => saved.push(saved_weight(cfg, name, bare, shape, shapes, base)?),
        }
    }
    let mut modules = Vec::new();
    for m in targeted {
        let [Some(a), Some(b)] = lora.get(m).copied().unwrap_or_default() else {
            bail!(
                "no lora_A / lora_B weights for `{m}`, which target_modules in {} selects",
                cfg.path.display()
            );
        };
        modules.push(AdaptedModule {
            module: m.to_string(),
            rank: cfg.rank_alpha(m).0,
            scaling: cfg.scaling(m),
            a_name: a.to_string(),
            b_name: b.to_string(),
        });
    }
    Ok(Checked { modules, saved })
}

/// The base's modules the config targets: at least one, and only linear maps of the blocks.
fn targeted_modules<'a>(
    cfg: &PeftConfig,
    shapes: &'a BTreeMap<String, Vec<usize>>,
    base: &Config,
) -> Result<Vec<&'a str>> {
    // The base's linear maps and embeddings; `lm_head` even when tied, so that a target
    // naming it is refused by name.
    let mut modules: Vec<&str> = shapes
        .iter()
        .filter(|(_, s)| s.len() == 2)
        .filter_map(|(n, _)| n.strip_suffix(".weight"))
        .collect();
    if !modules.contains(&"lm_head") {
        modules.push("lm_head");
    }
    let targeted: Vec<&str> = modules.into_iter().filter(|m| cfg.targets(m)).collect();
    if let Some(m) = targeted.iter().find(|m| !m.starts_with("model.layers.")) {
        bail!(
            "target_modules in {} selects `{m}`: LoRA on the embeddings or the output layer is \
             not supported",
            cfg.path.display()
        );
    }
    if targeted.is_empty() {
        bail!(
            "target_modules in {} selects no module of the {} base (its linear maps are \
             q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj in model.layers.0 to \
             {})",
            cfg.path.display(),
            base.model_type,
            base.num_hidden_layers.saturating_sub(1)
        );
    }
    Ok(targeted)
}

/// For a LoRA factor (`{module}.lora_A.weight` / `.lora_B.weight`): its module and 0 for A, 1
/// for B, checked: a targeted module, of shape A `[r_m, in]` / B `[out, r_m]`. `None` for any
/// other tensor.
fn lora_factor<'a>(
    cfg: &PeftConfig,
    name: &str,
    bare: &'a str,
    shape: &[usize],
    shapes: &BTreeMap<String, Vec<usize>>,
    targeted: &[&str],
) -> Result<Option<(&'a str, usize)>> {
    let factor = [".lora_A.weight", ".lora_B.weight"]
        .iter()
        .position(|s| bare.ends_with(s));
    let Some(which) = factor else {
        return Ok(None);
    };
    let module = &bare[..bare.len() - ".lora_A.weight".len()];
    if !targeted.contains(&module) {
        bail!(
            "tensor {} adapts `{}`, which the base has not or which target_modules / \
             layers_to_transform in {} do not select",
            shown(name),
            shown(module),
            cfg.path.display()
        );
    }
    let (rank, out_in) = (
        cfg.rank_alpha(module).0,
        &shapes[&format!("{module}.weight")],
    );
    let want = [[rank, out_in[1]], [out_in[0], rank]][which];
    if shape != want {
        bail!(
            "tensor {} has shape {shape:?}, but the base's {module}.weight {out_in:?} and r = \
             {rank} (field `r` / `rank_pattern` of {}) imply {want:?}",
            shown(name),
            cfg.path.display()
        );
    }
    Ok(Some((module, which)))
}

/// A whole weight the adapter replaces: its module must be in `modules_to_save`, the weight
/// one the base has, of the base's shape; not on tied embeddings (PEFT would untie them).
fn saved_weight(
    cfg: &PeftConfig,
    name: &str,
    bare: &str,
    shape: &[usize],
    shapes: &BTreeMap<String, Vec<usize>>,
    base: &Config,
) -> Result<(String, String)> {
    let module = bare.rsplit_once('.').map_or(bare, |(m, _)| m);
    let listed = Targets::Names(cfg.modules_to_save.clone()).matches(module);
    let tied: BTreeSet<&str> = ["model.embed_tokens.weight", "lm_head.weight"].into();
    if listed && base.tie_word_embeddings && tied.contains(bare) {
        bail!(
            "modules_to_save of {} replaces {bare}, but the base ties its embeddings to the \
             output layer (tie_word_embeddings): untying them is not supported",
            cfg.path.display()
        );
    }
    let Some(want) = shapes.get(bare).filter(|_| listed) else {
        bail!(
            "tensor {} is neither a lora_A / lora_B factor nor a weight of a module in \
             modules_to_save of {} that the base has",
            shown(name),
            cfg.path.display()
        );
    };
    if want.as_slice() != shape {
        bail!(
            "tensor {} has shape {shape:?}, but the base's {bare} is {want:?}",
            shown(name)
        );
    }
    Ok((bare.to_string(), name.to_string()))
}
