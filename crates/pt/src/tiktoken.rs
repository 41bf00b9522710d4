//! `tokenizer.pkl`: a pickled `tiktoken.core.Encoding`, as nanochat saves it.
//!
//! `Encoding.__getstate__` returns the dict `{name, pat_str, mergeable_ranks,
//! special_tokens}`, so the pickle is `NEWOBJ(tiktoken.core.Encoding, ())` followed by
//! `BUILD` with that dict (see the reference §2.3). Reading checks that shape and reports
//! precisely what differs; writing rebuilds the same object graph and pickles it with
//! protocol 4, which gives the bytes `pickle.dump` writes under Python 3.8–3.13.

use std::collections::HashSet;
use std::rc::Rc;

use crate::pickle::{parse, PickleError};
use crate::pickle_writer::dumps;
use crate::value::{Object, Value};

const ENCODING_MODULE: &str = "tiktoken.core";
const ENCODING_CLASS: &str = "Encoding";

/// The state of a `tiktoken.Encoding`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TiktokenEncoding {
    pub name: String,
    pub pat_str: String,
    /// Token bytes and rank, in file (= dict insertion) order.
    pub mergeable_ranks: Vec<(Vec<u8>, u64)>,
    /// Special token text and id, in file order.
    pub special_tokens: Vec<(String, u64)>,
}

/// Why a tokenizer pickle is not a usable `tiktoken.Encoding`.
#[derive(Debug, thiserror::Error)]
pub enum TiktokenError {
    #[error("tokenizer pickle is unreadable: {0}")]
    Pickle(#[from] PickleError),
    #[error("tokenizer pickle holds {found}, not a {ENCODING_MODULE}.{ENCODING_CLASS}")]
    NotAnEncoding { found: String },
    #[error("tokenizer pickle refers to the registered encoding {0:?} by name; its ranks are not in the file")]
    RegisteredByName(String),
    #[error("tokenizer pickle: the Encoding state is {found}, expected a dict")]
    StateNotDict { found: String },
    #[error("tokenizer pickle: the Encoding state has no {0:?} entry")]
    MissingKey(&'static str),
    #[error("tokenizer pickle: {field} is {found}, expected {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: String,
    },
    #[error("tokenizer pickle: {field} contains the key {key} more than once")]
    DuplicateKey { field: &'static str, key: String },
}

/// Reads a pickled `tiktoken.core.Encoding` (what nanochat's `tokenizer.pkl` holds).
pub fn encoding_from_pickle(bytes: &[u8]) -> Result<TiktokenEncoding, TiktokenError> {
    let root = parse(bytes)?;
    let object = match &root {
        Value::Object(object)
            if object.callable_global() == Some((ENCODING_MODULE, ENCODING_CLASS)) =>
        {
            object
        }
        other => {
            return Err(TiktokenError::NotAnEncoding {
                found: other.describe(),
            })
        }
    };
    let state = match &object.state {
        Some(Value::Dict(state)) => state,
        Some(Value::Str(name)) => return Err(TiktokenError::RegisteredByName(name.to_string())),
        Some(other) => {
            return Err(TiktokenError::StateNotDict {
                found: other.describe(),
            })
        }
        None => {
            return Err(TiktokenError::StateNotDict {
                found: "nothing (no BUILD)".to_owned(),
            })
        }
    };
    let state_value = Value::Dict(Rc::clone(state));
    let entry = |key: &'static str| {
        state_value
            .dict_get(key)
            .ok_or(TiktokenError::MissingKey(key))
    };
    Ok(TiktokenEncoding {
        name: expect_str(entry("name")?, "name")?,
        pat_str: expect_str(entry("pat_str")?, "pat_str")?,
        mergeable_ranks: read_mergeable_ranks(entry("mergeable_ranks")?)?,
        special_tokens: read_special_tokens(entry("special_tokens")?)?,
    })
}

/// The bytes `pickle.dump(encoding, file)` writes for this encoding (protocol 4).
pub fn encoding_to_pickle(encoding: &TiktokenEncoding) -> Vec<u8> {
    let ranks = encoding
        .mergeable_ranks
        .iter()
        .map(|(token, rank)| (Value::bytes(token), int_value(*rank)))
        .collect();
    let specials = encoding
        .special_tokens
        .iter()
        .map(|(text, id)| (Value::str(text), int_value(*id)))
        .collect();
    let state = Value::dict(vec![
        (Value::str("name"), Value::str(&encoding.name)),
        (Value::str("pat_str"), Value::str(&encoding.pat_str)),
        (Value::str("mergeable_ranks"), Value::dict(ranks)),
        (Value::str("special_tokens"), Value::dict(specials)),
    ]);
    let class = Value::global(ENCODING_MODULE, ENCODING_CLASS);
    let root = Value::object(Object::new_obj(class, Vec::new()).with_state(state));
    match dumps(&root, 4) {
        Ok(bytes) => bytes,
        // Protocol 4 encodes str, bytes, int, dict, globals and objects of any size, and
        // this value nests four levels deep, so the writer has no error to report here.
        Err(error) => unreachable!("protocol 4 cannot fail on an Encoding: {error}"),
    }
}

fn int_value(number: u64) -> Value {
    match i64::try_from(number) {
        Ok(small) => Value::Int(small),
        Err(_) => {
            // Above i64::MAX: the unsigned bytes plus a zero sign byte.
            let mut digits = number.to_le_bytes().to_vec();
            digits.push(0);
            Value::BigInt(Rc::from(digits))
        }
    }
}

fn expect_str(value: &Value, field: &str) -> Result<String, TiktokenError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| TiktokenError::WrongType {
            field: field.to_owned(),
            expected: "a str",
            found: value.describe(),
        })
}

