//! `.npy` files against the format specification and against bytes numpy 2.4 wrote.

use erosion_model::npy::{
    header_bytes, npy_bytes, parse_npy, read_npy, read_npy_as, write_npy, write_npy_1d,
    write_npy_2d, NpyData,
};

/// The header built by hand from numpy.lib.format's rules, independently of the crate:
/// dict, growth spaces `21 - len(repr(shape[0]))`, then spaces and `\n` up to a multiple
/// of 64 bytes counting the 10-byte prefix.
fn hand_header(dict: &str, growth: usize) -> Vec<u8> {
    let body_len = dict.len() + growth + 1;
    let pad = 64 - (10 + body_len) % 64;
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&((body_len + pad) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.extend(std::iter::repeat_n(b' ', growth + pad));
    h.push(b'\n');
    h
}

#[test]
fn header_follows_the_spec() {
    let d1 = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
    assert_eq!(header_bytes("<f4", &[3]), hand_header(d1, 20));
    let d2 = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
    assert_eq!(header_bytes("<f8", &[2, 3]), hand_header(d2, 20));
    let d3 = "{'descr': '<i8', 'fortran_order': False, 'shape': (12345, 7), }";
    assert_eq!(header_bytes("<i8", &[12345, 7]), hand_header(d3, 16));
    // 0-d: no growth padding.
    let d0 = "{'descr': '<f8', 'fortran_order': False, 'shape': (), }";
    assert_eq!(header_bytes("<f8", &[]), hand_header(d0, 0));
    for shape in [&[3usize][..], &[2, 3], &[0], &[100000, 4096]] {
        assert_eq!(header_bytes("<f4", shape).len() % 64, 0, "{shape:?}");
    }
}

/// Exactly what `numpy.save` (numpy 2.4.6) wrote for
/// `np.array([1.0, 2.0, 3.0], dtype='<f4')`: the 57-byte dict, 60 spaces (20 for growth,
/// 40 to align) and `\n` make a 128-byte header (length field 0x76 = 118 = `v`), then the data.
#[test]
fn f32_vector_matches_numpy_bytes() {
    let mut expected =
        b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }".to_vec();
    expected.extend(std::iter::repeat_n(b' ', 60));
    expected.push(b'\n');
    assert_eq!(expected.len(), 128);
    expected.extend_from_slice(&[
        0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x40, 0x40,
    ]);
    assert_eq!(npy_bytes(&[3], &[1.0f32, 2.0, 3.0]).unwrap(), expected);
}

