//! The study's cached passes as units of work (one cache chunk each, weighed by its tokens),
//! and how they are dealt to `n` shards.

use crate::analysis::registered;
use crate::context::StudyContext;
use crate::pass::OpenPass;
use anyhow::Result;
use erosion_forward::cache::canonical_sha256;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;

/// One unit of work: a chunk of one pass's cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// The cache entry's folder name.
    pub entry: String,
    pub chunk: usize,
    pub examples: Range<usize>,
    /// Tokens in those examples: the unit's weight when dealing.
    pub tokens: usize,
}

impl Unit {
    /// (entry, chunk): what identifies a unit.
    pub fn id(&self) -> (&str, usize) {
        (&self.entry, self.chunk)
    }
}

/// Every cached pass the study's analyses read, each once, with its units.
pub struct Plan {
    pub passes: Vec<OpenPass>,
    /// `units[i]` are the chunks of `passes[i]`.
    pub units: Vec<Vec<Unit>>,
}

impl Plan {
    /// The passes of every analysis the spec runs, opened in `ctx`'s cache. Two analyses that
    /// read one entry (behaviour's and gradients' log-probs) share it; the longer prefix wins.
    pub fn new(ctx: &StudyContext) -> Result<Plan> {
        let mut passes: Vec<OpenPass> = Vec::new();
        for name in &ctx.spec.analyses {
            for pass in registered(*name).passes(ctx)? {
                let open = pass.open(ctx)?;
                match passes
                    .iter_mut()
                    .find(|p| p.entry.name() == open.entry.name())
                {
                    Some(p) => p.wanted = p.wanted.max(open.wanted),
                    None => passes.push(open),
                }
            }
        }
        let units = passes
            .iter()
            .map(|p| {
                p.chunks()
                    .map(|chunk| Unit {
                        entry: p.entry.name().to_string(),
                        chunk,
                        examples: p.entry.chunk_examples(chunk),
                        tokens: p.tokens(chunk),
                    })
                    .collect()
            })
            .collect();
        Ok(Plan { passes, units })
    }

    /// Every (pass index, unit).
    pub fn all(&self) -> impl Iterator<Item = (usize, &Unit)> {
        (self.units.iter().enumerate()).flat_map(|(p, us)| us.iter().map(move |u| (p, u)))
    }

    /// A hash of every unit: models' weights, datasets, rendering and options all enter the
    /// entries' names, so shards planned over anything else disagree.
    pub fn hash(&self) -> String {
        let units: Vec<&Unit> = self.all().map(|(_, u)| u).collect();
        canonical_sha256(&serde_json::to_value(units).expect("units serialise"))
    }

    /// The shard (of `n`) each unit goes to, by unit id. Longest first to the least loaded
    /// shard (ties: the lower index), so shards carry about equal tokens; deterministic, so
    /// every process computes the same deal.
    pub fn deal(&self, n: usize) -> BTreeMap<(String, usize), usize> {
        let mut units: Vec<&Unit> = self.all().map(|(_, u)| u).collect();
        units.sort_by(|a, b| b.tokens.cmp(&a.tokens).then(a.id().cmp(&b.id())));
        let mut load = vec![0usize; n.max(1)];
        let mut out = BTreeMap::new();
        for u in units {
            let (shard, _) = (load.iter().enumerate())
                .min_by_key(|&(i, &l)| (l, i))
                .expect("at least one shard");
            load[shard] += u.tokens;
            out.insert((u.entry.clone(), u.chunk), shard);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(tokens: &[usize]) -> Plan {
        Plan {
            passes: Vec::new(),
            units: vec![tokens
                .iter()
                .enumerate()
                .map(|(c, &t)| Unit {
                    entry: "e".into(),
                    chunk: c,
                    examples: c..c + 1,
                    tokens: t,
                })
                .collect()],
        }
    }

    #[test]
    fn the_deal_balances_tokens_and_covers_every_unit_once() {
        // Sorted 9, 7, 6, 5, 4, 2 into 3: 9 -> 0, 7 -> 1, 6 -> 2, 5 -> 2, 4 -> 1, 2 -> 0: 11 each.
        let plan = plan_of(&[4, 9, 2, 7, 5, 6]);
        let deal = plan.deal(3);
        let shard = |c: usize| deal[&("e".to_string(), c)];
        assert_eq!(
            (0..6).map(shard).collect::<Vec<_>>(),
            vec![1, 0, 0, 1, 2, 2]
        );
        assert_eq!(deal.len(), 6);
        // One shard takes everything.
        assert!(plan.deal(1).values().all(|&s| s == 0));
        // More shards than units: some are empty, none is dealt twice.
        assert_eq!(plan.deal(10).len(), 6);
    }
}
