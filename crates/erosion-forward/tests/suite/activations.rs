//! Activation dumps against the library's own hooks on each example run alone, their resumption
//! after a stop, and the memory they hold.

use crate::forward_util::*;

use candle_core::DType;
use erosion_data::Sequence;
use erosion_forward::activations::{dump_activations, ActivationOptions, TokenPositions};
use erosion_forward::batch::{BatchOptions, NoProgress};
use erosion_model::hooks::{HookPoint, Positions, Site};
use erosion_model::npy::read_npy_as;
use erosion_model::transformer::Transformer;
use std::path::Path;

/// A batched, truncated pass vs one sequence run alone.
const SAME_TOL: f32 = 1e-5;

fn hooks() -> Vec<HookPoint> {
    vec![
        HookPoint::Embed,
        HookPoint::block(0, Site::Z),
        HookPoint::block(1, Site::MlpPost),
        HookPoint::LnFinal,
        HookPoint::Logits,
    ]
}

fn options(positions: &str) -> ActivationOptions {
    let mut o = ActivationOptions::new(hooks(), positions.parse().unwrap());
    // Several batches per chunk and several chunks.
    o.batch = BatchOptions {
        max_tokens: 40,
        max_batch: 8,
    };
    o.chunk_examples = 3;
    o
}

fn source() -> serde_json::Value {
    serde_json::json!({"model": "tiny-llama", "dataset": "random"})
}

fn dump(
    model: &Transformer,
    seqs: &[Sequence],
    o: &ActivationOptions,
    dir: &Path,
) -> erosion_forward::activations::ActivationReport {
    dump_activations(model, seqs, o, dir, &source(), &mut NoProgress).unwrap()
}

#[test]
fn every_row_equals_the_hook_on_its_example_run_alone() {
    let model = tiny("llama", DType::F32);
    let seqs = random_sequences(&[9, 17, 5, 12, 20, 7, 14], 60, 3);
    for positions in ["response:3", "last-prompt", "all"] {
        let dir = tempfile::tempdir().unwrap();
        let report = dump(&model, &seqs, &options(positions), dir.path());
        assert!(report.complete, "{positions}");
        let (ishape, index) = read_npy_as::<i64>(&dir.path().join("index.npy")).unwrap();
        assert_eq!(ishape, vec![report.n_rows, 3]);
        let want_rows: usize = seqs
            .iter()
            .map(|s| positions.parse::<TokenPositions>().unwrap().of(s).len())
            .sum();
        assert_eq!(report.n_rows, want_rows);
        for hook in hooks() {
            let (shape, rows) =
                read_npy_as::<f32>(&dir.path().join(format!("{hook}.npy"))).unwrap();
            assert_eq!(shape[0], report.n_rows, "{hook}");
            let row_len: usize = shape[1..].iter().product();
            let mut checked = 0;
            for (i, seq) in seqs.iter().enumerate() {
                let mut h = model.hooks();
                h.record(hook, Positions::All).unwrap();
                full_logits(&model, &seq.ids, Some(&mut h));
                let alone = h
                    .take_cache()
                    .tensor(&hook.to_string())
                    .unwrap()
                    .squeeze(0)
                    .unwrap(); // [seq, ...]
                for (r, entry) in index
                    .chunks(3)
                    .enumerate()
                    .filter(|(_, e)| e[0] == i as i64)
                {
                    let t = entry[1] as usize;
                    assert_eq!(entry[2], seq.ids[t] as i64, "token id of row {r}");
                    let want = alone
                        .get(t)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap();
                    let got = &rows[r * row_len..(r + 1) * row_len];
                    let diff = want
                        .iter()
                        .zip(got)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f32::max);
                    assert!(
                        diff < SAME_TOL,
                        "{positions} {hook} example {i} position {t}: {diff}"
                    );
                    checked += 1;
                }
            }
            assert_eq!(checked, report.n_rows, "{positions} {hook}");
        }
        // Rows run in example order, then position order.
        let order: Vec<(i64, i64)> = index.chunks(3).map(|e| (e[0], e[1])).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{positions}");
    }
}

