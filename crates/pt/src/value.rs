//! The Python object model shared by the pickle reader and writer.
//!
//! A [`Value`] is an immutable tree whose composite nodes sit behind [`Rc`]. Cloning a
//! `Value` is cheap and *shares* the node, which is how object identity is expressed:
//! the reader gives every object that a pickle references twice (via its memo) one shared
//! node, and the writer memoizes by node identity exactly like CPython memoizes by `id()`.
//! So `Value::str("x")` twice gives two different Python strings, while cloning one
//! `Value` gives the same string twice (written once, then fetched with `BINGET`).
//!
//! Derived `PartialEq` and `Debug` follow every reference, so on a value that shares
//! nodes heavily (a hostile pickle can make one) they take time exponential in its
//! depth; code handling untrusted input walks values itself, as this crate does.

use std::rc::Rc;

/// A Python object as far as pickles of checkpoints and tokenizers need.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An `int` outside the `i64` range: minimal little-endian two's complement bytes.
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<[Value]>),
    List(Rc<[Value]>),
    /// A plain `dict`, in insertion order. Duplicate keys are kept as they appear.
    Dict(Rc<[(Value, Value)]>),
    /// A module-level class or function (`GLOBAL` / `STACK_GLOBAL`).
    Global(Rc<Global>),
    /// The result of `REDUCE`, `NEWOBJ` or `NEWOBJ_EX`, with whatever `BUILD`,
    /// `APPEND(S)` and `SETITEM(S)` did to it afterwards.
    Object(Rc<Object>),
    /// What `BINPERSID` received: the persistent id (for torch: `('storage', …)`).
    PersistentId(Rc<Value>),
}

/// `module.name` of a class or function.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Global {
    pub module: String,
    pub name: String,
}

/// How an [`Object`] was constructed.
#[derive(Clone, Debug, PartialEq)]
pub enum Construction {
    /// `callable(*args)` (`REDUCE`).
    Reduce,
    /// `cls.__new__(cls, *args)` (`NEWOBJ`); `callable` is the class.
    NewObj,
    /// `cls.__new__(cls, *args, **kwargs)` (`NEWOBJ_EX`, protocol 4+).
    NewObjEx { kwargs: Value },
}

/// An object built by calling something, e.g. `collections.OrderedDict()` or a tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub callable: Value,
    /// Always a tuple in pickles the reader accepts.
    pub args: Value,
    pub construction: Construction,
    /// The argument of `BUILD` (`__setstate__` / `__dict__` update), if any.
    pub state: Option<Value>,
    /// Items appended to the object (a list subclass), in order.
    pub list_items: Vec<Value>,
    /// Items set on the object (a dict subclass such as `OrderedDict`), in order.
    pub dict_items: Vec<(Value, Value)>,
}

impl Object {
    /// `callable(*args)` with no state and no items yet.
    pub fn reduce(callable: Value, args: Vec<Value>) -> Object {
        Object::new(callable, Value::tuple(args), Construction::Reduce)
    }

    /// `cls.__new__(cls, *args)` with no state and no items yet.
    pub fn new_obj(class: Value, args: Vec<Value>) -> Object {
        Object::new(class, Value::tuple(args), Construction::NewObj)
    }

    fn new(callable: Value, args: Value, construction: Construction) -> Object {
        Object {
            callable,
            args,
            construction,
            state: None,
            list_items: Vec::new(),
            dict_items: Vec::new(),
        }
    }

    pub fn with_state(mut self, state: Value) -> Object {
        self.state = Some(state);
        self
    }

    pub fn with_dict_items(mut self, items: Vec<(Value, Value)>) -> Object {
        self.dict_items = items;
        self
    }

    pub fn with_list_items(mut self, items: Vec<Value>) -> Object {
        self.list_items = items;
        self
    }

    /// The callable (or class) as `(module, name)` when it is a global.
    pub fn callable_global(&self) -> Option<(&str, &str)> {
        self.callable.as_global()
    }

    /// The positional arguments (empty when `args` is not a tuple).
    pub fn args_slice(&self) -> &[Value] {
        self.args.as_tuple().unwrap_or(&[])
    }
}

impl Value {
    pub fn str(text: &str) -> Value {
        Value::Str(Rc::from(text))
    }

    pub fn bytes(data: &[u8]) -> Value {
        Value::Bytes(Rc::from(data))
    }

    pub fn tuple(items: Vec<Value>) -> Value {
        Value::Tuple(Rc::from(items))
    }

    pub fn list(items: Vec<Value>) -> Value {
        Value::List(Rc::from(items))
    }

    pub fn dict(items: Vec<(Value, Value)>) -> Value {
        Value::Dict(Rc::from(items))
    }

    pub fn global(module: &str, name: &str) -> Value {
        Value::Global(Rc::new(Global {
            module: module.to_owned(),
            name: name.to_owned(),
        }))
    }

    pub fn object(object: Object) -> Value {
        Value::Object(Rc::new(object))
    }

    pub fn persistent_id(pid: Value) -> Value {
        Value::PersistentId(Rc::new(pid))
    }

    /// A short Python-ish name of the variant, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Object(_) => "object",
            Value::PersistentId(_) => "persistent id",
        }
    }

    /// A one-line description for error messages: the type, plus the global's name or
    /// the object's class where that helps.
    pub fn describe(&self) -> String {
        match self {
            Value::Global(global) => format!("global {}.{}", global.module, global.name),
            Value::Object(object) => match object.callable_global() {
                Some((module, name)) => format!("object built by {module}.{name}"),
                None => "object".to_owned(),
            },
            other => other.type_name().to_owned(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(data) => Some(data),
            _ => None,
        }
    }

    /// The integer value of an `int` (not of a `bool`).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(number) => Some(*number),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(flag) => Some(*flag),
            _ => None,
        }
    }

    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Float(number) => Some(*number),
            _ => None,
        }
    }

    pub fn as_tuple(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// The items of a plain dict.
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(items) => Some(items),
            _ => None,
        }
    }

    /// `(module, name)` of a global.
    pub fn as_global(&self) -> Option<(&str, &str)> {
        match self {
            Value::Global(global) => Some((&global.module, &global.name)),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(object) => Some(object),
            _ => None,
        }
    }

    /// The value stored under the string key `key` of a dict, or of a dict-like object
    /// (its `SETITEM`s). The first matching entry wins.
    pub fn dict_get(&self, key: &str) -> Option<&Value> {
        let items: &[(Value, Value)] = match self {
            Value::Dict(items) => items,
            Value::Object(object) => &object.dict_items,
            _ => return None,
        };
        items
            .iter()
            .find(|(candidate, _)| candidate.as_str() == Some(key))
            .map(|(_, value)| value)
    }
}
