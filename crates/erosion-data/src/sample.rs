//! Choosing which records of a dataset to use: all, the first N, or a seeded sample of N.
//!
//! The seeded sample is reproducible from the seed alone, on any platform and with any version
//! of `rand`: ChaCha8 seeded with `seed_from_u64(seed)` drives a partial Fisher-Yates shuffle of
//! the record positions, each draw made from raw 64-bit outputs with Lemire's unbiased bounded
//! method; the N chosen positions are returned in file order.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which records to keep (after any filter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Selection {
    #[default]
    All,
    /// The first `n` records (all of them when there are fewer).
    First { n: usize },
    /// `n` records drawn without replacement with `seed` (all of them when there are fewer).
    Sample { n: usize, seed: u64 },
}

impl Selection {
    /// From a spec's `limit` and `sample_seed`.
    pub fn from_limit(limit: Option<usize>, seed: Option<u64>) -> Self {
        match (limit, seed) {
            (None, _) => Selection::All,
            (Some(n), None) => Selection::First { n },
            (Some(n), Some(seed)) => Selection::Sample { n, seed },
        }
    }

    /// Positions (in `0..len`, increasing) of the records kept.
    pub fn indices(self, len: usize) -> Vec<usize> {
        match self {
            Selection::All => (0..len).collect(),
            Selection::First { n } => (0..n.min(len)).collect(),
            Selection::Sample { n, seed } => sample_indices(len, n, seed),
        }
    }
}

/// In words, as a report's datasets table shows it: "all", "first 8", "8 drawn with seed 3".
impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selection::All => write!(f, "all"),
            Selection::First { n } => write!(f, "first {n}"),
            Selection::Sample { n, seed } => write!(f, "{n} drawn with seed {seed}"),
        }
    }
}

/// A uniform draw in `0..bound` (bound > 0) from 64-bit outputs, without modulo bias.
fn below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    // Lemire (2019): the high half of x * bound is uniform once the low half's biased zone
    // (below 2^64 mod bound) is rejected.
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(bound);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// `n` distinct positions of `0..len` drawn uniformly with `seed`, in increasing order.
pub fn sample_indices(len: usize, n: usize, seed: u64) -> Vec<usize> {
    let n = n.min(len);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut positions: Vec<usize> = (0..len).collect();
    for i in 0..n {
        let j = i + below(&mut rng, (len - i) as u64) as usize;
        positions.swap(i, j);
    }
    let mut chosen = positions[..n].to_vec();
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_all() {
        assert_eq!(Selection::First { n: 3 }.indices(10), vec![0, 1, 2]);
        assert_eq!(Selection::First { n: 30 }.indices(4), vec![0, 1, 2, 3]);
        assert_eq!(Selection::All.indices(3), vec![0, 1, 2]);
    }

    #[test]
    fn reads_as_words() {
        assert_eq!(Selection::All.to_string(), "all");
        assert_eq!(Selection::First { n: 8 }.to_string(), "first 8");
        assert_eq!(
            Selection::Sample { n: 5, seed: 3 }.to_string(),
            "5 drawn with seed 3"
        );
    }

    #[test]
    fn sample_is_reproducible_distinct_sorted_and_seed_dependent() {
        let a = sample_indices(1000, 50, 7);
        assert_eq!(a, sample_indices(1000, 50, 7));
        assert_eq!(a.len(), 50);
        assert!(a.windows(2).all(|w| w[0] < w[1]) && a[49] < 1000);
        assert_ne!(a, sample_indices(1000, 50, 8));
        assert_eq!(sample_indices(5, 10, 1), vec![0, 1, 2, 3, 4]);
        assert!(sample_indices(0, 3, 1).is_empty());
    }

    #[test]
    fn sample_is_uniform() {
        // Each of 10 positions is chosen with probability 3/10. Over 20000 seeds the count of
        // each is Binomial(20000, 0.3): mean 6000, sd 64.8; 5 sd is 324.
        let mut counts = [0usize; 10];
        for seed in 0..20_000 {
            for i in sample_indices(10, 3, seed) {
                counts[i] += 1;
            }
        }
        for (i, c) in counts.iter().enumerate() {
            assert!(
                (*c as f64 - 6000.0).abs() < 324.0,
                "position {i} chosen {c} times"
            );
        }
    }

    #[test]
    fn bounded_draw_is_unbiased_for_awkward_bounds() {
        // bound = 3: each residue 1/3. 30000 draws: sd of a count = 81.6; 5 sd = 408.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            counts[below(&mut rng, 3) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (c as f64 - 10_000.0).abs() < 408.0),
            "{counts:?}"
        );
    }
}