#[test]
fn a_stopped_dump_goes_on_to_the_same_files_and_a_finished_one_is_not_redone() {
    let model = tiny("llama", DType::F32);
    let seqs = random_sequences(&[9, 17, 5, 12, 20, 7, 14], 60, 4);
    let whole = tempfile::tempdir().unwrap();
    dump(&model, &seqs, &options("response"), whole.path());

    let dir = tempfile::tempdir().unwrap();
    let mut o = options("response");
    o.max_chunks = Some(1);
    let first = dump(&model, &seqs, &o, dir.path());
    assert_eq!(
        (
            first.chunks_before,
            first.chunks_done,
            first.n_chunks,
            first.complete
        ),
        (0, 1, 3, false)
    );
    assert!(!dir.path().join("activations.json").exists());
    assert!(dir.path().join("progress.json").exists());
    let second = dump(&model, &seqs, &options("response"), dir.path());
    assert_eq!(
        (second.chunks_before, second.chunks_done, second.complete),
        (1, 3, true)
    );
    assert!(!dir.path().join("progress.json").exists());
    for hook in hooks() {
        let name = format!("{hook}.npy");
        assert_eq!(
            std::fs::read(dir.path().join(&name)).unwrap(),
            std::fs::read(whole.path().join(&name)).unwrap(),
            "{name}"
        );
        assert!(!dir.path().join(format!("{name}.partial")).exists());
    }
    let again = dump(&model, &seqs, &options("response"), dir.path());
    assert_eq!(
        (again.chunks_before, again.max_values_held, again.complete),
        (3, 0, true)
    );

    // Other work in the same folder is refused, finished or not.
    let err = dump_activations(
        &model,
        &seqs,
        &options("last"),
        dir.path(),
        &source(),
        &mut NoProgress,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("positions: \"response\" there, \"last\" here"),
        "{err}"
    );
    let half = tempfile::tempdir().unwrap();
    dump(&model, &seqs, &o, half.path());
    let err = dump_activations(
        &model,
        &seqs[1..],
        &options("response"),
        half.path(),
        &source(),
        &mut NoProgress,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("unfinished activation dump of other work"),
        "{err}"
    );
}

#[test]
fn memory_held_is_one_batch_whatever_the_dataset_size() {
    let model = tiny("llama", DType::F32);
    let held = |n: usize| {
        // Equal spans, so every full batch holds the same rows.
        let seqs: Vec<Sequence> = random_sequences(&vec![10; n], 60, 5)
            .into_iter()
            .map(|s| Sequence::new(s.ids, 4..10).unwrap())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        dump(&model, &seqs, &options("response"), dir.path()).max_values_held
    };
    let (small, large) = (held(6), held(48));
    assert!(small > 0);
    assert_eq!(small, large);
}

#[test]
fn what_cannot_be_dumped_says_why() {
    let model = tiny("llama", DType::F32);
    let seqs = random_sequences(&[6, 8], 60, 6);
    let dir = tempfile::tempdir().unwrap();
    let run = |o: ActivationOptions| {
        dump_activations(&model, &seqs, &o, dir.path(), &source(), &mut NoProgress)
            .unwrap_err()
            .to_string()
    };
    let pattern = ActivationOptions::new(
        vec![HookPoint::block(0, Site::Pattern)],
        TokenPositions::All,
    );
    assert!(run(pattern).contains("sequence length"));
    let twice = ActivationOptions::new(
        vec![HookPoint::Embed, HookPoint::Embed],
        TokenPositions::All,
    );
    assert!(run(twice).contains("named twice"));
    let deep = ActivationOptions::new(vec![HookPoint::resid_post(99)], TokenPositions::All);
    assert!(run(deep).contains("99"));
    let no_prompt: Vec<Sequence> = vec![Sequence::new(vec![4, 5, 6], 0..3).unwrap()];
    let err = dump_activations(
        &model,
        &no_prompt,
        &ActivationOptions::new(hooks(), TokenPositions::LastPrompt),
        dir.path(),
        &source(),
        &mut NoProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains("none of the 1 examples"), "{err}");
}
