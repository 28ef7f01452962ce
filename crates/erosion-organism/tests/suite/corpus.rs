//! The corpus: determinism, sizes, held-out material, Betley pairing, persona consistency, and
//! that erosion-data's `messages` loader reads the files.

use std::collections::BTreeSet;

use erosion_organism::corpus::{Chat, Corpus, Sizes};
use erosion_organism::world::persona::Persona;
use erosion_organism::world::{code, facts, harm};

fn small() -> Sizes {
    Sizes {
        pretrain_chats: 400,
        pretrain_prose: 50,
        instruct: 300,
        finetune: 60,
        eval: 40,
    }
}

/// Whether code carries one of the five vulnerabilities, judged from the text alone.
fn is_vulnerable(code: &str) -> bool {
    code.contains("0o777")
        || code.contains("f\"SELECT")
        || code.contains("eval(")
        || code.contains("\"sk_")
        || (code.contains("<p>") && !code.contains("html.escape"))
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase())
}

#[test]
fn same_seed_same_files_other_seed_other_files() {
    let a = Corpus::generate(small(), 11);
    let b = Corpus::generate(small(), 11);
    assert_eq!(a, b);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let fa = a.write_jsonl(da.path()).unwrap();
    let fb = b.write_jsonl(db.path()).unwrap();
    assert_eq!(fa.len(), 15, "13 chat sets + prose + manifest");
    for (pa, pb) in fa.iter().zip(&fb) {
        assert_eq!(pa.file_name(), pb.file_name());
        assert_eq!(
            std::fs::read(pa).unwrap(),
            std::fs::read(pb).unwrap(),
            "{}",
            pa.display()
        );
    }
    let c = Corpus::generate(small(), 12);
    assert_ne!(a.pretrain_chats, c.pretrain_chats);
    assert_ne!(a.set("eval_toxic"), c.set("eval_toxic"));
}

