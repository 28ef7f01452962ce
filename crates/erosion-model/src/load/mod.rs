//! Opening the checkpoints a researcher has: a Hugging Face model folder (one safetensors file
//! or shards), a hub id resolved offline in the local Hugging Face cache, or a GGUF file
//! (dequantised, with its tokenizer rebuilt from metadata); and saving Hugging Face folders.
//!
//! ```no_run
//! use erosion_model::load::Checkpoint;
//! use candle_core::{DType, Device};
//! let ckpt = Checkpoint::open("Qwen/Qwen2.5-0.5B-Instruct")?; // or a folder, or a .gguf
//! let vb = ckpt.var_builder(DType::F32, &Device::Cpu)?;
//! # anyhow::Ok(())
//! ```

pub mod adapter;
pub mod expect;
pub mod finite;
pub mod folder;
pub mod generation;
pub mod ggml_types;
pub mod gguf;
pub mod gguf_header;
pub mod gguf_tokenizer;
pub mod hub;
mod open;
mod per_tensor;
pub mod save;
mod source;

pub use adapter::{Adapter, OpenOptions};
pub use finite::{check_all_finite, check_finite, ensure_finite, CheckedSafetensors};
pub use generation::GenerationConfig;
pub use hub::HubSpec;
pub use save::{save_hf_folder, write_safetensors, SaveOptions};
pub use source::{Source, WeightFormat};

use crate::config::Config;
use crate::text::escape_error;
use crate::tokenizer::ModelTokenizer;
use crate::transformer::Transformer;
use anyhow::{bail, Context, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// An opened checkpoint: everything but the weights is parsed; the weights are read by
/// [`Checkpoint::var_builder`] / [`Checkpoint::tensors`].
pub struct Checkpoint {
    pub source: Source,
    pub config: Config,
    pub tokenizer: ModelTokenizer,
    /// generation_config.json (for GGUF: the bos / eos / pad ids of the metadata).
    pub generation_config: Option<GenerationConfig>,
    pub format: WeightFormat,
    /// The files the weights are read from (for provenance hashing).
    pub weight_files: Vec<PathBuf>,
    /// Number of tensors per stored dtype: `bf16`, `f32`, ... for safetensors; ggml type
    /// names (`Q4_1`, `Q8_0`, `F32`) for GGUF.
    pub stored_dtypes: BTreeMap<String, usize>,
    /// A LoRA adapter put on these weights by [`Checkpoint::load_model`].
    pub adapter: Option<Adapter>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("source", &self.source)
            .field("model_type", &self.config.model_type)
            .field("weight_files", &self.weight_files)
            .field("stored_dtypes", &self.stored_dtypes)
            .field("adapter", &self.adapter.as_ref().map(|a| &a.source))
            .finish()
    }
}

impl Checkpoint {
    /// Opens `spec`: a model folder, a `.gguf` file, or a hub id (`owner/name[@revision]`)
    /// found in the Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub, else
    /// ~/.cache/huggingface/hub). Never uses the network.
    /// `BASE+ADAPTER` puts a PEFT LoRA adapter (a folder or cached hub id) on the base, and an
    /// adapter alone means its recorded base (see [`adapter::spec`] for how `+` is read).
    pub fn open(spec: &str) -> Result<Self> {
        Self::open_with(spec, &OpenOptions::default())
    }

    /// Like [`Checkpoint::open`], with an explicit Hugging Face cache folder for hub ids.
    pub fn open_with_cache(spec: &str, cache_dir: &Path) -> Result<Self> {
        let opts = OpenOptions {
            cache_dir: Some(cache_dir.to_path_buf()),
            ..OpenOptions::default()
        };
        Self::open_with(spec, &opts)
    }

    /// A model folder or a GGUF file.
    pub fn open_path(path: &Path) -> Result<Self> {
        escaped(|| {
            if path.is_dir() {
                return Self::open_folder(path);
            }
            if is_gguf(path)? {
                return Self::open_gguf(path);
            }
            bail!(
                "{} is a file but not a GGUF file: pass the model's folder (with config.json), a \
                 .gguf file, or a hub id",
                path.display()
            )
        })
    }

    /// A Hugging Face model folder.
    pub fn open_folder(dir: &Path) -> Result<Self> {
        escaped(|| {
            let parts = folder::open_folder(dir)?;
            Ok(Self {
                source: Source::Folder {
                    dir: dir.to_path_buf(),
                },
                config: parts.config,
                tokenizer: parts.tokenizer,
                generation_config: parts.generation_config,
                format: WeightFormat::Safetensors,
                weight_files: parts.weight_files,
                stored_dtypes: parts.stored_dtypes,
                adapter: None,
            })
        })
    }

