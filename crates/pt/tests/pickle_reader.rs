//! The pickle reader on hand-written pickles: every opcode it supports, sharing through
//! the memo, and a clear error (with opcode and offset) for each kind of malformed input.

use std::rc::Rc;
use std::time::Instant;

use nanochat_pt::{parse, Construction, PickleError, Value};

fn parse_ok(bytes: &[u8]) -> Value {
    parse(bytes).unwrap_or_else(|error| panic!("{bytes:02x?} should parse: {error}"))
}

fn parse_err(bytes: &[u8]) -> PickleError {
    match parse(bytes) {
        Ok(value) => panic!("{bytes:02x?} should fail, parsed {value:?}"),
        Err(error) => error,
    }
}

#[test]
fn atoms() {
    assert_eq!(parse_ok(b"\x80\x02N."), Value::None);
    assert_eq!(parse_ok(b"\x80\x02\x88."), Value::Bool(true));
    assert_eq!(parse_ok(b"\x80\x02\x89."), Value::Bool(false));
    assert_eq!(parse_ok(b"K\xff."), Value::Int(255));
    assert_eq!(parse_ok(b"M\x00\x01."), Value::Int(256));
    assert_eq!(parse_ok(b"J\xff\xff\xff\xff."), Value::Int(-1));
    assert_eq!(parse_ok(b"\x8a\x00."), Value::Int(0));
    assert_eq!(
        parse_ok(b"\x8a\x05\x00\x00\x00\x80\x00."),
        Value::Int(1 << 31)
    );
    assert_eq!(
        parse_ok(b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80."),
        Value::Int(i64::MIN)
    );
    assert_eq!(
        parse_ok(b"\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\xff."),
        Value::Int(-1)
    );
    assert_eq!(
        parse_ok(b"\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00."),
        Value::BigInt(Rc::from(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0][..]))
    );
    assert_eq!(parse_ok(b"\x8b\x02\x00\x00\x00\x00\x01."), Value::Int(256));
    assert_eq!(
        parse_ok(b"G?\xf8\x00\x00\x00\x00\x00\x00."),
        Value::Float(1.5)
    );
    assert_eq!(parse_ok(b"X\x02\x00\x00\x00\xc3\xa9."), Value::str("é"));
    assert_eq!(parse_ok(b"\x8c\x03abc."), Value::str("abc"));
    assert_eq!(
        parse_ok(b"\x8d\x01\x00\x00\x00\x00\x00\x00\x00z."),
        Value::str("z")
    );
    assert_eq!(parse_ok(b"C\x02\x00\xff."), Value::bytes(&[0, 0xff]));
    assert_eq!(parse_ok(b"B\x01\x00\x00\x00\x07."), Value::bytes(&[7]));
    assert_eq!(
        parse_ok(b"\x8e\x00\x00\x00\x00\x00\x00\x00\x00."),
        Value::bytes(&[])
    );
    // Bytes after STOP are ignored, as by pickle.loads.
    assert_eq!(parse_ok(b"N.garbage"), Value::None);
}

#[test]
fn containers() {
    let ints = |values: &[i64]| {
        values
            .iter()
            .map(|&number| Value::Int(number))
            .collect::<Vec<_>>()
    };
    assert_eq!(parse_ok(b").").as_tuple(), Some(&[][..]));
    assert_eq!(
        parse_ok(b"K\x01K\x02\x86.").as_tuple(),
        Some(&ints(&[1, 2])[..])
    );
    assert_eq!(
        parse_ok(b"(K\x01K\x02K\x03K\x04t.").as_tuple(),
        Some(&ints(&[1, 2, 3, 4])[..])
    );
    assert_eq!(
        parse_ok(b"]K\x01a(K\x02K\x03e.").as_list(),
        Some(&ints(&[1, 2, 3])[..])
    );
    assert_eq!(
        parse_ok(b"(K\x01K\x02l.").as_list(),
        Some(&ints(&[1, 2])[..])
    );
    let dict =
        parse_ok(b"}X\x01\x00\x00\x00aK\x01s(X\x01\x00\x00\x00bK\x02X\x01\x00\x00\x00cK\x03u.");
    assert_eq!(dict.dict_get("a"), Some(&Value::Int(1)));
    assert_eq!(dict.dict_get("c"), Some(&Value::Int(3)));
    assert_eq!(dict.as_dict().map(<[_]>::len), Some(3));
    let dict = parse_ok(b"(K\x01K\x02d.");
    assert_eq!(dict.as_dict(), Some(&[(Value::Int(1), Value::Int(2))][..]));
    // POP, POP_MARK and DUP.
    assert_eq!(parse_ok(b"K\x01K\x020."), Value::Int(1));
    assert_eq!(parse_ok(b"K\x01(K\x02K\x031."), Value::Int(1));
    assert_eq!(
        parse_ok(b"K\x012\x86.").as_tuple(),
        Some(&ints(&[1, 1])[..])
    );
}

