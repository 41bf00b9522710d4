//! Development check against CPython: parses every `*.pkl` in a folder and pickles the
//! result again with the file's protocol; prints each file whose bytes differ. Pair it
//! with `scripts/cpython_pickle_cases.py`, which writes such a folder.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(folder) = std::env::args().nth(1) else {
        eprintln!("usage: pickle_roundtrip <folder of .pkl files>");
        return ExitCode::FAILURE;
    };
    let mut paths: Vec<_> = match std::fs::read_dir(&folder) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .collect(),
        Err(error) => {
            eprintln!("{folder}: {error}");
            return ExitCode::FAILURE;
        }
    };
    paths.retain(|path| path.extension().is_some_and(|extension| extension == "pkl"));
    paths.sort();
    let (mut passed, mut failed) = (0, 0);
    for path in &paths {
        match roundtrip(path) {
            Ok(()) => passed += 1,
            Err(message) => {
                failed += 1;
                println!("{}: {message}", path.display());
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn roundtrip(path: &std::path::Path) -> Result<(), String> {
    let original = std::fs::read(path).map_err(|error| error.to_string())?;
    let protocol = match original.as_slice() {
        [0x80, protocol, ..] => *protocol,
        _ => return Err("no PROTO opcode".to_owned()),
    };
    let value = nanochat_pt::parse(&original).map_err(|error| format!("parse: {error}"))?;
    let rewritten =
        nanochat_pt::dumps(&value, protocol).map_err(|error| format!("dumps: {error}"))?;
    if rewritten == original {
        return Ok(());
    }
    let first_difference = original
        .iter()
        .zip(&rewritten)
        .position(|(a, b)| a != b)
        .unwrap_or(original.len().min(rewritten.len()));
    Err(format!(
        "differs at byte {first_difference} (lengths {} vs {}); original {:02x?}, ours {:02x?}",
        original.len(),
        rewritten.len(),
        &original[first_difference.saturating_sub(8)..(first_difference + 8).min(original.len())],
        &rewritten[first_difference.saturating_sub(8)..(first_difference + 8).min(rewritten.len())],
    ))
}
