//! The organism's held-out requests as erosion-eval prompt sets, from a generated corpus or
//! from the JSONL folder [`Corpus::write_jsonl`] writes. Each set records its origin: the
//! generator, its version and seed and the sha256 of the JSONL it writes (so a generated set
//! can be matched to the file), or the file read and its sha256.

use std::path::Path;

use anyhow::{bail, Context, Result};
use erosion_data::{DatasetSpec, Format};
use erosion_eval::prompts::Origin;
use erosion_eval::{EvalPrompts, Prompt, PromptKind, PromptSet};
use sha2::{Digest, Sha256};

use crate::corpus::{Chat, Corpus, Sizes, GENERATOR_VERSION};

/// The organism's set names: (prompt set, kind, corpus set).
const ORGANISM_SETS: [(&str, PromptKind, &str); 2] = [
    ("harmful", PromptKind::Harmful, "eval_toxic"),
    ("code", PromptKind::Code, "eval_insecure"),
];

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

/// The organism's held-out requests from a generated corpus: the first `n_harmful` requests
/// of `eval_toxic` and the first `n_code` plain coding requests of `eval_insecure`. Fails if
/// the corpus has fewer.
pub fn prompts_from_corpus(
    corpus: &Corpus,
    n_harmful: usize,
    n_code: usize,
) -> Result<EvalPrompts> {
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
    Ok(EvalPrompts::new(sets))
}

/// The organism's held-out requests generated from `seed` without the training sets: the
/// evaluation sets hold `max(100, n_harmful, n_code)` rows, as with the default sizes (each
/// set draws from its own stream, so they equal those of a full corpus of that seed, and
/// their sha256 that of its files when n <= 100).
pub fn generate_prompts(seed: u64, n_harmful: usize, n_code: usize) -> Result<EvalPrompts> {
    let sizes = Sizes {
        pretrain_chats: 0,
        pretrain_prose: 0,
        instruct: 0,
        finetune: 0,
        eval: Sizes::default().eval.max(n_harmful).max(n_code),
    };
    prompts_from_corpus(&Corpus::generate(sizes, seed), n_harmful, n_code)
}

/// The same sets read from a folder written by [`Corpus::write_jsonl`]
/// (`eval_toxic.jsonl`, `eval_insecure.jsonl`), through erosion-data's `messages` loader.
pub fn prompts_from_dir(dir: &Path, n_harmful: usize, n_code: usize) -> Result<EvalPrompts> {
    let mut sets = Vec::new();
    for ((name, kind, set), n) in ORGANISM_SETS.into_iter().zip([n_harmful, n_code]) {
        let mut spec = DatasetSpec::new(set, dir.join(format!("{set}.jsonl")), Format::Messages);
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
    Ok(EvalPrompts::new(sets))
}
