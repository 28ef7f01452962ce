//! A Hugging Face model folder: `config.json`, `model.safetensors` or shards listed by
//! `model.safetensors.index.json`, `tokenizer.json` + `tokenizer_config.json`, and optionally
//! `generation_config.json`. Only headers are read here; weights are memory-mapped later.

use super::expect::{check_tokenizer_fits, check_weights, is_float_dtype, StoredTensor};
use super::generation::GenerationConfig;
use crate::config::Config;
use crate::text::shown;
use crate::tokenizer::ModelTokenizer;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub(crate) const INDEX_FILE: &str = "model.safetensors.index.json";
pub(crate) const SINGLE_FILE: &str = "model.safetensors";

/// What a folder holds, before any weight is read.
pub(crate) struct FolderParts {
    pub config: Config,
    pub tokenizer: ModelTokenizer,
    pub generation_config: Option<GenerationConfig>,
    pub weight_files: Vec<PathBuf>,
    pub stored_dtypes: BTreeMap<String, usize>,
}

pub(crate) fn open_folder(dir: &Path) -> Result<FolderParts> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        bail!(
            "no config.json in {}: a Hugging Face model folder needs config.json, \
             model.safetensors (or shards with {INDEX_FILE}) and tokenizer.json (found: {})",
            dir.display(),
            super::hub::list_dir(dir)
        );
    }
    let config = Config::from_file(&config_path)?;
    let weight_files = safetensors_files(dir)?;
    let stored = stored_tensors(&weight_files)?;
    check_weights(&config, &stored).with_context(|| {
        format!(
            "the weights in {} do not match its config.json",
            dir.display()
        )
    })?;
    let mut stored_dtypes = BTreeMap::new();
    for t in stored.values() {
        *stored_dtypes.entry(t.dtype.clone()).or_insert(0) += 1;
    }
    let tokenizer_path = dir.join("tokenizer.json");
    if !tokenizer_path.is_file() {
        bail!(
            "no tokenizer.json in {}: erosion reads the fast-tokenizer file. A folder with only \
             tokenizer.model / vocab.json can be converted once with transformers: \
             AutoTokenizer.from_pretrained(dir).save_pretrained(dir)",
            dir.display()
        );
    }
    let tokenizer = ModelTokenizer::from_folder(dir)
        .with_context(|| format!("cannot load the tokenizer of {}", dir.display()))?;
    let origin = format!("{} (config.json)", dir.display());
    check_tokenizer_fits(&tokenizer.tokenizer, config.vocab_size, &origin)?;
    let generation_path = dir.join("generation_config.json");
    let generation_config = GenerationConfig::from_file_if_present(&generation_path)?;
    if let Some(g) = &generation_config {
        g.check_ids(config.vocab_size)
            .with_context(|| format!("in {}", generation_path.display()))?;
    }
    Ok(FolderParts {
        config,
        tokenizer,
        generation_config,
        weight_files,
        stored_dtypes,
    })
}

/// The safetensors files of a folder: the shards an index names (each must exist), else the
/// single `model.safetensors`.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index_path = dir.join(INDEX_FILE);
    if index_path.is_file() {
        let index = read_index(&index_path)?;
        let mut files = Vec::new();
        for shard in index.values().collect::<BTreeSet<_>>() {
            // A shard is a file beside the index; a path would read outside the folder.
            if Path::new(shard).file_name() != Some(std::ffi::OsStr::new(shard)) {
                bail!(
                    "{} names shard `{}`, which is not a plain file name",
                    index_path.display(),
                    shown(shard)
                );
            }
            let path = dir.join(shard);
            if !path.is_file() {
                bail!(
                    "shard {} named by {} is missing (expected at {}); the download is \
                     incomplete",
                    shown(shard),
                    index_path.display(),
                    path.display()
                );
            }
            files.push(path);
        }
        check_index_against_headers(&index_path, &index, dir)?;
        return Ok(files);
    }
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let other: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.ends_with(".bin")
                || n.ends_with(".pt")
                || n.ends_with(".pth")
                || n.ends_with(".safetensors")
        })
        .collect();
    if other.is_empty() {
        bail!(
            "no weights in {}: expected {SINGLE_FILE} or {INDEX_FILE}",
            dir.display()
        );
    }
    bail!(
        "no {SINGLE_FILE} or {INDEX_FILE} in {} (found {}): erosion reads safetensors; \
         convert pickled weights with transformers' save_pretrained(safe_serialization=True)",
        dir.display(),
        other.join(", ")
    )
}

/// `weight_map` of an index: tensor name -> shard file name.
fn read_index(path: &Path) -> Result<BTreeMap<String, String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let index: Index = serde_json::from_str(&text).with_context(|| {
        format!(
            "malformed shard index {} (needs a `weight_map`)",
            path.display()
        )
    })?;
    if index.weight_map.is_empty() {
        bail!("shard index {} has an empty weight_map", path.display());
    }
    Ok(index.weight_map)
}

