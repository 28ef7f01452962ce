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

    /// The shard (of `n`) each unit goes to, by unit id. The units in order of their pass's
    /// model (`model_of(pass index)`), pass and chunk are cut into `n` contiguous runs of about
    /// equal tokens: a unit goes to the shard whose share of the tokens holds its midpoint. So
    /// a shard carries at most its share plus half a unit, and loads as few models as the
    /// split allows (with as many shards as models of equal weight, one each). Deterministic:
    /// every process computes the same deal.
    pub fn deal<K: Ord>(
        &self,
        n: usize,
        model_of: impl Fn(usize) -> K,
    ) -> BTreeMap<(String, usize), usize> {
        let n = n.max(1) as u128;
        let mut units: Vec<(usize, &Unit)> = self.all().collect();
        units.sort_by_cached_key(|&(p, u)| (model_of(p), p, u.chunk));
        let total = units
            .iter()
            .map(|(_, u)| u.tokens as u128)
            .sum::<u128>()
            .max(1);
        let mut before = 0u128;
        let mut out = BTreeMap::new();
        for (_, u) in units {
            // Twice the midpoint, against twice each share's bounds.
            let mid2 = 2 * before + u.tokens as u128;
            let shard = (mid2 * n / (2 * total)).min(n - 1) as usize;
            before += u.tokens as u128;
            out.insert((u.entry.clone(), u.chunk), shard);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan of one pass per model, `tokens[m]` the chunks of model m's pass.
    fn plan_of(tokens: &[&[usize]]) -> Plan {
        Plan {
            passes: Vec::new(),
            units: (tokens.iter().enumerate())
                .map(|(m, chunks)| {
                    (chunks.iter().enumerate())
                        .map(|(c, &t)| Unit {
                            entry: format!("model{m}"),
                            chunk: c,
                            examples: c..c + 1,
                            tokens: t,
                        })
                        .collect()
                })
                .collect(),
        }
    }

    #[test]
    fn the_deal_balances_tokens_covers_every_unit_once_and_keeps_models_together() {
        // Three models of 33 tokens, listed out of model order (by `model_of`: 2, 0, 1).
        let plan = plan_of(&[&[4, 9, 2, 7, 5, 6], &[11, 11, 11], &[3, 30]]);
        let model_of = |p: usize| [2, 0, 1][p];
        let deal = plan.deal(3, model_of);
        assert_eq!(deal.len(), 11);
        let shards_of = |m: usize| -> std::collections::BTreeSet<usize> {
            (deal.iter())
                .filter(|((e, _), _)| *e == format!("model{m}"))
                .map(|(_, &s)| s)
                .collect()
        };
        // As many shards as models of equal weight: one model each, in model_of's order.
        assert_eq!(
            [shards_of(1), shards_of(2), shards_of(0)],
            [[0].into(), [1].into(), [2].into()]
        );
        // Two shards of 49.5 tokens: model 1's 33 and model 2's first 3 fill shard 0, and the
        // 30-token chunk, whose midpoint (51) lies past the half, opens shard 1.
        let deal = plan.deal(2, model_of);
        let load = |s: usize| -> usize {
            (plan.all())
                .filter(|(_, u)| deal[&(u.entry.clone(), u.chunk)] == s)
                .map(|(_, u)| u.tokens)
                .sum()
        };
        assert_eq!((load(0), load(1)), (36, 63));
        // One shard takes everything; more shards than units leave some empty.
        assert!(plan.deal(1, model_of).values().all(|&s| s == 0));
        assert_eq!(plan.deal(20, model_of).len(), 11);
        // A shard's share holds at most its tokens plus half a unit.
        let one = plan_of(&[&[4, 9, 2, 7, 5, 6]]);
        let deal = one.deal(3, |_| 0);
        let shard = |c: usize| deal[&("model0".to_string(), c)];
        assert_eq!(
            (0..6).map(shard).collect::<Vec<_>>(),
            vec![0, 0, 1, 1, 2, 2]
        );
    }
}
