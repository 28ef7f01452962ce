//! Analysis 3's glue against independent answers: the streamed, cached means and the replayed
//! projections against the uncached windows pooled by hand (tiny fixture models), and the
//! pass-1 arithmetic on constructed means.

use super::passes::{layer_means, replay_projections, Pass1};
use super::statistics::statistics;
use super::stream::PassReport;
use super::*;
use anyhow::Result;
use candle_core::DType;
use erosion_analysis::alignment::usable_layers;
use erosion_analysis::layers::Pooling as APooling;
use erosion_analysis::layers::{unit, WindowSpec};
use erosion_data::{Sequence, ShortResponse};
use erosion_forward::batch::{BatchOptions, NoProgress};
use erosion_forward::cache::CacheEntry;
use erosion_forward::cache::DiskCache;
use erosion_forward::cached_windows::record_windows_cached;
use erosion_forward::cached_windows::windows_cache_key;
use erosion_forward::windows::{record_windows, LayerConvention};
use erosion_forward::windows::{Layers, Window, WindowOptions, WindowRecord};
use erosion_model::transformer::Transformer;
use std::collections::BTreeMap;

/// A tiny fixture model of erosion-model's tests (2 layers, d 32, vocab 128).
pub(crate) fn tiny_model(arch: &str) -> Transformer {
    erosion_testkit::tiny_fixture_model(arch, DType::F32)
}

