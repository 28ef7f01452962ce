//! The row sinks gradients stream into: the file store's format (bytes and header), its
//! atomic finalisation, its checks, and the in-memory sink.

use erosion_forward::row_store::{
    header_path, MemoryRows, RowSink, RowStore, RowStoreHeader, RowStoreWriter,
};
use serde_json::json;
use std::fs;

fn row(i: usize, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|j| (i * 100 + j) as f32 * 0.5 - 3.25)
        .collect()
}

fn write_store(path: &std::path::Path, n: usize, dim: usize) -> RowStoreHeader {
    let mut w = RowStoreWriter::create(path, dim, json!({"what": "test", "n": n})).unwrap();
    for i in 0..n {
        w.push_row(&row(i, dim)).unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn rows_round_trip_through_a_flat_little_endian_file_and_a_json_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.f32");
    let header = write_store(&path, 5, 7);
    assert_eq!((header.n_rows, header.dim), (5, 7));

    // The data file is exactly the rows, row-major, little-endian f32, no header.
    let bytes = fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 5 * 7 * 4);
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let want: Vec<f32> = (0..5).flat_map(|i| row(i, 7)).collect();
    assert_eq!(decoded, want);

    let h: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("g.f32.json")).unwrap()).unwrap();
    assert_eq!(h["format"], "erosion-rows");
    assert_eq!(h["dtype"], "f32");
    assert_eq!(h["byte_order"], "little");
    assert_eq!(
        (h["n_rows"].as_u64(), h["dim"].as_u64()),
        (Some(5), Some(7))
    );
    assert_eq!(h["meta"], json!({"what": "test", "n": 5}));

    let store = RowStore::open(&path).unwrap();
    assert_eq!((store.n_rows(), store.dim()), (5, 7));
    assert_eq!(store.row(3).unwrap(), &row(3, 7)[..]);
    assert_eq!(store.rows(1..4).unwrap(), &want[7..28]);
    assert_eq!(store.rows(2..2).unwrap(), &[] as &[f32]);
    assert_eq!(store.meta()["what"], "test");
    let e = store.rows(3..6).unwrap_err().to_string();
    assert!(e.contains("g.f32") && e.contains("3..6"), "{e}");
    assert!(store.row(5).is_err() && store.row(usize::MAX).is_err());
}

#[test]
fn an_unfinished_store_is_invisible_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.f32");
    {
        let mut w = RowStoreWriter::create(&path, 3, json!(null)).unwrap();
        w.push_row(&[1.0, 2.0, 3.0]).unwrap();
        assert!(dir.path().join("g.f32.partial").exists());
        assert!(!path.exists());
        let e = RowStore::open(&path).unwrap_err().to_string();
        assert!(e.contains("not finished"), "{e}");
    } // dropped without finish
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_new_store_replaces_an_old_one_only_when_finished() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.f32");
    write_store(&path, 2, 4);
    let mut w = RowStoreWriter::create(&path, 3, json!(null)).unwrap();
    for i in 0..3 {
        w.push_row(&row(i + 10, 3)).unwrap();
    }
    let old = RowStore::open(&path).unwrap();
    assert_eq!((old.n_rows(), old.dim()), (2, 4));
    w.finish().unwrap();
    // A mapping opened before keeps reading the old rows; a new open sees the new store.
    assert_eq!(old.row(1).unwrap(), &row(1, 4)[..]);
    let new = RowStore::open(&path).unwrap();
    assert_eq!((new.n_rows(), new.dim()), (3, 3));
    assert_eq!(new.row(2).unwrap(), &row(12, 3)[..]);
    let left: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

#[test]
fn bad_rows_and_damaged_stores_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.f32");
    let mut w = RowStoreWriter::create(&path, 3, json!(null)).unwrap();
    let e = w.push_row(&[1.0, 2.0]).unwrap_err().to_string();
    assert!(
        e.contains("row 0") && e.contains("2 values") && e.contains("g.f32"),
        "{e}"
    );
    let e = w.push_row(&[1.0, f32::NAN, 2.0]).unwrap_err().to_string();
    assert!(e.contains("column 1"), "{e}");
    assert!(RowStoreWriter::create(dir.path().join("z"), 0, json!(null)).is_err());
    w.push_row(&[1.0, 2.0, 3.0]).unwrap();
    assert_eq!(w.n_rows(), 1);
    w.finish().unwrap();

    // Data cut short: the header no longer matches.
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..8]).unwrap();
    let e = RowStore::open(&path).unwrap_err().to_string();
    assert!(e.contains("8 bytes") && e.contains("1 rows of 3"), "{e}");

    // A header of another format.
    fs::write(&path, &bytes).unwrap();
    let hp = header_path(&path);
    let text = fs::read_to_string(&hp)
        .unwrap()
        .replace("\"f32\"", "\"bf16\"");
    fs::write(&hp, text).unwrap();
    let e = RowStore::open(&path).unwrap_err().to_string();
    assert!(e.contains("bf16"), "{e}");
}

#[test]
fn an_empty_store_opens_with_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.f32");
    write_store(&path, 0, 5);
    let s = RowStore::open(&path).unwrap();
    assert_eq!((s.n_rows(), s.dim()), (0, 5));
    assert_eq!(s.rows(0..0).unwrap().len(), 0);
    assert!(s.row(0).is_err());
}

#[test]
fn memory_rows_check_and_return_rows() {
    let mut m = MemoryRows::new(4).unwrap();
    assert!(MemoryRows::new(0).is_err());
    for i in 0..3 {
        m.push_row(&row(i, 4)).unwrap();
    }
    assert!(m.push_row(&[0.0; 3]).is_err());
    assert!(m.push_row(&[0.0, f32::INFINITY, 0.0, 0.0]).is_err());
    assert_eq!(RowSink::n_rows(&m), 3);
    assert_eq!(m.row(2).unwrap(), &row(2, 4)[..]);
    assert_eq!(m.rows(0..2).unwrap().len(), 8);
    assert!(m.rows(2..4).is_err());
    assert_eq!(m.into_data().len(), 12);
}
