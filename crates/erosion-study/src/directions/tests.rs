//! Analysis 4's glue against independent answers: layer and token choices, the residual rows
//! built through the cache against uncached hidden states subtracted by hand (tiny fixture
//! models), and planted shared / unshared directions through `analyse` and `compare`.

use super::compute::{analyse, compare, max_cell};
use super::residuals::{
    default_datasets, pooled_rows, residual_matrix, resolve_layer, subtract_pass, token_window,
};
use super::results::{ByName, Stability};
use crate::layers::tests::{cached_pass, sequences, tiny_model};
use crate::spec::TokenChoice;
use erosion_analysis::matrix::Matrix;
use erosion_analysis::stats::{gaussian_vec, rng_from_seed};
use erosion_data::{Role, Sequence, ShortResponse};
use erosion_forward::batch::{BatchOptions, NoProgress};
use erosion_forward::cache::DiskCache;
use erosion_forward::cached_windows::windows_cache_key;
use erosion_forward::windows::{record_windows, LayerConvention, Layers, Window, WindowOptions};
use erosion_model::transformer::Transformer;
use erosion_report::html::Verdict;
use std::collections::BTreeMap;

#[test]
fn layers_count_from_the_end() {
    assert_eq!(resolve_layer(-1, 24).unwrap(), 24);
    assert_eq!(resolve_layer(-25, 24).unwrap(), 0);
    assert_eq!(resolve_layer(0, 24).unwrap(), 0);
    assert_eq!(resolve_layer(7, 24).unwrap(), 7);
    assert!(resolve_layer(25, 24)
        .unwrap_err()
        .to_string()
        .contains("0..=24"));
    assert!(resolve_layer(-26, 24).is_err());
}

#[test]
fn default_datasets_prefer_two_misaligned() {
    let d = |n: &str, r| (n.to_string(), r);
    let roles = [
        d("secure", Some(Role::Aligned)),
        d("insecure", Some(Role::Misaligned)),
        d("alpaca", None),
        d("toxic", Some(Role::Misaligned)),
    ];
    assert_eq!(default_datasets(&roles), vec!["insecure", "toxic"]);
    let one = [
        d("secure", Some(Role::Aligned)),
        d("insecure", Some(Role::Misaligned)),
        d("alpaca", None),
    ];
    assert_eq!(default_datasets(&one), vec!["secure", "insecure"]);
    assert_eq!(default_datasets(&one[..1]), vec!["secure"]);
}

#[test]
fn token_choices() {
    let (w, s, p) = token_window(TokenChoice::Last, 64);
    assert_eq!(
        (w, s, p.len, p.pooled_dim(10)),
        (Window::LastToken, ShortResponse::Error, 1, 10)
    );
    let (w, s, p) = token_window(TokenChoice::WindowMean, 8);
    assert_eq!(
        (w, s, p.pooled_dim(10)),
        (
            Window::Response { offset: 0, len: 8 },
            ShortResponse::UseAvailable,
            10
        )
    );
    let (_, s, p) = token_window(TokenChoice::WindowFlatten, 8);
    assert_eq!((s, p.pooled_dim(10)), (ShortResponse::Skip, 80));
}

