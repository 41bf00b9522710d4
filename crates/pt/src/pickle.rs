//! A pickle reader (protocols 0–5, binary opcodes) for what torch checkpoints and tiktoken
//! encodings contain: no code runs, globals are returned by name, `REDUCE`/`NEWOBJ`
//! results become [`Object`](crate::Object)s and persistent ids stay symbolic.
//!
//! It mirrors CPython's `_pickle.c` unpickler: the same stack, MARK and memo rules
//! (operations never pop below the topmost MARK), `MEMOIZE` numbering by memo size, and
//! the same treatment of frames (a length check; frames carry no meaning). Malformed
//! input gives a [`PickleError`] naming the opcode and its offset, never a panic.
//!
//! Resources stay linear in the input: memo indices live in a map (a 5-byte
//! `LONG_BINPUT 0xffffffff` costs nothing), objects fetched from the memo stay shared
//! ([`Value`] is `Rc`-based, so `BINGET`ting a big container a million times is cheap),
//! and nesting is capped at [`MAX_DEPTH`] (deeper input is an error, not a stack
//! overflow). The worst case, a pickle of nothing but one-byte `EMPTY_LIST`s, peaks at
//! about 150 bytes per input byte, roughly twice what CPython's own unpickler needs.

use std::collections::HashMap;
use std::rc::Rc;

use crate::long_int::int_from_twos_complement;
use crate::opcodes as op;
pub use crate::pickle_error::{PickleError, HIGHEST_PROTOCOL};
pub use crate::pickle_graph::MAX_DEPTH;
use crate::pickle_graph::{
    Composite, ConstructionNode, FreezeError, Freezer, Graph, Node, ObjectNode,
};
use crate::value::{Global, Value};

/// Reads one pickle and returns the object it describes. Bytes after `STOP` are ignored,
/// as `pickle.loads` does.
pub fn parse(bytes: &[u8]) -> Result<Value, PickleError> {
    Machine::new(bytes).run()
}

/// The unpickler state: input cursor, stack, marks (stack heights) and memo.
struct Machine<'a> {
    input: &'a [u8],
    position: usize,
    /// Offset and byte of the opcode being executed, for error messages.
    offset: usize,
    opcode: u8,
    stack: Vec<Node>,
    marks: Vec<usize>,
    memo: HashMap<u32, Node>,
    graph: Graph,
    /// The empty tuple, a singleton as in CPython.
    empty_tuple: Value,
}

impl<'a> Machine<'a> {
    fn new(input: &'a [u8]) -> Self {
        Machine {
            input,
            position: 0,
            offset: 0,
            opcode: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            graph: Graph::default(),
            empty_tuple: Value::Tuple(Rc::from(Vec::new())),
        }
    }

    fn run(mut self) -> Result<Value, PickleError> {
        while self.position < self.input.len() {
            self.offset = self.position;
            self.opcode = self.input[self.position];
            self.position += 1;
            if self.opcode == op::STOP {
                let result = self.pop()?;
                // Only references inside the result remain, so the freezer can tell
                // shared nodes by their reference counts.
                self.stack.clear();
                self.memo.clear();
                return Freezer::default()
                    .freeze(&result)
                    .map_err(|error| match error {
                        FreezeError::TooDeep => PickleError::TooDeep,
                        FreezeError::Recursive => PickleError::Recursive,
                    });
            }
            self.step()?;
        }
        Err(PickleError::MissingStop {
            offset: self.input.len(),
        })
    }

