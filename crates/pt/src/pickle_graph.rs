//! The pickle reader's working object graph, and its conversion into [`Value`]s.
//!
//! While a pickle runs, containers are mutated after they were memoized (`EMPTY_DICT`,
//! `MEMOIZE`, then `SETITEMS`), so composite objects live in shared, mutable nodes.
//! [`Graph`] registers every node it creates; when it is dropped it empties each node
//! first, so dropping a hostile graph (a million nested tuples, or a list containing
//! itself) never recurses deeply and never leaks a reference cycle. [`Freezer`] turns the
//! finished graph into immutable `Value`s, converting each shared node once (so repeated
//! `BINGET`s of a big container cost nothing) and refusing cycles and deep nesting.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::value::{Construction, Object, Value};

/// How deeply [`Value`]s produced by the reader may nest.
pub const MAX_DEPTH: usize = 512;

/// A stack or memo entry: an immutable leaf value or a shared composite node.
#[derive(Clone)]
pub(crate) enum Node {
    Atom(Value),
    Shared(SharedNode),
}

pub(crate) type SharedNode = Rc<RefCell<Composite>>;

pub(crate) enum Composite {
    Tuple(Vec<Node>),
    List(Vec<Node>),
    Dict(Vec<(Node, Node)>),
    Object(Box<ObjectNode>),
    PersistentId(Node),
    /// What every node becomes when its graph is dropped.
    Cleared,
}

pub(crate) struct ObjectNode {
    pub callable: Node,
    pub args: Node,
    pub construction: ConstructionNode,
    pub state: Option<Node>,
    pub list_items: Vec<Node>,
    pub dict_items: Vec<(Node, Node)>,
}

pub(crate) enum ConstructionNode {
    Reduce,
    NewObj,
    NewObjEx { kwargs: Node },
}

impl Node {
    /// The Python type name, for error messages.
    pub fn type_name(&self) -> String {
        match self {
            Node::Atom(value) => value.describe(),
            Node::Shared(shared) => match &*shared.borrow() {
                Composite::Tuple(_) => "tuple".to_owned(),
                Composite::List(_) => "list".to_owned(),
                Composite::Dict(_) => "dict".to_owned(),
                Composite::Object(object) => match &object.callable {
                    Node::Atom(Value::Global(global)) => {
                        format!("object built by {}.{}", global.module, global.name)
                    }
                    _ => "object".to_owned(),
                },
                Composite::PersistentId(_) => "persistent id".to_owned(),
                Composite::Cleared => "cleared node".to_owned(),
            },
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Atom(value) => value.as_str(),
            Node::Shared(_) => None,
        }
    }

    pub fn is_tuple(&self) -> bool {
        match self {
            Node::Shared(shared) => matches!(&*shared.borrow(), Composite::Tuple(_)),
            Node::Atom(value) => matches!(value, Value::Tuple(_)),
        }
    }
}

/// Owns every composite node of one parse (see the module docs).
#[derive(Default)]
pub(crate) struct Graph {
    registry: Vec<SharedNode>,
}

impl Graph {
    pub fn add(&mut self, composite: Composite) -> Node {
        let shared = Rc::new(RefCell::new(composite));
        self.registry.push(Rc::clone(&shared));
        Node::Shared(shared)
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        // Each node's children are still held by the registry, so emptying a node only
        // decrements counts; the nodes themselves are freed afterwards, all shallow.
        for shared in &self.registry {
            let contents = std::mem::replace(&mut *shared.borrow_mut(), Composite::Cleared);
            drop(contents);
        }
    }
}

/// Why a graph could not become a [`Value`].
#[derive(Debug)]
pub(crate) enum FreezeError {
    TooDeep,
    Recursive,
}

enum FreezeState {
    InProgress,
    Done(Value),
}

/// Converts graph nodes into [`Value`]s, sharing what the graph shares.
#[derive(Default)]
pub(crate) struct Freezer {
    seen: HashMap<*const RefCell<Composite>, FreezeState>,
}

impl Freezer {
    pub fn freeze(&mut self, node: &Node) -> Result<Value, FreezeError> {
        self.freeze_at(node, 0)
    }

