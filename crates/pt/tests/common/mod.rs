//! Test support: locating the shared golden fixtures.
//!
//! Fixtures live in `$NANOCHAT_FIXTURES`, by default `<workspace>/../shared/fixtures`.
//! A missing fixture fails the test with a message saying where it was looked for.

#![allow(dead_code)]

use std::path::PathBuf;

/// The fixtures folder (`$NANOCHAT_FIXTURES` or `<workspace>/../shared/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("NANOCHAT_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"),
    }
}

/// The path of a fixture file, which must exist.
pub fn fixture_path(relative: &str) -> PathBuf {
    let path = fixtures_dir().join(relative);
    assert!(
        path.is_file(),
        "fixture {relative} is missing: looked for {} (set NANOCHAT_FIXTURES to the shared fixtures folder)",
        path.display()
    );
    path
}

/// The bytes of a fixture file, which must exist.
pub fn read_fixture(relative: &str) -> Vec<u8> {
    let path = fixture_path(relative);
    std::fs::read(&path)
        .unwrap_or_else(|error| panic!("cannot read fixture {}: {error}", path.display()))
}

/// A JSON fixture.
pub fn read_json_fixture(relative: &str) -> serde_json::Value {
    serde_json::from_slice(&read_fixture(relative))
        .unwrap_or_else(|error| panic!("fixture {relative} is not JSON: {error}"))
}

/// A little-endian float32 `.npy` fixture: its shape and values.
pub fn read_npy_f32(relative: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = read_fixture(relative);
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{relative} is not a .npy file");
    let header_length = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_length]).expect("npy header is text");
    assert!(
        header.contains("'descr': '<f4'"),
        "{relative}: expected float32, header {header}"
    );
    assert!(
        header.contains("'fortran_order': False"),
        "{relative}: expected C order"
    );
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("npy shape");
    let shape = shape_text
        .split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| part.trim().parse().expect("dim"))
        .collect();
    let values = bytes[10 + header_length..]
        .chunks_exact(4)
        .map(|raw| f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
        .collect();
    (shape, values)
}
