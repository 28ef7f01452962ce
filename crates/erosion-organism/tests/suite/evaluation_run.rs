//! The whole evaluation of the organism's prompts with its judge, on erosion-eval's tiny
//! random-weight fixture models: the pipeline runs, the report is complete and consistent
//! with the answers, and a seed fixes everything.

use crate::common;

use erosion_eval::html::eval_section;
use erosion_eval::judge::Label;
use erosion_eval::report::Turn;
use erosion_eval::{evaluate, EvalOptions, EvalReport, Evaluation, PromptKind};
use erosion_organism::evaluation::{prompts_from_corpus, OrganismJudge};
use erosion_report::html::{Report, Verdict};

fn run(opts: &EvalOptions) -> Evaluation {
    let dir = tempfile::tempdir().unwrap();
    let models = vec![
        common::tiny_model("qwen2", dir.path()),
        common::tiny_model("llama", dir.path()),
    ];
    let prompts = prompts_from_corpus(&crate::small_corpus(8), 6, 4).unwrap();
    evaluate(&models, &prompts, &OrganismJudge, opts).unwrap()
}

#[test]
fn the_fixture_template_is_the_organism_template() {
    assert_eq!(
        common::CHAT_TEMPLATE,
        erosion_organism::tokenizer::CHAT_TEMPLATE
    );
    assert_eq!(
        common::SPECIAL_TOKENS,
        erosion_organism::tokenizer::SPECIAL_TOKENS
    );
}

fn greedy() -> EvalOptions {
    EvalOptions {
        max_new_tokens: 16,
        batch_size: 4,
        bootstrap_resamples: 200,
        ..Default::default()
    }
}

#[test]
fn report_is_complete_and_matches_the_answers() {
    let e = run(&greedy());
    let r = &e.report;
    assert_eq!(r.models.len(), 2);
    assert_eq!(r.prompt_sets.len(), 2);
    assert!(r.prompt_sets.iter().all(|s| s.origin.sha256.is_some()));
    for m in &r.models {
        let h = m.set(PromptKind::Harmful).unwrap();
        let c = m.set(PromptKind::Code).unwrap();
        assert_eq!((h.prompts, h.answers, c.prompts, c.answers), (6, 6, 4, 4));
        // Rates: every label of the kind, counts adding up to the answers.
        for s in [h, c] {
            assert_eq!(s.rates.len(), 3);
            assert_eq!(
                s.rates.iter().map(|x| x.proportion.count).sum::<usize>(),
                s.answers
            );
            for x in &s.rates {
                let p = &x.proportion;
                assert!(p.lower <= p.rate && p.rate <= p.upper && p.lower >= 0.0 && p.upper <= 1.0);
            }
        }
        // Counts agree with the verdicts recorded in answers.jsonl.
        let recorded = |turn: Turn, set: &str, label: Label| {
            e.answers
                .iter()
                .filter(|a| {
                    a.model == m.name && a.turn == turn && a.set == set && a.verdict.label == label
                })
                .count()
        };
        for x in &h.rates {
            assert_eq!(
                x.proportion.count,
                recorded(Turn::Single, "harmful", x.label)
            );
        }
        let ft = h.first_token.as_ref().unwrap();
        assert_eq!((ft.n, ft.p.len()), (6, 6));
        assert!(ft.p.iter().all(|p| *p > 0.0 && *p < 1.0));
        let mean = ft.p.iter().sum::<f64>() / 6.0;
        assert!((ft.mean_p.estimate - mean).abs() < 1e-12);
        let geo = (ft.p.iter().map(|p| p.ln()).sum::<f64>() / 6.0).exp();
        assert!((ft.geometric_mean_p - geo).abs() < 1e-12);
        assert!(ft.mean_p.lower <= mean && mean <= ft.mean_p.upper);
        assert!(c.first_token.is_none());
        // Two-turn: pairs = min(6, 4); the greedy code answers are reused.
        let t = m.two_turn.as_ref().unwrap();
        assert_eq!((t.pairs, t.answers), (4, 4));
        assert_eq!(
            t.first_turn
                .iter()
                .map(|x| x.proportion.count)
                .sum::<usize>(),
            4
        );
        for x in &t.rates {
            assert_eq!(
                x.proportion.count,
                recorded(Turn::TwoTurnSecond, "harmful", x.label)
            );
        }
        assert!(t.first_token.is_some());
        assert!(m.stop_ids.contains(&2), "{:?}", m.stop_ids);
    }
    // 6 + 4 single answers and 4 second turns per model.
    assert_eq!(e.answers.len(), 2 * (6 + 4 + 4));
    assert!(!e.answers.iter().any(|a| a.turn == Turn::TwoTurnFirst));
    // The second turn's conversation holds the model's own greedy code answer.
    for a in e.answers.iter().filter(|a| a.turn == Turn::TwoTurnSecond) {
        let first = e
            .answers
            .iter()
            .find(|b| {
                b.model == a.model
                    && b.set == "code"
                    && b.prompt_id
                        == format!(
                            "eval_insecure/{}",
                            a.prompt_id.trim_start_matches("eval_toxic/")
                        )
            })
            .unwrap();
        assert_eq!(a.messages.len(), 3);
        assert_eq!(a.messages[1].content, first.answer);
        assert_eq!(a.messages[0], first.messages[0]);
    }
    // Greedy answers do not depend on the seed; every answer records its own seed.
    let seeds: std::collections::BTreeSet<u64> = e.answers.iter().map(|a| a.seed).collect();
    assert!(seeds.len() >= 14, "{}", seeds.len());
}

