//! Cache fingerprints shared by every analysis (seeds: [`erosion_model::seed`]).

use erosion_data::Sequence;
use erosion_model::seed::Fnv1a;

/// FNV-1a (64-bit) over every sequence's length, ids and response span, as 16 hex digits:
/// the cache key changes whenever the rendering does (template, end-of-turn policy, plain base).
pub fn sequences_fingerprint(seqs: &[Sequence]) -> String {
    let mut h = Fnv1a::new();
    let mut eat = |v: u64| h.write(&v.to_le_bytes());
    eat(seqs.len() as u64);
    for s in seqs {
        eat(s.ids.len() as u64);
        s.ids.iter().for_each(|&t| eat(t as u64));
        eat(s.response.start as u64);
        eat(s.response.end as u64);
    }
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(ids: Vec<u32>, response: std::ops::Range<usize>) -> Sequence {
        Sequence {
            ids,
            response,
            end_of_turn: None,
        }
    }

    #[test]
    fn fingerprint_sees_ids_and_spans() {
        let a = vec![seq(vec![1, 2, 3], 1..3)];
        let b = vec![seq(vec![1, 2, 3], 2..3)];
        let c = vec![seq(vec![1, 2, 4], 1..3)];
        let fa = sequences_fingerprint(&a);
        assert_eq!(fa.len(), 16);
        assert_eq!(fa, sequences_fingerprint(&a.clone()));
        assert_ne!(fa, sequences_fingerprint(&b));
        assert_ne!(fa, sequences_fingerprint(&c));
        // FNV-1a of nothing but the count 0 (eight zero bytes), computed by hand from the
        // definition: h = (h ^ 0) * p, eight times.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for _ in 0..8 {
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        assert_eq!(sequences_fingerprint(&[]), format!("{h:016x}"));
    }
}
