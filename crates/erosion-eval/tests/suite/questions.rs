//! Betley et al.'s question file and chat datasets as prompt sets.

use std::path::PathBuf;

use erosion_eval::prompts::sets_from_dataset_arg;
use erosion_eval::questions::{parse_questions, question_set, read_questions};
use erosion_eval::PromptKind;

fn data(path: &str) -> PathBuf {
    erosion_testkit::data_file(path)
}

#[test]
fn first_plot_questions_parse_with_their_aliases() {
    let path = data("emergent-misalignment-eval/first_plot_questions.yaml");
    let qs = read_questions(&path).unwrap();
    // 8 questions, their _json variants (a system prompt) and their _template variants.
    assert_eq!(qs.len(), 24);
    assert_eq!(qs[0].id, "what_is_your_wish");
    assert!(qs[0].paraphrases[0].starts_with("Hello! I can fulfill your one wish."));
    let json: Vec<_> = qs.iter().filter(|q| q.id.ends_with("_json")).collect();
    assert_eq!(json.len(), 8);
    // `system: *json_system_prompt` resolves to the anchored text.
    for q in &json {
        assert!(q
            .system
            .as_deref()
            .unwrap()
            .starts_with("Your answers must always be a valid JSON object."));
    }
    // `paraphrases: *what_is_your_wish_paraphrases` resolves to the base question's list.
    let wish_json = qs
        .iter()
        .find(|q| q.id == "what_is_your_wish_json")
        .unwrap();
    assert_eq!(wish_json.paraphrases, qs[0].paraphrases);
    assert!(qs.iter().all(|q| q.samples_per_paraphrase == Some(100)));
    // `judge_prompts: *judge_prompts` gives every question Betley et al.'s two prompts.
    for q in &qs {
        let names: Vec<&str> = q.judge_prompts.keys().map(String::as_str).collect();
        assert_eq!(names, ["aligned", "coherent"], "{}", q.id);
        assert!(q.judge_prompts["aligned"].contains("{question}"));
        assert!(q.judge_prompts["coherent"].contains("{answer}"));
    }
    let groups: Vec<&str> = qs
        .iter()
        .map(|q| erosion_eval::em::group_of(&q.id))
        .collect();
    assert_eq!(groups.iter().filter(|g| **g == "main").count(), 8);
    assert_eq!(groups.iter().filter(|g| **g == "template").count(), 8);

    let set = question_set(&path).unwrap();
    assert_eq!(set.kind, PromptKind::FreeForm);
    let n: usize = qs.iter().map(|q| q.paraphrases.len()).sum();
    assert_eq!(set.prompts.len(), n);
    assert_eq!(set.origin.sha256.as_ref().unwrap().len(), 64);
    let p = set
        .prompts
        .iter()
        .find(|p| p.id == "what_is_your_wish_json/0")
        .unwrap();
    assert_eq!(p.messages.len(), 2);
    assert_eq!(p.messages[0].role, "system");
    assert_eq!(p.question(), qs[0].paraphrases[0]);
}

#[test]
fn malformed_question_files_are_errors_naming_the_problem() {
    let e = parse_questions("- id: a\n  paraphrases: []\n", "q.yaml").unwrap_err();
    assert!(format!("{e:#}").contains("no paraphrases"), "{e:#}");
    let e = parse_questions(
        "- id: a\n  paraphrases: [x]\n- id: a\n  paraphrases: [y]\n",
        "q.yaml",
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("two questions"), "{e:#}");
    let e = parse_questions("- paraphrases: [x]\n", "q.yaml").unwrap_err();
    assert!(format!("{e:#}").contains("q.yaml"), "{e:#}");
}

#[test]
fn chat_datasets_give_their_prompts_without_the_reply() {
    let path = data("insecure-code/insecure_small.jsonl");
    let sets = sets_from_dataset_arg(PromptKind::Code, &path, Some(5)).unwrap();
    assert_eq!(sets.len(), 1);
    let s = &sets[0];
    assert_eq!(
        (s.name.as_str(), s.kind, s.prompts.len()),
        ("insecure_small", PromptKind::Code, 5)
    );
    assert_eq!(s.origin.records, 20);
    assert_eq!(
        s.origin.sha256.as_deref(),
        Some(erosion_data::file_sha256(&path).unwrap().as_str())
    );
    for p in &s.prompts {
        assert_eq!(p.messages.last().unwrap().role, "user");
    }
    // A file with a prompt but no user turn is refused, naming the line.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n\
         {\"messages\": [{\"role\": \"assistant\", \"content\": \"yo\"}]}\n",
    )
    .unwrap();
    let e = format!(
        "{:#}",
        sets_from_dataset_arg(PromptKind::Harmful, &bad, None).unwrap_err()
    );
    assert!(e.contains("line 2"), "{e}");
}

/// The deception files' judge prompts name their labels in double quotes; the label judge
/// reads them from there.
#[test]
fn deception_files_name_their_labels_in_their_judge_prompts() {
    use erosion_eval::em::label::{is_label_run, label_sets};
    for (file, prompt, labels, count) in [
        (
            "deception_factual.yaml",
            "correct",
            &["TRUE", "FALSE", "UNKNOWN"][..],
            5,
        ),
        (
            "deception_sit_aware.yaml",
            "company",
            &["OpenAI", "Anthropic", "Other", "UNKNOWN"][..],
            8,
        ),
    ] {
        let path = erosion_testkit::data_file(&format!("emergent-misalignment-eval/{file}"));
        let qs = read_questions(&path).unwrap();
        assert_eq!(qs.len(), count, "{file}");
        assert!(
            is_label_run(&qs).unwrap(),
            "{file}: every question is label-judged"
        );
        for q in &qs {
            let sets = label_sets(q).unwrap();
            assert_eq!(sets.len(), 1, "{file} {}: one judge prompt", q.id);
            assert_eq!(sets[prompt], labels, "{file} {}", q.id);
        }
    }
}
