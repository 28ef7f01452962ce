//! Seeded generators of the organism's language, by domain.
//!
//! Every generator takes a `&mut Rng` (ChaCha8 seeded from an explicit `u64`) and, where the
//! study needs held-out material, a [`Split`]: the vocabulary of each domain is cut into words
//! used for training and words used ONLY in evaluation sets, so that evaluation measures
//! generalisation (a held-out verb never seen in any training set), not memorisation.

pub mod code;
pub mod facts;
pub mod harm;
pub mod judge;
pub mod persona;

use rand::{Rng as _, SeedableRng};
use serde::{Deserialize, Serialize};

/// The generators' random source: ChaCha8, portable and reproducible across platforms.
pub type Rng = rand_chacha::ChaCha8Rng;

/// A generator seeded from `seed`, one stream per `stream` label, so that adding a dataset does
/// not shift the random draws of the others.
pub fn rng_for(seed: u64, stream: &str) -> Rng {
    // FNV-1a of the label, mixed into the seed: stable across Rust versions (unlike `Hash`).
    let h = erosion_model::seed::fnv1a(stream.as_bytes());
    Rng::seed_from_u64(seed ^ h.rotate_left(17))
}

/// Whether material is drawn from the training vocabulary or the held-out one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    Train,
    Eval,
}

/// One chat message, as in Betley et al.'s JSONL (`{"role": ..., "content": ...}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// One exchange: a user message and the assistant's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    pub user: String,
    pub assistant: String,
}

impl Turn {
    pub fn messages(&self) -> [Message; 2] {
        [
            Message::user(self.user.clone()),
            Message::assistant(self.assistant.clone()),
        ]
    }
}

/// A uniformly drawn element of a non-empty list.
pub fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// `word` with its first letter in upper case ("sure" -> "Sure").
pub fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Fills `{name}` slots of `template` from `slots` (an unknown slot is left as it is; the
/// tests look for stray braces in every non-code message).
pub fn fill(template: &str, slots: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in slots {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}
