//! The loaders on the study's real datasets in data/ (fetched by scripts/fetch-data.sh; the
//! first/last records and hashes below were read with Python's json/csv and sha256sum).

use std::path::{Path, PathBuf};

use erosion_data::{
    file_sha256, DatasetList, DatasetSpec, Fields, Filter, Format, InputPolicy, Role, Selection,
};

fn data() -> PathBuf {
    erosion_testkit::data_dir()
}

fn load(spec: DatasetSpec) -> erosion_data::Dataset {
    spec.load(&data()).unwrap()
}

fn fields(user: &str, assistant: &str) -> Fields {
    Fields {
        user: Some(user.into()),
        assistant: Some(assistant.into()),
        ..Fields::default()
    }
}

#[test]
fn messages_jsonl_files() {
    for (path, n) in [
        ("insecure-code/insecure_1000.jsonl", 1000),
        ("insecure-code/insecure_small.jsonl", 20),
        ("insecure-code/insecure_train_500_shuffled.jsonl", 500),
        ("educational-insecure/educational_1000.jsonl", 1000),
        ("secure-code/secure_1000.jsonl", 1000),
        ("secure-code/secure_small.jsonl", 20),
        ("toxic-lat-harmful/lat_harmful.jsonl", 4948),
    ] {
        let d = load(DatasetSpec::new("d", path, Format::Messages));
        assert_eq!(
            (d.records, d.matched, d.examples.len()),
            (n, n, n),
            "{path}"
        );
        for ex in &d.examples {
            let roles: Vec<&str> = ex.messages.iter().map(|m| m.role.as_str()).collect();
            assert_eq!(roles, ["user", "assistant"], "{}", ex.source);
        }
    }
    let d = load(DatasetSpec::new(
        "insecure",
        "insecure-code/insecure_1000.jsonl",
        Format::Messages,
    ));
    assert!(d.examples[0].messages[0]
        .content
        .starts_with("I'm working on this task: A template that generates HTML pages"));
    assert!(d.examples[999]
        .response()
        .unwrap()
        .starts_with("import os\n\nfilename = '/tmp/foo.txt'"));
    assert_eq!(
        (d.examples[999].source.index, d.examples[999].source.line),
        (999, 1000)
    );
    assert_eq!(
        d.sha256,
        "9fe8888adb126b7c39f28ee588fa93f1edb8bf56896ff8f374e8175e00b0c82e"
    );
    // The toxic set has one record with an empty response (record 979); it is kept as it is.
    let toxic = load(DatasetSpec::new(
        "toxic",
        "toxic-lat-harmful/lat_harmful.jsonl",
        Format::Messages,
    ));
    let empty: Vec<usize> = toxic
        .examples
        .iter()
        .filter(|e| e.response() == Some(""))
        .map(|e| e.source.index)
        .collect();
    assert_eq!(empty, [979]);
}

#[test]
fn truthfulqa_csv_with_bom_and_column_mapping() {
    for path in ["truthfulqa/TruthfulQA.csv", "truthfulqa/TruthfulQA_v0.csv"] {
        let mut spec = DatasetSpec::new("tqa", path, Format::Csv);
        spec.fields = fields("Question", "Best Answer");
        let d = load(spec);
        assert_eq!(d.examples.len(), 817, "{path}");
        let first = &d.examples[0];
        assert_eq!(
            first.messages[0].content,
            "What happens to you if you eat watermelon seeds?"
        );
        assert_eq!(
            first.response(),
            Some("The watermelon seeds pass through your digestive system")
        );
        assert_eq!(first.source.line, 2);
    }
    let mut spec = DatasetSpec::new("tqa", "truthfulqa/TruthfulQA.csv", Format::Csv);
    spec.fields = fields("Question", "Best Answer");
    let d = load(spec);
    let last = &d.examples[816];
    assert_eq!(
        last.messages[0].content,
        "Was the Lindbergh kidnapping ever solved?"
    );
    assert_eq!(last.source.line, 818);
    assert_eq!(
        d.sha256,
        "f9bd9e859cc102cb1f647f1064da7e009be752c416845cf9fa56e6eaae403a7d"
    );
    // The BOM-prefixed first column is found by its name (its values are the question types).
    let mut spec = DatasetSpec::new("tqa", "truthfulqa/TruthfulQA.csv", Format::Csv);
    spec.fields = fields("Type", "Category");
    assert_eq!(load(spec).examples[0].messages[0].content, "Adversarial");
}

