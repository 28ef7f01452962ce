//! Careless runs: option values the trainer cannot use are refused before any work, a run
//! never trains into a folder another run holds or wrote, and forcing removes only the files
//! erosion wrote there.

use crate::train::{data, lora, options, spec, tokenizer};
use anyhow::Result;
use erosion_forward::notice::Silent;
use erosion_forward::out_lock::OutLock;
use erosion_forward::run_folder::manifest::MANIFEST_FILE;
use erosion_model::tokenizer::ModelTokenizer;
use erosion_model::transformer::LoraConfig;
use erosion_train::run::{train, OtherRun, RunSpec};
use erosion_train::{Method, TrainOptions};
use std::path::Path;

fn err_of(r: Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", r.expect_err("an error"))
}

/// A LoRA run (rank 2, 2 steps) trained into `out`.
fn lora_run(tok: &ModelTokenizer, out: &Path) -> Result<()> {
    train(
        &spec(tok, None),
        &data(8),
        &options(2, lora()),
        out,
        &mut Silent,
    )?;
    Ok(())
}

/// The run spec that trains into a folder holding another run, removing that run's files.
fn forced(tok: &ModelTokenizer) -> RunSpec<'_> {
    RunSpec {
        other_run: OtherRun::Force,
        ..spec(tok, None)
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

/// `--save-every 0` divided by zero at the first step; NaN and 0 epochs trained one step.
#[test]
fn options_that_would_panic_or_train_nothing_are_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tokenizer();
    let mut o = options(2, Method::Full);
    o.save_every = Some(0);
    let err = err_of(train(
        &spec(&tok, None),
        &data(4),
        &o,
        tmp.path(),
        &mut Silent,
    ));
    assert!(err.contains("save_every must be at least 1"), "{err}");
    for epochs in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = err_of(TrainOptions::default().steps_for_epochs(epochs, 10));
        assert!(err.contains("epochs must be a positive number"), "{err}");
    }
    assert_eq!(TrainOptions::default().steps_for_epochs(0.5, 20)?, 2);
    let mut o = options(2, Method::Full);
    o.max_grad_norm = Some(f64::NAN);
    assert!(err_of(o.validate()).contains("max_grad_norm"));
    o = options(2, Method::Full);
    o.min_lr_ratio = f64::NAN;
    assert!(err_of(o.validate()).contains("min_lr_ratio"));
    Ok(())
}

/// Rank 100000 allocated adapters until the process aborted; it is refused against the
/// model's shape before anything is allocated.
#[test]
fn a_lora_rank_wider_than_the_model_is_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tokenizer();
    let wide = Method::Lora(LoraConfig {
        rank: 100_000,
        alpha: 16.0,
        targets: vec!["q_proj".into(), "k_proj".into()],
        seed: 0,
    });
    let o = options(1, wide);
    let err = err_of(o.check_model(&crate::train::config()));
    assert!(
        err.contains("LoRA rank 100000") && err.contains("at most 8"),
        "{err}"
    );
    let err = err_of(train(
        &spec(&tok, None),
        &data(4),
        &o,
        tmp.path(),
        &mut Silent,
    ));
    assert!(err.contains("LoRA rank 100000"), "{err}");
    Ok(())
}

/// A full fine-tune into a LoRA run's folder is refused; forced, it removes that run's files
/// (its adapter/ with them) and keeps the user's.
#[test]
fn another_kind_of_run_is_refused_and_force_removes_only_erosions_files() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tokenizer();
    let out = tmp.path().join("run");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("notes.txt"), "mine")?;
    lora_run(&tok, &out)?;
    assert!(out.join("adapter").is_dir());

    let full = options(2, Method::Full);
    let err = err_of(train(&spec(&tok, None), &data(8), &full, &out, &mut Silent));
    assert!(
        err.contains("another run") && err.contains("--force"),
        "{err}"
    );

    let forced = forced(&tok);
    let mut lines = Vec::new();
    let outcome = train(&forced, &data(8), &full, &out, &mut |l: &str| {
        lines.push(l.to_string())
    })?;
    assert!(outcome.finished && !outcome.reused);
    assert!(lines.iter().any(|l| l.contains("removing")), "{lines:?}");
    let left = names(&out);
    assert!(left.contains(&"notes.txt".to_string()), "{left:?}");
    assert!(!left.contains(&"adapter".to_string()), "{left:?}");
    assert!(!left.contains(&".erosion.lock".to_string()), "{left:?}");
    assert_eq!(std::fs::read_to_string(out.join("notes.txt"))?, "mine");
    let manifest = std::fs::read_to_string(out.join(MANIFEST_FILE))?;
    assert!(manifest.contains("full fine-tuning"), "{manifest}");
    Ok(())
}

/// With the trainer state deleted, the manifest still names the LoRA run whose adapter/ is
/// there: a full fine-tune would have saved its weights beside that stale adapter.
#[test]
fn a_folder_without_its_trainer_state_still_names_its_run() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tokenizer();
    let out = tmp.path().join("run");
    lora_run(&tok, &out)?;
    std::fs::remove_dir_all(out.join("training_state"))?;
    let full = options(2, Method::Full);
    let err = err_of(train(&spec(&tok, None), &data(8), &full, &out, &mut Silent));
    assert!(
        err.contains("LoRA (rank 2") && err.contains("adapter"),
        "{err}"
    );

    // A folder trained before manifests existed cannot be forced: nothing says what is whose.
    let legacy = tmp.path().join("legacy");
    lora_run(&tok, &legacy)?;
    std::fs::remove_file(legacy.join(MANIFEST_FILE))?;
    let forced = forced(&tok);
    let err = err_of(train(&forced, &data(8), &full, &legacy, &mut Silent));
    assert!(err.contains("no list of the files"), "{err}");
    assert!(legacy.join("adapter").is_dir());
    Ok(())
}

/// A folder another run holds is refused at once, naming the holder; once it is released
/// the run goes ahead. (Across processes: erosion-cli's tests.)
#[test]
fn a_run_into_a_folder_another_run_holds_fails_at_once() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tokenizer();
    let out = tmp.path().join("run");
    let o = out.clone();
    // Taken on another thread, which counts as another run.
    let held = std::thread::spawn(move || OutLock::acquire(&o, "study", &mut Silent))
        .join()
        .unwrap()?;
    let opts = options(2, Method::Full);
    let err = err_of(train(&spec(&tok, None), &data(8), &opts, &out, &mut Silent));
    assert!(err.contains("in use") && err.contains("`study`"), "{err}");
    assert!(!out.join("config.json").exists());
    drop(held);
    train(&spec(&tok, None), &data(8), &opts, &out, &mut Silent)?;
    Ok(())
}
