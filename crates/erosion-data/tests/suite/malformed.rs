//! Bad input gives an error that names the file, the line and the field, and never panics.

use std::path::{Path, PathBuf};

use erosion_data::{DatasetList, DatasetSpec, Fields, Filter, Format};

struct Tmp {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn file(name: &str, bytes: &[u8]) -> Tmp {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    Tmp { _dir: dir, path }
}

fn load_err(spec: DatasetSpec) -> String {
    format!("{:#}", spec.load(Path::new("/")).unwrap_err())
}

fn spec(t: &Tmp, format: Format) -> DatasetSpec {
    DatasetSpec::new("bad", &t.path, format)
}

fn has(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "{p:?} not in {err:?}");
    }
}

const GOOD: &str =
    r#"{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}"#;

#[test]
fn jsonl_syntax_error_names_line_and_column() {
    let t = file(
        "x.jsonl",
        format!("{GOOD}\n\n{GOOD}\n{{\"messages\": [}}\n").as_bytes(),
    );
    let err = load_err(spec(&t, Format::Messages));
    has(&err, &["x.jsonl line 4, column 15", "invalid JSON"]);
}

#[test]
fn jsonl_field_errors_name_line_and_field() {
    let t = file(
        "x.jsonl",
        format!("{GOOD}\n\n{{\"msgs\": []}}\n").as_bytes(),
    );
    has(
        &load_err(spec(&t, Format::Messages)),
        &[
            "x.jsonl line 3 (record 1)",
            "field `messages` is missing",
            "fields present: msgs",
        ],
    );

    let t = file(
        "x.jsonl",
        br#"{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 5}]}"#,
    );
    has(
        &load_err(spec(&t, Format::Messages)),
        &[
            "line 1",
            "messages[1]: field `content` must be a string, found a number",
        ],
    );

    let t = file(
        "x.jsonl",
        br#"{"messages": [{"role": "user", "content": "q"}, "hi"]}"#,
    );
    has(
        &load_err(spec(&t, Format::Messages)),
        &["messages[1] must be an object"],
    );

    let t = file("x.jsonl", b"{\"messages\": []}\n");
    has(
        &load_err(spec(&t, Format::Messages)),
        &["field `messages` is an empty list"],
    );

    let t = file("x.jsonl", format!("{GOOD}\n[1, 2]\n").as_bytes());
    has(
        &load_err(spec(&t, Format::Messages)),
        &["x.jsonl line 2: expected a JSON object, found [1,2]"],
    );
}

#[test]
fn json_list_errors() {
    let t = file("x.json", b"[\n  {\"instruction\": \"i\", \"output\": \"o\"},\n  {\"instruction\": \"i\" \"output\": \"o\"}\n]");
    has(
        &load_err(spec(&t, Format::Alpaca)),
        &["x.json line 3, column 23", "invalid JSON"],
    );

    let t = file(
        "x.json",
        b"[\n  {\"instruction\": \"i\", \"output\": \"o\"},\n  \"text\"\n]",
    );
    has(
        &load_err(spec(&t, Format::Alpaca)),
        &["x.json line 3 (element 1): expected a JSON object"],
    );

    let t = file(
        "x.json",
        b"[\n  {\"instruction\": \"i\", \"output\": \"o\"},\n  {\"instruction\": \"i\"}\n]",
    );
    has(
        &load_err(spec(&t, Format::Alpaca)),
        &["x.json line 3 (record 1)", "field `output` is missing"],
    );

    let t = file("x.json", b"{\"a\": 1}");
    // An object file is read as one JSONL record; the alpaca fields are missing from it.
    has(
        &load_err(spec(&t, Format::Alpaca)),
        &["line 1", "field `instruction` is missing"],
    );
}

#[test]
fn csv_errors() {
    let t = file("x.csv", b"Question,Best Answer\nq1,a1\nq2,a2,extra\n");
    let mut s = spec(&t, Format::Csv);
    s.fields = Fields {
        user: Some("Question".into()),
        assistant: Some("Best Answer".into()),
        ..Fields::default()
    };
    has(
        &load_err(s.clone()),
        &["x.csv line 3: malformed CSV row: 3 fields, but the header has 2"],
    );

    let t = file("x.csv", b"Question,Answer\nq1,a1\n");
    s.path = t.path.clone();
    has(
        &load_err(s),
        &[
            "x.csv line 2 (record 0)",
            "field `Best Answer` is missing",
            "fields present: Question, Answer",
        ],
    );

    let t = file("x.csv", b"Question,Answer\nq1,a1\n");
    has(
        &load_err(spec(&t, Format::Csv)),
        &["the `csv` format needs `fields.user`"],
    );
}

#[test]
fn filter_errors_and_non_text_files() {
    let t = file(
        "x.jsonl",
        br#"{"context": "c", "response": "r", "labl": 1}"#,
    );
    let mut s = spec(&t, Format::JsonFields);
    s.fields = Fields {
        user: Some("context".into()),
        assistant: Some("response".into()),
        ..Fields::default()
    };
    s.filter = Some(Filter {
        field: "label".into(),
        equals: 1.into(),
    });
    has(&load_err(s), &["line 1", "filter field `label` is missing"]);

    let t = file("x.jsonl", b"\xff\xfe{}");
    has(
        &load_err(spec(&t, Format::Messages)),
        &[
            "x.jsonl line 1, column 1: not UTF-8",
            "byte 0xff at offset 0",
        ],
    );

    let missing = DatasetSpec::new("gone", "/nonexistent/data.jsonl", Format::Messages);
    has(
        &load_err(missing),
        &[
            "dataset `gone`",
            "cannot read dataset file /nonexistent/data.jsonl",
        ],
    );
}

#[test]
fn bad_specs() {
    let err = format!(
        "{:#}",
        DatasetList::from_toml(
            "[[dataset]]\nname = \"a\"\npath = \"p\"\nformat = \"messages\"\nlimt = 3\n",
            "s.toml"
        )
        .unwrap_err()
    );
    has(&err, &["s.toml", "limt"]);
    let err = format!(
        "{:#}",
        DatasetList::from_toml(
            "[[dataset]]\nname = \"a\"\npath = \"p\"\nformat = \"parquet\"\n",
            "s.toml"
        )
        .unwrap_err()
    );
    has(&err, &["s.toml", "parquet"]);
    let two = "[[dataset]]\nname = \"a\"\npath = \"p\"\nformat = \"csv\"\n[[dataset]]\nname = \"a\"\npath = \"q\"\nformat = \"csv\"\n";
    has(
        &format!("{:#}", DatasetList::from_toml(two, "s.toml").unwrap_err()),
        &["two datasets are named `a`"],
    );
    let t = file("x.jsonl", GOOD.as_bytes());
    let mut s = spec(&t, Format::Messages);
    s.sample_seed = Some(1);
    has(&load_err(s), &["sample_seed needs a limit"]);
    has(
        &format!(
            "{:#}",
            DatasetList::from_file(Path::new("/nonexistent/spec.toml")).unwrap_err()
        ),
        &["cannot read dataset spec /nonexistent/spec.toml"],
    );
}
