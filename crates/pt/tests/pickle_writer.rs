//! The pickle writer against bytes made by CPython 3.11's C pickler: a corpus written by
//! `scripts/cpython_pickle_cases.py --small` (parsed, then re-pickled), values built in
//! Rust, identity/memo rules, framing of large payloads, and the writer's errors.

use std::path::PathBuf;

use nanochat_pt::{dumps, parse, Object, PickleWriteError, Value};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/cpython_pickles")
}

fn corpus_file(name: &str) -> Vec<u8> {
    let path = corpus_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn cpython_corpus_round_trips_byte_identical() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(corpus_dir()).expect("corpus folder") {
        let path = entry.expect("corpus entry").path();
        let original = std::fs::read(&path).expect("corpus file");
        let protocol = original[1];
        let value = parse(&original).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        match dumps(&value, protocol) {
            Ok(rewritten) if rewritten == original => {}
            Ok(_) => failures.push(format!("{}: bytes differ", path.display())),
            Err(error) => failures.push(format!("{}: {error}", path.display())),
        }
        checked += 1;
    }
    assert!(checked >= 80, "only {checked} corpus files found");
    assert!(failures.is_empty(), "{failures:#?}");
}

fn string_keyed_dict(count: usize) -> Vec<(Value, Value)> {
    (0..count)
        .map(|index| (Value::str(&format!("k{index}")), Value::Int(index as i64)))
        .collect()
}

#[test]
fn dict_batches_match_cpython_around_multiples_of_1000() {
    for count in [0, 1, 2, 3, 999, 1000, 1001] {
        let value = Value::dict(string_keyed_dict(count));
        for protocol in [2, 4] {
            let expected = corpus_file(&format!("dict_str_{count}.p{protocol}.pkl"));
            assert_eq!(
                dumps(&value, protocol).expect("dumps"),
                expected,
                "dict of {count}, protocol {protocol}"
            );
        }
    }
}

#[test]
fn ordered_dict_items_use_the_iterator_batching() {
    for count in [0, 1, 2, 3, 999, 1000, 1001] {
        let items = (0..count)
            .map(|index| (Value::str(&format!("key{index}")), Value::Int(index as i64)))
            .collect();
        let ordered = Object::reduce(Value::global("collections", "OrderedDict"), Vec::new())
            .with_dict_items(items);
        let expected = corpus_file(&format!("ordereddict_{count}.p2.pkl"));
        assert_eq!(
            dumps(&Value::object(ordered), 2).expect("dumps"),
            expected,
            "OrderedDict of {count}"
        );
    }
}

#[test]
fn integers_use_cpythons_opcodes() {
    let numbers = [
        1i64 << 31,
        -(1 << 31),
        -(1 << 31) - 1,
        255,
        256,
        65535,
        65536,
        -1,
        i64::MIN,
    ];
    let value = Value::list(numbers.iter().map(|&number| Value::Int(number)).collect());
    let bytes = dumps(&value, 2).expect("dumps");
    // From `pickle.dumps([2**31, -2**31, -2**31-1, 255, 256, 65535, 65536, -1, -2**63], 2)`.
    let expected = "80025d7100288a0500000080004a000000808a05ffffff7fff4bff4d00014dffff4a000001004affffffff8a080000000000000080652e";
    assert_eq!(hex(&bytes), expected);
}

#[test]
fn identity_decides_memoization() {
    let shared = Value::str("ab");
    let value = Value::list(vec![shared.clone(), shared, Value::str("ab")]);
    // The first two are one object (BINGET), the third is another string.
    assert_eq!(
        hex(&dumps(&value, 2).expect("dumps")),
        "80025d7100285802000000616271016801580200000061627102652e"
    );
    // Globals and small bytes are the same object whenever they are equal.
    let value = Value::list(vec![
        Value::bytes(b""),
        Value::bytes(b""),
        Value::global("m", "f"),
        Value::global("m", "f"),
    ]);
    let bytes = dumps(&value, 4).expect("dumps");
    // Same shape as `pickle.dumps([b'', b'', pickle.loads, pickle.loads], 4)`.
    assert_eq!(
        hex(&bytes),
        "80049516000000000000005d942843009468018c016d948c01669493946804652e"
    );
}

#[test]
fn large_payloads_are_written_outside_frames() {
    // `pickle.dumps(['x' * 70000, 'y'], 4)`: the 3-byte frame before the string gets no
    // FRAME header; the string is unframed; the rest is a new frame.
    let value = Value::list(vec![Value::str(&"x".repeat(70_000)), Value::str("y")]);
    let bytes = dumps(&value, 4).expect("dumps");
    assert_eq!(bytes.len(), 70_026);
    assert_eq!(hex(&bytes[..10]), "80045d94285870110100");
    assert_eq!(
        hex(&bytes[bytes.len() - 20..]),
        "78787878950700000000000000948c017994652e"
    );
}

#[test]
fn writer_errors() {
    assert!(matches!(
        dumps(&Value::None, 1),
        Err(PickleWriteError::UnsupportedProtocol(1))
    ));
    assert!(matches!(
        dumps(&Value::None, 6),
        Err(PickleWriteError::UnsupportedProtocol(6))
    ));
    assert!(matches!(
        dumps(&Value::bytes(b"ab"), 2),
        Err(PickleWriteError::BytesNeedProtocol3(2))
    ));
    let error = dumps(&Value::global("módulo", "f"), 2).expect_err("non-ASCII global");
    assert_eq!(error.to_string(), "global módulo.f cannot be written with protocol 2 (names must be ASCII and undotted below protocol 4)");
    assert!(dumps(&Value::global("módulo", "f"), 4).is_ok());
    let object = Object {
        callable: Value::global("m", "C"),
        args: Value::Int(1),
        construction: nanochat_pt::Construction::Reduce,
        state: None,
        list_items: Vec::new(),
        dict_items: Vec::new(),
    };
    assert!(matches!(
        dumps(&Value::object(object), 2),
        Err(PickleWriteError::ArgumentsNotTuple("int"))
    ));
    let mut deep = Value::None;
    for _ in 0..1100 {
        deep = Value::tuple(vec![deep]);
    }
    assert!(matches!(dumps(&deep, 4), Err(PickleWriteError::TooDeep)));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Parsing what the writer wrote and writing it again gives the same bytes, also for
/// inputs the fuzzer found (e.g. a list shared by two parents freed at different times).
#[test]
fn rewriting_parsed_values_is_a_fixed_point() {
    let folders = [
        corpus_dir(),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz_regressions"),
    ];
    let mut checked = 0;
    for folder in folders {
        for entry in std::fs::read_dir(&folder).expect("folder") {
            let path = entry.expect("entry").path();
            let value = parse(&std::fs::read(&path).expect("file")).expect("parses");
            let written = dumps(&value, 4).expect("dumps");
            let rewritten = dumps(&parse(&written).expect("reparse"), 4).expect("dumps again");
            assert!(
                rewritten == written,
                "{}: not a fixed point",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 80);
}