#[test]
fn globals_objects_and_persistent_ids() {
    let global = parse_ok(b"ccollections\nOrderedDict\n.");
    assert_eq!(global.as_global(), Some(("collections", "OrderedDict")));
    let global = parse_ok(b"\x80\x04\x8c\x0dtiktoken.core\x94\x8c\x08Encoding\x94\x93.");
    assert_eq!(global.as_global(), Some(("tiktoken.core", "Encoding")));

    // OrderedDict() with items and a BUILD state.
    let ordered = parse_ok(
        b"ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00kK\x07u}X\x01\x00\x00\x00xK\x01sb.",
    );
    let object = ordered.as_object().expect("object");
    assert_eq!(object.construction, Construction::Reduce);
    assert_eq!(
        object.callable_global(),
        Some(("collections", "OrderedDict"))
    );
    assert_eq!(ordered.dict_get("k"), Some(&Value::Int(7)));
    assert_eq!(
        object.state.as_ref().and_then(|state| state.dict_get("x")),
        Some(&Value::Int(1))
    );

    let new_object = parse_ok(b"\x80\x02cargparse\nNamespace\n)\x81(K\x01e]b.");
    let object = new_object.as_object().expect("object");
    assert_eq!(object.construction, Construction::NewObj);
    assert_eq!(object.list_items, vec![Value::Int(1)]);
    assert_eq!(object.state, Some(Value::list(vec![])));

    let new_object_ex = parse_ok(b"\x80\x04cm\nC\n)}\x92.");
    let object = new_object_ex.as_object().expect("object");
    assert!(matches!(object.construction, Construction::NewObjEx { .. }));

    let pid = parse_ok(b"(X\x07\x00\x00\x00storageK\x00tQ.");
    let Value::PersistentId(inner) = pid else {
        panic!("expected a persistent id")
    };
    assert_eq!(inner.as_tuple().map(<[_]>::len), Some(2));
}

#[test]
fn memo_references_share_one_node() {
    // [l, l] where l = [1]: BINPUT, then BINGET.
    let value = parse_ok(b"\x80\x02](]q\x01K\x01ah\x01e.");
    let items = value.as_list().expect("list");
    let (Value::List(first), Value::List(second)) = (&items[0], &items[1]) else {
        panic!("lists")
    };
    assert!(Rc::ptr_eq(first, second));
    // A container filled after it was memoized is seen complete through the memo.
    let value =
        parse_ok(b"\x80\x04\x95\x0c\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02eh\x00\x86.");
    let items = value.as_tuple().expect("tuple");
    assert_eq!(items[0], items[1]);
    assert_eq!(items[0].as_list().map(<[_]>::len), Some(2));
    // LONG_BINPUT/LONG_BINGET with a huge index cost nothing.
    assert_eq!(
        parse_ok(b"Nr\xff\xff\xff\xff0j\xff\xff\xff\xff."),
        Value::None
    );
}