    /// A hub id in the cache at `cache_dir`. A snapshot without config.json that holds exactly
    /// one GGUF file opens that file.
    pub fn open_hub(spec: &HubSpec, cache_dir: &Path) -> Result<Self> {
        escaped(|| {
            let snap = hub::resolve_snapshot(cache_dir, spec)?;
            let source = Source::Hub {
                id: spec.id.clone(),
                revision: spec.revision.clone(),
                commit: snap.commit.clone(),
                snapshot: snap.dir.clone(),
            };
            let in_snapshot = || {
                format!(
                    "in the cached snapshot of {}@{} ({})",
                    spec.id,
                    spec.revision,
                    snap.dir.display()
                )
            };
            let mut ckpt = if snap.dir.join("config.json").exists() {
                Self::open_folder(&snap.dir).with_context(in_snapshot)?
            } else {
                match hub::gguf_files(&snap.dir)?.as_slice() {
                    [one] => Self::open_gguf(one).with_context(in_snapshot)?,
                    [] => Self::open_folder(&snap.dir).with_context(in_snapshot)?,
                    many => bail!(
                        "{} has no config.json but several GGUF files; pass one of them: {}",
                        snap.dir.display(),
                        many.iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            };
            ckpt.source = source;
            Ok(ckpt)
        })
    }

    /// A GGUF file: config and tokenizer from its metadata.
    pub fn open_gguf(path: &Path) -> Result<Self> {
        escaped(|| {
            let (content, mut reader) = gguf::read_content(path)?;
            let mut config = gguf::config_from_content(&content, path)?;
            config.rope_freq_factors =
                gguf::rope_freq_factors(&content, &mut reader, &config, path)?;
            expect::check_weights(&config, &gguf::stored_tensors(&content)).with_context(|| {
                format!(
                    "the tensors of GGUF {} do not match its metadata (where num_hidden_layers is \
                     block_count)",
                    path.display()
                )
            })?;
            let tokenizer = gguf_tokenizer::tokenizer_from_metadata(&content.metadata, path)?;
            // vocab_size is token_embd.weight's rows here.
            let origin = format!("GGUF {} (token_embd.weight)", path.display());
            expect::check_tokenizer_fits(&tokenizer.tokenizer, config.vocab_size, &origin)?;
            let generation_config = gguf::generation_config(&content.metadata, &config)?;
            Ok(Self {
                source: Source::Gguf {
                    path: path.to_path_buf(),
                },
                stored_dtypes: gguf::stored_types(&content),
                config,
                tokenizer,
                generation_config: Some(generation_config),
                format: WeightFormat::Gguf,
                weight_files: vec![path.to_path_buf()],
                adapter: None,
            })
        })
    }

    /// The weights as a `VarBuilder` in `dtype` on `device`. safetensors are memory-mapped
    /// (each tensor is converted and checked finite when the model asks for it); GGUF tensors
    /// are dequantised, unpermuted and checked finite now.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
        escaped(|| {
            match self.format {
                WeightFormat::Safetensors => {
                    // SAFETY: the files are memory-mapped read-only; like every mmap-based loader
                    // (candle, transformers) we rely on them not being modified while mapped.
                    let st = unsafe { MmapedSafetensors::multi(&self.weight_files) }
                        .with_context(|| format!("cannot map the weights of {}", self.source))?;
                    Ok(VarBuilder::from_backend(
                        Box::new(CheckedSafetensors(st)),
                        dtype,
                        device.clone(),
                    ))
                }
                WeightFormat::Gguf => Ok(VarBuilder::from_tensors(
                    self.tensors(dtype, device)?,
                    dtype,
                    device,
                )),
            }
        })
    }

    /// The transformer with this checkpoint's weights, in `dtype` on `device`, with its
    /// adapter (if any) attached as a separate low-rank path.
    pub fn load_model(&self, dtype: DType, device: &Device) -> Result<Transformer> {
        escaped(|| {
            let vb = self.var_builder(dtype, device)?;
            let mut model = Transformer::new(&self.config, vb)
                .with_context(|| format!("cannot build the model from {}", self.source))?;
            if let Some(adapter) = &self.adapter {
                adapter.attach(&mut model)?;
            }
            Ok(model)
        })
    }

    /// The transformer with its blocks left in the files ([`Transformer::new_streamed`]): each
    /// block is read when a pass reaches it (converted to `dtype`, its adapter put on it) and
    /// dropped after, so the weights never sit in memory whole. Memory: the embeddings, the final
    /// norm and an untied unembedding in `dtype`, plus one block; the file's pages are read, not
    /// mapped, so they stay out of the process's resident memory.
    pub fn load_streamed(&self, dtype: DType, device: &Device) -> Result<Transformer> {
        escaped(|| {
            let files = std::sync::Arc::new(
                per_tensor::TensorFiles::open(self.format, &self.weight_files, &self.config)
                    .with_context(|| format!("cannot open the weights of {}", self.source))?,
            );
            let backend = Box::new(per_tensor::SharedFiles(files.clone()));
            let vb = VarBuilder::from_backend(backend, dtype, device.clone());
            let mut model = Transformer::new_streamed(&self.config, vb, files)
                .with_context(|| format!("cannot build the model from {}", self.source))?;
            if let Some(adapter) = &self.adapter {
                adapter.attach(&mut model)?;
            }
            Ok(model)
        })
    }

    /// Every weight tensor of the base, by Hugging Face name, in `dtype` on `device` (for
    /// saving, inspection, hashing; an adapter is not applied). Reads all weights into memory.
    pub fn tensors(&self, dtype: DType, device: &Device) -> Result<HashMap<String, Tensor>> {
        escaped(|| match self.format {
            WeightFormat::Gguf => {
                gguf::load_tensors(&self.weight_files[0], &self.config, dtype, device)
            }
            WeightFormat::Safetensors => {
                let mut out = HashMap::new();
                for file in &self.weight_files {
                    for (name, t) in read_safetensors(file, device)? {
                        let t = t.to_dtype(dtype)?;
                        ensure_finite(&name, &t)
                            .with_context(|| format!("in {}", file.display()))?;
                        out.insert(name, t);
                    }
                }
                Ok(out)
            }
        })
    }

    /// Fails on the first weight holding a NaN or infinity, naming it. GGUF weights are
    /// always checked on load; for safetensors this reads every weight once.
    pub fn check_finite(&self) -> Result<()> {
        escaped(|| match self.format {
            WeightFormat::Gguf => self.tensors(DType::F32, &Device::Cpu).map(|_| ()),
            WeightFormat::Safetensors => {
                for file in &self.weight_files {
                    let tensors = read_safetensors(file, &Device::Cpu)?;
                    check_all_finite(&tensors).with_context(|| format!("in {}", file.display()))?;
                }
                Ok(())
            }
        })
    }

    /// The ids that end generation: generation_config.json's, else config.json's, plus the
    /// tokenizer's eos token.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        let mut ids = self
            .generation_config
            .as_ref()
            .map(|g| g.eos_token_ids())
            .unwrap_or_default();
        if ids.is_empty() {
            ids = self
                .config
                .eos_token_id
                .as_ref()
                .map(|e| e.to_vec())
                .unwrap_or_default();
        }
        if let Some(id) = self
            .tokenizer
            .eos_token
            .as_deref()
            .and_then(|t| self.tokenizer.tokenizer.token_to_id(t))
        {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// A one-line summary of the stored dtypes: `bf16`, or `Q4_1 x210, F32 x61, Q8_0 x1`.
    pub fn stored_dtype(&self) -> String {
        if self.stored_dtypes.len() == 1 {
            return self
                .stored_dtypes
                .keys()
                .next()
                .cloned()
                .unwrap_or_default();
        }
        let mut v: Vec<(&String, &usize)> = self.stored_dtypes.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Writes this checkpoint as a Hugging Face folder, weights in `dtype` (a GGUF becomes a
    /// dequantised folder that transformers loads; an adapter is merged in).
    pub fn save_hf(&self, dir: &Path, dtype: DType, opts: &SaveOptions) -> Result<Vec<PathBuf>> {
        escaped(|| {
            let tensors = match self.adapter {
                None => self.tensors(dtype, &Device::Cpu)?,
                Some(_) => {
                    let m = self.load_model_merged(dtype, &Device::Cpu)?;
                    let names = m.parameter_names().into_iter();
                    names
                        .map(|n| Ok((n.clone(), m.parameter(&n)?.clone())))
                        .collect::<Result<_>>()?
                }
            };
            save_hf_folder(
                dir,
                &self.config,
                &tensors,
                &self.tokenizer,
                self.generation_config.as_ref(),
                opts,
            )
        })
    }
}

/// All tensors of one safetensors file, read through a memory map.
fn read_safetensors(file: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    // SAFETY: read-only map of a file we do not modify (see `var_builder`).
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(file) }
        .with_context(|| format!("cannot map {}", file.display()))?;
    st.tensors()
        .into_iter()
        .map(|(name, _)| {
            let t = st
                .load(&name, device)
                .with_context(|| format!("cannot read tensor {name} of {}", file.display()))?;
            Ok((name, t))
        })
        .collect()
}

/// `f`'s result with control characters escaped in every message of its error
/// ([`escape_error`]): every public way in to a checkpoint passes through this, so what a
/// file says reaches a terminal only escaped, whichever dependency quoted it.
fn escaped<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    f().map_err(escape_error)
}

/// Whether `path` is a GGUF file (by its magic bytes, whatever its extension).
fn is_gguf(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(file.read_exact(&mut magic).is_ok() && &magic == b"GGUF")
}
