//! Text read from files, made safe to show in messages: control characters (and the Unicode
//! controls that reorder text) are escaped, so a model name or tensor name of `\x1b[31m` cannot
//! recolour, move or hide anything on the terminal that prints the error.

use std::borrow::Cow;
use std::fmt;

/// Whether `c` must not reach a terminal raw: C0/C1 controls (including newline and tab, as
/// file contents never legitimately break a one-line message) and the bidirectional
/// formatting characters that make text display in another order than it reads.
fn is_hazard(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every hazardous character written as Rust writes it in a string literal (`\n`,
/// `\u{1b}`); borrowed when there is nothing to escape.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hazard) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_hazard(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `s` escaped line by line: like [`escape_controls`], but its line breaks kept, for messages
/// that are several lines by design (a TOML parser's report quoting the line at fault).
pub fn escape_lines(s: &str) -> String {
    s.split('\n')
        .map(escape_controls)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Displays a string from a file with its control characters escaped ([`escape_controls`]).
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape_controls(self.0))
    }
}

/// [`Shown`] for `s`: `format!("architecture `{}`", shown(arch))`.
pub fn shown(s: &str) -> Shown<'_> {
    Shown(s)
}

/// `err` with every message in its chain escaped ([`escape_controls`]): the public entry
/// points that read files pass their errors through this, so text quoted by a dependency
/// (serde_json, tokenizers, candle, minijinja) is escaped as well as our own.
pub fn escape_error(err: anyhow::Error) -> anyhow::Error {
    let messages: Vec<String> = err.chain().map(|e| e.to_string()).collect();
    if !messages.iter().any(|m| m.chars().any(is_hazard)) {
        return err;
    }
    let mut rebuilt: Option<anyhow::Error> = None;
    for message in messages.iter().rev() {
        let message = escape_controls(message).into_owned();
        rebuilt = Some(match rebuilt {
            None => anyhow::Error::msg(message),
            Some(inner) => inner.context(message),
        });
    }
    rebuilt.unwrap_or(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("Qwen2 ünï 模型"), "Qwen2 ünï 模型");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("\x1b[31mred\x07\n\t\u{202e}x\u{85}"),
            "\\u{1b}[31mred\\u{7}\\n\\t\\u{202e}x\\u{85}"
        );
    }

    #[test]
    fn line_breaks_are_kept_by_escape_lines() {
        assert_eq!(
            escape_lines("a\x1b[31m\n1 | \0 = x\n"),
            "a\\u{1b}[31m\n1 | \\u{0} = x\n"
        );
    }

    #[test]
    fn every_message_of_a_chain_is_escaped() {
        let err = anyhow::anyhow!("arch `\x1b[2J`").context("in file \x1b]0;title\x07");
        let escaped = format!("{:#}", escape_error(err));
        assert_eq!(escaped, "in file \\u{1b}]0;title\\u{7}: arch `\\u{1b}[2J`");
        let clean = anyhow::anyhow!("inner").context("outer");
        assert_eq!(format!("{:#}", escape_error(clean)), "outer: inner");
    }
}