#[test]
fn repeated_references_to_a_big_container_stay_cheap() {
    // A 10,000-item list, then a list holding it 200,000 times: 400 KB of input.
    let mut bytes = b"\x80\x02](".to_vec();
    for _ in 0..10_000 {
        bytes.extend_from_slice(b"K\x01");
    }
    bytes.extend_from_slice(b"eq\x00(");
    for _ in 0..200_000 {
        bytes.extend_from_slice(b"h\x00");
    }
    bytes.extend_from_slice(b"l.");
    let started = Instant::now();
    let value = parse_ok(&bytes);
    let items = value.as_list().expect("list");
    assert_eq!(items.len(), 200_000);
    let (Value::List(first), Value::List(last)) = (&items[0], &items[199_999]) else {
        panic!("lists")
    };
    assert!(Rc::ptr_eq(first, last));
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn unknown_and_unsupported_opcodes_are_named_with_their_offset() {
    let error = parse_err(b"\x80\x02\xff.");
    assert!(matches!(
        error,
        PickleError::UnsupportedOpcode {
            offset: 2,
            opcode: 0xff
        }
    ));
    assert_eq!(
        error.to_string(),
        "unsupported pickle opcode 0xff at offset 2"
    );
    let error = parse_err(b"I1\n.");
    assert_eq!(
        error.to_string(),
        "unsupported pickle opcode INT (0x49) at offset 0"
    );
    let error = parse_err(b"\x80\x07N.");
    assert!(matches!(
        error,
        PickleError::UnsupportedProtocol {
            offset: 0,
            protocol: 7
        }
    ));
}

#[test]
fn truncated_input() {
    let error = parse_err(b"X\x05\x00\x00\x00ab");
    assert!(matches!(
        error,
        PickleError::Truncated {
            offset: 0,
            opcode: b'X',
            needed: 5,
            available: 2
        }
    ));
    assert!(
        error.to_string().contains("BINUNICODE (0x58) at offset 0"),
        "{error}"
    );
    assert!(matches!(
        parse_err(b"N"),
        PickleError::MissingStop { offset: 1 }
    ));
    assert!(matches!(
        parse_err(b""),
        PickleError::MissingStop { offset: 0 }
    ));
    assert!(matches!(
        parse_err(b"\x80\x02J\x01\x02"),
        PickleError::Truncated { offset: 2, .. }
    ));
    assert!(matches!(
        parse_err(b"cmodule\nname"),
        PickleError::Truncated { offset: 0, .. }
    ));
    // A length prefix far beyond the input is refused without allocating it.
    let error = parse_err(b"\x8d\x00\x00\x00\x00\x00\x00\x00\x10abc.");
    assert!(matches!(
        error,
        PickleError::Truncated {
            needed: 0x1000_0000_0000_0000,
            available: 4,
            ..
        }
    ));
    assert!(matches!(
        parse_err(b"\x95\xff\x00\x00\x00\x00\x00\x00\x00N."),
        PickleError::Truncated { .. }
    ));
}

#[test]
fn stack_mark_and_memo_errors() {
    assert!(matches!(
        parse_err(b"\x85."),
        PickleError::StackUnderflow {
            offset: 0,
            opcode: 0x85
        }
    ));
    assert!(matches!(
        parse_err(b"."),
        PickleError::StackUnderflow { offset: 0, .. }
    ));
    // Nothing below the topmost MARK can be popped.
    assert!(matches!(
        parse_err(b"N(\x85."),
        PickleError::StackUnderflow { offset: 2, .. }
    ));
    assert!(matches!(
        parse_err(b"](a."),
        PickleError::StackUnderflow { offset: 2, .. }
    ));
    assert!(matches!(
        parse_err(b"Nt."),
        PickleError::MissingMark {
            offset: 1,
            opcode: b't'
        }
    ));
    let error = parse_err(b"Nh\x05.");
    assert!(matches!(
        error,
        PickleError::MissingMemo {
            offset: 1,
            index: 5,
            ..
        }
    ));
    assert_eq!(
        error.to_string(),
        "BINGET (0x68) at offset 1: memo index 5 was never stored"
    );
    assert!(matches!(
        parse_err(b"q\x00."),
        PickleError::StackUnderflow { offset: 0, .. }
    ));
}

#[test]
fn type_errors() {
    let error = parse_err(b"}K\x01a.");
    assert_eq!(
        error.to_string(),
        "APPEND (0x61) at offset 3: expected a list, found dict"
    );
    assert!(matches!(
        parse_err(b"]K\x01K\x02s."),
        PickleError::UnexpectedType { offset: 5, .. }
    ));
    assert!(matches!(
        parse_err(b"]}b."),
        PickleError::UnexpectedType { opcode: b'b', .. }
    ));
    assert!(matches!(
        parse_err(b"cm\nf\nK\x01R."),
        PickleError::UnexpectedType { opcode: b'R', .. }
    ));
    assert!(matches!(
        parse_err(b"K\x01K\x02\x93."),
        PickleError::UnexpectedType { opcode: 0x93, .. }
    ));
    let error = parse_err(b"}(K\x01u.");
    assert!(
        matches!(error, PickleError::Invalid { offset: 4, .. }),
        "{error}"
    );
    assert!(matches!(
        parse_err(b"\x8b\xff\xff\xff\xff."),
        PickleError::Invalid { .. }
    ));
    assert!(matches!(
        parse_err(b"\x8c\x01\xff."),
        PickleError::InvalidUtf8 { offset: 0, .. }
    ));
    assert!(matches!(
        parse_err(b"c\xff\nx\n."),
        PickleError::InvalidUtf8 { offset: 0, .. }
    ));
}

#[test]
fn deep_nesting_and_cycles_are_refused() {
    // A million nested 1-tuples: refused, without exhausting the call stack.
    let mut bytes = b"N".to_vec();
    bytes.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    bytes.push(b'.');
    assert!(matches!(parse_err(&bytes), PickleError::TooDeep));
    // Nesting up to the limit is fine.
    let mut bytes = b"N".to_vec();
    bytes.extend(std::iter::repeat_n(0x85u8, nanochat_pt::MAX_DEPTH - 1));
    bytes.push(b'.');
    parse_ok(&bytes);
    // A million nested persistent ids, the same.
    let mut bytes = b"N".to_vec();
    bytes.extend(std::iter::repeat_n(b'Q', 1_000_000));
    bytes.push(b'.');
    assert!(matches!(parse_err(&bytes), PickleError::TooDeep));
    // A list that contains itself.
    assert!(matches!(
        parse_err(b"]q\x00h\x00a."),
        PickleError::Recursive
    ));
    // A million-deep chain that is never returned is dropped without recursion.
    let mut bytes = b"N".to_vec();
    bytes.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    bytes.extend_from_slice(b"0N.");
    assert_eq!(parse_ok(&bytes), Value::None);
}
