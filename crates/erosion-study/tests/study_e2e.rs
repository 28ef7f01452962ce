//! A whole study on three tiny checkpoints and the study's real datasets: every analysis runs,
//! results.json carries provenance and every section's numbers, the arrays load, the report is
//! self-contained, and a second run (resumed from the cache) gives the same numbers.

mod common;

use erosion_report::npy::read_npy;
use erosion_study::run::run_study_file;
use serde_json::Value;

fn study_toml(dir: &std::path::Path) -> std::path::PathBuf {
    let [base, instruct, misaligned] = common::tiny_family(dir);
    let text = format!(
        r#"
name = "tiny end-to-end"
seed = 7
output = "out"

[models]
base = "{base}"
instruct = "{instruct}"
finetuned = [{{ name = "misaligned", path = "{misaligned}" }}]

[[dataset]]
name = "insecure"
path = "{insecure}"
format = "messages"
role = "misaligned"
limit = 8

[[dataset]]
name = "educational"
path = "{educational}"
format = "messages"
role = "aligned"
limit = 8

[[dataset]]
name = "toxic"
path = "{toxic}"
format = "messages"
role = "misaligned"
limit = 8

[behaviour]
top_k = 5

[gradients]
window = 16
permutations = 99

[layers]
window = 8
bootstrap = 50

[directions]
datasets = ["insecure", "toxic"]
k = 3
baseline_samples = 200
bootstrap = 20
"#,
        base = base.display(),
        instruct = instruct.display(),
        misaligned = misaligned.display(),
        insecure = common::shared_data("insecure-code/insecure_small.jsonl").display(),
        educational = common::shared_data("educational-insecure/educational_1000.jsonl").display(),
        toxic = common::shared_data("toxic-lat-harmful/lat_harmful.jsonl").display(),
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_study_runs_end_to_end_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let study = study_toml(dir.path());
    let outcome = run_study_file(&study, None, None).unwrap();
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!(outcome.verdicts.len(), 4);

    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(&outcome.results_json).unwrap()).unwrap();
    let prov = &results["provenance"];
    assert_eq!(prov["seed"], 7);
    assert_eq!(prov["models"].as_array().unwrap().len(), 3);
    for m in prov["models"].as_array().unwrap() {
        let files = m["files"].as_array().unwrap();
        assert!(
            !files.is_empty()
                && files
                    .iter()
                    .all(|f| f["sha256"].as_str().unwrap().len() == 64)
        );
    }
    assert_eq!(prov["datasets"].as_array().unwrap().len(), 3);
    assert_eq!(prov["options"]["layers"]["window"], 8);
    let analyses = &results["results"]["analyses"];
    for key in ["behaviour", "gradients", "layers", "directions"] {
        assert!(
            analyses[key].is_object() && analyses[key].get("error").is_none(),
            "{key}: {}",
            analyses[key]
        );
    }

    let html = std::fs::read_to_string(&outcome.report_html).unwrap();
    assert!(!html.contains("<script") && !html.contains("<link"));
    assert!(
        html.matches("<svg").count() >= 4,
        "every analysis has a figure"
    );

    let arrays: Vec<_> = std::fs::read_dir(outcome.out.join("arrays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!arrays.is_empty());
    for a in &arrays {
        read_npy(a).unwrap_or_else(|e| panic!("{}: {e}", a.display()));
    }

    // Resumed: the same numbers again (the cache serves the forward passes).
    let again = run_study_file(&study, None, None).unwrap();
    let second: Value =
        serde_json::from_str(&std::fs::read_to_string(&again.results_json).unwrap()).unwrap();
    assert_eq!(
        second["results"]["analyses"],
        results["results"]["analyses"]
    );
}

#[test]
fn a_study_with_a_typo_fails_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("study.toml");
    std::fs::write(
        &path,
        r#"name = "x"
[models]
base = "a"
instruct = "b"
[[dataset]]
name = "insecure"
path = "x.jsonl"
format = "messages"
[layers]
datasets = ["insecrue"]
"#,
    )
    .unwrap();
    let err = format!("{:#}", run_study_file(&path, None, None).err().unwrap());
    assert!(
        err.contains("insecrue") && err.contains("insecure"),
        "{err}"
    );
}
