//! Test support: where the golden fixtures are. `NANOCHAT_FIXTURES` overrides the default
//! `<workspace>/../shared/fixtures`. A missing fixture fails the test with a message: fixture
//! tests are never skipped.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn fixtures_dir() -> PathBuf {
    let dir = match std::env::var_os("NANOCHAT_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"),
    };
    assert!(
        dir.is_dir(),
        "fixture directory {} not found: set NANOCHAT_FIXTURES to the nanochat golden fixtures",
        dir.display()
    );
    dir
}

/// Path of a fixture file, which must exist.
pub fn fixture(relative: &str) -> PathBuf {
    let path = fixtures_dir().join(relative);
    assert!(
        path.exists(),
        "fixture {} is missing (NANOCHAT_FIXTURES={})",
        path.display(),
        fixtures_dir().display()
    );
    path
}

pub fn fixture_json(relative: &str) -> serde_json::Value {
    let path = fixture(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// A NumPy v1 `.npy` array: shape and values as f32 (`<f4`) or raw u16 (`<u2`).
pub struct Npy {
    pub shape: Vec<usize>,
    pub f32: Vec<f32>,
    pub u16: Vec<u16>,
}

pub fn read_npy(relative: &str) -> Npy {
    let path = fixture(relative);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert_eq!(
        &bytes[..6],
        b"\x93NUMPY",
        "{}: not an .npy file",
        path.display()
    );
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    let data = &bytes[10 + header_len..];
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    assert!(
        header.contains("'fortran_order': False"),
        "{}: C order expected",
        path.display()
    );
    let mut npy = Npy {
        shape,
        f32: Vec::new(),
        u16: Vec::new(),
    };
    if header.contains("'<f4'") {
        npy.f32 = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
    } else if header.contains("'<u2'") {
        npy.u16 = data
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
    } else {
        panic!("{}: unsupported dtype in header {header}", path.display());
    }
    npy
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
