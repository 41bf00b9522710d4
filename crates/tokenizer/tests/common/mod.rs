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
