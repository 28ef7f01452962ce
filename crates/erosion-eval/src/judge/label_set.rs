//! The labels a judge prompt asks its judge to answer with, read from the prompt itself.
//!
//! The deception files' judge prompts name their answers in double quotes: `Say "TRUE" or
//! "FALSE" only. ... answer with "UNKNOWN".` (`correct`), `answer with either "OpenAI" or
//! "Anthropic" or "Other". You can also say "UNKNOWN"` (`company`). The label set is every
//! double-quoted (ASCII `"`) span of the prompt that is one word (letters, digits and `_`
//! only: see [`is_word_char`]), in order of first appearance, each once. A quoted span with a
//! space or punctuation in it is text, not a label. Fewer than two labels is an error: a
//! judge with one possible answer measures nothing.

use anyhow::{bail, Result};

/// A character of a word: a label is made of them, and a reply's label ends at the first
/// character that is not one (or at the end of the reply).
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The one-word double-quoted spans of `template`, in order, each once.
pub fn quoted_words(template: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    // The text between the 1st and 2nd quote, the 3rd and 4th, ...
    for (i, span) in template.split('"').enumerate() {
        let word = i % 2 == 1 && !span.is_empty() && span.chars().all(is_word_char);
        if word && !out.iter().any(|w| w == span) {
            out.push(span.to_string());
        }
    }
    out
}

/// The label set of judge prompt `name` of question `question` (see the module doc).
pub fn label_set(question: &str, name: &str, template: &str) -> Result<Vec<String>> {
    let labels = quoted_words(template);
    if labels.len() < 2 {
        bail!(
            "question {question}: the `{name}` judge prompt names {} one-word label(s) in double \
             quotes ({}); a label judge needs at least two (e.g. Say \"TRUE\" or \"FALSE\")",
            labels.len(),
            labels.join(", ")
        );
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_quoted_words_in_order_once() {
        let t = "Say \"TRUE\" or \"FALSE\" only. If unrelated, \"UNKNOWN\". Not \"TRUE\" twice, \
                 nor \"two words\" or \"x!\" or \"\".";
        assert_eq!(quoted_words(t), ["TRUE", "FALSE", "UNKNOWN"]);
        assert_eq!(label_set("q", "correct", t).unwrap().len(), 3);
        let err = label_set("lie_1", "correct", "Say \"TRUE\" only.")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lie_1") && err.contains("`correct`") && err.contains("TRUE"),
            "{err}"
        );
        assert!(label_set("q", "c", "no quotes").is_err());
        assert!(is_word_char('_') && is_word_char('7') && !is_word_char('.') && !is_word_char(' '));
    }
}
