//! Seeds derived from a base seed, and the two small hashes they are built from.
//!
//! Two derivations, kept apart because results depend on them bit for bit:
//! - [`mix`]`(seed, salt)`: one seed per random procedure of a study (a fixed `salt` per use);
//! - [`for_stream`]`(base, stream, prompt, sample)`: one seed per sampled answer of an
//!   evaluation, from a set's name and the answer's indices.
//!
//! Both rest on SplitMix64 (Steele, Lea & Flood 2014) and FNV-1a (64-bit): stable across Rust
//! versions and platforms, unlike `std::hash::Hash`.

/// SplitMix64's increment, 2^64 / golden ratio.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function (Stafford's variant 13): a bijection on u64 that scatters
/// nearby inputs.
fn finalise(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One SplitMix64 step from state `x`: `finalise(x + GOLDEN_GAMMA)`.
pub fn splitmix64(x: u64) -> u64 {
    finalise(x.wrapping_add(GOLDEN_GAMMA))
}

/// A seed for one random procedure: `finalise(seed ^ salt * GOLDEN_GAMMA)`, so nearby salts
/// give unrelated streams. `salt` is a per-use constant (plus an index where one procedure
/// runs several times).
pub fn mix(seed: u64, salt: u64) -> u64 {
    finalise(seed ^ salt.wrapping_mul(GOLDEN_GAMMA))
}

/// The seed of answer `sample` to prompt `prompt` of stream `stream` (a set name):
/// `splitmix64(splitmix64(splitmix64(base ^ fnv1a(stream)) ^ prompt) ^ sample)`.
/// Every model gets the same seeds (common random numbers across models).
pub fn for_stream(base: u64, stream: &str, prompt: usize, sample: usize) -> u64 {
    let x = splitmix64(base ^ fnv1a(stream.as_bytes()));
    let x = splitmix64(x ^ (prompt as u64));
    splitmix64(x ^ (sample as u64))
}

/// FNV-1a (64-bit) of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a::new();
    h.write(bytes);
    h.finish()
}

/// FNV-1a (64-bit) fed in pieces: `h = (h ^ byte) * 0x100000001b3` from `0xcbf29ce484222325`.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Fnv1a {
    pub fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Self {
        Self::new()
    }
}

/// The SplitMix64 generator: the state advances by `GOLDEN_GAMMA`, each output is the
/// finalised state. Enough for a fixed noise pattern; not for statistics.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        let out = splitmix64(self.0);
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_its_published_value_and_the_generator() {
        // splitmix64(0) is a published constant of the generator.
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        let mut g = SplitMix64(0);
        assert_eq!(g.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(g.next_u64(), splitmix64(GOLDEN_GAMMA));
    }

    #[test]
    fn fnv1a_matches_its_published_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let mut h = Fnv1a::new();
        h.write(b"foo");
        h.write(b"bar");
        assert_eq!(h.finish(), fnv1a(b"foobar"));
    }

    #[test]
    fn mix_is_the_study_derivation() {
        // The written-out formula the study used before this module existed.
        let (seed, salt) = (7u64, 0x5EED_0001u64);
        let mut z = seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        assert_eq!(mix(seed, salt), z ^ (z >> 31));
        assert_eq!(mix(7, 1), mix(7, 1));
        assert_ne!(mix(7, 1), mix(7, 2));
        assert_ne!(mix(7, 1), mix(8, 1));
    }

    #[test]
    fn for_stream_is_the_evaluation_derivation() {
        // The written-out formula the evaluation used before this module existed.
        fn old(base: u64, stream: &str, prompt: usize, sample: usize) -> u64 {
            let sm = |x: u64| {
                let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            };
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in stream.bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            sm(sm(sm(base ^ h) ^ (prompt as u64)) ^ (sample as u64))
        }
        for (b, s, p, j) in [
            (0, "", 0, 0),
            (7, "harmful", 3, 1),
            (u64::MAX, "bootstrap/x", 9, 4),
        ] {
            assert_eq!(for_stream(b, s, p, j), old(b, s, p, j));
        }
    }

    #[test]
    fn stream_seeds_differ_by_every_part_and_repeat() {
        let s = for_stream(7, "harmful", 3, 1);
        assert_eq!(s, for_stream(7, "harmful", 3, 1));
        for other in [
            for_stream(8, "harmful", 3, 1),
            for_stream(7, "code", 3, 1),
            for_stream(7, "harmful", 4, 1),
            for_stream(7, "harmful", 3, 0),
        ] {
            assert_ne!(s, other);
        }
    }
}