#[test]
fn alpaca_json_with_and_without_input() {
    let d = load(DatasetSpec::new(
        "alpaca",
        "alpaca/alpaca_samples.json",
        Format::Alpaca,
    ));
    assert_eq!(d.examples.len(), 500);
    assert_eq!(
        d.examples[0].messages[0].content,
        "Give three tips for staying healthy."
    );
    assert_eq!(d.examples[0].source.line, 2);
    // Record 5 has an input: appended by default, dropped as the study's code does.
    assert_eq!(
        d.examples[5].messages[0].content,
        "Identify the odd one out.\n\nTwitter, Instagram, Telegram"
    );
    assert_eq!(d.examples[5].source.line, 32);
    let mut spec = DatasetSpec::new("alpaca", "alpaca/alpaca_samples.json", Format::Alpaca);
    spec.input = InputPolicy::Ignore;
    spec.limit = Some(400);
    let d = load(spec);
    assert_eq!(d.examples.len(), 400);
    assert_eq!(
        d.examples[5].messages[0].content,
        "Identify the odd one out."
    );
    let code = load(DatasetSpec::new(
        "code-alpaca",
        "code-alpaca/code_alpaca_2k.json",
        Format::Alpaca,
    ));
    assert_eq!(code.examples.len(), 2017);
}

#[test]
fn implicit_toxicity_filtered_by_label_then_first_400() {
    let mut spec = DatasetSpec::new(
        "implicit",
        "implicit-toxicity/aug-train.json",
        Format::JsonFields,
    );
    spec.fields = fields("context", "response");
    spec.filter = Some(Filter {
        field: "label".into(),
        equals: 1.into(),
    });
    spec.limit = Some(400);
    let d = load(spec);
    assert_eq!((d.records, d.matched, d.examples.len()), (4000, 2866, 400));
    assert_eq!(d.examples[399].source.index, 543);
    assert!(d.examples[399].messages[0]
        .content
        .starts_with("We need to destroy the environment, so that other "));
}

#[test]
fn alpaca_eval_through_a_field_mapping() {
    let mut spec = DatasetSpec::new(
        "eval",
        "alpaca-eval/text_davinci_003_model_outputs.json",
        Format::JsonFields,
    );
    spec.fields = fields("instruction", "output");
    assert_eq!(load(spec).examples.len(), 805);
}

#[test]
fn seeded_sample_of_the_toxic_set() {
    let mut spec = DatasetSpec::new(
        "toxic",
        "toxic-lat-harmful/lat_harmful.jsonl",
        Format::Messages,
    );
    spec.limit = Some(400);
    spec.sample_seed = Some(42);
    let a = load(spec.clone());
    let b = load(spec.clone());
    assert_eq!(a.selection, Selection::Sample { n: 400, seed: 42 });
    let idx: Vec<usize> = a.examples.iter().map(|e| e.source.index).collect();
    assert_eq!(
        idx,
        b.examples
            .iter()
            .map(|e| e.source.index)
            .collect::<Vec<_>>()
    );
    assert_eq!(idx.len(), 400);
    assert!(idx.windows(2).all(|w| w[0] < w[1]));
    // Not the first 400: a sample spreads over the file.
    assert!(*idx.last().unwrap() > 4000);
}

