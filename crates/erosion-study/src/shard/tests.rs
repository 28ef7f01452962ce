//! A study split in three merges to the numbers of the study run whole, bit for bit; a
//! missing, foreign or duplicated shard is refused by name. A study whose passes stream the
//! layers (`stream_layers`) writes the same numbers too.

use super::*;
use crate::run::{read_study_file, run_study, Overrides};
use erosion_forward::notice::Silent;
use serde_json::Value;
use std::collections::BTreeMap;

fn overrides(out: &Path) -> Overrides {
    Overrides {
        output: Some(out.to_path_buf()),
        ..Overrides::default()
    }
}

fn spec(study: &Path, out: &Path) -> (StudySpec, PathBuf) {
    read_study_file(study, &overrides(out)).unwrap()
}

fn shard(study: &Path, out: &Path, index: usize) -> ShardOutcome {
    let (spec, base) = spec(study, out);
    let s = ShardIndex { index, count: 3 };
    run_shard(spec, &base, s, Caller::quiet(&mut Silent)).unwrap()
}

fn merge(study: &Path, out: &Path) -> Result<StudyOutcome> {
    let (spec, base) = spec(study, out);
    merge_study(spec, &base, None, Caller::quiet(&mut Silent))
}

fn analyses(o: &StudyOutcome) -> Value {
    let v: Value = serde_json::from_slice(&std::fs::read(&o.results_json).unwrap()).unwrap();
    v["results"]["analyses"].clone()
}

fn arrays(out: &Path) -> BTreeMap<String, Vec<u8>> {
    (std::fs::read_dir(out.join("arrays")).unwrap())
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn err_of(r: Result<StudyOutcome>) -> String {
    format!("{:#}", r.err().expect("the merge must fail"))
}

#[test]
fn three_shards_merge_to_the_whole_study_and_bad_shards_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let study = crate::fixture::four_analyses_study(tmp.path());
    let (whole_out, split) = (tmp.path().join("whole"), tmp.path().join("split"));
    let (spec_whole, base) = spec(&study, &whole_out);
    let whole = run_study(spec_whole, &base, None, Caller::quiet(&mut Silent)).unwrap();
    assert!(whole.failures.is_empty(), "{:?}", whole.failures);

    let done: Vec<ShardOutcome> = (0..3).map(|i| shard(&study, &split, i)).collect();
    let of = done[0].of_units;
    assert!(of >= 10, "{of} units");
    assert_eq!(done.iter().map(|d| d.units).sum::<usize>(), of);
    assert!(done.iter().all(|d| d.units > 0 && d.computed == d.units));
    // Balanced by tokens: no shard carries more than half of them.
    assert!(done.iter().all(|d| 2 * d.tokens < d.of_tokens), "{done:?}");
    // A finished shard run again computes nothing.
    assert_eq!(shard(&study, &split, 1).computed, 0);

    // Missing: named, with the command that makes it.
    let two = split.join("shards/2-of-3");
    let aside = tmp.path().join("aside");
    std::fs::rename(&two, &aside).unwrap();
    let err = err_of(merge(&study, &split));
    assert!(
        err.contains("shard 2-of-3 is missing") && err.contains("--shard 2/3"),
        "{err}"
    );
    std::fs::rename(&aside, &two).unwrap();

    // Foreign: shard 1 of the same study with another seed.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let text = std::fs::read_to_string(&study)
        .unwrap()
        .replace("seed = 7", "seed = 8");
    let other_study = other.join("study.toml");
    std::fs::write(&other_study, text).unwrap();
    shard(&other_study, &other.join("out"), 1);
    let one = split.join("shards/1-of-3");
    std::fs::rename(&one, &aside).unwrap();
    std::fs::rename(other.join("out/shards/1-of-3"), &one).unwrap();
    let err = err_of(merge(&study, &split));
    assert!(
        err.contains("shard 1-of-3 comes from another study"),
        "{err}"
    );
    std::fs::remove_dir_all(&one).unwrap();
    std::fs::rename(&aside, &one).unwrap();

    // Duplicated: shard 0 claims a unit shard 2 holds.
    let record = |i: usize| split.join(format!("shards/{i}-of-3/shard.json"));
    let original = std::fs::read(record(0)).unwrap();
    let mut r0 = ShardRecord::read(&record(0)).unwrap().unwrap();
    let r2 = ShardRecord::read(&record(2)).unwrap().unwrap();
    r0.units.push(r2.units[0].clone());
    r0.write(&record(0)).unwrap();
    let err = err_of(merge(&study, &split));
    assert!(err.contains("is in 2 shards: 0-of-3, 2-of-3"), "{err}");
    std::fs::write(record(0), original).unwrap();

    // Merged: the same numbers and arrays, bit for bit, and nothing computed again.
    let merged = merge(&study, &split).unwrap();
    assert!(merged.failures.is_empty(), "{:?}", merged.failures);
    assert_eq!(analyses(&merged), analyses(&whole));
    assert_eq!(arrays(&split), arrays(&whole_out));
    assert_eq!(merged.chunks_computed, 0);
}

#[test]
fn a_study_that_streams_its_layers_writes_the_numbers_of_one_held_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let study = crate::fixture::four_analyses_study(tmp.path());
    let streamed_study = tmp.path().join("streamed.toml");
    let text = std::fs::read_to_string(&study).unwrap();
    let text = text.replacen("seed = 7", "seed = 7\nstream_layers = true", 1);
    std::fs::write(&streamed_study, text).unwrap();
    let run = |study: &Path, out: &str| {
        let (spec, base) = spec(study, &tmp.path().join(out));
        let o = run_study(spec, &base, None, Caller::quiet(&mut Silent)).unwrap();
        assert!(o.failures.is_empty(), "{:?}", o.failures);
        o
    };
    let (whole, streamed) = (run(&study, "whole"), run(&streamed_study, "streamed"));
    assert!(spec(&streamed_study, tmp.path()).0.stream_layers);
    assert_eq!(analyses(&streamed), analyses(&whole));
    assert_eq!(
        arrays(&tmp.path().join("streamed")),
        arrays(&tmp.path().join("whole"))
    );
}
