//! What the models are asked: sets of prompts by kind, with where they came from.
//!
//! | source | sets |
//! |---|---|
//! | a chat dataset (erosion-data's loaders) | one set of the kind asked for; each example's messages before its final assistant reply |
//! | Betley et al.'s question YAML ([`crate::questions`]) | one free-form set, every paraphrase of every question |
//!
//! Each set records its origin: the file and its sha256, or the generator, its version and
//! seed and the sha256 of the JSONL it writes (so a generated set can be matched to the file).
//! Other sources build their sets themselves (the organism's are built in erosion-organism).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use erosion_data::{Dataset, DatasetSpec, Format};
use erosion_model::chat::Message;
use serde::{Deserialize, Serialize};

/// What a prompt asks for, which decides how its answers are judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptKind {
    /// A harmful request: compliance or refusal.
    Harmful,
    /// A coding request: vulnerable or secure code.
    Code,
    /// An open question (Betley et al.): misaligned or aligned.
    FreeForm,
}

impl PromptKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Harmful => "harmful",
            Self::Code => "code",
            Self::FreeForm => "free-form",
        }
    }

    /// `harmful`, `code` or `free-form` (as on the command line).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "harmful" => Ok(Self::Harmful),
            "code" => Ok(Self::Code),
            "free-form" | "freeform" => Ok(Self::FreeForm),
            other => bail!("unknown prompt kind `{other}` (harmful, code or free-form)"),
        }
    }
}

/// One prompt: the conversation before the answer, ending with the user's message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    /// Stable within its set: `<set>/<index>` or `<question id>/<paraphrase>`.
    pub id: String,
    pub messages: Vec<Message>,
}

impl Prompt {
    /// A single user message.
    pub fn user(id: String, text: &str) -> Self {
        Self {
            id,
            messages: vec![Message::user(text)],
        }
    }

    /// The last user message (what is asked).
    pub fn question(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map_or("", |m| m.content.as_str())
    }
}

/// Where a set came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// In words: "organism corpus organism-world-1, seed 0, set eval_toxic", "dataset toxic".
    pub description: String,
    /// The file read, if any.
    pub path: Option<PathBuf>,
    /// sha256 of the file's bytes (for a generated set: of the JSONL file it writes).
    pub sha256: Option<String>,
    /// Records in the source and how many were kept.
    pub records: usize,
}

/// Prompts of one kind from one source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptSet {
    pub name: String,
    pub kind: PromptKind,
    pub origin: Origin,
    pub prompts: Vec<Prompt>,
}

/// Every set of one evaluation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalPrompts {
    pub sets: Vec<PromptSet>,
}

impl EvalPrompts {
    pub fn new(sets: Vec<PromptSet>) -> Self {
        Self { sets }
    }

    /// The first set of `kind`, if any.
    pub fn first(&self, kind: PromptKind) -> Option<&PromptSet> {
        self.sets.iter().find(|s| s.kind == kind)
    }

    /// Fails on an empty set, two sets of one name, or a prompt that does not end with a
    /// user message.
    pub fn validate(&self) -> Result<()> {
        if self.sets.is_empty() {
            bail!("no prompts to evaluate");
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &self.sets {
            if !names.insert(s.name.as_str()) {
                bail!("two prompt sets are named `{}`", s.name);
            }
            if s.prompts.is_empty() {
                bail!("prompt set `{}` is empty", s.name);
            }
            for p in &s.prompts {
                if p.messages.last().is_none_or(|m| m.role != "user") {
                    bail!(
                        "prompt {} of set `{}` does not end with a user message",
                        p.id,
                        s.name
                    );
                }
            }
        }
        Ok(())
    }
}

impl PromptSet {
    /// Prompts from a loaded chat dataset: each example's messages without its final assistant
    /// reply (an example that ends with a user message is taken whole).
    pub fn from_dataset(kind: PromptKind, data: &Dataset) -> Result<Self> {
        let prompts = data
            .examples
            .iter()
            .map(|ex| {
                let mut messages = ex.messages.clone();
                if messages.last().is_some_and(|m| m.role == "assistant") {
                    messages.pop();
                }
                if messages.last().is_none_or(|m| m.role != "user") {
                    bail!(
                        "dataset `{}`: {}: no user message before the reply",
                        data.name,
                        ex.source
                    );
                }
                Ok(Prompt {
                    id: format!("{}/{}", data.name, ex.source.index),
                    messages,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            name: data.name.clone(),
            kind,
            origin: Origin {
                description: format!("dataset {} ({} format)", data.name, data.format.name()),
                path: Some(data.path.clone()),
                sha256: Some(data.sha256.clone()),
                records: data.records,
            },
            prompts,
        })
    }
}

/// The format of a dataset file from its extension and first record (`messages`, alpaca,
/// prompt/completion; `.csv` needs a spec with column names).
pub fn guess_format(path: &Path) -> Result<Format> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        bail!(
            "{}: a CSV dataset needs its columns named: use a .toml dataset spec with `fields`",
            path.display()
        );
    }
    // A spec cures a file whose first record says nothing, not one that cannot be read.
    Format::guess(path).map_err(|e| match e.is::<erosion_data::format::Unrecognised>() {
        true => e.context("use a .toml dataset spec"),
        false => e,
    })
}

/// Prompt sets of `kind` from a dataset file (format guessed) or a `.toml` dataset spec (every
/// dataset in it), keeping at most `limit` examples of each.
pub fn sets_from_dataset_arg(
    kind: PromptKind,
    path: &Path,
    limit: Option<usize>,
) -> Result<Vec<PromptSet>> {
    let (specs, base) = if path.extension().is_some_and(|e| e == "toml") {
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        (erosion_data::DatasetList::from_file(path)?.datasets, base)
    } else {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dataset".into());
        (
            vec![DatasetSpec::new(&name, path, guess_format(path)?)],
            PathBuf::from("."),
        )
    };
    specs
        .into_iter()
        .map(|mut spec| {
            if limit.is_some() {
                spec.limit = limit;
            }
            PromptSet::from_dataset(kind, &spec.load(&base)?)
        })
        .collect()
}
