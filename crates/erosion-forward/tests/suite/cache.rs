//! The on-disk activation cache: reuse, detection of partial or corrupt chunks, key misses,
//! and a windows pass that resumes after an interruption.

use crate::forward_util;

use candle_core::{DType, Device, Tensor};
use erosion_data::ShortResponse;
use erosion_forward::batch::{BatchOptions, NoProgress, ProgressFn};
use erosion_forward::cache::{CacheKey, ChunkStatus, DiskCache, Origin};
use erosion_forward::cached_windows::{record_windows_cached, windows_cache_key};
use erosion_forward::windows::{record_windows, Layers, Window, WindowOptions};
use forward_util::*;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;

/// A deterministic chunk: `values` `[n, 3]` f32 = 10 * example + column, `ids` `[n]` u32.
fn chunk_of(range: Range<usize>) -> anyhow::Result<HashMap<String, Tensor>> {
    let n = range.len();
    let v: Vec<f32> = range
        .clone()
        .flat_map(|e| (0..3).map(move |j| (10 * e + j) as f32))
        .collect();
    let ids: Vec<u32> = range.map(|e| e as u32).collect();
    Ok(HashMap::from([
        (
            "values".to_string(),
            Tensor::from_vec(v, (n, 3), &Device::Cpu)?,
        ),
        ("ids".to_string(), Tensor::from_vec(ids, n, &Device::Cpu)?),
    ]))
}

fn same(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) {
    assert_eq!(a.len(), b.len());
    for (k, t) in a {
        assert_eq!(t.dims(), b[k].dims(), "{k}");
        assert_eq!(t.dtype(), b[k].dtype(), "{k}");
        let (x, y) = (
            t.to_dtype(DType::F64).unwrap(),
            b[k].to_dtype(DType::F64).unwrap(),
        );
        assert_eq!(
            x.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            y.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            "{k}"
        );
    }
}

fn key() -> CacheKey {
    CacheKey::new(
        "model sha256:aaaa f32 cpu",
        "dataset sha256:bbbb chatml",
        &serde_json::json!({"T": 10, "pooling": "mean"}),
    )
    .unwrap()
}

#[test]
fn second_call_reads_identical_tensors_from_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = DiskCache::new(tmp.path().join("cache")).unwrap();
    let entry = cache.entry(&key(), 7, 3).unwrap();
    assert_eq!(entry.n_chunks(), 3);
    assert_eq!(entry.chunk_examples(2), 6..7);
    assert!(entry.dir().join("manifest.json").is_file());
    let calls = Cell::new(0);
    let compute = |r: Range<usize>| {
        calls.set(calls.get() + 1);
        chunk_of(r)
    };
    let (first, o1) = entry.get_or_compute(1, compute).unwrap();
    assert_eq!(o1, Origin::Computed);
    same(&first, &chunk_of(3..6).unwrap());
    // A new handle on the same folder, as in a later run.
    let again = DiskCache::new(tmp.path().join("cache"))
        .unwrap()
        .entry(&key(), 7, 3)
        .unwrap();
    assert_eq!(again.status(1), ChunkStatus::Complete);
    assert_eq!(again.status(0), ChunkStatus::Missing);
    let (second, o2) = again
        .get_or_compute(1, |_| panic!("chunk 1 is on disk"))
        .unwrap();
    assert_eq!(o2, Origin::Disk);
    same(&first, &second);
    assert_eq!(calls.get(), 1);
    assert!(again.get_or_compute(3, chunk_of).is_err(), "chunk 3 of 3");
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(entry.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}

