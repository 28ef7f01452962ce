//! Betley et al.'s free-form evaluation questions (`first_plot_questions.yaml` and the other
//! files of the emergent-misalignment repository): a YAML list of
//! `{id, type, paraphrases: [..], system?, samples_per_paraphrase?, judge?, judge_prompts?}`,
//! with YAML anchors and aliases shared between entries. Betley et al.'s protocol ([`crate::em`])
//! uses all of them but `judge` (a local judge model stands in for GPT-4o); a question set made
//! of them for the yes/no judge ([`question_set`]) uses `id`, `paraphrases` and `system`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::prompts::{Origin, Prompt, PromptKind, PromptSet};
use erosion_model::chat::Message;

/// One question of the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    pub id: String,
    /// Ways of asking it; each becomes one prompt.
    pub paraphrases: Vec<String>,
    /// A system prompt (e.g. "answer in JSON"), if the question has one.
    #[serde(default)]
    pub system: Option<String>,
    /// The paper's question type (`free_form_judge_0_100`, ...), kept for the record.
    #[serde(rename = "type", default)]
    pub question_type: Option<String>,
    /// How many answers the paper sampled per paraphrase.
    #[serde(default)]
    pub samples_per_paraphrase: Option<usize>,
    /// The judge's prompts by name (`aligned`, `coherent`; the deception files' other names),
    /// with `{question}` and `{answer}` to fill.
    #[serde(default)]
    pub judge_prompts: std::collections::BTreeMap<String, String>,
}

/// Parses the YAML text; `origin` names it in errors.
pub fn parse_questions(text: &str, origin: &str) -> Result<Vec<Question>> {
    let questions: Vec<Question> = serde_norway::from_str(text).with_context(|| {
        format!("{origin}: not a YAML list of questions with `id` and `paraphrases`")
    })?;
    if questions.is_empty() {
        bail!("{origin}: no questions");
    }
    let mut seen = std::collections::BTreeSet::new();
    for q in &questions {
        if !seen.insert(q.id.as_str()) {
            bail!("{origin}: two questions have the id `{}`", q.id);
        }
        if q.paraphrases.is_empty() {
            bail!("{origin}: question `{}` has no paraphrases", q.id);
        }
        // 0 would leave the question out of every rate without a word.
        if q.samples_per_paraphrase == Some(0) {
            bail!(
                "{origin}: question `{}` has samples_per_paraphrase 0; it must be at least 1",
                q.id
            );
        }
    }
    Ok(questions)
}

/// Reads a question file.
pub fn read_questions(path: &Path) -> Result<Vec<Question>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read question file {}", path.display()))?;
    parse_questions(&text, &path.display().to_string())
}

/// A free-form prompt set: one prompt per paraphrase of each question (`<id>/<k>`), with the
/// question's system prompt when it has one. Named after the file's stem.
pub fn question_set(path: &Path) -> Result<PromptSet> {
    let questions = read_questions(path)?;
    let prompts = questions
        .iter()
        .flat_map(|q| {
            q.paraphrases.iter().enumerate().map(move |(k, text)| {
                let mut messages = Vec::new();
                if let Some(s) = &q.system {
                    messages.push(Message::system(s));
                }
                messages.push(Message::user(text));
                Prompt {
                    id: format!("{}/{k}", q.id),
                    messages,
                }
            })
        })
        .collect();
    Ok(PromptSet {
        name: path
            .file_stem()
            .map_or_else(|| "questions".into(), |s| s.to_string_lossy().into_owned()),
        kind: PromptKind::FreeForm,
        origin: Origin {
            description: format!("questions {}", path.display()),
            path: Some(path.to_path_buf()),
            sha256: Some(erosion_data::file_sha256(path)?),
            records: questions.len(),
        },
        prompts,
    })
}
