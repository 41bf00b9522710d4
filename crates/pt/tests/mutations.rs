//! Thousands of deterministic corruptions of the fixture files fed to the public entry
//! points (the same ones the `fuzz/` targets drive): every truncation, a byte flip at
//! every position, and random splices from a fixed seed. Errors are expected; a panic
//! (or a runaway allocation, which would abort) is a bug.

use std::panic::{catch_unwind, AssertUnwindSafe};

use nanochat_fixtures::read_fixture;
use nanochat_pt::{dumps, encoding_from_pickle, parse, TorchFile, Value};

/// xorshift64*: a small deterministic generator for the random mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, limit: usize) -> usize {
        (self.next() % limit.max(1) as u64) as usize
    }
}

fn exercise_pickle(bytes: &[u8]) {
    if let Ok(value) = parse(bytes) {
        let _ = value.describe();
        let _ = dumps(&value, 2);
        // Re-pickling what was parsed must be a fixed point.
        let written = dumps(&value, 4).expect("protocol 4 writes any parsed value");
        let reparsed = parse(&written).expect("the writer's output parses");
        assert!(
            dumps(&reparsed, 4).expect("re-pickle") == written,
            "re-pickling is not a fixed point"
        );
    }
    let _ = encoding_from_pickle(bytes);
}

fn exercise_torch(bytes: &[u8]) {
    let Ok(mut file) = TorchFile::from_bytes(bytes.to_vec(), "mutated.pt") else {
        return;
    };
    let mut tensors: Vec<_> = file
        .state_dict()
        .map(|entries| entries.into_iter().map(|(_, tensor)| tensor).collect())
        .unwrap_or_default();
    tensors.extend(file.single_tensor());
    for tensor in tensors {
        let _ = file.read_tensor_bytes(&tensor);
        let _ = file.read_f32(&tensor);
        let _ = file.read_i32(&tensor);
        let _ = file.storage_file_offset(&tensor.storage_key);
    }
}

/// Resolves every object in a parsed pickle as a tensor (through a valid file).
fn exercise_tensor_values(bytes: &[u8], file: &TorchFile<std::io::Cursor<Vec<u8>>>) {
    let Ok(root) = parse(bytes) else {
        return;
    };
    let _ = file.tensor(&root);
    if let Some(object) = root.as_object() {
        for (_, value) in &object.dict_items {
            let _ = file.tensor(value);
        }
    }
    let _ = file.tensor(&Value::None);
}

/// Runs `check` on every mutation; returns descriptions of those that panicked.
fn mutate_all(original: &[u8], seed: u64, splices: usize, check: &dyn Fn(&[u8])) -> Vec<String> {
    let mut panics = Vec::new();
    let mut run = |description: String, bytes: &[u8]| {
        if catch_unwind(AssertUnwindSafe(|| check(bytes))).is_err() {
            panics.push(description);
        }
    };
    for length in 0..original.len() {
        run(format!("truncated to {length}"), &original[..length]);
    }
    let mut flipped = original.to_vec();
    for position in 0..original.len() {
        for replacement in [
            original[position] ^ 0xff,
            original[position].wrapping_add(1),
        ] {
            flipped[position] = replacement;
            run(
                format!("byte {position} set to {replacement:#04x}"),
                &flipped,
            );
        }
        flipped[position] = original[position];
    }
    let mut rng = Rng(seed);
    for index in 0..splices {
        let mut mutated = original.to_vec();
        for _ in 0..1 + rng.below(4) {
            let start = rng.below(mutated.len());
            let length = rng.below(64).min(mutated.len() - start);
            let chunk = mutated[start..start + length].to_vec();
            let at = rng.below(mutated.len());
            let end = (at + length).min(mutated.len());
            let replacement: Vec<u8> = match rng.below(4) {
                0 => {
                    mutated.splice(at..at, chunk);
                    continue;
                }
                1 => Vec::new(),
                2 => chunk.into_iter().rev().collect(),
                _ => (0..length).map(|_| rng.next() as u8).collect(),
            };
            mutated.splice(at..end, replacement);
            if mutated.is_empty() {
                break;
            }
        }
        run(format!("splice #{index} (seed {seed})"), &mutated);
    }
    panics
}

#[test]
fn corrupted_tokenizer_pickles_never_panic() {
    let original = read_fixture("nanochat-2025/tokenizer/tokenizer.pkl");
    let panics = mutate_all(&original, 0x5eed_0001, 3000, &exercise_pickle);
    assert!(panics.is_empty(), "panicked on: {panics:?}");
}

#[test]
fn corrupted_checkpoint_pickles_never_panic() {
    let archive = read_fixture("nanochat-2025/chatsft_checkpoints/d3/model_000650.pt");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).expect("zip");
    let mut data_pkl = Vec::new();
    std::io::Read::read_to_end(
        &mut zip.by_name("model_000650/data.pkl").expect("data.pkl"),
        &mut data_pkl,
    )
    .expect("read");
    let holder = TorchFile::from_bytes(
        read_fixture("nanochat-2025/tokenizer/token_bytes.pt"),
        "holder.pt",
    )
    .expect("open");
    let panics = mutate_all(&data_pkl, 0x5eed_0002, 2000, &|bytes| {
        exercise_pickle(bytes);
        exercise_tensor_values(bytes, &holder);
    });
    assert!(panics.is_empty(), "panicked on: {panics:?}");
}

#[test]
fn corrupted_torch_files_never_panic() {
    let original = read_fixture("nanochat-2025/tokenizer/token_bytes.pt");
    let panics = mutate_all(&original, 0x5eed_0003, 3000, &exercise_torch);
    assert!(panics.is_empty(), "panicked on: {panics:?}");
}

#[test]
fn random_flips_in_the_large_tokenizer_never_panic() {
    let original = read_fixture("tokenizer-65k/tokenizer.pkl");
    let mut rng = Rng(0x5eed_0004);
    let mut mutated = original.clone();
    for _ in 0..20 {
        let position = rng.below(original.len());
        mutated[position] = rng.next() as u8;
        assert!(
            catch_unwind(AssertUnwindSafe(|| exercise_pickle(&mutated))).is_ok(),
            "panicked after flipping byte {position}"
        );
        mutated[position] = original[position];
    }
}