/// Uncached rows of one layer, pooled by hand: example -> z.
fn rows_by_hand(
    model: &Transformer,
    seqs: &[Sequence],
    opts: &WindowOptions,
    flatten_t: Option<usize>,
) -> BTreeMap<usize, Vec<f64>> {
    let mut out = BTreeMap::new();
    let batch = BatchOptions {
        max_tokens: 64,
        max_batch: 2,
    };
    record_windows(model, seqs, opts, &batch, &mut NoProgress, &mut |r| {
        let rows = r.hidden.to_vec2::<f32>()?;
        let z: Vec<f64> = match flatten_t {
            Some(_) => rows.iter().flatten().map(|&x| x as f64).collect(),
            None => (0..rows[0].len())
                .map(|j| rows.iter().map(|row| row[j] as f64).sum::<f64>() / rows.len() as f64)
                .collect(),
        };
        out.insert(r.example, z);
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn residual_rows_through_the_cache_match_hand_differences() {
    let base = tiny_model("llama");
    let instruct = tiny_model("mistral");
    let seqs = sequences();
    for (token, t) in [
        (TokenChoice::Last, 1),
        (TokenChoice::WindowFlatten, 3),
        (TokenChoice::WindowMean, 3),
    ] {
        let (window, short, pool) = token_window(token, t);
        let opts = WindowOptions {
            layers: Layers::List(vec![2]),
            convention: LayerConvention::ResidualStream,
            window,
            short,
        };
        let dim = pool.pooled_dim(32);
        let tmp = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(tmp.path()).unwrap();
        let batch = BatchOptions {
            max_tokens: 40,
            max_batch: 3,
        };
        let entry = |m: &str| {
            cache
                .entry(&windows_cache_key(m, "five", &opts).unwrap(), seqs.len(), 2)
                .unwrap()
        };
        let (mut rows, _) = pooled_rows(
            cached_pass(&base, &seqs, &opts, &batch, entry("base")),
            seqs.len(),
            &pool,
        )
        .unwrap();
        let rep = subtract_pass(
            cached_pass(&instruct, &seqs, &opts, &batch, entry("instruct")),
            &pool,
            &mut rows,
        )
        .unwrap();
        assert_eq!(
            rep.skipped,
            if token == TokenChoice::WindowFlatten {
                vec![4]
            } else {
                vec![]
            }
        );
        let (r, kept) = residual_matrix(rows, dim).unwrap();

        let flatten = (token == TokenChoice::WindowFlatten).then_some(t);
        let hb = rows_by_hand(&base, &seqs, &opts, flatten);
        let hi = rows_by_hand(&instruct, &seqs, &opts, flatten);
        // Example 4 has a 2-token response: left out only when flattening 3 tokens.
        let want: Vec<usize> = if token == TokenChoice::WindowFlatten {
            vec![0, 1, 2, 3]
        } else {
            vec![0, 1, 2, 3, 4]
        };
        assert_eq!(kept, want, "{token:?}");
        assert_eq!((r.rows, r.cols), (want.len(), dim));
        for (row, &i) in kept.iter().enumerate() {
            for j in 0..dim {
                let d = hi[&i][j] - hb[&i][j];
                assert!(
                    (r.get(row, j) - d).abs() < 1e-5 * (1.0 + d.abs()),
                    "{token:?} example {i} col {j}"
                );
            }
        }
    }
}

/// Rows `a_i u + noise`: a dataset whose first direction is u.
fn planted(u: &[f64], n: usize, noise: f64, seed: u64) -> Matrix {
    let mut rng = rng_from_seed(seed);
    let d = u.len();
    let mut m = Matrix::zeros(n, d);
    for i in 0..n {
        let a = 3.0 * gaussian_vec(&mut rng, 1)[0] + 1.0;
        let e = gaussian_vec(&mut rng, d);
        m.row_mut(i)
            .iter_mut()
            .enumerate()
            .for_each(|(j, x)| *x = a * u[j] + noise * e[j]);
    }
    m
}

#[test]
fn a_planted_shared_direction_is_reproduced_and_independent_ones_are_not() {
    let d = 64;
    let mut u = vec![0.0; d];
    u[5] = 0.6;
    u[17] = -0.8;
    let mut w = vec![0.0; d];
    w[40] = 1.0;
    let run = |rows_b: Matrix| {
        let n = 30;
        let a = analyse(
            "a",
            planted(&u, n, 0.1, 1),
            (0..n).collect(),
            n,
            [vec![], vec![]],
            3,
            20,
            11,
        )
        .unwrap();
        let b = analyse(
            "b",
            rows_b,
            (0..n).collect(),
            n,
            [vec![], vec![]],
            3,
            20,
            12,
        )
        .unwrap();
        let cmp = compare(&[a, b], 0, 1, d, 300, 13).unwrap();
        (max_cell(&cmp.abs), cmp.verdict, cmp)
    };
    let ((mx, i, j), v, cmp) = run(planted(&u, 30, 0.1, 2));
    assert!(mx > 0.95 && (i, j) == (0, 0), "{mx} at ({i}, {j})");
    assert_eq!(v, Verdict::Reproduced);
    // Same signs by the mean-residual convention: both point along +u.
    assert!(cmp.signed.get(0, 0) > 0.95);

    // B's first direction is w, orthogonal to u; its other directions are noise.
    let ((mx, _, _), v, cmp) = run(planted(&w, 30, 0.1, 3));
    assert!(cmp.abs.get(0, 0) < 0.1, "{}", cmp.abs.get(0, 0));
    assert!(
        mx < cmp.baseline.max_abs_cos.null_p95 * 1.5,
        "{mx} vs {}",
        cmp.baseline.max_abs_cos.null_p95
    );
    assert_ne!(v, Verdict::Reproduced);
}

#[test]
fn too_few_examples_is_a_clear_error() {
    let r = Matrix::from_rows(&[
        vec![1.0, 0.0, 0.0, 0.0],
        vec![0.0, 1.0, 0.0, 0.0],
        vec![0.0, 0.0, 1.0, 0.0],
    ])
    .unwrap();
    let e = analyse("toxic", r, vec![0, 1, 2], 5, [vec![3], vec![4]], 3, 10, 1)
        .err()
        .expect("3 rows for k = 3");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("`toxic` has 3 usable examples (5 loaded")
            && msg.contains("at least k + 1 = 4"),
        "{msg}"
    );
}

#[test]
fn by_name_keeps_the_order_and_a_repeated_name_its_first_place() {
    let mut m = ByName::default();
    m.insert("toxic".to_string(), 1);
    m.insert("insecure".to_string(), 2);
    m.insert("toxic".to_string(), 3);
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(json, r#"{"toxic":3,"insecure":2}"#);
    // As a JSON object built by inserting.
    let mut obj = serde_json::Map::new();
    obj.insert("toxic".into(), 1.into());
    obj.insert("insecure".into(), 2.into());
    obj.insert("toxic".into(), 3.into());
    assert_eq!(serde_json::to_string(&obj).unwrap(), json);
    let back: ByName<i32> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
    assert_eq!(
        (back.get("insecure"), back.get("x"), back.len()),
        (Some(&2), None, 2)
    );
}

#[test]
fn stability_is_an_array_or_an_error_object() {
    let failed = Stability::Failed {
        error: "rank 2 < k".into(),
    };
    let json = serde_json::to_value(&failed).unwrap();
    assert_eq!(json, serde_json::json!({ "error": "rank 2 < k" }));
    let back: Stability = serde_json::from_value(json).unwrap();
    assert!(matches!(back, Stability::Failed { error } if error == "rank 2 < k"));
    let computed: Stability = serde_json::from_str("[]").unwrap();
    assert!(matches!(computed, Stability::Computed(v) if v.is_empty()));
}