/// A windows pass through `entry` with `model` (what `stream::windows_pass` does with a study).
#[allow(clippy::type_complexity)]
pub(crate) fn cached_pass<'a>(
    model: &'a Transformer,
    seqs: &'a [Sequence],
    opts: &'a WindowOptions,
    batch: &'a BatchOptions,
    entry: CacheEntry,
) -> impl FnOnce(&mut dyn FnMut(WindowRecord<'_>) -> Result<()>) -> Result<PassReport> + 'a {
    move |sink| {
        Ok(record_windows_cached(model, seqs, opts, batch, &entry, &mut NoProgress, sink)?.into())
    }
}

/// Sequences with ids in 3..128; the last one has a 2-token response (short for T = 3).
pub(crate) fn sequences() -> Vec<Sequence> {
    let spec: [(usize, usize); 5] = [(12, 4), (9, 3), (15, 6), (10, 2), (7, 5)];
    spec.iter()
        .enumerate()
        .map(|(k, &(len, start))| {
            let ids = (0..len)
                .map(|t| 3 + ((t * 31 + k * 17) % 125) as u32)
                .collect();
            Sequence::new(ids, start..len).unwrap()
        })
        .collect()
}

/// Uncached windows pooled by hand: (example, layer) -> z.
fn pooled_by_hand(
    model: &Transformer,
    seqs: &[Sequence],
    opts: &WindowOptions,
    t: usize,
    pooling: APooling,
) -> BTreeMap<(usize, usize), Vec<f64>> {
    let mut out = BTreeMap::new();
    let batch = BatchOptions {
        max_tokens: 64,
        max_batch: 2,
    };
    record_windows(model, seqs, opts, &batch, &mut NoProgress, &mut |r| {
        let rows = r.hidden.to_vec2::<f32>()?;
        let d = rows[0].len();
        let z: Vec<f64> = match pooling {
            APooling::Flatten => (0..t * d)
                .map(|j| rows.get(j / d).map_or(0.0, |row| row[j % d] as f64))
                .collect(),
            APooling::Mean => (0..d)
                .map(|j| rows.iter().map(|row| row[j] as f64).sum::<f64>() / rows.len() as f64)
                .collect(),
        };
        out.insert((r.example, r.layer), z);
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn streamed_means_and_replayed_projections_match_hand_pooling() {
    let model = tiny_model("llama");
    let seqs = sequences();
    for pooling in [APooling::Flatten, APooling::Mean] {
        let opts = WindowOptions {
            layers: Layers::All,
            convention: LayerConvention::ResidualStream,
            window: Window::Response { offset: 1, len: 3 },
            short: ShortResponse::UseAvailable,
        };
        let pool = WindowSpec {
            len: 3,
            offset: 0,
            pooling,
            short: ShortResponse::UseAvailable,
        };
        let dim = pool.pooled_dim(32);
        let tmp = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(tmp.path()).unwrap();
        let entry = cache
            .entry(
                &windows_cache_key("tiny", "five", &opts).unwrap(),
                seqs.len(),
                2,
            )
            .unwrap();
        let batch = BatchOptions {
            max_tokens: 40,
            max_batch: 3,
        };
        let (means, rep) = layer_means(
            cached_pass(&model, &seqs, &opts, &batch, entry.clone()),
            &pool,
            3,
            dim,
        )
        .unwrap();
        assert_eq!(rep.recorded, 5);

        let hand = pooled_by_hand(&model, &seqs, &opts, 3, pooling);
        // Example 4 has 1 response token after the offset: truncated, not left out.
        assert_eq!(hand.len(), 5 * 3);
        for l in 0..3 {
            let zs: Vec<&Vec<f64>> = (0..5).map(|i| &hand[&(i, l)]).collect();
            for j in 0..dim {
                let m = zs.iter().map(|z| z[j]).sum::<f64>() / 5.0;
                assert!(
                    (means[l][j] - m).abs() < 1e-5 * (1.0 + m.abs()),
                    "{pooling:?} layer {l} dim {j}: {} vs {m}",
                    means[l][j]
                );
            }
        }

        // Pass 2 from disk only: the projections onto fixed unit directions (layer 1 unusable).
        let units: Vec<Option<Vec<f64>>> = (0..3)
            .map(|l| {
                (l != 1).then(|| {
                    unit(
                        &(0..dim)
                            .map(|j| ((j * 7 + l * 3) % 5) as f64 - 2.0)
                            .collect::<Vec<_>>(),
                    )
                    .unwrap()
                })
            })
            .collect();
        let p = replay_projections(&entry, &[0, 1, 2], &pool, &units, 5).unwrap();
        for (l, u) in units.iter().enumerate() {
            for i in 0..5 {
                match u {
                    None => assert!(p[l][i].is_nan()),
                    Some(u) => {
                        let want: f64 = hand[&(i, l)].iter().zip(u).map(|(a, b)| a * b).sum();
                        assert!(
                            (p[l][i] - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "layer {l} example {i}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn skipped_examples_have_no_projection_and_unwritten_entries_are_refused() {
    let model = tiny_model("qwen2");
    let seqs = sequences();
    let opts = WindowOptions {
        layers: Layers::All,
        convention: LayerConvention::HfHiddenStates,
        window: Window::Response { offset: 0, len: 3 },
        short: ShortResponse::Skip,
    };
    let pool = WindowSpec {
        len: 3,
        offset: 0,
        pooling: APooling::Mean,
        short: ShortResponse::Skip,
    };
    let tmp = tempfile::tempdir().unwrap();
    let cache = DiskCache::new(tmp.path()).unwrap();
    let entry = cache
        .entry(
            &windows_cache_key("tiny", "five", &opts).unwrap(),
            seqs.len(),
            4,
        )
        .unwrap();
    // Nothing written yet: the replay says so instead of computing.
    let err = replay_projections(&entry, &[0, 1, 2], &pool, &[None, None, None], 5).unwrap_err();
    assert!(format!("{err:#}").contains("not on disk"), "{err:#}");
    let batch = BatchOptions {
        max_tokens: 64,
        max_batch: 4,
    };
    let (_, rep) = layer_means(
        cached_pass(&model, &seqs, &opts, &batch, entry.clone()),
        &pool,
        3,
        32,
    )
    .unwrap();
    assert_eq!(rep.skipped, vec![4]);
    let u = Some(unit(&[1.0; 32]).unwrap());
    let p = replay_projections(&entry, &[0, 1, 2], &pool, &[u.clone(), u.clone(), u], 5).unwrap();
    for row in &p {
        assert!(row[4].is_nan());
        assert!([0, 1, 2, 3].iter().all(|&i| row[i].is_finite()));
    }
}

/// Hand values: v_1 = (3, 4), |v_1| = 5; v_2 = (0, 2), |v_2| = 2; v_0 = 0 (shared embeddings).
fn constructed_pass1() -> Pass1 {
    let mut st = Pass1::default();
    st.add(
        0,
        "base",
        vec![vec![1.0, 1.0], vec![0.0, 0.0], vec![1.0, 0.0]],
    )
    .unwrap();
    st.add(
        1,
        "instruct",
        vec![vec![1.0, 1.0], vec![3.0, 4.0], vec![1.0, 2.0]],
    )
    .unwrap();
    st.add(
        2,
        "ft",
        vec![vec![1.0, 1.0], vec![0.0, 5.0], vec![7.0, 1.0]],
    )
    .unwrap();
    st.n_examples = 2;
    st.recorded = vec![2, 2, 2];
    st.skipped = vec![vec![]; 3];
    st
}

#[test]
fn pass1_scores_by_hand_with_a_zero_direction() {
    let st = constructed_pass1();
    assert_eq!(st.usable, vec![false, true, true]);
    assert_eq!(st.norms, vec![0.0, 5.0, 2.0]);
    let close = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .all(|(x, y)| (x.is_nan() && y.is_nan()) || (x - y).abs() < 1e-12)
    };
    // s_1: base 0, instruct (3,4).(0.6,0.8) = 5, ft (0,5).(0.6,0.8) = 4; s_2: 0, 2, 1.
    assert!(
        close(&st.scores[0], &[f64::NAN, 0.0, 0.0]),
        "{:?}",
        st.scores[0]
    );
    assert!(
        close(&st.scores[1], &[f64::NAN, 5.0, 2.0]),
        "{:?}",
        st.scores[1]
    );
    assert!(
        close(&st.scores[2], &[f64::NAN, 4.0, 1.0]),
        "{:?}",
        st.scores[2]
    );
    assert_eq!(
        st.group.len(),
        2,
        "the fine-tuned model's means are not kept"
    );
    assert_eq!(
        usable_layers(&[0.0, 1e-12, 1.0, f64::NAN]),
        vec![false, false, true, false]
    );

    let mut same = Pass1::default();
    same.add(0, "base", vec![vec![1.0]]).unwrap();
    assert!(same
        .add(1, "instruct", vec![vec![1.0]])
        .unwrap_err()
        .to_string()
        .contains("no alignment direction"));
}

#[test]
fn statistics_of_constructed_projections() {
    let models: Vec<String> = ["base", "instruct", "ft"].map(String::from).to_vec();
    // Projections whose means are the scores above: r_1 = 4 / 5 = 0.8, r_2 = 1 / 2 = 0.5.
    let nan = vec![f64::NAN; 2];
    let proj = vec![
        vec![nan.clone(), vec![-1.0, 1.0], vec![0.0, 0.0]],
        vec![nan.clone(), vec![4.0, 6.0], vec![2.0, 2.0]],
        vec![nan.clone(), vec![3.0, 5.0], vec![0.0, 2.0]],
    ];
    let r = statistics("d", constructed_pass1(), &models, &proj, 50, 9).unwrap();
    assert!(r.score_ci[0][0].is_none());
    assert_eq!(r.score_ci[1][1].as_ref().unwrap().estimate, 5.0);
    let rel = &r.relative[0];
    assert!((rel[1].as_ref().unwrap().estimate - 0.8).abs() < 1e-12);
    assert!((rel[2].as_ref().unwrap().estimate - 0.5).abs() < 1e-12);
    let t = r.tests[0].as_ref().unwrap();
    assert_eq!(
        (t.early_layers.clone(), t.deep_layers.clone()),
        (vec![1], vec![2])
    );
    assert!((t.drop.estimate - 0.3).abs() < 1e-12);
    assert_eq!(r.verdict, t.verdict);

    // Projections that do not average to the streamed scores are refused.
    let mut bad = proj.clone();
    bad[2][1] = vec![3.0, 6.0];
    let e = statistics("d", constructed_pass1(), &models, &bad, 50, 9)
        .err()
        .expect("a mismatch");
    assert!(e.to_string().contains("replayed projections"), "{e}");
}

/// The typed results of one dataset go through JSON and back unchanged; a layer without a
/// direction is null, and a test that could not run is `{model, error}`.
#[test]
fn typed_results_round_trip_through_json() {
    use super::compute::dataset_results;
    let models: Vec<String> = ["base", "instruct", "ft"].map(String::from).to_vec();
    let nan = vec![f64::NAN; 2];
    let proj = vec![
        vec![nan.clone(), vec![-1.0, 1.0], vec![0.0, 0.0]],
        vec![nan.clone(), vec![4.0, 6.0], vec![2.0, 2.0]],
        vec![nan.clone(), vec![3.0, 5.0], vec![0.0, 2.0]],
    ];
    let mut st = statistics("d", constructed_pass1(), &models, &proj, 50, 9).unwrap();
    st.tests.push(Err("no paired example".into()));
    let more: Vec<String> = ["base", "instruct", "ft", "other"]
        .map(String::from)
        .to_vec();
    let d = dataset_results(&st, &more, vec!["arrays/x.npy".into()]);
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["scores"]["ft"][0], serde_json::Value::Null);
    assert_eq!(json["scores"]["ft"][1], 4.0);
    assert_eq!(
        json["tests"][1],
        serde_json::json!({ "model": "other", "error": "no paired example" })
    );
    let keys: Vec<&String> = json["scores"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["base", "instruct", "ft"]);
    let back: DatasetLayers = serde_json::from_value(json.clone()).unwrap();
    assert!(matches!(back.tests[0], TestOutcome::Ran(_)));
    assert!(matches!(back.tests[1], TestOutcome::NotRun { .. }));
    assert_eq!(serde_json::to_value(&back).unwrap(), json);
}
