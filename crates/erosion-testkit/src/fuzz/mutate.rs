//! Inputs for the fuzz targets: random bytes, or a real seed file with a few mutations. A
//! mutation is a value (not a closure), so proptest shrinks a failing case to the fewest,
//! smallest mutations that still fail, and the case prints as a short list.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// Integers that make parsers misbehave: zero, one, the signed and unsigned extremes, and
/// powers of two that overflow a size once multiplied by an element size.
const WORDS: [u64; 12] = [
    0,
    1,
    2,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    (1 << 62) + 1,
    u64::MAX,
];

/// Text fragments that make text formats misbehave (JSON, TOML, CSV, chat templates):
/// delimiters, escapes, huge and non-finite numbers, control and bidi characters, a byte
/// order mark, bytes that are not UTF-8, and template syntax.
pub const TEXT_TOKENS: &[&[u8]] = &[
    b"\"",
    b"'",
    b",",
    b"\n",
    b"\r\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"=",
    b":",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e999",
    b"-1e999",
    b"nan",
    b"inf",
    b"18446744073709551616",
    b"9999999999",
    b"0.0",
    b"\x1b[31m",
    b"\x00",
    b"\x07",
    b"\xe2\x80\xae",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xc3",
    b"\xf0\x9f\x98",
    b"{{",
    b"}}",
    b"{%",
    b"%}",
    b"\"\"\"",
    b"#",
];

/// One edit of an input; positions are fractions of the input's length ([`Index`]), so one
/// value applies to any input.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Flips bit `b & 7` (in the head when `b & 8` is 0).
    Flip(Index, u8),
    /// Overwrites a little-endian 4- or 8-byte word with one of [`WORDS`].
    Word(Index, bool, usize),
    /// Inserts a [`TEXT_TOKENS`] entry.
    Token(Index, usize),
    /// Inserts random bytes.
    Insert(Index, Vec<u8>),
    /// Deletes up to `n` bytes.
    Delete(Index, usize),
    /// Copies up to `n` bytes from one place over another (repeats structure: keys, records).
    Splice(Index, Index, usize),
    /// Cuts the input at a point.
    Truncate(Index),
}

/// Where a mutation lands: anywhere, or (half the time) in the first `head` bytes, where
/// binary headers keep their counts and lengths.
fn at(head: usize, len: usize, index: &Index, near_start: bool) -> usize {
    let span = if near_start { head.min(len) } else { len };
    if span == 0 {
        0
    } else {
        index.index(span)
    }
}

impl Mutation {
    /// Applies the mutation to `bytes`; `head` is the prefix that [`Mutation::Word`] and
    /// [`Mutation::Flip`] prefer.
    pub fn apply(&self, bytes: &mut Vec<u8>, head: usize) {
        let len = bytes.len();
        match self {
            Mutation::Flip(i, bit) => {
                if len > 0 {
                    let p = at(head, len, i, bit & 8 == 0);
                    bytes[p] ^= 1 << (bit & 7);
                }
            }
            Mutation::Word(i, wide, w) => {
                let width = if *wide { 8 } else { 4 };
                if len >= width {
                    let p = at(head, len - width + 1, i, true);
                    let word = WORDS[w % WORDS.len()].to_le_bytes();
                    bytes[p..p + width].copy_from_slice(&word[..width]);
                }
            }
            Mutation::Token(i, t) => {
                let p = at(head, len + 1, i, false);
                let token = TEXT_TOKENS[t % TEXT_TOKENS.len()];
                bytes.splice(p..p, token.iter().copied());
            }
            Mutation::Insert(i, b) => {
                let p = at(head, len + 1, i, false);
                bytes.splice(p..p, b.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let p = at(head, len + 1, i, false);
                let end = (p + n).min(len);
                bytes.drain(p..end);
            }
            Mutation::Splice(from, to, n) => {
                if len > 0 {
                    let (f, t) = (from.index(len), to.index(len));
                    let n = (*n).min(len - f).min(len - t);
                    bytes.copy_within(f..f + n, t);
                }
            }
            Mutation::Truncate(i) => {
                let p = at(head, len + 1, i, false);
                bytes.truncate(p);
            }
        }
    }
}

/// Seed files of one format and how to mutate them.
#[derive(Clone, Debug)]
pub struct Seeds {
    pub files: Vec<Vec<u8>>,
    /// The prefix where half the flips and word overwrites land (a binary header's counts).
    pub head: usize,
    /// Binary formats are length-prefixed, so a mutation that moves bytes is caught by the
    /// first length check: they get mostly in-place mutations, to reach the checks behind it.
    pub binary: bool,
}

/// One mutation: in-place ones (flips, words, splices) three times as likely as the others
/// for binary formats, all kinds equally likely for text, where flips and inserted bytes stay
/// ASCII (invalid UTF-8 comes from [`TEXT_TOKENS`] often enough).
pub fn mutation(binary: bool) -> impl Strategy<Value = Mutation> {
    let w = if binary { 3 } else { 1 };
    let (bits, top) = if binary { (16u8, 256u16) } else { (7, 128) };
    prop_oneof![
        w => (any::<Index>(), 0..bits).prop_map(|(i, b)| Mutation::Flip(i, b)),
        w => (any::<Index>(), any::<bool>(), any::<usize>())
            .prop_map(|(i, wide, v)| Mutation::Word(i, wide, v)),
        w => (any::<Index>(), any::<Index>(), 1usize..256)
            .prop_map(|(f, t, n)| Mutation::Splice(f, t, n)),
        1 => (any::<Index>(), any::<usize>()).prop_map(|(i, t)| Mutation::Token(i, t)),
        1 => (any::<Index>(), vec(0..top, 1..16)).prop_map(|(i, b)| {
            Mutation::Insert(i, b.into_iter().map(|x| x as u8).collect())
        }),
        1 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

/// Inputs: a seed with 1 to 4 mutations (nine times in ten), or up to `max_random` random
/// bytes.
pub fn inputs(seeds: Seeds, max_random: usize) -> impl Strategy<Value = Vec<u8>> {
    assert!(
        !seeds.files.is_empty(),
        "a fuzz target needs at least one seed"
    );
    let Seeds {
        files,
        head,
        binary,
    } = seeds;
    let mutated = (any::<Index>(), vec(mutation(binary), 1..5)).prop_map(move |(seed, ms)| {
        let mut bytes = seed.get(&files).clone();
        for m in &ms {
            m.apply(&mut bytes, head);
        }
        bytes
    });
    prop_oneof![
        9 => mutated,
        1 => vec(any::<u8>(), 0..max_random),
    ]
}
