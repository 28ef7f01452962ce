//! A row's answer as text, built token by token: incremental decoding that never emits half a
//! UTF-8 character, stop strings (the text is cut before the first one found), and the part
//! that is safe to stream (text that could still become a stop string is held back).

use tokenizers::Tokenizer;

/// Incremental text of one row.
#[derive(Debug, Clone, Default)]
pub struct RowText {
    tokens: Vec<u32>,
    /// Tokens before `prefix` are decoded into `text` for good; decoding from `prefix` keeps a
    /// word's leading space (a decoder drops it at the start of a slice).
    prefix: usize,
    read: usize,
    /// The answer so far (cut at a stop string once one is found).
    pub text: String,
    /// Characters in `text`.
    chars: usize,
    /// Bytes of `text` already handed out.
    sent: usize,
    stops: Vec<String>,
}

impl RowText {
    pub fn new(stops: &[String]) -> Self {
        RowText {
            stops: stops.to_vec(),
            ..Default::default()
        }
    }

    /// Appends a token; true when a stop string now appears (the text is cut before it).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> anyhow::Result<bool> {
        self.tokens.push(id);
        let dec = |ids: &[u32]| {
            tok.decode(ids, true)
                .map_err(|e| anyhow::anyhow!("decoding the answer: {e}"))
        };
        let before = dec(&self.tokens[self.prefix..self.read])?;
        let now = dec(&self.tokens[self.prefix..])?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') && now.starts_with(&before) {
            let from = self.text.len();
            let piece = &now[before.len()..];
            self.chars += piece.chars().count();
            self.text.push_str(piece);
            self.prefix = self.read;
            self.read = self.tokens.len();
            return Ok(self.cut_at_stop(from));
        }
        Ok(false)
    }

    /// Cuts the text before the first stop string, searching from a little before `from`.
    fn cut_at_stop(&mut self, from: usize) -> bool {
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let mut start = from.saturating_sub(longest);
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        let found = self
            .stops
            .iter()
            .filter_map(|s| self.text[start..].find(s.as_str()))
            .min();
        if let Some(at) = found {
            self.text.truncate(start + at);
            self.chars = self.text.chars().count();
            return true;
        }
        false
    }

    /// Characters in the answer so far.
    pub fn chars(&self) -> usize {
        self.chars
    }

    /// Where the next token starts, in characters of the answer, as OpenAI's `text_offset`
    /// counts: after the text so far and the characters that tokens held back (the pieces of a
    /// character not yet whole) have completed; a token that begins inside a character split
    /// over several tokens starts where that character does. Summing the tokens' own texts
    /// would not give it: a byte-level piece of a character decodes alone to U+FFFD.
    pub fn next_start(&self, tok: &Tokenizer) -> anyhow::Result<usize> {
        if self.read == self.tokens.len() {
            return Ok(self.chars);
        }
        let dec = |ids: &[u32]| {
            tok.decode(ids, true)
                .map_err(|e| anyhow::anyhow!("decoding the answer: {e}"))
        };
        let before = dec(&self.tokens[self.prefix..self.read])?;
        let now = dec(&self.tokens[self.prefix..])?;
        let held = now.trim_end_matches('\u{FFFD}').chars().count();
        Ok(self.chars + held.saturating_sub(before.chars().count()))
    }

    /// Text not handed out yet; unless `finished`, minus a tail that could begin a stop string.
    pub fn take_ready(&mut self, finished: bool) -> String {
        let mut end = self.text.len();
        if !finished {
            let hold = self
                .stops
                .iter()
                .flat_map(|s| s.char_indices().skip(1).map(move |(i, _)| &s[..i]))
                .filter(|p| self.text.ends_with(p))
                .map(str::len)
                .max()
                .unwrap_or(0);
            end -= hold;
        }
        let out = self.text[self.sent.min(end)..end].to_string();
        self.sent = self.sent.max(end);
        out
    }
}

/// A token's log-prob and the most probable alternatives, as the response names them.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    /// Where the token starts in the answer, in characters ([`RowText::next_start`]).
    pub offset: usize,
    pub logprob: f32,
    /// (text, log-prob), most probable first (ties: lower id first).
    pub top: Vec<(String, f32)>,
}

