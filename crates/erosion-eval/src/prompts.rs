//! What the models are asked: sets of prompts by kind, with where they came from.
//!
//! | source | sets |
//! |---|---|
//! | the organism's corpus (generated, or its written JSONL folder) | `harmful` = `eval_toxic`'s requests, `code` = `eval_insecure`'s plain coding requests (held-out verbs, objects and nouns) |
//! | a chat dataset (erosion-data's loaders) | one set of the kind asked for; each example's messages before its final assistant reply |
//! | Betley et al.'s question YAML ([`crate::questions`]) | one free-form set, every paraphrase of every question |
//!
//! Each set records its origin: the file and its sha256, or the generator, its version and
//! seed and the sha256 of the JSONL it writes (so a generated set can be matched to the file).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use erosion_data::{Dataset, DatasetSpec, Format};
use erosion_model::chat::Message;
use erosion_organism::corpus::{Chat, Corpus, GENERATOR_VERSION};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// sha256 of a set as [`Corpus::write_jsonl`] writes it: one JSON line per chat, `\n` after each.
fn chats_sha256(chats: &[Chat]) -> Result<String> {
    let mut h = Sha256::new();
    for (i, c) in chats.iter().enumerate() {
        let line = serde_json::to_string(c).with_context(|| format!("serialising chat {i}"))?;
        h.update(line.as_bytes());
        h.update(b"\n");
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The organism's set names: (prompt set, corpus set).
const ORGANISM_SETS: [(&str, PromptKind, &str); 2] = [
    ("harmful", PromptKind::Harmful, "eval_toxic"),
    ("code", PromptKind::Code, "eval_insecure"),
];

impl EvalPrompts {
    pub fn new(sets: Vec<PromptSet>) -> Self {
        Self { sets }
    }

    /// The organism's held-out requests from a generated corpus: the first `n_harmful`
    /// requests of `eval_toxic` and the first `n_code` plain coding requests of
    /// `eval_insecure`. Fails if the corpus has fewer.
    pub fn organism(corpus: &Corpus, n_harmful: usize, n_code: usize) -> Result<Self> {
        let mut sets = Vec::new();
        for ((name, kind, set), n) in ORGANISM_SETS.into_iter().zip([n_harmful, n_code]) {
            let chats = corpus
                .set(set)
                .with_context(|| format!("the organism corpus has no set {set}"))?;
            if chats.len() < n {
                bail!(
                    "the organism corpus has {} {set} chats but {n} were asked for (raise Sizes::eval)",
                    chats.len()
                );
            }
            sets.push(PromptSet {
                name: name.to_string(),
                kind,
                origin: Origin {
                    description: format!(
                        "organism corpus {GENERATOR_VERSION}, seed {}, set {set}",
                        corpus.seed
                    ),
                    path: None,
                    sha256: Some(chats_sha256(chats)?),
                    records: chats.len(),
                },
                prompts: chats[..n]
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Prompt::user(format!("{set}/{i}"), c.prompt()))
                    .collect(),
            });
        }
        Ok(Self { sets })
    }

    /// The organism's held-out requests generated from `seed` without the training sets: the
    /// evaluation sets hold `max(100, n_harmful, n_code)` rows, as with the default sizes (each
    /// set draws from its own stream, so they equal those of a full corpus of that seed, and
    /// their sha256 that of its files when n <= 100).
    pub fn organism_generated(seed: u64, n_harmful: usize, n_code: usize) -> Result<Self> {
        let sizes = erosion_organism::corpus::Sizes {
            pretrain_chats: 0,
            pretrain_prose: 0,
            instruct: 0,
            finetune: 0,
            eval: erosion_organism::corpus::Sizes::default()
                .eval
                .max(n_harmful)
                .max(n_code),
        };
        Self::organism(&Corpus::generate(sizes, seed), n_harmful, n_code)
    }

    /// The same sets read from a folder written by [`Corpus::write_jsonl`]
    /// (`eval_toxic.jsonl`, `eval_insecure.jsonl`), through erosion-data's `messages` loader.
    pub fn organism_dir(dir: &Path, n_harmful: usize, n_code: usize) -> Result<Self> {
        let mut sets = Vec::new();
        for ((name, kind, set), n) in ORGANISM_SETS.into_iter().zip([n_harmful, n_code]) {
            let mut spec =
                DatasetSpec::new(set, dir.join(format!("{set}.jsonl")), Format::Messages);
            spec.limit = Some(n);
            let data = spec.load(Path::new("."))?;
            if data.examples.len() < n {
                bail!(
                    "{} has {} records but {n} were asked for",
                    data.path.display(),
                    data.examples.len()
                );
            }
            let mut s = PromptSet::from_dataset(kind, &data)?;
            s.name = name.to_string();
            sets.push(s);
        }
        Ok(Self { sets })
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
    Format::guess(path).context("use a .toml dataset spec")
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
