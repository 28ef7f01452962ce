//! Hidden-state windows (analyses 3 and 4) against transformers' `output_hidden_states` for
//! the tiny fixture models, against slicing a full record of every position, and the memory
//! they hold.

use crate::forward_util;

use candle_core::DType;
use erosion_data::{Sequence, ShortResponse};
use erosion_forward::batch::{BatchOptions, NoProgress};
use erosion_forward::windows::{
    record_windows, LayerConvention, Layers, Skipped, Window, WindowOptions, WindowReport,
};
use erosion_model::transformer::Transformer;
use forward_util::*;
use std::collections::BTreeMap;

/// transformers' hidden states against ours (erosion-model's hf_fixtures holds them to 1e-4).
const HF_TOL: f32 = 1e-4;
/// Rows of a batched, truncated pass vs the same rows of a full single-sequence pass.
const SAME_TOL: f32 = 1e-5;

type Records = BTreeMap<(usize, usize), (Vec<usize>, Vec<Vec<f32>>)>;

/// Runs `record_windows` and keeps every record by (example, layer).
fn collect(
    model: &Transformer,
    seqs: &[Sequence],
    opts: &WindowOptions,
    batch: &BatchOptions,
) -> (Records, WindowReport) {
    let mut out = Records::new();
    let report = record_windows(model, seqs, opts, batch, &mut NoProgress, &mut |r| {
        assert_eq!(
            r.hidden.dims(),
            &[r.positions.len(), model.config().hidden_size]
        );
        assert_eq!(r.hidden.dtype(), DType::F32);
        let prev = out.insert(
            (r.example, r.layer),
            (r.positions.to_vec(), r.hidden.to_vec2::<f32>()?),
        );
        assert!(prev.is_none(), "one record per example and layer");
        Ok(())
    })
    .unwrap();
    (out, report)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn hf_hidden_states_convention_equals_transformers() {
    for arch in ARCHS {
        let model = tiny(arch, DType::F32);
        let r = reference(arch);
        let seqs: Vec<Sequence> = reference_sequences(&r)
            .into_iter()
            .map(|ids| {
                let n = ids.len();
                Sequence::new(ids, 1..n).unwrap()
            })
            .collect(); // lengths 10, 6, 3: responses of 9, 5, 2 tokens
        let hidden: Vec<Vec<Vec<Vec<f32>>>> = (0..=2)
            .map(|l| r[&format!("hidden_states.{l}")].to_vec3::<f32>().unwrap())
            .collect();
        for convention in [
            LayerConvention::HfHiddenStates,
            LayerConvention::ResidualStream,
        ] {
            let opts = WindowOptions {
                layers: Layers::All,
                convention,
                window: Window::Response { offset: 1, len: 3 },
                short: ShortResponse::UseAvailable,
            };
            let (got, report) = collect(&model, &seqs, &opts, &BatchOptions::default());
            assert_eq!(report.recorded, 3);
            assert_eq!(got.len(), 3 * 3, "3 examples x layers 0..=2");
            for ((b, l), (positions, rows)) in &got {
                let want_pos: Vec<usize> = (2..(2 + 3).min(seqs[*b].len())).collect();
                assert_eq!(positions, &want_pos, "{arch} example {b}");
                let err = rows
                    .iter()
                    .zip(positions)
                    .map(|(row, &p)| max_diff(row, &hidden[*l][*b][p]))
                    .fold(0.0, f32::max);
                if *l < 2 || convention == LayerConvention::HfHiddenStates {
                    assert!(
                        err < HF_TOL,
                        "{arch} {convention:?} example {b} layer {l}: {err:.2e}"
                    );
                } else {
                    // The residual stream before the final norm is not HF's last hidden state.
                    assert!(
                        err > 1e-2,
                        "{arch}: layer L must be the un-normalised residual stream"
                    );
                }
            }
        }
    }
}

#[test]
fn windows_equal_slices_of_a_full_record() {
    let model = tiny("llama", DType::F32);
    let seqs = random_sequences(&[14, 5, 21, 9, 30, 12, 7], 128, 21);
    let full: Vec<_> = seqs.iter().map(|s| full_record(&model, &s.ids)).collect();
    let name = |conv: LayerConvention, l: usize| match (conv, l) {
        (_, 0) => "hook_embed".to_string(),
        (LayerConvention::HfHiddenStates, 2) => "ln_final.hook_normalized".to_string(),
        (_, l) => format!("blocks.{}.hook_resid_post", l - 1),
    };
    let cases = [
        (
            Layers::All,
            LayerConvention::ResidualStream,
            Window::Response { offset: 0, len: 2 },
        ),
        (
            Layers::List(vec![2, 1]),
            LayerConvention::HfHiddenStates,
            Window::Response { offset: 1, len: 3 },
        ),
        (
            Layers::List(vec![1]),
            LayerConvention::ResidualStream,
            Window::LastResponseToken,
        ),
        (
            Layers::List(vec![0, 2]),
            LayerConvention::ResidualStream,
            Window::LastToken,
        ),
    ];
    for (layers, convention, window) in cases {
        let opts = WindowOptions {
            layers: layers.clone(),
            convention,
            window,
            short: ShortResponse::Error,
        };
        let want_layers = opts.layer_indices(2).unwrap();
        for batch in [
            BatchOptions {
                max_tokens: 1,
                max_batch: 1,
            },
            BatchOptions {
                max_tokens: 60,
                max_batch: 4,
            },
        ] {
            let (got, report) = collect(&model, &seqs, &opts, &batch);
            assert_eq!(report.recorded, seqs.len());
            assert_eq!(got.len(), seqs.len() * want_layers.len());
            for ((i, l), (positions, rows)) in &got {
                let s = &seqs[*i];
                let r = &s.response;
                let want_pos: Vec<usize> = match window {
                    Window::Response { offset, len } => {
                        (r.start + offset..r.start + offset + len).collect()
                    }
                    Window::LastResponseToken => vec![r.end - 1],
                    Window::LastToken => vec![s.len() - 1],
                };
                assert_eq!(positions, &want_pos, "{window:?} example {i}");
                for (row, &p) in rows.iter().zip(positions) {
                    let err = max_diff(row, &full[*i][&name(convention, *l)][p]);
                    assert!(
                        err < SAME_TOL,
                        "{window:?} {convention:?} example {i} layer {l} position {p}: {err:.2e}"
                    );
                }
            }
        }
    }
}

#[test]
fn short_responses_follow_the_policy() {
    let model = tiny("qwen2", DType::F32);
    // Response lengths 6, 2, 0 (empty), 4.
    let seqs = vec![
        Sequence::new((3..13).collect(), 4..10).unwrap(),
        Sequence::new((3..8).collect(), 3..5).unwrap(),
        Sequence::new((3..8).collect(), 5..5).unwrap(),
        Sequence::new((3..9).collect(), 2..6).unwrap(),
    ];
    let opts = |short| WindowOptions {
        layers: Layers::List(vec![1]),
        window: Window::Response { offset: 1, len: 3 },
        short,
        ..Default::default()
    };
    let e = record_windows(
        &model,
        &seqs,
        &opts(ShortResponse::Error),
        &BatchOptions::default(),
        &mut NoProgress,
        &mut |_| panic!("no work before the check"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("example 1") && e.contains("2 tokens") && e.contains("offset 1 + T 3"),
        "{e}"
    );

    let (got, report) = collect(
        &model,
        &seqs,
        &opts(ShortResponse::Skip),
        &BatchOptions::default(),
    );
    assert_eq!(got.keys().map(|k| k.0).collect::<Vec<_>>(), vec![0, 3]);
    assert_eq!(
        report.skipped,
        vec![
            Skipped {
                example: 1,
                available: 1,
                wanted: 3
            },
            Skipped {
                example: 2,
                available: 0,
                wanted: 3
            },
        ]
    );
    assert_eq!(got[&(3, 1)].0, vec![3, 4, 5]);

    let (got, report) = collect(
        &model,
        &seqs,
        &opts(ShortResponse::UseAvailable),
        &BatchOptions::default(),
    );
    assert_eq!(got[&(1, 1)].0, vec![4], "the one token there is");
    assert_eq!(got[&(0, 1)].0, vec![5, 6, 7]);
    assert_eq!(
        report.skipped.iter().map(|s| s.example).collect::<Vec<_>>(),
        vec![2],
        "nothing to record"
    );
    assert_eq!(report.recorded, 3);

    let bad_layer = WindowOptions {
        layers: Layers::List(vec![3]),
        ..opts(ShortResponse::Skip)
    };
    let e = record_windows(
        &model,
        &seqs,
        &bad_layer,
        &BatchOptions::default(),
        &mut NoProgress,
        &mut |_| Ok(()),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("layer 3") && e.contains("0..=2"), "{e}");
}

#[test]
fn memory_held_does_not_grow_with_the_dataset() {
    // The same 4 sequence shapes repeated 1x and 8x: what the hooks hold at once depends on
    // the batch, not on how many examples stream through.
    let model = tiny("mistral", DType::F32);
    let base = random_sequences(&[40, 33, 25, 47], 128, 5);
    let opts = WindowOptions {
        window: Window::Response { offset: 0, len: 4 },
        ..Default::default()
    };
    let batch = BatchOptions {
        max_tokens: 100,
        max_batch: 2,
    };
    let (d, n_layers) = (model.config().hidden_size, 3);
    let mut held = Vec::new();
    for copies in [1, 8] {
        let seqs: Vec<Sequence> = (0..copies).flat_map(|_| base.clone()).collect();
        let mut calls = 0;
        let report = record_windows(&model, &seqs, &opts, &batch, &mut NoProgress, &mut |r| {
            // Each record is one example's window at one layer, nothing more.
            assert_eq!(r.hidden.dims(), &[4, d]);
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, seqs.len() * n_layers);
        held.push(report.max_values_held);
    }
    assert_eq!(
        held[0], held[1],
        "held values depend on the dataset size: {held:?}"
    );
    // Exactly the selected rows of one batch (2 examples x 4 positions x 3 layers x d), far
    // below every position of every layer of a batch (2 x 47 x 3 x d).
    assert_eq!(held[0], 2 * 4 * n_layers * d);
}