/// log_softmax(logits)[chosen] and the `k` largest entries, named by `surfaces`; the token
/// starts at character `offset` of the answer.
pub fn token_logprob(
    logits: &[f32],
    chosen: u32,
    k: usize,
    surfaces: &[String],
    offset: usize,
) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&z| ((z - max) as f64).exp()).sum();
    let lse = max as f64 + sum.ln();
    let lp = |i: usize| (logits[i] as f64 - lse) as f32;
    let mut order: Vec<usize> = (0..logits.len()).collect();
    let by = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
    let k = k.min(order.len());
    if k > 0 && k < order.len() {
        order.select_nth_unstable_by(k - 1, by);
    }
    order.truncate(k);
    order.sort_by(by);
    let name = |i: usize| surfaces.get(i).cloned().unwrap_or_default();
    TokenLogprob {
        token: name(chosen as usize),
        offset,
        logprob: lp(chosen as usize),
        top: order.into_iter().map(|i| (name(i), lp(i))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_alternatives_are_sorted_and_normalised() {
        let s: Vec<String> = ["a", "b", "c", "d"].iter().map(|x| x.to_string()).collect();
        // softmax of ln([1, 2, 3, 2]) = [1, 2, 3, 2] / 8
        let z: Vec<f32> = [1f32, 2., 3., 2.].iter().map(|x| x.ln()).collect();
        let t = token_logprob(&z, 1, 3, &s, 0);
        assert_eq!(t.token, "b");
        assert!((t.logprob - 0.25f32.ln()).abs() < 1e-6);
        let names: Vec<&str> = t.top.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["c", "b", "d"], "ties go to the lower id");
        assert!((t.top[0].1 - (3f32 / 8.).ln()).abs() < 1e-6);
        assert!(token_logprob(&z, 0, 0, &s, 0).top.is_empty());
    }

    /// A byte-level BPE tokenizer over the pieces "a", "Ã" and "©" (the two bytes of "é"),
    /// "Ġb" (" b"), "x" and "ĠÃ" (a space and the first byte of "é").
    fn byte_level() -> Tokenizer {
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": null, "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false,
                        "use_regex": false},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": {"a": 0, "Ã": 1, "©": 2, "Ġb": 3, "x": 4, "ĠÃ": 5},
                      "merges": []}
        });
        json.to_string().parse().unwrap()
    }

    #[test]
    fn offsets_count_characters_of_the_text_not_token_lengths() {
        let tok = byte_level();
        let mut row = RowText::new(&[]);
        let ids = [0u32, 1, 2, 3, 5, 2, 4];
        let mut offsets = Vec::new();
        for &id in &ids {
            offsets.push(row.next_start(&tok).unwrap());
            row.push(&tok, id).unwrap();
        }
        assert_eq!(row.text, "aé b éx");
        // "é" is two tokens: the second starts inside it, where it starts (1); " é" is a
        // space and a first byte, then the second byte, inside the "é" at 5.
        assert_eq!(offsets, [0, 1, 1, 2, 4, 5, 6]);
        // The naive sum of the tokens' texts (each piece of "é" alone is U+FFFD) drifts.
        let mut naive = vec![0];
        for &id in &ids[..ids.len() - 1] {
            let t = tok.decode(&[id], false).unwrap();
            naive.push(naive.last().unwrap() + t.len());
        }
        assert_ne!(naive, offsets);
        assert_eq!(
            row.next_start(&tok).unwrap(),
            7,
            "after the last: the text's end"
        );
    }

    #[test]
    fn a_cut_at_a_stop_string_recounts_the_characters() {
        let tok = byte_level();
        let mut row = RowText::new(&["é".to_string()]);
        for id in [0, 0, 1] {
            assert!(!row.push(&tok, id).unwrap());
        }
        assert!(row.push(&tok, 2).unwrap(), "the stop string is found");
        assert_eq!((row.text.as_str(), row.chars()), ("aa", 2));
    }
}
