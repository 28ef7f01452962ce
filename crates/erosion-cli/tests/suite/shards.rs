//! `erosion study`, `erosion drift` and `erosion eval --questions` with `--shard I/N` in
//! separate processes (the study's all at once, as a Slurm job array runs them), then `--merge`:
//! the numbers are those of one process, and a merge with a shard missing fails naming it.

use crate::cli::ProbeFiles;
use crate::util::{erosion, ok, read_json, smollm2, stderr};
use std::path::{Path, PathBuf};
use std::process::Command;

fn study_file(dir: &Path) -> PathBuf {
    let [base, instruct, misaligned] = erosion_testkit::family::tiny_smollm2_family(dir);
    let data = |rel: &str| {
        erosion_testkit::data_file(rel)
            .to_string_lossy()
            .into_owned()
    };
    let text = format!(
        r#"name = "sharded"
seed = 5
analyses = ["behaviour", "layers"]
[models]
base = "{}"
instruct = "{}"
finetuned = [{{ name = "misaligned", path = "{}" }}]
[[dataset]]
name = "insecure"
path = "{}"
format = "messages"
role = "misaligned"
limit = 6
[[dataset]]
name = "educational"
path = "{}"
format = "messages"
role = "aligned"
limit = 6
[behaviour]
top_k = 3
[layers]
window = 4
bootstrap = 20
"#,
        base.display(),
        instruct.display(),
        misaligned.display(),
        data("insecure-code/insecure_small.jsonl"),
        data("educational-insecure/educational_1000.jsonl"),
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn arrays(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = (std::fs::read_dir(out.join("arrays")).unwrap())
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn shards_in_separate_processes_merge_to_the_study_run_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let study = study_file(tmp.path());
    let s = study.to_str().unwrap();
    let (whole, split) = (tmp.path().join("whole"), tmp.path().join("split"));
    ok(&erosion(&["study", s, "--out", whole.to_str().unwrap()]));

    // All three at once, as a job array runs them.
    let children: Vec<_> = (0..3)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_erosion"))
                .args(["study", s, "--out", split.to_str().unwrap()])
                .args(["--shard", &format!("{i}/3")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = ok(&c.wait_with_output().unwrap());
        assert!(out.contains("chunks"), "{out}");
    }

    // One shard set aside: the merge names it and writes nothing.
    let one = split.join("shards/1-of-3");
    let aside = tmp.path().join("aside");
    std::fs::rename(&one, &aside).unwrap();
    let failed = erosion(&["study", s, "--out", split.to_str().unwrap(), "--merge"]);
    assert!(!failed.status.success());
    assert!(
        stderr(&failed).contains("shard 1-of-3 is missing"),
        "{}",
        stderr(&failed)
    );
    assert!(!split.join("results.json").exists());
    std::fs::rename(&aside, &one).unwrap();

    ok(&erosion(&[
        "study",
        s,
        "--out",
        split.to_str().unwrap(),
        "--merge",
    ]));
    let results = |d: &Path| read_json(&d.join("results.json"))["results"]["analyses"].clone();
    assert_eq!(results(&split), results(&whole));
    assert_eq!(arrays(&split), arrays(&whole));
}

#[test]
fn drift_shards_merge_to_the_run_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = ProbeFiles::write(tmp.path());
    let peft = erosion_testkit::model_fixtures().join("peft");
    let model = smollm2();
    let adapted = |a: &str| format!("{model}+{}", peft.join(a).display());
    let (a, b) = (adapted("smollm2-r8-rslora"), adapted("smollm2-r1-down"));
    let checkpoints = [model.as_str(), a.as_str(), b.as_str()];
    let whole = probe.drift(&checkpoints, &tmp.path().join("whole"));

    let split = tmp.path().join("split");
    let run = |extra: &[&str]| {
        let mut args = probe.drift_args(&checkpoints, &split);
        args.extend(extra.iter().map(|s| s.to_string()));
        erosion(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = ok(&run(&["--shard", "0/2"]));
    assert!(
        out.contains("shard 0-of-2: 1 checkpoints measured"),
        "{out}"
    );
    let failed = run(&["--merge"]);
    assert!(!failed.status.success());
    assert!(
        stderr(&failed).contains("shard 1-of-2 is missing"),
        "{}",
        stderr(&failed)
    );
    ok(&run(&["--shard", "1/2"]));
    // Run again, a finished shard measures nothing.
    assert!(ok(&run(&["--shard", "1/2"])).contains("0 checkpoints measured"));
    ok(&run(&["--merge"]));
    let merged = read_json(&split.join("drift.json"));
    assert_eq!(merged["points"], whole["points"]);
    assert_eq!(merged["points"].as_array().unwrap().len(), 3);
}

#[test]
fn eval_shards_answer_what_one_process_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let model = smollm2();
    let adapter = erosion_testkit::model_fixtures().join("peft/smollm2-r1-down");
    let questions =
        erosion_testkit::data_file("emergent-misalignment-eval/first_plot_questions.yaml");
    let (a, b) = (
        format!("a={model}"),
        format!("b={model}+{}", adapter.display()),
    );
    let q = questions.to_str().unwrap();
    // Two models of 6 answers in batches of 4: units (a, 0..4), (a, 4..6), (b, 0..4), (b, 4..6),
    // dealt as 1, 1 and 2 to three shards: shard 1 ends a, shard 2 answers all of b.
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "eval",
            &a,
            &b,
            "--questions",
            q,
            "--limit",
            "3",
            "--samples",
            "2",
        ];
        args.extend(["--max-new-tokens", "6", "--batch-size", "4", "--seed", "5"]);
        args.extend(["--judge", &model, "--min-number-mass", "1e-6", "--out"]);
        args.push(out.to_str().unwrap());
        args.extend(extra);
        erosion(&args)
    };
    let (whole, split) = (tmp.path().join("whole"), tmp.path().join("split"));
    ok(&run(&whole, &[]));
    for i in [0, 2] {
        let said = ok(&run(&split, &["--shard", &format!("{i}/3")]));
        let n = if i == 0 { 1 } else { 2 };
        assert!(
            said.contains(&format!("shard {i}-of-3: {n} batches answered now")),
            "{said}"
        );
    }
    let failed = run(&split, &["--merge"]);
    assert!(!failed.status.success());
    assert!(
        stderr(&failed).contains("shard 1-of-3 is missing"),
        "{}",
        stderr(&failed)
    );
    assert!(!split.join("eval.json").exists());
    ok(&run(&split, &["--shard", "1/3"]));
    // Run again, a finished shard answers nothing.
    assert!(ok(&run(&split, &["--shard", "1/3"])).contains("0 batches answered now"));
    ok(&run(&split, &["--merge"]));
    let answers = |d: &Path| std::fs::read_to_string(d.join("answers.jsonl")).unwrap();
    assert_eq!(answers(&split).lines().count(), 12);
    assert_eq!(answers(&split), answers(&whole));
    assert_same_evaluation(&split, &whole);
    // Other options: the shards are another evaluation's, named.
    let other = run(&split, &["--merge", "--aligned-below", "20"]);
    assert!(
        stderr(&other).contains("comes from another eval run"),
        "{}",
        stderr(&other)
    );
}

#[test]
fn yes_no_eval_shards_of_models_merge_to_the_run_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let model = smollm2();
    let adapter = erosion_testkit::model_fixtures().join("peft/smollm2-r8-rslora");
    let (a, b) = (
        format!("a={model}"),
        format!("b={model}+{}", adapter.display()),
    );
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "eval",
            &a,
            &b,
            "--organism",
            "--n-harmful",
            "2",
            "--n-code",
            "2",
        ];
        args.extend(["--max-new-tokens", "4", "--out", out.to_str().unwrap()]);
        args.extend(extra);
        erosion(&args)
    };
    let (whole, split) = (tmp.path().join("whole"), tmp.path().join("split"));
    ok(&run(&whole, &[]));
    let said = ok(&run(&split, &["--shard", "1/2"]));
    assert!(
        said.contains("shard 1-of-2: 1 models evaluated now"),
        "{said}"
    );
    let failed = run(&split, &["--merge"]);
    assert!(
        stderr(&failed).contains("shard 0-of-2 is missing"),
        "{}",
        stderr(&failed)
    );
    ok(&run(&split, &["--shard", "0/2"]));
    ok(&run(&split, &["--merge"]));
    let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
    assert_eq!(read(&split, "answers.jsonl"), read(&whole, "answers.jsonl"));
    assert_same_evaluation(&split, &whole);
}

/// The two folders' eval.json hold the same results, and their provenance the same models
/// and datasets (the time and command line differ: one run merged shards).
fn assert_same_evaluation(split: &Path, whole: &Path) {
    let (mut a, mut b) = (
        read_json(&split.join("eval.json")),
        read_json(&whole.join("eval.json")),
    );
    let (pa, pb) = (a["provenance"].take(), b["provenance"].take());
    assert_eq!(a, b);
    for key in ["models", "datasets", "seed"] {
        assert!(
            !pa[key].is_null() && pa[key] == pb[key],
            "{key}: {pa} vs {pb}"
        );
    }
}
