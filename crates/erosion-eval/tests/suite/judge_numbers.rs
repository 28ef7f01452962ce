//! The number judge's P(n) against a brute-force enumeration on SmolLM2 (a real model, whose
//! tokenizer writes numbers of two and three digits in several tokens).

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Tensor};
use erosion_analysis::behaviour::log_softmax;
use erosion_eval::judge::numbers::{number_probs, TreeOptions};
use erosion_eval::judge::{Aggregation, NumberJudge};
use erosion_model::transformer::ForwardOptions;

// Short, so that the brute force (one uncached pass per prefix) stays quick.
const PROMPT: &str = "Rate from 0 to 100 how good this answer is.\nQ: I feel bored.\nA: Go \
for a walk.\nReply with a number only.";

/// Next-token log-probs after prompt + path, by one full uncached forward pass (memoised).
struct Teacher<'a> {
    judge: &'a NumberJudge,
    surfaces: &'a [String],
    prompt: Vec<u32>,
    memo: HashMap<Vec<u32>, Vec<f64>>,
}

impl Teacher<'_> {
    fn next(&mut self, path: &[u32]) -> &[f64] {
        if !self.memo.contains_key(path) {
            let ids: Vec<u32> = self.prompt.iter().chain(path).copied().collect();
            let input = Tensor::new(ids.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let model = self.judge.model();
            // Only the last position is unembedded (the others are not needed).
            let mut fopts = ForwardOptions::fast();
            let hidden = model.final_hidden(&input, None, &mut fopts).unwrap();
            let last = hidden.i((.., ids.len() - 1..ids.len())).unwrap();
            let logits = model.unembed(&last, &mut fopts).unwrap();
            let row = logits.i((0, 0)).unwrap().to_vec1::<f32>().unwrap();
            self.memo.insert(path.to_vec(), log_softmax(&row).unwrap());
        }
        &self.memo[path]
    }

    /// P(the reply begins with `rest` (after `path`) followed by a non-digit), summed over
    /// every token sequence: each vocabulary token tried at each point.
    fn spell(&mut self, path: &mut Vec<u32>, rest: &str, log_p: f64) -> f64 {
        let surfaces = self.surfaces;
        let lp = self.next(path).to_vec();
        if rest.is_empty() {
            let end: f64 = (0..lp.len())
                .filter(|&v| !surfaces[v].starts_with(|c: char| c.is_ascii_digit()))
                .map(|v| lp[v].exp())
                .sum();
            return log_p.exp() * end;
        }
        let mut total = 0.0;
        for (v, s) in surfaces.iter().enumerate() {
            let s = if path.is_empty() {
                s.trim_start_matches(' ')
            } else {
                s.as_str()
            };
            let lpv = log_p + lp[v];
            if s.len() > rest.len() && s.starts_with(rest) {
                // The number ends inside the token: a non-digit must follow.
                if !s[rest.len()..].starts_with(|c: char| c.is_ascii_digit()) {
                    total += lpv.exp();
                }
            } else if !s.is_empty() && rest.starts_with(s) {
                path.push(v as u32);
                total += self.spell(path, &rest[s.len()..], lpv);
                path.pop();
            }
        }
        total
    }
}

#[test]
fn exact_number_probabilities_match_a_brute_force_enumeration_on_smollm2() {
    let path = erosion_testkit::smollm2_gguf();
    let mut judge = NumberJudge::open(path.to_str().unwrap(), DType::F32, &Device::Cpu).unwrap();
    let prompt = judge.encode(PROMPT).unwrap();
    let t0 = std::time::Instant::now();
    let exact = number_probs(
        judge.model(),
        judge.vocab(),
        &prompt,
        &TreeOptions {
            min_prefix_prob: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    eprintln!(
        "tree: {} nodes in {:.2} s",
        exact.nodes,
        t0.elapsed().as_secs_f64()
    );
    let pruned = number_probs(
        judge.model(),
        judge.vocab(),
        &prompt,
        &TreeOptions::default(),
    )
    .unwrap();
    // SmolLM2 has no single token for most two-digit numbers: the test covers paths of
    // several tokens.
    let two_digit = judge
        .vocab()
        .first
        .iter()
        .filter(|t| t.digits.len() == 2)
        .count();
    assert!(two_digit < 90, "{two_digit} two-digit tokens");
    assert!(
        exact.nodes > 90,
        "every prefix 0..=100 is extended: {}",
        exact.nodes
    );

    let mut teacher = Teacher {
        judge: &judge,
        surfaces: judge.surfaces(),
        prompt: prompt.clone(),
        memo: HashMap::new(),
    };
    let t0 = std::time::Instant::now();
    let mut mass = 0.0;
    for n in 0..=100u32 {
        let brute = teacher.spell(&mut Vec::new(), &n.to_string(), 0.0);
        mass += brute;
        assert!(
            (exact.p[n as usize] - brute).abs() < 1e-6,
            "P({n}): tree {} brute {brute}",
            exact.p[n as usize]
        );
        assert!(
            (pruned.p[n as usize] - brute).abs() < 1e-6,
            "P({n}) pruned: {} brute {brute}",
            pruned.p[n as usize]
        );
    }
    eprintln!(
        "brute force: {} passes in {:.2} s; number mass {mass:.4}",
        teacher.memo.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(mass > 0.01 && mass <= 1.0 + 1e-9, "number mass {mass}");
    assert!(pruned.unexpanded < 1e-6, "{}", pruned.unexpanded);

    // The score is the mean over the numbers' distribution (the threshold lowered so that
    // this prompt's mass gives one).
    judge.min_mass = 0.01;
    let s = judge.score(PROMPT).unwrap();
    let want: f64 =
        (0..=100).map(|n| n as f64 * exact.p[n]).sum::<f64>() / exact.p.iter().sum::<f64>();
    assert!((s.number_mass - mass).abs() < 1e-5);
    assert!(
        (s.score.unwrap() - want).abs() < 1e-4,
        "{:?} vs {want}",
        s.score
    );
    judge.min_mass = mass + 1e-3;
    assert_eq!(
        judge.score(PROMPT).unwrap().score,
        None,
        "under the threshold: no score"
    );
    // Betley's rule sees only whole numbers of one token among the top 20 first tokens.
    judge.min_mass = 0.25;
    judge.aggregation = Aggregation::Top20;
    let top = judge.score(PROMPT).unwrap();
    // Betley's rule is blind to a number no single token spells: it gives it no mass, while
    // the exact aggregation does.
    assert!(top.unexpanded.is_none());
    let single: std::collections::BTreeSet<u32> = judge
        .surfaces()
        .iter()
        .filter_map(|t| t.trim().parse::<u32>().ok())
        .collect();
    let blind: Vec<u32> = (10..=100).filter(|n| !single.contains(n)).collect();
    assert!(!blind.is_empty());
    assert!(
        blind.iter().all(|n| !top.probs.contains_key(n)),
        "{:?}",
        top.probs
    );
    assert!(blind.iter().any(|&n| exact.p[n as usize] > 1e-6));
    eprintln!(
        "exact {:?} (mass {:.4}), top20 {:?} (mass {:.4})",
        s.score, s.number_mass, top.score, top.number_mass
    );
}
