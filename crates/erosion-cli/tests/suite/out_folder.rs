//! What a command does with its --out folder before any work: another process writing there
//! is refused by name, another kind of run's files are refused unless `--force` (which removes
//! only that run's files), and an unusable folder fails before a model is evaluated.

use crate::util::*;

/// A study file that parses (its models and data need not exist: the runs it serves fail
/// before opening them).
fn small_study_file(dir: &std::path::Path) -> std::path::PathBuf {
    let study = dir.join("study.toml");
    std::fs::write(
        &study,
        "name = \"x\"\nanalyses = [\"layers\"]\n[models]\nbase = \"a\"\ninstruct = \"b\"\n[[dataset]]\nname = \"d\"\npath = \"d.jsonl\"\nformat = \"messages\"\n",
    )
    .unwrap();
    study
}

/// Every command that writes into --out refuses a folder another process is writing (here,
/// this test holds its lock), naming that process, instead of both running and the last
/// one's files winning.
#[test]
fn a_second_run_into_the_same_out_fails_naming_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("busy");
    let held = erosion_forward::out_lock::OutLock::acquire(
        &out,
        "train",
        &mut erosion_forward::notice::Silent,
    )
    .unwrap();
    let study = small_study_file(tmp.path());
    let (model, out_s) = (smollm2(), out.to_string_lossy().into_owned());
    let data = tmp.path().join("d.jsonl").to_string_lossy().into_owned();
    let runs: [Vec<&str>; 6] = [
        vec!["train", &model, &data, "--out", &out_s],
        vec!["demo", "--reduced", "--quiet", "--out", &out_s],
        vec!["eval", &model, "--organism", "--out", &out_s],
        vec!["study", study.to_str().unwrap(), "--out", &out_s],
        vec![
            "drift",
            &model,
            "--directions",
            "d",
            "--harmful",
            "h",
            "--reject",
            "r",
            "--out",
            &out_s,
        ],
        vec![
            "steer",
            &model,
            "--directions",
            "d",
            "--organism-data",
            "o",
            "--out",
            &out_s,
        ],
    ];
    let pid = format!("pid {}", std::process::id());
    for args in runs {
        let run = erosion(&args);
        let err = stderr(&run);
        assert_eq!(run.status.code(), Some(1), "{}: {err}", args[0]);
        assert!(
            err.contains("is in use by a `train` run") && err.contains(&pid),
            "{}: {err}",
            args[0]
        );
    }
    drop(held);
    assert_eq!(std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0), 0);
}

/// A folder that holds another kind of run (here a LoRA training run's files) is refused by
/// every command that writes into --out, naming that run, before any model loads; `--force`
/// removes only the files that run wrote and keeps the user's.
#[test]
fn another_kind_of_run_in_out_is_refused_unless_forced() {
    use erosion_forward::notice::Silent;
    use erosion_forward::run_folder::{OtherRun, RunFolder, RunIdentity};
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("trained");
    let train = RunIdentity::new("train", &["start=m".to_string()]);
    let folder = RunFolder::claim(&out, &train, OtherRun::Refuse, &mut Silent).unwrap();
    std::fs::create_dir_all(out.join("adapter")).unwrap();
    std::fs::write(out.join("adapter/adapter_model.safetensors"), "x").unwrap();
    drop(folder);
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let study = small_study_file(tmp.path());
    let out_s = out.to_string_lossy().into_owned();
    let missing = "no/such-model";
    let probe = ["--directions", "d", "--harmful", "h", "--reject", "r"];
    let runs: [Vec<&str>; 5] = [
        vec!["eval", missing, "--organism", "--out", &out_s],
        vec!["study", study.to_str().unwrap(), "--out", &out_s],
        [&["drift", missing][..], &probe, &["--out", &out_s]].concat(),
        vec![
            "steer",
            missing,
            "--directions",
            "d",
            "--organism-data",
            "o",
            "--out",
            &out_s,
        ],
        vec![
            "activations",
            missing,
            "d.jsonl",
            "--hooks",
            "5",
            "--out",
            &out_s,
        ],
    ];
    for args in runs {
        let run = erosion(&args);
        let err = stderr(&run);
        assert_eq!(run.status.code(), Some(1), "{}: {err}", args[0]);
        assert!(
            err.contains("already holds files of a `train` run")
                && err.contains("adapter")
                && err.contains(&format!("erosion {} --force", args[0])),
            "{}: {err}",
            args[0]
        );
        assert!(out.join("adapter").is_dir(), "{}", args[0]);
    }
    // Forced, the train run's files go before the (missing) model is looked for.
    let run = erosion(&["eval", missing, "--organism", "--out", &out_s, "--force"]);
    let err = stderr(&run);
    assert!(err.contains(missing) && err.contains("removing"), "{err}");
    assert!(!out.join("adapter").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
}

/// `erosion eval` found an unusable --out only after generating every answer; now it fails
/// first (the model named here does not even exist).
#[test]
fn eval_checks_its_out_before_evaluating() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("taken.txt");
    std::fs::write(&file, "mine").unwrap();
    let below = file.join("eval");
    for out in [&file, &below] {
        let run = erosion(&[
            "eval",
            "no/such-model",
            "--organism",
            "--out",
            out.to_str().unwrap(),
        ]);
        let err = stderr(&run);
        assert_eq!(run.status.code(), Some(1), "{err}");
        assert!(
            err.contains("--out") && !err.contains("no/such-model"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
}
