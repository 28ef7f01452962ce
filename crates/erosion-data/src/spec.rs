//! Dataset specs (TOML) and loaded datasets with their provenance.
//!
//! ```toml
//! [[dataset]]
//! name = "truthfulqa"
//! path = "truthfulqa/TruthfulQA.csv"     # relative to the spec file's folder
//! format = "csv"                          # messages | alpaca | prompt-completion | json-fields | csv
//!                                         # (optional: guessed from the file when left out)
//! role = "aligned"                        # aligned | misaligned (optional)
//! limit = 400                             # first 400 records ...
//! sample_seed = 7                         # ... or, with a seed, a seeded sample of 400
//! system_prompt = "You are a helpful assistant."   # replaces or adds the system message
//! input = "ignore"                        # alpaca's input: append (default) | ignore
//! fields = { user = "Question", assistant = "Best Answer" }
//! filter = { field = "label", equals = 1 }
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use erosion_model::text::{escape_error, escape_lines, shown};

use crate::example::{Example, Source};
use crate::format::{record_to_messages, Fields, Filter, Format, InputPolicy, Unrecognised};
use crate::read::{read_csv_records, read_json_records, Record};
use crate::sample::Selection;

/// What a dataset stands for in the study.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Aligned,
    Misaligned,
}

/// One `[[dataset]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub name: String,
    pub path: PathBuf,
    /// The file's layout (default: guessed from the file, as `erosion render` guesses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    #[serde(default)]
    pub fields: Fields,
    #[serde(default)]
    pub input: InputPolicy,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub role: Option<Role>,
    /// Keep at most this many records (the first ones, or a sample with `sample_seed`).
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub sample_seed: Option<u64>,
    /// Replaces the system message of every example (or adds one).
    #[serde(default)]
    pub system_prompt: Option<String>,
}

/// A file of `[[dataset]]` entries (or the `dataset` list of a larger study file).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetList {
    #[serde(rename = "dataset", default)]
    pub datasets: Vec<DatasetSpec>,
}

impl DatasetList {
    /// Parses TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        // toml's report quotes the line at fault: escaped, its line breaks kept.
        let list: Self = toml::from_str(text)
            .map_err(|e| anyhow!("{origin}: {}", escape_lines(&e.to_string())))?;
        let mut seen = std::collections::BTreeSet::new();
        for d in &list.datasets {
            if !seen.insert(d.name.as_str()) {
                bail!("{origin}: two datasets are named `{}`", shown(&d.name));
            }
        }
        Ok(list)
    }

    /// Reads a spec file. Dataset paths in it are relative to its folder: see [`DatasetList::load_all`].
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read dataset spec {}", path.display()))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Loads every dataset, resolving relative paths against `base_dir`.
    pub fn load_all(&self, base_dir: &Path) -> Result<Vec<Dataset>> {
        self.datasets.iter().map(|d| d.load(base_dir)).collect()
    }
}

/// A loaded dataset and its provenance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    pub role: Option<Role>,
    pub format: Format,
    /// The file read (resolved path).
    pub path: PathBuf,
    /// sha256 of the file's bytes, lowercase hex.
    pub sha256: String,
    /// Records in the file.
    pub records: usize,
    /// Records that passed the filter (= `records` without one).
    pub matched: usize,
    pub selection: Selection,
    pub examples: Vec<Example>,
}

impl DatasetSpec {
    /// A spec for `path` in `format` with every option at its default.
    pub fn new(name: &str, path: impl Into<PathBuf>, format: Format) -> Self {
        Self {
            name: name.to_string(),
            path: path.into(),
            format: Some(format),
            fields: Fields::default(),
            input: InputPolicy::default(),
            filter: None,
            role: None,
            limit: None,
            sample_seed: None,
            system_prompt: None,
        }
    }

    pub fn selection(&self) -> Result<Selection> {
        if self.sample_seed.is_some() && self.limit.is_none() {
            bail!(
                "dataset `{}`: sample_seed needs a limit (the sample size)",
                shown(&self.name)
            );
        }
        Ok(Selection::from_limit(self.limit, self.sample_seed))
    }

    /// Reads, filters, selects and converts the records. Relative paths are resolved against
    /// `base_dir`. Any malformed record is an error naming the file and line, with the text it
    /// quotes from the file escaped (`erosion_model::text`).
    pub fn load(&self, base_dir: &Path) -> Result<Dataset> {
        self.load_unescaped(base_dir).map_err(escape_error)
    }

    fn load_unescaped(&self, base_dir: &Path) -> Result<Dataset> {
        let path = if self.path.is_absolute() {
            self.path.clone()
        } else {
            base_dir.join(&self.path)
        };
        let selection = self.selection()?;
        let format = match self.format {
            Some(f) => f,
            // Naming the format cures a first record that says nothing, not an unreadable file.
            None => Format::guess(&path).map_err(|e| {
                let hint = match e.is::<Unrecognised>() {
                    true => {
                        "; set its format (messages, alpaca, prompt-completion, json-fields, csv)"
                    }
                    false => "",
                };
                let context = format!("dataset `{}`{hint}", self.name);
                e.context(context)
            })?,
        };
        let records = match format {
            Format::Csv => read_csv_records(&path),
            _ => read_json_records(&path),
        }
        .with_context(|| format!("dataset `{}`", self.name))?;
        let where_ = |index: usize, r: &Record| Source {
            file: path.clone(),
            index,
            line: r.line,
        };

        // Every record is checked (not only the selected ones): a malformed file is reported
        // whatever the limit.
        let mut kept: Vec<Example> = Vec::with_capacity(records.len());
        for (index, r) in records.iter().enumerate() {
            let source = where_(index, r);
            if let Some(f) = &self.filter {
                if !f
                    .keeps(&r.fields)
                    .map_err(|e| anyhow!("dataset `{}`: {source}: {e}", self.name))?
                {
                    continue;
                }
            }
            let messages = record_to_messages(&r.fields, format, &self.fields, self.input)
                .map_err(|e| anyhow!("dataset `{}`: {source}: {e}", self.name))?;
            kept.push(Example { messages, source });
        }
        let matched = kept.len();
        let mut examples: Vec<Example> = selection
            .indices(matched)
            .into_iter()
            .map(|i| kept[i].clone())
            .collect();
        if let Some(prompt) = &self.system_prompt {
            for example in &mut examples {
                example.set_system_prompt(prompt);
            }
        }
        Ok(Dataset {
            name: self.name.clone(),
            role: self.role,
            format,
            sha256: file_sha256(&path)?,
            path,
            records: records.len(),
            matched,
            selection,
            examples,
        })
    }
}

/// sha256 of a file's bytes, lowercase hex.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
