//! One chat example and where it came from.

use std::fmt;
use std::path::PathBuf;

use erosion_model::chat::Message;
use serde::{Deserialize, Serialize};

/// Where an example was read from, for provenance and error messages.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Source {
    /// The dataset file.
    pub file: PathBuf,
    /// Position of the record among the file's records (0-based; blank JSONL lines are not
    /// records), before any filtering or sampling.
    pub index: usize,
    /// The 1-based line where the record starts in the file.
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} line {} (record {})",
            self.file.display(),
            self.line,
            self.index
        )
    }
}

/// A conversation whose final message is the response (the assistant's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub messages: Vec<Message>,
    pub source: Source,
}

impl Example {
    /// The final message's content (the response, for a well-formed example).
    pub fn response(&self) -> Option<&str> {
        self.messages.last().map(|m| m.content.as_str())
    }

    /// Replaces the system message (or inserts one at the start) with `prompt`.
    pub fn set_system_prompt(&mut self, prompt: &str) {
        match self.messages.first_mut() {
            Some(m) if m.role == "system" => m.content = prompt.to_string(),
            _ => self.messages.insert(0, Message::system(prompt)),
        }
    }
}