#[test]
fn partial_or_corrupt_chunks_are_detected_and_recomputed() {
    let tmp = tempfile::tempdir().unwrap();
    let entry = DiskCache::new(tmp.path())
        .unwrap()
        .entry(&key(), 4, 2)
        .unwrap();
    entry.get_or_compute(0, chunk_of).unwrap();
    let file = entry.dir().join("chunk-00000.safetensors");
    let good = std::fs::read(&file).unwrap();

    // One flipped byte in the data section.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    std::fs::write(&file, &bad).unwrap();
    assert!(
        matches!(entry.status(0), ChunkStatus::Invalid(ref why) if why.contains("corrupt")),
        "{:?}",
        entry.status(0)
    );
    let (t, origin) = entry.get_or_compute(0, chunk_of).unwrap();
    assert!(
        matches!(origin, Origin::Recomputed(ref why) if why.contains("SHA-256")),
        "{origin:?}"
    );
    same(&t, &chunk_of(0..2).unwrap());
    assert_eq!(entry.status(0), ChunkStatus::Complete);
    assert_eq!(std::fs::read(&file).unwrap(), good);

    // A truncated file (a write cut short, or a copy that stopped).
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    assert!(
        matches!(entry.status(0), ChunkStatus::Invalid(ref why) if why.contains("partial")),
        "{:?}",
        entry.status(0)
    );
    assert!(matches!(
        entry.get_or_compute(0, chunk_of).unwrap().1,
        Origin::Recomputed(_)
    ));

    // A data file without its sidecar (interrupted between the two renames) is not trusted.
    std::fs::remove_file(entry.dir().join("chunk-00000.json")).unwrap();
    assert_eq!(entry.status(0), ChunkStatus::Missing);
    assert_eq!(
        entry.get_or_compute(0, chunk_of).unwrap().1,
        Origin::Computed
    );

    // A garbled sidecar.
    std::fs::write(entry.dir().join("chunk-00000.json"), b"{\"exam").unwrap();
    assert!(matches!(entry.status(0), ChunkStatus::Invalid(_)));
    assert!(matches!(
        entry.get_or_compute(0, chunk_of).unwrap().1,
        Origin::Recomputed(_)
    ));
    assert_eq!(entry.status(0), ChunkStatus::Complete);
}

#[test]
fn changing_any_part_of_the_key_misses() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = DiskCache::new(tmp.path()).unwrap();
    let base = cache.entry(&key(), 4, 2).unwrap();
    base.get_or_compute(0, chunk_of).unwrap();
    // Same key with the options' fields in another order: a hit.
    let reordered = CacheKey::new(
        key().model,
        key().dataset,
        &serde_json::json!({"pooling": "mean", "T": 10}),
    )
    .unwrap();
    assert_eq!(
        cache.entry(&reordered, 4, 2).unwrap().status(0),
        ChunkStatus::Complete
    );
    let k = key();
    let variants = [
        (
            CacheKey {
                model: "model sha256:aaab f32 cpu".into(),
                ..k.clone()
            },
            4,
            2,
        ),
        (
            CacheKey {
                dataset: "dataset sha256:bbbb plain".into(),
                ..k.clone()
            },
            4,
            2,
        ),
        (
            CacheKey {
                options: serde_json::json!({"T": 64, "pooling": "mean"}),
                ..k.clone()
            },
            4,
            2,
        ),
        (k.clone(), 5, 2),
        (k.clone(), 4, 1),
    ];
    for (key, n, chunk) in variants {
        let e = cache.entry(&key, n, chunk).unwrap();
        assert_ne!(e.dir(), base.dir(), "{key:?} {n} {chunk}");
        assert_eq!(e.status(0), ChunkStatus::Missing);
    }
}

/// Every record of a windows pass by (example, layer): positions and values.
type Records = BTreeMap<(usize, usize), (Vec<usize>, Vec<f32>)>;

