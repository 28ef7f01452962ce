//! Provenance: file hashes against published SHA-256 vectors and Python's hashlib, UTC
//! dates against Python's datetime, the hash cache, and results.json.

use std::path::PathBuf;

use erosion_report::provenance::{
    format_utc, sha256_file, utc_now, DatasetHash, FileSetHash, HashCache, Provenance, ToolInfo,
};
use erosion_report::results::{read_results_json, write_results_json, RESULTS_SCHEMA_VERSION};

#[test]
fn sha256_of_files_matches_known_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "empty",
            vec![],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            "abc",
            b"abc".to_vec(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        // FIPS 180-2's one million 'a'.
        (
            "million-a",
            vec![b'a'; 1_000_000],
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            (want.to_string(), bytes.len() as u64),
            "{name}"
        );
    }
    // Three 1 MiB blocks and a bit: the stream is assembled across reads.
    // Expected: hashlib.sha256(bytes(i % 251 for i in range(3_000_001))).hexdigest()
    let p = dir.path().join("multi-block");
    std::fs::write(
        &p,
        (0..3_000_001u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(
        sha256_file(&p).unwrap().0,
        "6676c19ef38e4bb8a162d4efd71b8de3150e82b93da3918ee0e9f69891925d9f"
    );
    let msg = format!(
        "{:#}",
        sha256_file(&dir.path().join("missing.bin")).unwrap_err()
    );
    assert!(msg.contains("missing.bin"), "{msg}");
}

/// Expected values from Python's `datetime.fromtimestamp(s, timezone.utc)`.
#[test]
fn utc_dates() {
    assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(format_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(format_utc(-1), "1969-12-31T23:59:59Z");
    assert_eq!(format_utc(4_102_444_800), "2100-01-01T00:00:00Z");
    assert_eq!(format_utc(1_709_251_199), "2024-02-29T23:59:59Z");
    let now = utc_now();
    assert_eq!(now.len(), 20, "{now}");
    assert!(now.as_str() > "2024-01-01", "{now}");
}

#[test]
fn hash_cache_hashes_a_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("model.safetensors");
    std::fs::write(&f, b"abc").unwrap();
    let cache_file = dir.path().join("cache").join("hashes.json");

    let mut c = HashCache::open(&cache_file);
    let a = c.hash(&f).unwrap();
    assert_eq!(
        a.sha256,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(a.bytes, 3);
    assert_eq!(c.hash(&f).unwrap(), a);
    assert_eq!(c.computed, 1);
    c.save().unwrap();

    // A new process reads the cache and computes nothing.
    let mut c2 = HashCache::open(&cache_file);
    assert_eq!(c2.hash(&f).unwrap(), a);
    assert_eq!(c2.computed, 0);

    // A changed file (new size) is hashed again.
    std::fs::write(&f, b"abcd").unwrap();
    let b = c2.hash(&f).unwrap();
    assert_eq!(c2.computed, 1);
    assert_eq!(
        b.sha256,
        "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589"
    );

    // A corrupt cache file is an empty cache, not an error.
    std::fs::write(&cache_file, b"{not json").unwrap();
    let mut c3 = HashCache::open(&cache_file);
    assert_eq!(c3.hash(&f).unwrap(), b);
    assert_eq!(c3.computed, 1);
}

#[test]
fn model_folder_hashes_sorted_follows_links_skips_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("model");
    std::fs::create_dir_all(m.join("sub")).unwrap();
    std::fs::write(m.join("config.json"), b"abc").unwrap();
    std::fs::write(m.join("sub").join("b.bin"), b"").unwrap();
    std::fs::write(m.join(".hidden"), b"x").unwrap();
    let blob = dir.path().join("blob");
    std::fs::write(&blob, b"abc").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&blob, m.join("a.safetensors")).unwrap();
    #[cfg(not(unix))]
    std::fs::copy(&blob, m.join("a.safetensors")).unwrap();

    let mut cache = HashCache::in_memory();
    let set = FileSetHash::from_dir("instruct", "hub:org/model", &m, &mut cache).unwrap();
    let names: Vec<String> = set
        .files
        .iter()
        .map(|f| {
            PathBuf::from(&f.path)
                .strip_prefix(&m)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(names, vec!["a.safetensors", "config.json", "sub/b.bin"]);
    assert_eq!(set.files[0].sha256, set.files[1].sha256);
    assert_eq!(set.files[2].bytes, 0);
    // The set digest is sha256 of "{sha}  {name}\n" lines, computed here by hand.
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let listing = format!("{abc}  a.safetensors\n{abc}  config.json\n{empty}  b.bin\n");
    let p = dir.path().join("listing");
    std::fs::write(&p, listing).unwrap();
    assert_eq!(set.digest(), sha256_file(&p).unwrap().0);

    let msg = format!(
        "{:#}",
        FileSetHash::from_dir("base", "x", &dir.path().join("nope"), &mut cache).unwrap_err()
    );
    assert!(msg.contains("base") && msg.contains("nope"), "{msg}");
}

#[test]
fn results_json_round_trip_with_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("toxic.jsonl");
    std::fs::write(&data, b"abc").unwrap();
    let mut cache = HashCache::in_memory();
    let prov = Provenance::builder(serde_json::json!({"window": 64, "pooling": "flatten"}))
        .command_line(vec!["erosion".into(), "study".into()])
        .seed(7)
        .datasets([DatasetHash::new("toxic", &data, 2, "first 2", &mut cache).unwrap()])
        .models([FileSetHash::from_files(
            "base",
            "folder",
            std::slice::from_ref(&data),
            &mut cache,
        )
        .unwrap()])
        .build();
    assert_eq!(prov.seed, Some(7));
    assert_eq!(prov.tool.name, "erosion");
    assert_eq!(prov.tool.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(prov.tool, ToolInfo::erosion());
    assert_eq!(prov.command_line, ["erosion", "study"]);

    let out = dir.path().join("results.json");
    // A plain struct, not a `json!` value: the writer itself must turn NaN into null.
    let results = std::collections::BTreeMap::from([(
        "layers",
        std::collections::BTreeMap::from([("s", vec![1.5, f64::NAN, -2.0])]),
    )]);
    write_results_json(&out, &prov, &results).unwrap();
    let back = read_results_json(&out).unwrap();
    assert_eq!(back.provenance, prov);
    assert_eq!(
        back.results["layers"]["s"],
        serde_json::json!([1.5, null, -2.0])
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with("{\n  \"schema_version\": 1,\n  \"provenance\""),
        "{text}"
    );
    assert_eq!(back.schema_version, RESULTS_SCHEMA_VERSION);
    assert!(text.contains("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

#[test]
fn results_of_an_older_layout_read_as_version_0_and_a_newer_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let prov = Provenance::builder(serde_json::json!({})).build();
    let path = dir.path().join("results.json");
    write_results_json(&path, &prov, &serde_json::json!({"x": 1})).unwrap();
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();

    value.as_object_mut().unwrap().remove("schema_version");
    std::fs::write(&path, value.to_string()).unwrap();
    assert_eq!(read_results_json(&path).unwrap().schema_version, 0);

    value["schema_version"] = serde_json::json!(RESULTS_SCHEMA_VERSION + 1);
    std::fs::write(&path, value.to_string()).unwrap();
    let err = format!("{:#}", read_results_json(&path).unwrap_err());
    assert!(err.contains("results schema version 2 is newer"), "{err}");
    assert!(err.contains("results.json"), "{err}");
}

#[test]
fn the_builder_hashes_a_model_folder_or_file_and_skips_a_hub_id() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("model.safetensors");
    std::fs::write(&weights, b"abc").unwrap();
    let (folder, file) = (dir.path().to_string_lossy(), weights.to_string_lossy());
    let mut cache = HashCache::in_memory();
    let prov = Provenance::builder(serde_json::json!({}))
        .model_at("folder", &folder, &mut cache)
        .unwrap()
        .model_at("file", &file, &mut cache)
        .unwrap()
        .model_at("hub", "org/no-such-model", &mut cache)
        .unwrap()
        .build();
    let names: Vec<&str> = prov.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["folder", "file"]);
    assert_eq!(prov.models[0].files, prov.models[1].files);
    assert!(prov.command_line.is_empty() && prov.seed.is_none());
}
