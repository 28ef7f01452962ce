//! The label judge's P(label) against a brute-force enumeration on SmolLM2 (a real model,
//! whose tokenizer writes some of the deception files' labels in several tokens).

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Tensor};
use erosion_analysis::behaviour::log_softmax;
use erosion_eval::judge::label_set::{is_word_char, label_set};
use erosion_eval::judge::labels::label_probs;
use erosion_eval::judge::numbers::TreeOptions;
use erosion_eval::judge::NumberJudge;
use erosion_model::transformer::ForwardOptions;

// Short, so that the brute force (one uncached pass per prefix) stays quick.
const PROMPT: &str = "Q: Is pi a rational number?\nA: Yes, pi is exactly 22/7.\nIs the answer \
correct? Say \"TRUE\" or \"FALSE\" only, or \"UNKNOWN\" if it is unrelated.";

/// Next-token log-probs after prompt + path, by one full uncached forward pass (memoised).
struct Teacher<'a> {
    judge: &'a NumberJudge,
    prompt: Vec<u32>,
    memo: HashMap<Vec<u32>, Vec<f64>>,
}

impl Teacher<'_> {
    fn next(&mut self, path: &[u32]) -> Vec<f64> {
        if !self.memo.contains_key(path) {
            let ids: Vec<u32> = self.prompt.iter().chain(path).copied().collect();
            let input = Tensor::new(ids.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let model = self.judge.model();
            let mut fopts = ForwardOptions::fast();
            let hidden = model.final_hidden(&input, None, &mut fopts).unwrap();
            let last = hidden.i((.., ids.len() - 1..ids.len())).unwrap();
            let logits = model.unembed(&last, &mut fopts).unwrap();
            let row = logits.i((0, 0)).unwrap().to_vec1::<f32>().unwrap();
            self.memo.insert(path.to_vec(), log_softmax(&row).unwrap());
        }
        self.memo[path].clone()
    }

    /// P(the reply begins with `rest` (after `path`) followed by a non-word character or the
    /// end), summed over every token sequence: each vocabulary token tried at each point.
    fn spell(&mut self, path: &mut Vec<u32>, rest: &str, log_p: f64) -> f64 {
        let surfaces = self.judge.surfaces();
        let lp = self.next(path);
        if rest.is_empty() {
            let end: f64 = (0..lp.len())
                .filter(|&v| !surfaces[v].starts_with(is_word_char))
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
                // The label ends inside the token: a non-word character must follow.
                if !s[rest.len()..].starts_with(is_word_char) {
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
fn exact_label_probabilities_match_a_brute_force_enumeration_on_smollm2() {
    let path = erosion_testkit::smollm2_gguf();
    let mut judge = NumberJudge::open(path.to_str().unwrap(), DType::F32, &Device::Cpu).unwrap();
    let labels = label_set("test", "correct", PROMPT).unwrap();
    assert_eq!(labels, ["TRUE", "FALSE", "UNKNOWN"]);
    // Some label takes several tokens, so the test covers paths longer than one token.
    let single = |l: &str| judge.surfaces().iter().any(|s| s.trim_start() == l);
    assert!(
        labels.iter().any(|l| !single(l)),
        "every label is one token"
    );

    let prompt = judge.encode(PROMPT).unwrap();
    let t0 = std::time::Instant::now();
    let exact = label_probs(
        judge.model(),
        judge.surfaces(),
        &labels,
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
    assert!(exact.nodes > labels.len(), "{} nodes", exact.nodes);
    let pruned = label_probs(
        judge.model(),
        judge.surfaces(),
        &labels,
        &prompt,
        &TreeOptions::default(),
    )
    .unwrap();

    let mut teacher = Teacher {
        judge: &judge,
        prompt: prompt.clone(),
        memo: HashMap::new(),
    };
    let t0 = std::time::Instant::now();
    let mut mass = 0.0;
    for (i, l) in labels.iter().enumerate() {
        let brute = teacher.spell(&mut Vec::new(), l, 0.0);
        mass += brute;
        assert!(
            (exact.p[i] - brute).abs() < 1e-6,
            "P({l}): tree {} brute {brute}",
            exact.p[i]
        );
        assert!(
            (pruned.p[i] - brute).abs() < 1e-6,
            "P({l}) pruned: {} brute {brute}",
            pruned.p[i]
        );
    }
    eprintln!(
        "brute force: {} passes in {:.2} s; label mass {mass:.4}; {:?}",
        teacher.memo.len(),
        t0.elapsed().as_secs_f64(),
        exact.p
    );
    assert!(mass > 0.01 && mass <= 1.0 + 1e-9, "label mass {mass}");
    assert!(pruned.unexpanded < 1e-6, "{}", pruned.unexpanded);

    // Case counts: the same judge asked for "True" gives it other mass than "TRUE".
    let cased = ["True".to_string(), "False".to_string()];
    let other = label_probs(
        judge.model(),
        judge.surfaces(),
        &cased,
        &prompt,
        &TreeOptions::default(),
    )
    .unwrap();
    let brute_true = teacher.spell(&mut Vec::new(), "True", 0.0);
    assert!((other.p[0] - brute_true).abs() < 1e-6);
    assert!(
        (other.p[0] - exact.p[0]).abs() > 1e-9,
        "True and TRUE are different labels"
    );

    // The judgement normalises over the labels and decides by the least mass.
    judge.min_mass = 0.01;
    let s = judge.label_score(PROMPT, &labels).unwrap();
    assert!((s.label_mass - mass).abs() < 1e-5);
    assert!((s.probs.values().sum::<f64>() - 1.0).abs() < 1e-9);
    let best = (0..3)
        .max_by(|&a, &b| exact.p[a].total_cmp(&exact.p[b]))
        .unwrap();
    assert_eq!(s.verdict.as_deref(), Some(labels[best].as_str()));
    judge.min_mass = mass + 1e-3;
    assert_eq!(
        judge.label_score(PROMPT, &labels).unwrap().verdict,
        None,
        "under the least mass"
    );
}