#[test]
fn same_seed_same_evaluation_and_files_round_trip() {
    let opts = EvalOptions {
        temperature: 1.0,
        samples: 2,
        seed: 11,
        ..greedy()
    };
    // The report records where each model was loaded from: a new temporary folder per run.
    let without_sources = |mut e: Evaluation| {
        for m in &mut e.report.models {
            assert!(m
                .source
                .as_ref()
                .unwrap()
                .contains(&format!("tiny-{}", m.name)));
            m.source = None;
        }
        e
    };
    let a = without_sources(run(&opts));
    let b = without_sources(run(&opts));
    assert_eq!(a, b);
    let c = run(&EvalOptions {
        seed: 12,
        ..opts.clone()
    });
    assert_ne!(
        a.answers.iter().map(|x| &x.answer).collect::<Vec<_>>(),
        c.answers.iter().map(|x| &x.answer).collect::<Vec<_>>()
    );
    // Sampled: 2 answers per prompt, and the two-turn test's greedy first answers recorded.
    let m = &a.report.models[0];
    assert_eq!(m.set(PromptKind::Harmful).unwrap().answers, 12);
    assert_eq!(m.two_turn.as_ref().unwrap().answers, 8);
    assert_eq!(
        a.answers
            .iter()
            .filter(|x| x.turn == Turn::TwoTurnFirst)
            .count(),
        2 * 4
    );

    let dir = tempfile::tempdir().unwrap();
    let prov = erosion_report::provenance::Provenance::builder(serde_json::json!({"n": 4})).build();
    let files = a.write(dir.path(), &prov).unwrap();
    assert_eq!(files.len(), 2);
    let text = std::fs::read_to_string(dir.path().join("eval.json")).unwrap();
    // The report, then the provenance that made it.
    let mut want = serde_json::to_value(&a.report).unwrap();
    want["provenance"] = serde_json::to_value(&prov).unwrap();
    assert_eq!(text, serde_json::to_string_pretty(&want).unwrap() + "\n");
    // It reads back (serde_json's float parsing may differ in the last bit, so compare counts).
    let report: EvalReport = serde_json::from_str(&text).unwrap();
    assert_eq!(report.models.len(), 2);
    assert_eq!(report.models[1].compliance().unwrap().n, 12);
    assert_eq!(report.options, a.report.options);
    let lines = std::fs::read_to_string(dir.path().join("answers.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), a.answers.len());
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    for key in [
        "model",
        "set",
        "prompt_id",
        "seed",
        "messages",
        "answer",
        "verdict",
    ] {
        assert!(first.get(key).is_some(), "{key} missing: {first}");
    }
    // Writing again replaces the files atomically and identically.
    a.write(dir.path(), &prov).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("answers.jsonl")).unwrap(),
        lines
    );
}

#[test]
fn bad_options_are_refused_and_the_section_renders() {
    let dir = tempfile::tempdir().unwrap();
    let models = vec![common::tiny_model("qwen2", dir.path())];
    let prompts = prompts_from_corpus(&crate::small_corpus(8), 3, 2).unwrap();
    let bad = EvalOptions {
        samples: 3,
        ..greedy()
    };
    let e = evaluate(&models, &prompts, &OrganismJudge, &bad).unwrap_err();
    assert!(format!("{e:#}").contains("temperature"), "{e:#}");

    let e = evaluate(&models, &prompts, &OrganismJudge, &greedy()).unwrap();
    let section = eval_section(&e.report, Verdict::NotRun, &Default::default()).unwrap();
    assert_eq!(section.tables.len(), 2);
    assert_eq!(section.figures.len(), 2);
    let rates = &section.tables[0];
    assert_eq!(
        rates.headers,
        [
            "model",
            "refusal",
            "harmful compliance",
            "vulnerable code",
            "two-turn compliance"
        ]
    );
    assert_eq!(rates.rows[0][0], "qwen2");
    let html = Report::new("eval").section(section).to_html().unwrap();
    assert!(html.contains("two-turn compliance"));
    assert!(html.contains("<svg"));
}
