//! A pickle writer that produces the bytes CPython 3.11's C pickler (`_pickle.c`) writes
//! for the same objects, protocols 2 to 5.
//!
//! Byte-identical output needs CPython's exact choices, reproduced here:
//! * ints: `BININT1`/`BININT2`/`BININT` inside the signed 32-bit range (chosen by which of
//!   the four little-endian bytes are zero, so negatives always take `BININT`), otherwise
//!   `LONG1`/`LONG4` with minimal two's complement bytes;
//! * memo: every str, bytes, non-empty tuple, list, dict, global and object is memoized
//!   right after it is written (`MEMOIZE` in protocol 4+, else `BINPUT`/`LONG_BINPUT`);
//!   a second occurrence of the *same* object becomes `BINGET`/`LONG_BINGET`. Identity is
//!   `Rc` identity of [`Value`] nodes, plus CPython's value-identical singletons: globals
//!   (one class object per `module.name`), the strings naming a global in protocol 4
//!   (interned), the empty string and bytes of length 0 or 1;
//! * batching: exact dicts/lists in `MARK … SETITEMS`/`APPENDS` batches of 1000, a single
//!   item as `SETITEM`/`APPEND`; an exact dict whose size is a multiple of 1000 gets a
//!   trailing empty `MARK SETITEMS` (a quirk of `batch_dict_exact`), while items set on an
//!   object (`OrderedDict`) go through `batch_dict`, which has no such batch;
//! * framing (protocol 4+): `PROTO` precedes the first frame; a frame is committed at the
//!   first `save()` that starts once it holds ≥ 64 KiB; str/bytes payloads ≥ 64 KiB are
//!   written outside frames; a frame of fewer than 4 bytes gets no `FRAME` header; `STOP`
//!   is inside the last frame. `pickle.dump` to a file and `pickle.dumps` agree.
//!
//! Not supported (an error, where CPython would do something else): `bytes` below
//! protocol 3 (CPython reduces them to `_codecs.encode`), dotted or non-ASCII global
//! names below protocol 4 (CPython uses `getattr` reductions or fails), and
//! `fix_imports` renaming of Python 3 module names in protocol 2 (the globals torch
//! writes — `torch`, `torch._utils`, `collections` — are not renamed by it).

use std::collections::HashMap;
use std::rc::Rc;

use crate::long_int::minimal_twos_complement;
use crate::opcodes as op;
use crate::value::{Construction, Global, Object, Value};

/// Items per `SETITEMS`/`APPENDS` batch (CPython's `BATCHSIZE`).
const BATCH_SIZE: usize = 1000;
/// Frames are committed once they reach this size (`FRAME_SIZE_TARGET`).
const FRAME_SIZE_TARGET: usize = 64 * 1024;
/// Frames shorter than this are written without a `FRAME` header (`FRAME_SIZE_MIN`).
const FRAME_SIZE_MIN: usize = 4;
/// `FRAME` opcode plus its 8-byte length.
const FRAME_HEADER_SIZE: usize = 9;
/// How deeply values may nest (CPython's default recursion limit).
const MAX_WRITE_DEPTH: usize = 1000;

