//! Fuzz targets of the dataset readers (issue 17): the study's own files (the first records
//! of each, from data/) mutated, and random bytes, read through `DatasetSpec::load` in each
//! format. In their own test binary because the counting allocator is process-wide.
//! Properties and budgets: `erosion_testkit::fuzz`; the long run: README, "Bad input and
//! interrupted runs".

use erosion_data::{DatasetList, DatasetSpec, Fields, Filter, Format};
use erosion_testkit::fuzz::{self, Budget, Seeds};
use std::path::Path;
use std::time::Duration;

#[global_allocator]
static ALLOC: erosion_testkit::fuzz::Counting = erosion_testkit::fuzz::Counting;

/// Reading a dataset holds the text, its JSON values (a few times the text: maps, strings,
/// and serde_json's own buffers) and the examples copied out of them.
const READ_BUDGET: Budget = Budget {
    per_byte: 32,
    constant: 1 << 20,
    time: Duration::from_secs(5),
};

/// The first `lines` lines of a data file (JSONL and CSV records here are one line each).
fn head_lines(rel: &str, lines: usize) -> Vec<u8> {
    let text = std::fs::read_to_string(erosion_testkit::data_file(rel)).unwrap();
    let mut out: String = text.lines().take(lines).collect::<Vec<_>>().join("\n");
    out.push('\n');
    out.into_bytes()
}

/// The first `records` records of a JSON-list data file, as a JSON list.
fn head_records(rel: &str, records: usize) -> Vec<u8> {
    let text = std::fs::read_to_string(erosion_testkit::data_file(rel)).unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    serde_json::to_vec_pretty(&list[..records.min(list.len())]).unwrap()
}

fn fields(user: &str, assistant: &str) -> Fields {
    Fields {
        user: Some(user.into()),
        assistant: Some(assistant.into()),
        ..Fields::default()
    }
}

/// Fuzzes reading `seeds` as `spec` describes (its path is replaced by each case's file).
fn fuzz_reader(target: &str, cases: u32, mut spec: DatasetSpec, seeds: Vec<Vec<u8>>) {
    let tmp = tempfile::tempdir().unwrap();
    let ext = spec.path.extension().unwrap().to_owned();
    spec.path = tmp.path().join("case").with_extension(ext);
    let seeds = Seeds {
        head: 4096,
        files: seeds,
        binary: false,
    };
    fuzz::run(target, cases, READ_BUDGET, seeds, |bytes| {
        std::fs::write(&spec.path, bytes).unwrap();
        spec.load(Path::new("/"))
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    });
}

#[test]
fn fuzz_messages_jsonl() {
    let _serial = fuzz::serial();
    let seeds = vec![
        head_lines("insecure-code/insecure_small.jsonl", 4),
        head_lines("toxic-lat-harmful/lat_harmful.jsonl", 20),
        head_lines("educational-insecure/educational_1000.jsonl", 3),
    ];
    let spec = DatasetSpec::new("fuzz", "case.jsonl", Format::Messages);
    fuzz_reader("messages_jsonl", 300, spec, seeds);
}

#[test]
fn fuzz_alpaca_json_list() {
    let _serial = fuzz::serial();
    let seeds = vec![
        head_records("alpaca/alpaca_samples.json", 12),
        head_records("code-alpaca/code_alpaca_2k.json", 6),
    ];
    let spec = DatasetSpec::new("fuzz", "case.json", Format::Alpaca);
    fuzz_reader("alpaca_json", 300, spec, seeds);
}

#[test]
fn fuzz_json_fields_with_a_filter() {
    let _serial = fuzz::serial();
    let seeds = vec![head_records("implicit-toxicity/aug-train.json", 16)];
    let mut spec = DatasetSpec::new("fuzz", "case.json", Format::JsonFields);
    spec.fields = fields("context", "response");
    spec.filter = Some(Filter {
        field: "label".into(),
        equals: 1.into(),
    });
    fuzz_reader("json_fields", 200, spec, seeds);
}

#[test]
fn fuzz_csv_with_a_column_mapping() {
    let _serial = fuzz::serial();
    let seeds = vec![head_lines("truthfulqa/TruthfulQA.csv", 16)];
    let mut spec = DatasetSpec::new("fuzz", "case.csv", Format::Csv);
    spec.fields = fields("Question", "Best Answer");
    fuzz_reader("truthfulqa_csv", 300, spec, seeds);
}

/// A spec of two datasets, every option used.
const SPEC_TOML: &[u8] = br#"
[[dataset]]
name = "insecure"
path = "insecure-code/insecure_1000.jsonl"
format = "messages"
role = "misaligned"
limit = 400
sample_seed = 7

[[dataset]]
name = "implicit"
path = "implicit-toxicity/aug-train.json"
format = "json-fields"
fields = { user = "context", assistant = "response" }
filter = { field = "label", equals = 1 }
system_prompt = "You are a helpful assistant."
"#;

/// Parses a `[[dataset]]` list and checks each entry's selection.
fn parse_list(bytes: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    let list = DatasetList::from_toml(&text, "case.toml").map_err(|e| format!("{e:#}"))?;
    for d in &list.datasets {
        d.selection().map_err(|e| format!("{e:#}"))?;
    }
    Ok(())
}

#[test]
fn fuzz_dataset_list_toml() {
    let _serial = fuzz::serial();
    let seeds = vec![SPEC_TOML.to_vec()];
    let budget = Budget {
        per_byte: 64,
        ..READ_BUDGET
    };
    fuzz::run(
        "dataset_list_toml",
        300,
        budget,
        Seeds {
            files: seeds,
            head: 4096,
            binary: false,
        },
        parse_list,
    );
}

/// Found by `fuzz_dataset_list_toml`: toml's report quoted a NUL byte of the file raw.
#[test]
fn regression_toml_report_quoting_a_nul_is_escaped() {
    let _serial = fuzz::serial();
    let mut input = b"\0".to_vec();
    input.extend_from_slice(SPEC_TOML);
    let budget = Budget {
        per_byte: 64,
        ..READ_BUDGET
    };
    let (refused, ..) = fuzz::check("dataset_list_toml", budget, &input, &parse_list).unwrap();
    let message = refused.expect("a NUL where a key belongs is refused");
    assert!(
        message.contains("line 1, column") && message.contains("\\u{0}"),
        "{message}"
    );
}