#[test]
fn a_stopped_windows_pass_resumes_computing_only_missing_chunks() {
    let model = tiny("llama", DType::F32);
    let seqs = random_sequences(&[12, 7, 15, 9, 3, 11, 8, 14, 10], 128, 17);
    let opts = WindowOptions {
        layers: Layers::All,
        window: Window::Response { offset: 0, len: 3 },
        short: ShortResponse::Skip,
        ..Default::default()
    };
    let batch = BatchOptions {
        max_tokens: 40,
        max_batch: 3,
    };
    let mut direct = Records::new();
    let report = record_windows(&model, &seqs, &opts, &batch, &mut NoProgress, &mut |r| {
        direct.insert((r.example, r.layer), (r.positions.to_vec(), r.flat()?));
        Ok(())
    })
    .unwrap();
    assert!(
        !report.skipped.is_empty(),
        "the 3-token sequence has a short response"
    );

    let tmp = tempfile::tempdir().unwrap();
    let cache = DiskCache::new(tmp.path()).unwrap();
    let key = windows_cache_key("tiny-llama f32", "random 17", &opts).unwrap();
    let entry = cache.entry(&key, seqs.len(), 4).unwrap();
    assert_eq!(entry.n_chunks(), 3);

    // First run: the sink fails on example 5 (chunk 1), as if the study were stopped there.
    let e = record_windows_cached(
        &model,
        &seqs,
        &opts,
        &batch,
        &entry,
        &mut NoProgress,
        &mut |r| {
            if r.example == 5 {
                anyhow::bail!("stopped")
            }
            Ok(())
        },
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("stopped"));
    let status: Vec<ChunkStatus> = (0..3).map(|c| entry.status(c)).collect();
    assert_eq!(
        status,
        vec![
            ChunkStatus::Complete,
            ChunkStatus::Complete,
            ChunkStatus::Missing
        ]
    );
    let inode = |c: usize| {
        std::fs::metadata(entry.dir().join(format!("chunk-{c:05}.safetensors")))
            .unwrap()
            .ino()
    };
    let before = (inode(0), inode(1));

    // Resumed: chunks 0 and 1 are read (their files are not rewritten), chunk 2 computed.
    let run = |progress: &mut dyn erosion_forward::batch::Progress| {
        let mut got = Records::new();
        let mut order = Vec::new();
        let report =
            record_windows_cached(&model, &seqs, &opts, &batch, &entry, progress, &mut |r| {
                order.push(r.example);
                got.insert((r.example, r.layer), (r.positions.to_vec(), r.flat()?));
                Ok(())
            })
            .unwrap();
        (got, order, report)
    };
    let mut ticks = Vec::new();
    let (resumed, order, rep) = run(&mut ProgressFn::new(|d, t| ticks.push((d, t))));
    assert_eq!(ticks.last(), Some(&(9, 9)));
    assert_eq!(
        (inode(0), inode(1)),
        before,
        "complete chunks are reused, not recomputed"
    );
    assert_eq!(entry.status(2), ChunkStatus::Complete);
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "cached records come in example order"
    );
    assert_eq!(rep.skipped, report.skipped);
    assert_eq!(rep.recorded, report.recorded);
    assert_eq!(resumed.len(), direct.len());
    for (k, (pos, v)) in &direct {
        let (p2, v2) = &resumed[k];
        assert_eq!(pos, p2, "{k:?}");
        let err = v
            .iter()
            .zip(v2)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-5, "{k:?}: {err:.2e}");
    }
    // All from disk now: bit-identical to the run that computed chunk 2.
    let (from_disk, _, rep) = run(&mut NoProgress);
    assert_eq!(from_disk, resumed);
    assert_eq!(rep.max_values_held, 0, "nothing was computed");

    // One example per chunk: the skipped example's chunk holds zero rows, written and read.
    let single = cache.entry(&key, seqs.len(), 1).unwrap();
    for _ in 0..2 {
        let mut got = Records::new();
        record_windows_cached(
            &model,
            &seqs,
            &opts,
            &batch,
            &single,
            &mut NoProgress,
            &mut |r| {
                got.insert((r.example, r.layer), (r.positions.to_vec(), r.flat()?));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            direct.keys().collect::<Vec<_>>()
        );
    }
    assert_eq!(single.status(4), ChunkStatus::Complete);

    // The entry refuses other options.
    let other = WindowOptions {
        window: Window::LastToken,
        ..opts.clone()
    };
    let e = record_windows_cached(
        &model,
        &seqs,
        &other,
        &batch,
        &entry,
        &mut NoProgress,
        &mut |_| Ok(()),
    )
    .unwrap_err();
    assert!(e.to_string().contains("was made for options"), "{e}");
}
