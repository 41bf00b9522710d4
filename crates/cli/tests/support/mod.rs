//! Running the `nanochat` binary in tests: with a chosen NANOCHAT_BASE_DIR (so nothing from the
//! user's home leaks in) and text on stdin; checking success or a clean failure (no panic).
#![allow(dead_code)]

pub mod server;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `nanochat ARGS` with no input.
pub fn nanochat(args: &[&str], base_dir: &Path) -> Output {
    nanochat_stdin(args, base_dir, "")
}

/// Runs `nanochat ARGS` with `stdin` as its input.
pub fn nanochat_stdin(args: &[&str], base_dir: &Path, stdin: &str) -> Output {
    nanochat_env(args, base_dir, &[], stdin)
}

/// Runs `nanochat ARGS` with extra environment variables and `stdin` as its input.
pub fn nanochat_env(args: &[&str], base_dir: &Path, env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nanochat"))
        .args(args)
        .env("NANOCHAT_BASE_DIR", base_dir)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nanochat");
    // The command may exit (on a bad argument) before reading its input: ignore a broken pipe.
    let _ = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes());
    child.wait_with_output().expect("wait for nanochat")
}

/// Standard output of a run that must have succeeded.
pub fn success(out: &Output) -> String {
    assert!(
        out.status.success(),
        "nanochat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

/// Standard error of a run that must have failed cleanly.
pub fn failure(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !err.contains("panicked"),
        "a bad input must not panic: {err}"
    );
    err
}