fn expect_dict<'v>(value: &'v Value, field: &str) -> Result<&'v [(Value, Value)], TiktokenError> {
    value.as_dict().ok_or_else(|| TiktokenError::WrongType {
        field: field.to_owned(),
        expected: "a dict",
        found: value.describe(),
    })
}

fn expect_id(value: &Value, field: String) -> Result<u64, TiktokenError> {
    match value {
        Value::Int(number) if *number >= 0 => Ok(*number as u64),
        Value::Int(number) => Err(TiktokenError::WrongType {
            field,
            expected: "a non-negative int",
            found: format!("int {number}"),
        }),
        other => Err(TiktokenError::WrongType {
            field,
            expected: "an int",
            found: other.describe(),
        }),
    }
}

fn read_mergeable_ranks(value: &Value) -> Result<Vec<(Vec<u8>, u64)>, TiktokenError> {
    let items = expect_dict(value, "mergeable_ranks")?;
    let mut seen_objects = HashSet::new();
    let mut seen_tokens = HashSet::new();
    let mut ranks = Vec::with_capacity(items.len());
    for (index, (key, rank)) in items.iter().enumerate() {
        let Value::Bytes(token) = key else {
            return Err(TiktokenError::WrongType {
                field: format!("mergeable_ranks key #{index}"),
                expected: "bytes",
                found: key.describe(),
            });
        };
        // A memo reference repeats an object without repeating its bytes in the file:
        // refuse it before copying, so a small file cannot expand into a huge table.
        let first_use = seen_objects.insert(Rc::as_ptr(token) as *const u8);
        if !first_use || !seen_tokens.insert(&token[..]) {
            return Err(TiktokenError::DuplicateKey {
                field: "mergeable_ranks",
                key: format!("{:?}", ByteString(token)),
            });
        }
        let rank = expect_id(rank, format!("mergeable_ranks[{:?}]", ByteString(token)))?;
        ranks.push((token.to_vec(), rank));
    }
    Ok(ranks)
}

fn read_special_tokens(value: &Value) -> Result<Vec<(String, u64)>, TiktokenError> {
    let items = expect_dict(value, "special_tokens")?;
    let mut seen_objects = HashSet::new();
    let mut seen_texts = HashSet::new();
    let mut specials = Vec::with_capacity(items.len());
    for (index, (key, id)) in items.iter().enumerate() {
        let Value::Str(text) = key else {
            return Err(TiktokenError::WrongType {
                field: format!("special_tokens key #{index}"),
                expected: "a str",
                found: key.describe(),
            });
        };
        let first_use = seen_objects.insert(Rc::as_ptr(text) as *const u8);
        if !first_use || !seen_texts.insert(&**text) {
            return Err(TiktokenError::DuplicateKey {
                field: "special_tokens",
                key: format!("{text:?}"),
            });
        }
        let id = expect_id(id, format!("special_tokens[{text:?}]"))?;
        specials.push((text.to_string(), id));
    }
    Ok(specials)
}

/// Formats bytes like Python's `b'...'` repr, for messages.
struct ByteString<'a>(&'a [u8]);

impl std::fmt::Debug for ByteString<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("b'")?;
        for &byte in self.0 {
            match byte {
                b'\\' | b'\'' => write!(formatter, "\\{}", byte as char)?,
                0x20..=0x7e => write!(formatter, "{}", byte as char)?,
                _ => write!(formatter, "\\x{byte:02x}")?,
            }
        }
        formatter.write_str("'")
    }
}