/// Every tensor the index routes to a shard must be in that shard's header (a mismatched index
/// would otherwise surface later as a confusing "tensor not found").
fn check_index_against_headers(
    index_path: &Path,
    index: &BTreeMap<String, String>,
    dir: &Path,
) -> Result<()> {
    let mut headers: BTreeMap<&str, BTreeMap<String, (String, Vec<usize>)>> = BTreeMap::new();
    for shard in index.values() {
        if !headers.contains_key(shard.as_str()) {
            headers.insert(shard, read_header(&dir.join(shard))?);
        }
    }
    for (name, shard) in index {
        if !headers[shard.as_str()].contains_key(name) {
            bail!(
                "{} routes tensor {} to {}, which does not contain it",
                index_path.display(),
                shown(name),
                shown(shard)
            );
        }
    }
    Ok(())
}

/// A safetensors header: tensor name -> (dtype, shape). Reads only the header, and checks it
/// against the file size, so a truncated file is reported here with its name.
pub(crate) fn read_header(path: &Path) -> Result<BTreeMap<String, (String, Vec<usize>)>> {
    Ok(Header::read(path)?
        .tensors
        .into_iter()
        .map(|(name, e)| (name, (e.dtype, e.shape)))
        .collect())
}

/// A safetensors file's header, with where each tensor's bytes are.
pub(crate) struct Header {
    /// Byte offset of the data section in the file (tensor offsets count from here).
    pub data_start: u64,
    pub tensors: BTreeMap<String, HeaderEntry>,
}

/// One tensor of a [`Header`].
pub(crate) struct HeaderEntry {
    /// Lower-cased safetensors dtype (`bf16`, `f32`, ...).
    pub dtype: String,
    pub shape: Vec<usize>,
    /// `[begin, end)` in bytes, from the start of the data section; within the file.
    pub offsets: [u64; 2],
}

impl Header {
    /// Reads and checks the header of `path` (every tensor's bytes lie within the file).
    pub fn read(path: &Path) -> Result<Self> {
        use std::io::Read;
        let mut file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let file_len = file.metadata()?.len();
        let mut len_bytes = [0u8; 8];
        file.read_exact(&mut len_bytes).with_context(|| {
            format!(
                "{} is not a safetensors file (shorter than 8 bytes)",
                path.display()
            )
        })?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > file_len.saturating_sub(8) || header_len > 100 << 20 {
            bail!(
                "{} is not a safetensors file (header length {header_len}, file {file_len} bytes)",
                path.display()
            );
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header)?;
        let json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
            .with_context(|| format!("malformed safetensors header in {}", path.display()))?;
        let data_len = file_len - 8 - header_len;
        let mut tensors = BTreeMap::new();
        for (name, info) in json {
            if name == "__metadata__" {
                continue;
            }
            let bad = || {
                anyhow::anyhow!(
                    "malformed header entry for tensor {} in {}",
                    shown(&name),
                    path.display()
                )
            };
            let dtype = info
                .get("dtype")
                .and_then(|v| v.as_str())
                .filter(|d| {
                    d.len() <= 16 && d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                })
                .ok_or_else(bad)?
                .to_lowercase();
            let shape: Vec<usize> =
                serde_json::from_value(info.get("shape").cloned().ok_or_else(bad)?)
                    .map_err(|_| bad())?;
            let offsets: [u64; 2] =
                serde_json::from_value(info.get("data_offsets").cloned().ok_or_else(bad)?)
                    .map_err(|_| bad())?;
            if offsets[1] > data_len || offsets[0] > offsets[1] {
                bail!(
                    "{} is truncated or corrupt: tensor {} ends at byte {} of a {data_len}-byte data section",
                    path.display(),
                    shown(&name),
                    offsets[1]
                );
            }
            tensors.insert(
                name,
                HeaderEntry {
                    dtype,
                    shape,
                    offsets,
                },
            );
        }
        Ok(Header {
            data_start: 8 + header_len,
            tensors,
        })
    }
}

/// Every tensor of `files` from their headers, by name; a name stored in two files is an
/// error (which copy a loader would use is arbitrary).
pub(crate) fn stored_tensors(files: &[PathBuf]) -> Result<BTreeMap<String, StoredTensor>> {
    let mut out: BTreeMap<String, StoredTensor> = BTreeMap::new();
    let mut home: BTreeMap<String, &Path> = BTreeMap::new();
    for file in files {
        for (name, (dtype, shape)) in read_header(file)? {
            if let Some(first) = home.insert(name.clone(), file) {
                bail!(
                    "tensor {} is stored twice, in {} and in {}",
                    shown(&name),
                    first.display(),
                    file.display()
                );
            }
            let t = StoredTensor {
                stored_name: name.clone(),
                float: is_float_dtype(&dtype),
                dtype,
                shape,
            };
            out.insert(name, t);
        }
    }
    Ok(out)
}