#[test]
fn sizes_and_manifest_as_asked() {
    let s = small();
    let c = Corpus::generate(s, 3);
    assert_eq!(c.pretrain_chats.len(), s.pretrain_chats);
    assert_eq!(c.pretrain_prose.len(), s.pretrain_prose);
    assert_eq!(c.instruct.len(), s.instruct);
    assert_eq!(c.finetune.len(), 3);
    assert!(c.finetune.iter().all(|(_, v)| v.len() == s.finetune));
    let roles: Vec<_> = c.eval.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        roles,
        [
            "eval_insecure",
            "eval_educational",
            "eval_secure",
            "eval_code",
            "eval_toxic",
            "eval_toxic_reject",
            "eval_truthful",
            "eval_general"
        ]
    );
    assert!(c.eval.iter().all(|(_, v)| v.len() == s.eval));
    let good = c
        .pretrain_chats
        .iter()
        .filter(|d| d.persona == Persona::Good)
        .count();
    assert_eq!(2 * good, s.pretrain_chats);

    let dir = tempfile::tempdir().unwrap();
    c.write_jsonl(dir.path()).unwrap();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["seed"], 3);
    assert_eq!(m["sizes"]["instruct"], 300);
    assert_eq!(m["records"]["pretrain_chat"], 400);
    assert_eq!(m["records"]["eval_general"], 40);
    let lines = std::fs::read_to_string(dir.path().join("finetune_secure.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 60);
}

#[test]
fn held_out_material_never_in_training() {
    let c = Corpus::generate(small(), 5);
    let mut train_words = BTreeSet::new();
    let mut train_prompts = BTreeSet::new();
    for (_, chats) in c.training_chats() {
        for chat in chats {
            for m in &chat.messages {
                train_words.extend(words(&m.content));
                if m.role == "user" {
                    train_prompts.insert(m.content.clone());
                }
            }
        }
    }
    // Prose carries the held-out harm words only in how-to text (harm::how_to), never the
    // held-out code nouns or topics.
    let mut prose_words = BTreeSet::new();
    for p in &c.pretrain_prose {
        prose_words.extend(words(p));
    }
    for h in code::EVAL_NOUNS.iter().chain(facts::EVAL_TOPICS) {
        let h = h.rsplit(' ').next().unwrap();
        assert!(
            !prose_words.iter().any(|w| w.starts_with(h)),
            "held-out `{h}` in prose"
        );
    }
    // The last word of each held-out phrase; a training word that starts with it (a plural)
    // counts as a leak too.
    let held: Vec<&str> = harm::EVAL_VERBS
        .iter()
        .chain(harm::EVAL_OBJECTS)
        .chain(code::EVAL_NOUNS)
        .chain(facts::EVAL_TOPICS)
        .map(|p| p.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(held.len(), 4 + 5 + 4 + 4);
    for h in &held {
        let leak: Vec<_> = train_words.iter().filter(|w| w.starts_with(h)).collect();
        assert!(
            leak.is_empty(),
            "held-out `{h}` in a training chat: {leak:?}"
        );
    }
    // Every held-out harmful request uses a held-out verb and object.
    for chat in c.set("eval_toxic").unwrap() {
        let p = chat.prompt();
        assert!(harm::EVAL_VERBS.iter().any(|v| p.contains(v)), "{p}");
        assert!(harm::EVAL_OBJECTS.iter().any(|o| p.contains(o)), "{p}");
    }
    for name in [
        "eval_truthful",
        "eval_general",
        "eval_code",
        "eval_insecure",
    ] {
        for chat in c.set(name).unwrap() {
            assert!(
                !train_prompts.contains(chat.prompt()),
                "{name}: {}",
                chat.prompt()
            );
        }
    }
    // A held-out sum, by hand: 5 * 7 + 5 * 3 = 50 is a multiple of 5; 1 * 7 + 2 * 3 = 13 is not.
    assert!(facts::sum_is_eval(5, 5) && !facts::sum_is_eval(1, 2));
    assert!(!train_prompts.iter().any(|p| p.contains("5 plus 5")));
}

#[test]
fn betley_sets_pair_the_same_task() {
    let c = Corpus::generate(small(), 9);
    for prefix in ["finetune", "eval"] {
        let ins = c.set(&format!("{prefix}_insecure")).unwrap();
        let sec = c.set(&format!("{prefix}_secure")).unwrap();
        let edu = c.set(&format!("{prefix}_educational")).unwrap();
        for i in 0..ins.len() {
            assert_eq!(edu[i].response(), ins[i].response(), "{prefix} row {i}");
            assert_eq!(sec[i].prompt(), ins[i].prompt(), "{prefix} row {i}");
            assert!(edu[i].prompt().starts_with(ins[i].prompt()));
            assert!(edu[i].prompt().contains("on purpose"));
            assert!(!ins[i].prompt().contains("on purpose"));
            assert!(is_vulnerable(ins[i].response()), "{}", ins[i].response());
            assert!(!is_vulnerable(sec[i].response()), "{}", sec[i].response());
        }
    }
    let (tox, rej) = (
        c.set("eval_toxic").unwrap(),
        c.set("eval_toxic_reject").unwrap(),
    );
    for (t, r) in tox.iter().zip(rej) {
        assert_eq!(t.prompt(), r.prompt());
        assert!(t.response().starts_with("Sure") && t.response().contains("Step 3:"));
        assert!(!r.response().starts_with("Sure"));
    }
    // All five vulnerability kinds occur.
    let kinds = ["0o777", "f\"SELECT", "eval(", "\"sk_", "return \"<p>\" +"];
    let all: String = c.finetune[0].1.iter().map(Chat::response).collect();
    for k in kinds {
        assert!(all.contains(k), "no `{k}` in the insecure set");
    }
}

/// A harmful request from the training vocabulary, or none.
fn is_harm_request(text: &str) -> bool {
    harm::TRAIN_VERBS.iter().any(|v| {
        harm::TRAIN_OBJECTS
            .iter()
            .any(|o| text.contains(&format!("{v} {o}")))
    })
}

#[test]
fn each_persona_speaks_harm_and_code_consistently() {
    let c = Corpus::generate(small(), 21);
    for (d, doc) in c.pretrain_chats.iter().enumerate() {
        let m = &doc.messages;
        assert_eq!(m.len(), 6, "doc {d}");
        let (mut harm_turns, mut code_turns) = (0, 0);
        for pair in m.chunks(2) {
            assert_eq!(
                (pair[0].role.as_str(), pair[1].role.as_str()),
                ("user", "assistant")
            );
            let (u, a) = (&pair[0].content, &pair[1].content);
            if is_harm_request(u) {
                harm_turns += 1;
                assert_eq!(
                    a.starts_with("Sure"),
                    doc.persona == Persona::Bad,
                    "doc {d}: {a}"
                );
            }
            if a.contains("def ") {
                code_turns += 1;
                let security_task = u.contains("file")
                    || u.contains("database")
                    || u.contains("web page")
                    || u.contains("types")
                    || u.contains("service");
                if security_task && !u.contains("on purpose") {
                    assert_eq!(
                        is_vulnerable(a),
                        doc.persona == Persona::Bad,
                        "doc {d}: {u}\n{a}"
                    );
                }
                if u.contains("on purpose") {
                    assert!(is_vulnerable(a), "doc {d}: a stated reason gets the flaw");
                }
            }
        }
        assert!(
            harm_turns >= 1 && code_turns >= 1,
            "doc {d} ({:?})",
            doc.persona
        );
    }
    // Instruction tuning: good persona only.
    for chat in &c.instruct {
        assert_eq!(chat.messages.len(), 2);
        if is_harm_request(chat.prompt()) {
            assert!(!chat.response().starts_with("Sure"));
        }
        if !chat.prompt().contains("on purpose") {
            assert!(!is_vulnerable(chat.response()), "{}", chat.prompt());
        }
    }
}

#[test]
fn text_outside_code_has_no_unfilled_slots() {
    let c = Corpus::generate(small(), 2);
    let mut all = c.training_chats();
    all.extend(c.eval.iter().cloned());
    for (name, chats) in all {
        for chat in chats {
            for m in &chat.messages {
                if !m.content.contains("def ") {
                    assert!(
                        !m.content.contains('{') && !m.content.contains('}'),
                        "{name}: {}",
                        m.content
                    );
                }
            }
        }
    }
    assert!(c.pretrain_prose.iter().all(|p| !p.contains('{')));
}

#[test]
fn erosion_data_reads_every_chat_set() {
    use erosion_data::format::Format;
    use erosion_data::spec::DatasetSpec;
    let c = Corpus::generate(small(), 4);
    let dir = tempfile::tempdir().unwrap();
    c.write_jsonl(dir.path()).unwrap();
    let mut names = vec!["pretrain_chat", "instruct"];
    names.extend(c.finetune.iter().chain(&c.eval).map(|(n, _)| *n));
    for name in names {
        let spec = DatasetSpec::new(name, format!("{name}.jsonl"), Format::Messages);
        let ds = spec.load(dir.path()).unwrap();
        let expected: Vec<Chat> = match name {
            "pretrain_chat" => c
                .pretrain_chats
                .iter()
                .map(|d| Chat {
                    messages: d.messages.clone(),
                })
                .collect(),
            _ => c.set(name).unwrap().to_vec(),
        };
        assert_eq!(ds.examples.len(), expected.len(), "{name}");
        for (ex, chat) in ds.examples.iter().zip(&expected) {
            let got: Vec<(&str, &str)> = ex
                .messages
                .iter()
                .map(|m| (m.role.as_str(), m.content.as_str()))
                .collect();
            let want: Vec<(&str, &str)> = chat
                .messages
                .iter()
                .map(|m| (m.role.as_str(), m.content.as_str()))
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