/// `np.arange(6, dtype='<f8').reshape(2, 3)` as numpy 2.4.6 saved it.
#[test]
fn f64_matrix_matches_numpy_bytes() {
    let mut expected =
        b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }"
            .to_vec();
    expected.extend(std::iter::repeat_n(b' ', 58));
    expected.push(b'\n');
    assert_eq!(expected.len(), 128);
    let data_hex = "0000000000000000000000000000f03f0000000000000040\
                    000000000000084000000000000010400000000000001440";
    expected.extend(
        (0..data_hex.len() / 2)
            .map(|i| u8::from_str_radix(&data_hex[2 * i..2 * i + 2], 16).unwrap()),
    );
    let got = npy_bytes(&[2, 3], &[0.0f64, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    assert_eq!(got, expected);
}

/// `np.array([1, 2], dtype='<u4')` and `np.array([-1, 5], dtype='<i8')` from numpy 2.4.6.
#[test]
fn integer_vectors_match_numpy_bytes() {
    let prefix = |d: &str| {
        let mut v = b"\x93NUMPY\x01\x00v\x00".to_vec();
        v.extend_from_slice(
            format!("{{'descr': '{d}', 'fortran_order': False, 'shape': (2,), }}").as_bytes(),
        );
        v.extend(std::iter::repeat_n(b' ', 60));
        v.push(b'\n');
        v
    };
    let mut u = prefix("<u4");
    u.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
    assert_eq!(npy_bytes(&[2], &[1u32, 2]).unwrap(), u);
    let mut i = prefix("<i8");
    i.extend_from_slice(&[0xff; 8]);
    i.extend_from_slice(&[5, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(npy_bytes(&[2], &[-1i64, 5]).unwrap(), i);
}

#[test]
fn round_trip_through_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.npy");
    let rows = vec![
        vec![1.5f64, f64::NAN, -0.0],
        vec![f64::INFINITY, 2.0, 1e-300],
    ];
    write_npy_2d(&p, &rows).unwrap();
    let a = read_npy(&p).unwrap();
    assert_eq!(a.shape, vec![2, 3]);
    let NpyData::F64(v) = a.data else {
        panic!("dtype")
    };
    let flat: Vec<f64> = rows.concat();
    assert_eq!(v.len(), 6);
    for (x, y) in v.iter().zip(&flat) {
        assert_eq!(x.to_bits(), y.to_bits());
    }

    let q = dir.path().join("v.npy");
    write_npy_1d(&q, &[0.25f32, -3.0]).unwrap();
    let (shape, v) = read_npy_as::<f32>(&q).unwrap();
    assert_eq!((shape, v), (vec![2], vec![0.25f32, -3.0]));
    let msg = format!("{:#}", read_npy_as::<f64>(&q).unwrap_err());
    assert!(msg.contains("<f4") && msg.contains("v.npy"), "{msg}");

    let e = dir.path().join("empty.npy");
    write_npy(&e, &[3, 0], &[] as &[f64]).unwrap();
    assert_eq!(read_npy(&e).unwrap().shape, vec![3, 0]);
}

#[test]
fn bad_input_is_an_error() {
    assert!(npy_bytes(&[2, 2], &[1.0f32; 3]).is_err());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ragged.npy");
    let msg = format!(
        "{:#}",
        write_npy_2d(&p, &[vec![1.0f32], vec![]]).unwrap_err()
    );
    assert!(msg.contains("row 1"), "{msg}");
    assert!(!p.exists());
    // Truncated data, wrong magic, unsupported dtype.
    let mut b = npy_bytes(&[4], &[1.0f64; 4]).unwrap();
    b.pop();
    assert!(parse_npy(&b).is_err());
    assert!(parse_npy(b"NUMPY not really").is_err());
    let mut c = npy_bytes(&[1], &[1.0f32]).unwrap();
    let at = c.windows(3).position(|w| w == b"<f4").unwrap();
    c[at..at + 3].copy_from_slice(b">f4");
    let msg = format!("{:#}", parse_npy(&c).unwrap_err());
    assert!(msg.contains(">f4"), "{msg}");
}

/// A Fortran-order matrix (as numpy writes `np.asfortranarray`) comes back in C order.
#[test]
fn reads_fortran_order() {
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    let dict = "{'descr': '<u4', 'fortran_order': True, 'shape': (2, 3), }";
    let pad = 64 - (10 + dict.len() + 1) % 64;
    b.extend_from_slice(&((dict.len() + 1 + pad) as u16).to_le_bytes());
    b.extend_from_slice(dict.as_bytes());
    b.extend(std::iter::repeat_n(b' ', pad));
    b.push(b'\n');
    // Columns [1, 4], [2, 5], [3, 6] of [[1, 2, 3], [4, 5, 6]].
    for x in [1u32, 4, 2, 5, 3, 6] {
        b.extend_from_slice(&x.to_le_bytes());
    }
    let a = parse_npy(&b).unwrap();
    assert_eq!(a.shape, vec![2, 3]);
    assert_eq!(a.data, NpyData::U32(vec![1, 2, 3, 4, 5, 6]));
}

/// numpy itself loads what we write (run only where the reference venv exists).
#[test]
fn numpy_loads_our_files() {
    let py = std::env::var("EROSION_REF_PYTHON")
        .unwrap_or_else(|_| "/work/refvenv/bin/python".to_string());
    let py = std::path::Path::new(&py);
    if !py.exists() {
        eprintln!("skipped: no reference Python at {}", py.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.npy");
    write_npy(&p, &[2, 3], &[0.5f32, 1.0, 2.0, -4.0, 8.0, 16.0]).unwrap();
    let out = std::process::Command::new(py)
        .args([
            "-c",
            "import numpy, sys; a = numpy.load(sys.argv[1]); print(a.dtype, a.shape, a[1, 2], a.sum())",
        ])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "float32 (2, 3) 16.0 23.5"
    );
}