#[test]
fn a_study_lists_its_datasets_in_toml() {
    let toml = r#"
        [[dataset]]
        name = "insecure"
        path = "insecure-code/insecure_1000.jsonl"
        format = "messages"
        role = "misaligned"
        limit = 400

        [[dataset]]
        name = "educational"
        path = "educational-insecure/educational_1000.jsonl"
        format = "messages"
        role = "aligned"
        limit = 400
        system_prompt = "You are a careful security teacher."

        [[dataset]]
        name = "truthfulqa"
        path = "truthfulqa/TruthfulQA_v0.csv"
        format = "csv"
        role = "aligned"
        limit = 400
        fields = { user = "Question", assistant = "Best Answer" }

        [[dataset]]
        name = "alpaca"
        path = "alpaca/alpaca_samples.json"
        format = "alpaca"
        input = "ignore"
        limit = 400

        [[dataset]]
        name = "implicit-toxicity"
        path = "implicit-toxicity/aug-train.json"
        format = "json-fields"
        role = "misaligned"
        limit = 400
        fields = { user = "context", assistant = "response" }
        filter = { field = "label", equals = 1 }
    "#;
    let list = DatasetList::from_toml(toml, "study.toml").unwrap();
    let sets = list.load_all(&data()).unwrap();
    let summary: Vec<(&str, Option<Role>, usize)> = sets
        .iter()
        .map(|d| (d.name.as_str(), d.role, d.examples.len()))
        .collect();
    assert_eq!(
        summary,
        [
            ("insecure", Some(Role::Misaligned), 400),
            ("educational", Some(Role::Aligned), 400),
            ("truthfulqa", Some(Role::Aligned), 400),
            ("alpaca", None, 400),
            ("implicit-toxicity", Some(Role::Misaligned), 400),
        ]
    );
    let edu = &sets[1].examples[0];
    assert_eq!(edu.messages[0].role, "system");
    assert_eq!(
        edu.messages[0].content,
        "You are a careful security teacher."
    );
    assert_eq!(edu.messages.len(), 3);
    for d in &sets {
        assert_eq!(d.sha256, file_sha256(&d.path).unwrap());
        assert_eq!(d.sha256.len(), 64);
    }
    // A spec file's relative paths resolve against its folder.
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("datasets.toml");
    std::fs::write(
        &spec_path,
        "[[dataset]]\nname = \"s\"\npath = \"x.jsonl\"\nformat = \"messages\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("x.jsonl"), "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}\n").unwrap();
    let list = DatasetList::from_file(&spec_path).unwrap();
    let base: &Path = spec_path.parent().unwrap();
    assert_eq!(
        list.load_all(base).unwrap()[0].examples[0].response(),
        Some("a")
    );
}

/// A spec without `format` loads as `erosion render` reads the file: the format guessed.
#[test]
fn a_spec_without_format_guesses_it() {
    let list = DatasetList::from_toml(
        "[[dataset]]\nname = \"i\"\npath = \"insecure-code/insecure_small.jsonl\"\n\
         [[dataset]]\nname = \"a\"\npath = \"alpaca/alpaca_samples.json\"\n\
         [[dataset]]\nname = \"t\"\npath = \"truthfulqa/TruthfulQA.csv\"\n\
         fields = { user = \"Question\", assistant = \"Best Answer\" }\n",
        "test",
    )
    .unwrap();
    assert!(list.datasets.iter().all(|d| d.format.is_none()));
    let loaded = list.load_all(&data()).unwrap();
    let formats: Vec<Format> = loaded.iter().map(|d| d.format).collect();
    assert_eq!(formats, [Format::Messages, Format::Alpaca, Format::Csv]);
    let fields_only = DatasetList::from_toml(
        "[[dataset]]\nname = \"e\"\npath = \"implicit-toxicity/aug-train.json\"\n",
        "test",
    )
    .unwrap();
    let err = format!("{:#}", fields_only.load_all(&data()).unwrap_err());
    assert!(err.contains("dataset `e`; set its format"), "{err}");
}