    fn freeze_at(&mut self, node: &Node, depth: usize) -> Result<Value, FreezeError> {
        let shared = match node {
            Node::Atom(value) => return Ok(value.clone()),
            Node::Shared(shared) => shared,
        };
        if depth >= MAX_DEPTH {
            return Err(FreezeError::TooDeep);
        }
        let key = Rc::as_ptr(shared);
        match self.seen.get(&key) {
            Some(FreezeState::Done(value)) => return Ok(value.clone()),
            Some(FreezeState::InProgress) => return Err(FreezeError::Recursive),
            None => {}
        }
        // The registry holds one reference and the parent one more: a node with no other
        // referrer is reached only this once, so it is not remembered, and its contents
        // are released as it is converted, which keeps peak memory down. (A node's first
        // visit always sees all its referrers: a parent releases its children only after
        // visiting them. A cycle reachable from the root always has a node with two
        // referrers, or is the root, which the caller also holds: it is caught below.)
        if Rc::strong_count(shared) <= 2 {
            let Ok(mut contents) = shared.try_borrow_mut() else {
                return Err(FreezeError::Recursive);
            };
            let composite = std::mem::replace(&mut *contents, Composite::Cleared);
            drop(contents);
            return self.freeze_composite(&composite, depth + 1);
        }
        self.seen.insert(key, FreezeState::InProgress);
        let Ok(contents) = shared.try_borrow() else {
            return Err(FreezeError::Recursive);
        };
        let value = self.freeze_composite(&contents, depth + 1)?;
        self.seen.insert(key, FreezeState::Done(value.clone()));
        Ok(value)
    }

    fn freeze_composite(
        &mut self,
        composite: &Composite,
        depth: usize,
    ) -> Result<Value, FreezeError> {
        Ok(match composite {
            Composite::Tuple(items) => Value::Tuple(self.freeze_all(items, depth)?),
            Composite::List(items) => Value::List(self.freeze_all(items, depth)?),
            Composite::Dict(items) => Value::Dict(Rc::from(self.freeze_pairs(items, depth)?)),
            Composite::PersistentId(pid) => {
                Value::PersistentId(Rc::new(self.freeze_at(pid, depth)?))
            }
            Composite::Object(object) => {
                let construction = match &object.construction {
                    ConstructionNode::Reduce => Construction::Reduce,
                    ConstructionNode::NewObj => Construction::NewObj,
                    ConstructionNode::NewObjEx { kwargs } => Construction::NewObjEx {
                        kwargs: self.freeze_at(kwargs, depth)?,
                    },
                };
                let state = match &object.state {
                    Some(state) => Some(self.freeze_at(state, depth)?),
                    None => None,
                };
                Value::Object(Rc::new(Object {
                    callable: self.freeze_at(&object.callable, depth)?,
                    args: self.freeze_at(&object.args, depth)?,
                    construction,
                    state,
                    list_items: self.freeze_all(&object.list_items, depth)?.to_vec(),
                    dict_items: self.freeze_pairs(&object.dict_items, depth)?,
                }))
            }
            Composite::Cleared => Value::None,
        })
    }

    /// Freezes `items` straight into one shared slice (a single allocation).
    fn freeze_all(&mut self, items: &[Node], depth: usize) -> Result<Rc<[Value]>, FreezeError> {
        let mut failure = None;
        let values: Rc<[Value]> = items
            .iter()
            .map(|item| {
                self.freeze_at(item, depth).unwrap_or_else(|error| {
                    failure.get_or_insert(error);
                    Value::None
                })
            })
            .collect();
        match failure {
            Some(error) => Err(error),
            None => Ok(values),
        }
    }

    fn freeze_pairs(
        &mut self,
        items: &[(Node, Node)],
        depth: usize,
    ) -> Result<Vec<(Value, Value)>, FreezeError> {
        items
            .iter()
            .map(|(key, value)| Ok((self.freeze_at(key, depth)?, self.freeze_at(value, depth)?)))
            .collect()
    }
}
