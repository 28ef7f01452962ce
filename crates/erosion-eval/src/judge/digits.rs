//! The vocabulary's digit-bearing tokens, the edges of the prefix tree over which a judge's
//! reply spells a number 0..=100.
//!
//! A token's surface is its decoded text, with a leading space where its raw form starts with
//! the tokenizer's space marker (`Ġ` byte-level BPE, `▁` SentencePiece: decoding one such token
//! alone may drop the space). For a surface s:
//!
//! - as the reply's **first** token: leading spaces are skipped, then s must start with an
//!   ASCII digit;
//! - **after** digits: s must start with an ASCII digit (a token starting with anything else,
//!   a space or the end-of-turn token included, ends the number).
//!
//! Its digits are the maximal ASCII digit run there; when characters follow them inside the
//! token ("7." or "7\n"), the number ends inside the token. A digit string is a number of the
//! scale when it is "0" or has no leading zero and a value <= 100; "05" and "101" are not, and
//! nor is any extension of them, so the tree stops there.

use anyhow::{bail, Result};
use erosion_model::tokenizer::ModelTokenizer;

/// The largest number of the judge's scale.
pub const MAX_SCORE: u32 = 100;

/// One digit-bearing token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigitToken {
    pub id: u32,
    /// Its leading digit run (after leading spaces, for a first token).
    pub digits: String,
    /// Characters follow the digits inside the token: a number ends inside it.
    pub ends: bool,
}

/// The tokens that can start a number and those that can continue one.
#[derive(Clone, Debug, Default)]
pub struct DigitVocab {
    /// Tokens that can be a reply's first token of a number.
    pub first: Vec<DigitToken>,
    /// Tokens starting with a digit (those that continue digits already written).
    pub next: Vec<DigitToken>,
    /// `starts_digit[id]`: the token's surface starts with a digit.
    pub starts_digit: Vec<bool>,
}

/// The leading ASCII digit run of `s` and whether anything follows it; None without a digit.
fn split_digits(s: &str) -> Option<DigitToken> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    (n > 0).then(|| DigitToken {
        id: 0,
        digits: s[..n].to_string(),
        ends: n < s.len(),
    })
}

/// Whether `digits` is a number of the scale 0..=100 written without a leading zero. Every
/// prefix of such a number is one too, so this also says whether a prefix is worth extending.
pub fn is_score(digits: &str) -> bool {
    digits == "0" || (!digits.starts_with('0') && digits.len() <= 3 && parse(digits) <= MAX_SCORE)
}

/// The value of an ASCII digit string (saturating; only short strings are asked).
pub fn parse(digits: &str) -> u32 {
    digits.bytes().fold(0u32, |v, b| {
        v.saturating_mul(10).saturating_add(u32::from(b - b'0'))
    })
}

impl DigitVocab {
    /// Classifies `surfaces[id]` for every id.
    pub fn from_surfaces(surfaces: &[String]) -> Result<Self> {
        let mut v = DigitVocab {
            starts_digit: vec![false; surfaces.len()],
            ..Default::default()
        };
        for (id, s) in surfaces.iter().enumerate() {
            let id = id as u32;
            if let Some(t) = split_digits(s) {
                v.starts_digit[id as usize] = true;
                v.next.push(DigitToken { id, ..t.clone() });
                v.first.push(DigitToken { id, ..t });
            } else if let Some(t) = split_digits(s.trim_start_matches(' ')) {
                v.first.push(DigitToken { id, ..t });
            }
        }
        if v.first.is_empty() {
            bail!("the vocabulary has no token that starts with a digit: a judge with it cannot write a number");
        }
        Ok(v)
    }

    /// Classifies a tokenizer's vocabulary (`vocab_size` ids: the model's rows, which may
    /// outnumber the tokenizer's tokens; the extra ids have no text).
    pub fn new(tok: &ModelTokenizer, vocab_size: usize) -> Result<Self> {
        Self::from_surfaces(&surfaces(tok, vocab_size))
    }
}

/// The surface of every id below `vocab_size` (see the module doc).
pub fn surfaces(tok: &ModelTokenizer, vocab_size: usize) -> Vec<String> {
    (0..vocab_size as u32)
        .map(|id| {
            let raw = tok.tokenizer.id_to_token(id).unwrap_or_default();
            let text = tok.tokenizer.decode(&[id], false).unwrap_or_default();
            let marked = raw.starts_with('Ġ') || raw.starts_with('▁');
            if marked && !text.starts_with(' ') {
                format!(" {text}")
            } else {
                text
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_classified_by_their_leading_digits() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let v =
            DigitVocab::from_surfaces(&s(&["7", " 42", "7.", "a1", " ", "100", "<eos>", " 5x"]))
                .unwrap();
        let first: Vec<(u32, &str, bool)> = v
            .first
            .iter()
            .map(|t| (t.id, t.digits.as_str(), t.ends))
            .collect();
        assert_eq!(
            first,
            [
                (0, "7", false),
                (1, "42", false),
                (2, "7", true),
                (5, "100", false),
                (7, "5", true)
            ]
        );
        let next: Vec<u32> = v.next.iter().map(|t| t.id).collect();
        assert_eq!(
            next,
            [0, 2, 5],
            "a token with a leading space ends a number"
        );
        assert_eq!(
            v.starts_digit,
            [true, false, true, false, false, true, false, false]
        );
        assert!(DigitVocab::from_surfaces(&s(&["a", " b"])).is_err());
    }

    #[test]
    fn scores_are_0_to_100_without_leading_zeros() {
        for ok in ["0", "7", "10", "99", "100"] {
            assert!(is_score(ok), "{ok}");
        }
        for bad in ["00", "05", "101", "1000", "999", "0100"] {
            assert!(!is_score(bad), "{bad}");
        }
        assert_eq!(parse("100"), 100);
    }
}