/// Why a value cannot be written with the requested protocol.
#[derive(Debug, thiserror::Error)]
pub enum PickleWriteError {
    #[error("pickle protocol {0} is not supported (2 to 5 are)")]
    UnsupportedProtocol(u8),
    #[error("bytes objects need pickle protocol 3 or higher (got {0})")]
    BytesNeedProtocol3(u8),
    #[error("global {module}.{name} cannot be written with protocol {protocol} (names must be ASCII and undotted below protocol 4)")]
    UnsupportedGlobal {
        module: String,
        name: String,
        protocol: u8,
    },
    #[error("a {what} of {length} bytes needs pickle protocol 4 or higher")]
    TooLarge { what: &'static str, length: usize },
    #[error("NEWOBJ_EX objects need pickle protocol 4 or higher (got {0})")]
    NewObjExNeedsProtocol4(u8),
    #[error("the arguments of an object must be a tuple, found {0}")]
    ArgumentsNotTuple(&'static str),
    #[error("value nests deeper than {MAX_WRITE_DEPTH} levels")]
    TooDeep,
}

/// Pickles `value` with `protocol` (2–5) exactly as CPython's `pickle.dumps` would.
pub fn dumps(value: &Value, protocol: u8) -> Result<Vec<u8>, PickleWriteError> {
    if !(2..=5).contains(&protocol) {
        return Err(PickleWriteError::UnsupportedProtocol(protocol));
    }
    let mut pickler = Pickler {
        protocol,
        output: Vec::new(),
        framing: false,
        frame_start: None,
        memo: HashMap::new(),
    };
    pickler.write(&[op::PROTO, protocol]);
    pickler.framing = protocol >= 4;
    pickler.save(value, 0)?;
    pickler.write(&[op::STOP]);
    pickler.commit_frame();
    Ok(pickler.output)
}

/// What makes two objects "the same object" for the memo.
#[derive(Clone, PartialEq, Eq, Hash)]
enum MemoKey {
    /// A composite node or a string/bytes object, by `Rc` address.
    Node(usize),
    Global(String, String),
    /// A string naming a global (interned in CPython).
    InternedStr(String),
    EmptyStr,
    /// `b""` (None) or a one-byte `bytes` (Some).
    SmallBytes(Option<u8>),
}

struct Pickler {
    protocol: u8,
    output: Vec<u8>,
    framing: bool,
    /// Where the open frame's 9 reserved header bytes start.
    frame_start: Option<usize>,
    memo: HashMap<MemoKey, u32>,
}

fn address<T: ?Sized>(node: &Rc<T>) -> MemoKey {
    MemoKey::Node(Rc::as_ptr(node) as *const u8 as usize)
}

impl Pickler {
    // --- output and framing (`_Pickler_Write`, `_Pickler_CommitFrame`) -----------------

    fn write(&mut self, data: &[u8]) {
        if self.framing && self.frame_start.is_none() {
            self.frame_start = Some(self.output.len());
            self.output.extend_from_slice(&[0xfe; FRAME_HEADER_SIZE]);
        }
        self.output.extend_from_slice(data);
    }

    fn commit_frame(&mut self) {
        if !self.framing {
            return;
        }
        let Some(start) = self.frame_start.take() else {
            return;
        };
        let frame_length = self.output.len() - start - FRAME_HEADER_SIZE;
        if frame_length >= FRAME_SIZE_MIN {
            self.output[start] = op::FRAME;
            self.output[start + 1..start + FRAME_HEADER_SIZE]
                .copy_from_slice(&(frame_length as u64).to_le_bytes());
        } else {
            self.output.drain(start..start + FRAME_HEADER_SIZE);
        }
    }

    /// Called at the start of every `save()`, as `_Pickler_OpcodeBoundary`.
    fn opcode_boundary(&mut self) {
        if let (true, Some(start)) = (self.framing, self.frame_start) {
            if self.output.len() - start - FRAME_HEADER_SIZE >= FRAME_SIZE_TARGET {
                self.commit_frame();
            }
        }
    }

    /// A header plus a payload that bypasses framing when it is large (`_Pickler_write_bytes`).
    fn write_payload(&mut self, header: &[u8], payload: &[u8]) {
        let bypass = payload.len() >= FRAME_SIZE_TARGET;
        let framing = self.framing;
        if bypass {
            self.commit_frame();
            self.framing = false;
        }
        self.write(header);
        self.write(payload);
        self.framing = framing;
    }

    // --- memo (`memo_put`, `memo_get`) -------------------------------------------------

    fn memo_put(&mut self, key: MemoKey) {
        let index = self.memo.len() as u32;
        self.memo.insert(key, index);
        if self.protocol >= 4 {
            self.write(&[op::MEMOIZE]);
        } else if index < 256 {
            self.write(&[op::BINPUT, index as u8]);
        } else {
            let mut opcode = vec![op::LONG_BINPUT];
            opcode.extend_from_slice(&index.to_le_bytes());
            self.write(&opcode);
        }
    }

    /// Writes a memo fetch and returns true when `key` was memoized before.
    fn memo_get(&mut self, key: &MemoKey) -> bool {
        let Some(&index) = self.memo.get(key) else {
            return false;
        };
        if index < 256 {
            self.write(&[op::BINGET, index as u8]);
        } else {
            let mut opcode = vec![op::LONG_BINGET];
            opcode.extend_from_slice(&index.to_le_bytes());
            self.write(&opcode);
        }
        true
    }

    // --- save ------------------------------------------------------------------------

    fn save(&mut self, value: &Value, depth: usize) -> Result<(), PickleWriteError> {
        if depth > MAX_WRITE_DEPTH {
            return Err(PickleWriteError::TooDeep);
        }
        self.opcode_boundary();
        match value {
            Value::None => self.write(&[op::NONE]),
            Value::Bool(flag) => self.write(&[if *flag { op::NEWTRUE } else { op::NEWFALSE }]),
            Value::Int(number) => self.save_int(*number),
            Value::BigInt(digits) => self.save_long(minimal_twos_complement(digits)),
            Value::Float(number) => {
                let mut opcode = vec![op::BINFLOAT];
                opcode.extend_from_slice(&number.to_be_bytes());
                self.write(&opcode);
            }
            Value::Str(text) => {
                let key = if text.is_empty() {
                    MemoKey::EmptyStr
                } else {
                    address(text)
                };
                self.save_str(text, key)?;
            }
            Value::Bytes(data) => {
                let key = match data.len() {
                    0 => MemoKey::SmallBytes(None),
                    1 => MemoKey::SmallBytes(Some(data[0])),
                    _ => address(data),
                };
                if !self.memo_get(&key) {
                    self.save_bytes(data)?;
                    self.memo_put(key);
                }
            }
            Value::Tuple(items) => self.save_tuple(items, address(items), depth)?,
            Value::List(items) => {
                let key = address(items);
                if !self.memo_get(&key) {
                    self.write(&[op::EMPTY_LIST]);
                    self.memo_put(key);
                    self.batch_list_exact(items, depth)?;
                }
            }
            Value::Dict(items) => {
                let key = address(items);
                if !self.memo_get(&key) {
                    self.write(&[op::EMPTY_DICT]);
                    self.memo_put(key);
                    if !items.is_empty() {
                        self.batch_dict_exact(items, depth)?;
                    }
                }
            }
            Value::Global(global) => self.save_global(global)?,
            Value::Object(object) => {
                let key = address(object);
                if !self.memo_get(&key) {
                    self.save_reduce(object, key, depth)?;
                }
            }
            Value::PersistentId(pid) => {
                // `save_pers`: the pid is saved normally, the persistent object never memoized.
                self.save(pid, depth + 1)?;
                self.write(&[op::BINPERSID]);
            }
        }
        Ok(())
    }

    fn save_int(&mut self, number: i64) {
        if let Ok(small) = i32::try_from(number) {
            let bytes = small.to_le_bytes();
            if bytes[2] != 0 || bytes[3] != 0 {
                self.write(&[op::BININT, bytes[0], bytes[1], bytes[2], bytes[3]]);
            } else if bytes[1] != 0 {
                self.write(&[op::BININT2, bytes[0], bytes[1]]);
            } else {
                self.write(&[op::BININT1, bytes[0]]);
            }
        } else {
            let bytes = number.to_le_bytes();
            self.save_long(minimal_twos_complement(&bytes));
        }
    }

    fn save_long(&mut self, digits: &[u8]) {
        let mut opcode = if digits.len() < 256 {
            vec![op::LONG1, digits.len() as u8]
        } else {
            let mut header = vec![op::LONG4];
            header.extend_from_slice(&(digits.len() as u32).to_le_bytes());
            header
        };
        opcode.extend_from_slice(digits);
        self.write(&opcode);
    }

    fn save_str(&mut self, text: &str, key: MemoKey) -> Result<(), PickleWriteError> {
        if self.memo_get(&key) {
            return Ok(());
        }
        let data = text.as_bytes();
        let header = self.length_header(
            data.len(),
            op::SHORT_BINUNICODE,
            op::BINUNICODE,
            op::BINUNICODE8,
            "str",
        )?;
        self.write_payload(&header, data);
        self.memo_put(key);
        Ok(())
    }

    fn save_bytes(&mut self, data: &[u8]) -> Result<(), PickleWriteError> {
        if self.protocol < 3 {
            return Err(PickleWriteError::BytesNeedProtocol3(self.protocol));
        }
        let header = self.length_header(
            data.len(),
            op::SHORT_BINBYTES,
            op::BINBYTES,
            op::BINBYTES8,
            "bytes",
        )?;
        self.write_payload(&header, data);
        Ok(())
    }

    /// The opcode and length prefix CPython picks for a str or bytes payload.
    fn length_header(
        &self,
        length: usize,
        short: u8,
        long: u8,
        huge: u8,
        what: &'static str,
    ) -> Result<Vec<u8>, PickleWriteError> {
        let short_allowed = short == op::SHORT_BINBYTES || self.protocol >= 4;
        if length <= 0xff && short_allowed {
            Ok(vec![short, length as u8])
        } else if let Ok(length) = u32::try_from(length) {
            let mut header = vec![long];
            header.extend_from_slice(&length.to_le_bytes());
            Ok(header)
        } else if self.protocol >= 4 {
            let mut header = vec![huge];
            header.extend_from_slice(&(length as u64).to_le_bytes());
            Ok(header)
        } else {
            Err(PickleWriteError::TooLarge { what, length })
        }
    }

    fn save_tuple(
        &mut self,
        items: &[Value],
        key: MemoKey,
        depth: usize,
    ) -> Result<(), PickleWriteError> {
        if items.is_empty() {
            // The empty tuple is never memoized.
            self.write(&[op::EMPTY_TUPLE]);
            return Ok(());
        }
        if self.memo_get(&key) {
            return Ok(());
        }
        if items.len() <= 3 {
            for item in items {
                self.save(item, depth + 1)?;
            }
            self.write(&[[op::TUPLE1, op::TUPLE2, op::TUPLE3][items.len() - 1]]);
        } else {
            self.write(&[op::MARK]);
            for item in items {
                self.save(item, depth + 1)?;
            }
            self.write(&[op::TUPLE]);
        }
        self.memo_put(key);
        Ok(())
    }

    fn save_global(&mut self, global: &Global) -> Result<(), PickleWriteError> {
        let key = MemoKey::Global(global.module.clone(), global.name.clone());
        if self.memo_get(&key) {
            return Ok(());
        }
        if self.protocol >= 4 {
            for name in [&global.module, &global.name] {
                self.opcode_boundary();
                let name_key = if name.is_empty() {
                    MemoKey::EmptyStr
                } else {
                    MemoKey::InternedStr(name.clone())
                };
                self.save_str(name, name_key)?;
            }
            self.write(&[op::STACK_GLOBAL]);
        } else {
            let encodable = |name: &str| name.is_ascii() || self.protocol == 3;
            if !encodable(&global.module) || !encodable(&global.name) || global.name.contains('.') {
                return Err(PickleWriteError::UnsupportedGlobal {
                    module: global.module.clone(),
                    name: global.name.clone(),
                    protocol: self.protocol,
                });
            }
            let mut opcode = vec![op::GLOBAL];
            opcode.extend_from_slice(global.module.as_bytes());
            opcode.push(b'\n');
            opcode.extend_from_slice(global.name.as_bytes());
            opcode.push(b'\n');
            self.write(&opcode);
        }
        self.memo_put(key);
        Ok(())
    }

    /// `save_reduce`: constructor call, memo, then items and state.
    fn save_reduce(
        &mut self,
        object: &Object,
        key: MemoKey,
        depth: usize,
    ) -> Result<(), PickleWriteError> {
        if object.args.as_tuple().is_none() {
            return Err(PickleWriteError::ArgumentsNotTuple(object.args.type_name()));
        }
        self.save(&object.callable, depth + 1)?;
        self.save(&object.args, depth + 1)?;
        match &object.construction {
            Construction::Reduce => self.write(&[op::REDUCE]),
            Construction::NewObj => self.write(&[op::NEWOBJ]),
            Construction::NewObjEx { kwargs } => {
                if self.protocol < 4 {
                    return Err(PickleWriteError::NewObjExNeedsProtocol4(self.protocol));
                }
                self.save(kwargs, depth + 1)?;
                self.write(&[op::NEWOBJ_EX]);
            }
        }
        self.memo_put(key);
        if !object.list_items.is_empty() {
            self.batch_list(&object.list_items, depth)?;
        }
        if !object.dict_items.is_empty() {
            self.batch_dict(&object.dict_items, depth)?;
        }
        if let Some(state) = &object.state {
            self.save(state, depth + 1)?;
            self.write(&[op::BUILD]);
        }
        Ok(())
    }

    // --- batching --------------------------------------------------------------------

    /// `batch_list_exact` (a `list`; `items` is not empty).
    fn batch_list_exact(&mut self, items: &[Value], depth: usize) -> Result<(), PickleWriteError> {
        if items.len() == 1 {
            self.save(&items[0], depth + 1)?;
            self.write(&[op::APPEND]);
            return Ok(());
        }
        for batch in items.chunks(BATCH_SIZE) {
            self.write(&[op::MARK]);
            for item in batch {
                self.save(item, depth + 1)?;
            }
            self.write(&[op::APPENDS]);
        }
        Ok(())
    }

    /// `batch_dict_exact` (a `dict`; `items` is not empty).
    fn batch_dict_exact(
        &mut self,
        items: &[(Value, Value)],
        depth: usize,
    ) -> Result<(), PickleWriteError> {
        if items.len() == 1 {
            return self.save_pair_with(&items[0], op::SETITEM, depth);
        }
        let mut remaining = items;
        loop {
            let (batch, rest) = remaining.split_at(remaining.len().min(BATCH_SIZE));
            self.write(&[op::MARK]);
            for (key, value) in batch {
                self.save(key, depth + 1)?;
                self.save(value, depth + 1)?;
            }
            self.write(&[op::SETITEMS]);
            if batch.len() < BATCH_SIZE {
                return Ok(());
            }
            remaining = rest;
        }
    }

    /// `batch_list` (items appended to an object, from an iterator).
    fn batch_list(&mut self, items: &[Value], depth: usize) -> Result<(), PickleWriteError> {
        for batch in items.chunks(BATCH_SIZE) {
            if batch.len() == 1 {
                self.save(&batch[0], depth + 1)?;
                self.write(&[op::APPEND]);
            } else {
                self.write(&[op::MARK]);
                for item in batch {
                    self.save(item, depth + 1)?;
                }
                self.write(&[op::APPENDS]);
            }
        }
        Ok(())
    }

    /// `batch_dict` (items set on an object such as an `OrderedDict`, from an iterator).
    fn batch_dict(
        &mut self,
        items: &[(Value, Value)],
        depth: usize,
    ) -> Result<(), PickleWriteError> {
        for batch in items.chunks(BATCH_SIZE) {
            if batch.len() == 1 {
                self.save_pair_with(&batch[0], op::SETITEM, depth)?;
            } else {
                self.write(&[op::MARK]);
                for (key, value) in batch {
                    self.save(key, depth + 1)?;
                    self.save(value, depth + 1)?;
                }
                self.write(&[op::SETITEMS]);
            }
        }
        Ok(())
    }

    fn save_pair_with(
        &mut self,
        (key, value): &(Value, Value),
        opcode: u8,
        depth: usize,
    ) -> Result<(), PickleWriteError> {
        self.save(key, depth + 1)?;
        self.save(value, depth + 1)?;
        self.write(&[opcode]);
        Ok(())
    }
}