    /// Executes `self.opcode` (everything but STOP).
    fn step(&mut self) -> Result<(), PickleError> {
        match self.opcode {
            op::PROTO => {
                let protocol = self.take(1)?[0];
                if protocol > HIGHEST_PROTOCOL {
                    return Err(PickleError::UnsupportedProtocol {
                        offset: self.offset,
                        protocol,
                    });
                }
            }
            op::FRAME => {
                let length = self.take_u64()?;
                let available = self.input.len() - self.position;
                if length > available as u64 {
                    return Err(self.truncated(length, available));
                }
            }
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => {
                if self.stack.len() > self.fence() {
                    self.stack.pop();
                } else if self.marks.pop().is_none() {
                    return Err(self.underflow());
                }
            }
            op::POP_MARK => {
                self.pop_to_mark()?;
            }
            op::DUP => {
                let top = self.top()?.clone();
                self.stack.push(top);
            }
            op::NONE => self.push_atom(Value::None),
            op::NEWTRUE => self.push_atom(Value::Bool(true)),
            op::NEWFALSE => self.push_atom(Value::Bool(false)),
            op::BININT => {
                let raw = self.take_array::<4>()?;
                self.push_atom(Value::Int(i64::from(i32::from_le_bytes(raw))));
            }
            op::BININT1 => {
                let raw = self.take(1)?[0];
                self.push_atom(Value::Int(i64::from(raw)));
            }
            op::BININT2 => {
                let raw = self.take_array::<2>()?;
                self.push_atom(Value::Int(i64::from(u16::from_le_bytes(raw))));
            }
            op::LONG1 => {
                let length = u64::from(self.take(1)?[0]);
                let digits = self.take_len(length)?;
                self.push_atom(int_from_twos_complement(digits));
            }
            op::LONG4 => {
                let length = i32::from_le_bytes(self.take_array::<4>()?);
                let Ok(length) = u64::try_from(length) else {
                    return Err(self.invalid(format!("negative byte count {length}")));
                };
                let digits = self.take_len(length)?;
                self.push_atom(int_from_twos_complement(digits));
            }
            op::BINFLOAT => {
                let raw = self.take_array::<8>()?;
                self.push_atom(Value::Float(f64::from_be_bytes(raw)));
            }
            op::SHORT_BINUNICODE | op::BINUNICODE | op::BINUNICODE8 => {
                let length = self.take_length_prefix()?;
                let raw = self.take_len(length)?;
                let text = std::str::from_utf8(raw).map_err(|_| PickleError::InvalidUtf8 {
                    offset: self.offset,
                    opcode: self.opcode,
                })?;
                self.push_atom(Value::Str(Rc::from(text)));
            }
            op::SHORT_BINBYTES | op::BINBYTES | op::BINBYTES8 => {
                let length = self.take_length_prefix()?;
                let raw = self.take_len(length)?;
                self.push_atom(Value::Bytes(Rc::from(raw)));
            }
            op::EMPTY_TUPLE => self.push_atom(self.empty_tuple.clone()),
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let count = usize::from(self.opcode - op::TUPLE1) + 1;
                if self.stack.len() < self.fence() + count {
                    return Err(self.underflow());
                }
                let items = self.stack.split_off(self.stack.len() - count);
                self.push_tuple(items);
            }
            op::TUPLE => {
                let items = self.pop_to_mark()?;
                self.push_tuple(items);
            }
            op::EMPTY_LIST => self.push_composite(Composite::List(Vec::new())),
            op::LIST => {
                let items = self.pop_to_mark()?;
                self.push_composite(Composite::List(items));
            }
            op::EMPTY_DICT => self.push_composite(Composite::Dict(Vec::new())),
            op::DICT => {
                let items = self.pop_to_mark()?;
                let pairs = self.pairs(items)?;
                self.push_composite(Composite::Dict(pairs));
            }
            op::APPEND => {
                let item = self.pop()?;
                self.append_to_top(vec![item])?;
            }
            op::APPENDS => {
                let items = self.pop_to_mark()?;
                self.append_to_top(items)?;
            }
            op::SETITEM => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.set_items_on_top(vec![(key, value)])?;
            }
            op::SETITEMS => {
                let items = self.pop_to_mark()?;
                let pairs = self.pairs(items)?;
                self.set_items_on_top(pairs)?;
            }
            op::GLOBAL => {
                let module = self.take_line()?;
                let name = self.take_line()?;
                self.push_atom(Value::Global(Rc::new(Global { module, name })));
            }
            op::STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Some(module), Some(name)) = (module.as_str(), name.as_str()) else {
                    let found = format!("{} and {}", module.type_name(), name.type_name());
                    return Err(self.unexpected("two strings (module and name)", found));
                };
                let global = Global {
                    module: module.to_owned(),
                    name: name.to_owned(),
                };
                self.push_atom(Value::Global(Rc::new(global)));
            }
            op::REDUCE => {
                let args = self.pop_tuple()?;
                let callable = self.pop()?;
                self.push_object(callable, args, ConstructionNode::Reduce);
            }
            op::NEWOBJ => {
                let args = self.pop_tuple()?;
                let class = self.pop()?;
                self.push_object(class, args, ConstructionNode::NewObj);
            }
            op::NEWOBJ_EX => {
                let kwargs = self.pop()?;
                let args = self.pop_tuple()?;
                let class = self.pop()?;
                self.push_object(class, args, ConstructionNode::NewObjEx { kwargs });
            }
            op::BUILD => {
                let state = self.pop()?;
                self.set_state_on_top(state)?;
            }
            op::BINPERSID => match self.pop()? {
                Node::Atom(pid) if is_shallow(&pid) => {
                    self.push_atom(Value::PersistentId(Rc::new(pid)))
                }
                pid => self.push_composite(Composite::PersistentId(pid)),
            },
            op::BINPUT => {
                let index = u32::from(self.take(1)?[0]);
                self.memo_store(index)?;
            }
            op::LONG_BINPUT => {
                let index = u32::from_le_bytes(self.take_array::<4>()?);
                self.memo_store(index)?;
            }
            op::MEMOIZE => {
                let index = u32::try_from(self.memo.len())
                    .map_err(|_| self.invalid("memo is full".to_owned()))?;
                self.memo_store(index)?;
            }
            op::BINGET => {
                let index = u32::from(self.take(1)?[0]);
                self.memo_fetch(index)?;
            }
            op::LONG_BINGET => {
                let index = u32::from_le_bytes(self.take_array::<4>()?);
                self.memo_fetch(index)?;
            }
            _ => {
                return Err(PickleError::UnsupportedOpcode {
                    offset: self.offset,
                    opcode: self.opcode,
                })
            }
        }
        Ok(())
    }

    // --- input ---------------------------------------------------------------------

    fn truncated(&self, needed: u64, available: usize) -> PickleError {
        PickleError::Truncated {
            offset: self.offset,
            opcode: self.opcode,
            needed,
            available,
        }
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], PickleError> {
        self.take_len(count as u64)
    }

    fn take_len(&mut self, count: u64) -> Result<&'a [u8], PickleError> {
        let available = self.input.len() - self.position;
        if count > available as u64 {
            return Err(self.truncated(count, available));
        }
        let start = self.position;
        self.position += count as usize;
        Ok(&self.input[start..self.position])
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn take_u64(&mut self) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(self.take_array::<8>()?))
    }

    /// The length prefix of a string or bytes opcode: 1, 4 or 8 bytes.
    fn take_length_prefix(&mut self) -> Result<u64, PickleError> {
        Ok(match self.opcode {
            op::SHORT_BINUNICODE | op::SHORT_BINBYTES => u64::from(self.take(1)?[0]),
            op::BINUNICODE | op::BINBYTES => u64::from(u32::from_le_bytes(self.take_array::<4>()?)),
            _ => self.take_u64()?,
        })
    }

    /// A `\n`-terminated UTF-8 line (the operands of `GLOBAL`).
    fn take_line(&mut self) -> Result<String, PickleError> {
        let rest = &self.input[self.position..];
        let Some(length) = rest.iter().position(|&byte| byte == b'\n') else {
            return Err(self.truncated(rest.len() as u64 + 1, rest.len()));
        };
        self.position += length + 1;
        match std::str::from_utf8(&rest[..length]) {
            Ok(line) => Ok(line.to_owned()),
            Err(_) => Err(PickleError::InvalidUtf8 {
                offset: self.offset,
                opcode: self.opcode,
            }),
        }
    }

    // --- stack ---------------------------------------------------------------------

    fn underflow(&self) -> PickleError {
        PickleError::StackUnderflow {
            offset: self.offset,
            opcode: self.opcode,
        }
    }

    fn unexpected(&self, expected: &'static str, found: String) -> PickleError {
        PickleError::UnexpectedType {
            offset: self.offset,
            opcode: self.opcode,
            expected,
            found,
        }
    }

    fn invalid(&self, detail: String) -> PickleError {
        PickleError::Invalid {
            offset: self.offset,
            opcode: self.opcode,
            detail,
        }
    }

    /// Items below the topmost MARK are out of reach, as in CPython.
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Node, PickleError> {
        if self.stack.len() <= self.fence() {
            return Err(self.underflow());
        }
        self.stack.pop().ok_or_else(|| self.underflow())
    }

    fn top(&self) -> Result<&Node, PickleError> {
        if self.stack.len() <= self.fence() {
            return Err(self.underflow());
        }
        self.stack.last().ok_or_else(|| self.underflow())
    }

    fn pop_to_mark(&mut self) -> Result<Vec<Node>, PickleError> {
        let Some(mark) = self.marks.pop() else {
            return Err(PickleError::MissingMark {
                offset: self.offset,
                opcode: self.opcode,
            });
        };
        if mark == 0 {
            return Ok(std::mem::take(&mut self.stack));
        }
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn pop_tuple(&mut self) -> Result<Node, PickleError> {
        let args = self.pop()?;
        if !args.is_tuple() {
            return Err(self.unexpected("an argument tuple", args.type_name()));
        }
        Ok(args)
    }

    fn pairs(&self, items: Vec<Node>) -> Result<Vec<(Node, Node)>, PickleError> {
        if items.len() % 2 == 1 {
            return Err(self.invalid(format!(
                "odd number of items ({}) for key/value pairs",
                items.len()
            )));
        }
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut items = items.into_iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            pairs.push((key, value));
        }
        Ok(pairs)
    }

    fn push_atom(&mut self, value: Value) {
        self.stack.push(Node::Atom(value));
    }

    fn push_composite(&mut self, composite: Composite) {
        let node = self.graph.add(composite);
        self.stack.push(node);
    }

    /// A tuple of scalars is kept as a ready [`Value`] (cheaper than a graph node);
    /// anything nested deeper stays in the graph, where nesting depth is checked.
    fn push_tuple(&mut self, items: Vec<Node>) {
        if items
            .iter()
            .all(|item| matches!(item, Node::Atom(value) if is_scalar(value)))
        {
            let values: Vec<Value> = items
                .into_iter()
                .filter_map(|item| match item {
                    Node::Atom(value) => Some(value),
                    Node::Shared(_) => None,
                })
                .collect();
            self.push_atom(Value::Tuple(Rc::from(values)));
        } else {
            self.push_composite(Composite::Tuple(items));
        }
    }

    fn push_object(&mut self, callable: Node, args: Node, construction: ConstructionNode) {
        self.push_composite(Composite::Object(Box::new(ObjectNode {
            callable,
            args,
            construction,
            state: None,
            list_items: Vec::new(),
            dict_items: Vec::new(),
        })));
    }

    /// `APPEND(S)`: extends the list (or list-like object) now on top of the stack.
    fn append_to_top(&mut self, items: Vec<Node>) -> Result<(), PickleError> {
        let target = self.top()?.clone();
        if let Node::Shared(shared) = &target {
            match &mut *shared.borrow_mut() {
                Composite::List(list) => {
                    list.extend(items);
                    return Ok(());
                }
                Composite::Object(object) => {
                    object.list_items.extend(items);
                    return Ok(());
                }
                _ => {}
            }
        }
        Err(self.unexpected("a list", target.type_name()))
    }

    /// `SETITEM(S)`: adds pairs to the dict (or dict-like object) now on top of the stack.
    fn set_items_on_top(&mut self, pairs: Vec<(Node, Node)>) -> Result<(), PickleError> {
        let target = self.top()?.clone();
        if let Node::Shared(shared) = &target {
            match &mut *shared.borrow_mut() {
                Composite::Dict(dict) => {
                    dict.extend(pairs);
                    return Ok(());
                }
                Composite::Object(object) => {
                    object.dict_items.extend(pairs);
                    return Ok(());
                }
                _ => {}
            }
        }
        Err(self.unexpected("a dict", target.type_name()))
    }

    /// `BUILD`: gives the object now on top of the stack its state.
    fn set_state_on_top(&mut self, state: Node) -> Result<(), PickleError> {
        let target = self.top()?.clone();
        if let Node::Shared(shared) = &target {
            if let Composite::Object(object) = &mut *shared.borrow_mut() {
                object.state = Some(state);
                return Ok(());
            }
        }
        Err(self.unexpected("an object", target.type_name()))
    }

    // --- memo ----------------------------------------------------------------------

    fn memo_store(&mut self, index: u32) -> Result<(), PickleError> {
        let top = self.top()?.clone();
        self.memo.insert(index, top);
        Ok(())
    }

    fn memo_fetch(&mut self, index: u32) -> Result<(), PickleError> {
        let Some(node) = self.memo.get(&index) else {
            return Err(PickleError::MissingMemo {
                offset: self.offset,
                opcode: self.opcode,
                index: u64::from(index),
            });
        };
        let node = node.clone();
        self.stack.push(node);
        Ok(())
    }
}

/// Whether a value holds no other values.
fn is_scalar(value: &Value) -> bool {
    match value {
        Value::Tuple(items) => items.is_empty(),
        Value::List(_) | Value::Dict(_) | Value::Object(_) | Value::PersistentId(_) => false,
        _ => true,
    }
}

/// A scalar or a tuple of scalars: what may be wrapped outside the graph without
/// nesting becoming unbounded.
fn is_shallow(value: &Value) -> bool {
    match value {
        Value::Tuple(items) => items.iter().all(is_scalar),
        other => is_scalar(other),
    }
}
