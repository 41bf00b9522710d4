//! The calculator tool (reference §5.4): what nanochat's `use_calculator(expr)` returns for the
//! text between `<|python_start|>` and `<|python_end|>`, as the text the engine injects between
//! `<|output_start|>` and `<|output_end|>` (Python's `str(result)`), or `None`.
//!
//! nanochat filters the text and then runs Python's `eval` on it. This port never executes
//! anything: after the same filter it tokenizes, parses (recursive descent) and evaluates a tiny
//! expression language over a tiny value type, mimicking the Python semantics that can be reached
//! through the filter:
//!
//! * numeric branch (`0123456789*+-/.() `): unbounded ints, `+ - *`, `/` as Python's correctly
//!   rounded true division, `//` flooring for ints and floats (CPython's float algorithm), unary
//!   `+`/`-` chains, parentheses, `()` (the empty tuple, with its `+`/`*`), `...` (Ellipsis),
//!   leading-zero int literals as syntax errors, `5.`/`.5` floats, and float `str` = `repr`
//!   (shortest round trip, exponent form below 1e-4 and from 1e16 on, `inf`, `nan`, `-0.0`);
//! * string branch (`[A-Za-z0-9'"()._ ]`, blacklist, must contain `.count(`): string literals
//!   (also `'''…'''`, `r`/`u`/`f` prefixes, implicit concatenation), `True`/`False`/`None`,
//!   `str.count` (non-overlapping), `tuple.count`, `int.bit_length()`, `A if C else B` (lazy), and
//!   names, which are NameErrors because nanochat evaluates with no builtins.
//!
//! Every Python exception becomes `None`, as in nanochat. Forms Python could evaluate but this
//! port does not model (other methods and attributes, `not`/`and`/`or`/`in`, bytes, exponent or
//! underscore literals…) give `None` too ([`CalcError::Unsupported`]); whenever a value is
//! returned it is Python's. Time and memory are bounded: inputs over [`MAX_EXPR_BYTES`] are
//! refused, parentheses nest at most 200 deep and deep nests of unary signs fail as CPython
//! 3.11's parser does, so recursion stays shallow (under 512 KiB of stack in the dev profile),
//! and ints over [`MAX_INT_BITS`] are refused (not reachable within the length cap).

use std::fmt;

use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{ToPrimitive, Zero};

use crate::python_numbers::{float_floor_div, float_repr, int_to_float, int_true_div};

/// Longest expression (in bytes) evaluated; nanochat's tool calls are a few dozen characters.
pub const MAX_EXPR_BYTES: usize = 1000;
/// Largest int (in bits) an operation may produce.
pub const MAX_INT_BITS: u64 = 10_000;
/// CPython's tokenizer refuses more than 200 nested parentheses.
const MAX_PAREN_DEPTH: usize = 200;
/// CPython 3.11's parser stack (MemoryError beyond it): each open parenthesis costs 28 frames
/// and each pending unary `+`/`-` one (measured; only reachable near 200 nested parentheses).
const MAX_PARSER_FRAMES: usize = 5975;

const NUMERIC_CHARS: &str = "0123456789*+-/.() ";
const BLACKLIST: &str =
    "__ import exec eval compile open file input raw_input globals locals vars \
    dir getattr setattr delattr hasattr";
const KEYWORDS: &str = "and as assert async await break class continue def del elif else \
    except finally for from global if import in is lambda nonlocal not or pass raise return try \
    while with yield";

/// A Python value the calculator can produce; `Display` is Python's `str()`.
#[derive(Debug, Clone, PartialEq)]
pub enum CalcValue {
    Int(BigInt),
    Float(f64),
    Str(String),
    Bool(bool),
    EmptyTuple,
    Ellipsis,
    None,
}

/// Why an expression gives no result (nanochat returns `None` for all of these).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalcError {
    /// Refused by nanochat's character filter, `**` check, blacklist or `.count(` check.
    #[error("rejected by nanochat's filter: {0}")]
    Rejected(&'static str),
    /// Python would fail to compile it (a SyntaxError, or a MemoryError for too deep nesting).
    #[error("SyntaxError: {0}")]
    Syntax(&'static str),
    /// Python would raise this exception while evaluating.
    #[error("{0}")]
    Eval(&'static str),
    /// Python may be able to evaluate this; the port does not model it.
    #[error("not supported by this calculator: {0}")]
    Unsupported(&'static str),
    /// Over this port's length or size limits.
    #[error("limit exceeded: {0}")]
    Limit(&'static str),
}

pub(crate) type Result<T> = std::result::Result<T, CalcError>;

/// nanochat's `use_calculator`: `Some(str(result))`, or `None` where nanochat returns None
/// (including a result that is Python's `None`).
pub fn use_calculator(expr: &str) -> Option<String> {
    match evaluate(expr) {
        Ok(CalcValue::None) | Err(_) => None,
        Ok(value) => Some(value.to_string()),
    }
}

/// Filter and evaluate `expr` as nanochat does, without executing anything.
pub fn evaluate(expr: &str) -> Result<CalcValue> {
    if expr.len() > MAX_EXPR_BYTES {
        return Err(CalcError::Limit("expression too long"));
    }
    let text: String = expr.chars().filter(|&c| c != ',').collect();
    check_filter(&text)?;
    let tokens = tokenize(&text)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        parens: 0,
        signs: 0,
    };
    let node = parser.expr()?;
    if parser.pos != parser.tokens.len() {
        return Err(parser.unexpected());
    }
    eval(&node)
}

impl CalcValue {
    /// Python's type name (`type(result).__name__`).
    pub fn type_name(&self) -> &'static str {
        match self {
            CalcValue::Int(_) => "int",
            CalcValue::Float(_) => "float",
            CalcValue::Str(_) => "str",
            CalcValue::Bool(_) => "bool",
            CalcValue::EmptyTuple => "tuple",
            CalcValue::Ellipsis => "ellipsis",
            CalcValue::None => "NoneType",
        }
    }

    fn truthy(&self) -> bool {
        match self {
            CalcValue::Int(n) => !n.is_zero(),
            CalcValue::Float(x) => *x != 0.0,
            CalcValue::Str(s) => !s.is_empty(),
            CalcValue::Bool(b) => *b,
            CalcValue::EmptyTuple | CalcValue::None => false,
            CalcValue::Ellipsis => true,
        }
    }
}

impl fmt::Display for CalcValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalcValue::Int(n) => write!(f, "{n}"),
            CalcValue::Float(x) => f.write_str(&float_repr(*x)),
            CalcValue::Str(s) => f.write_str(s),
            CalcValue::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
            CalcValue::EmptyTuple => f.write_str("()"),
            CalcValue::Ellipsis => f.write_str("Ellipsis"),
            CalcValue::None => f.write_str("None"),
        }
    }
}

/// Steps 1–3 of §5.4 after the comma removal.
fn check_filter(text: &str) -> Result<()> {
    if text.chars().all(|c| NUMERIC_CHARS.contains(c)) {
        return match text.contains("**") {
            true => Err(CalcError::Rejected("contains **")),
            false => Ok(()),
        };
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "'\"()._ ".contains(c);
    if !text.chars().all(allowed) {
        return Err(CalcError::Rejected("character outside the allowed sets"));
    }
    let lower = text.to_ascii_lowercase();
    if BLACKLIST.split_whitespace().any(|p| lower.contains(p)) {
        return Err(CalcError::Rejected("blacklisted substring"));
    }
    if !text.contains(".count(") {
        return Err(CalcError::Rejected("string expression without .count("));
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Token {
    Number(CalcValue),
    Str(String),
    Name(String),
    /// `+ - * / // ( ) . ...`
    Op(&'static str),
}

/// Python's tokenizer, restricted to what the filter lets through (ASCII only).
fn tokenize(text: &str) -> Result<Vec<Token>> {
    let bytes = text.as_bytes();
    let (mut tokens, mut i, mut depth) = (Vec::new(), 0, 0usize);
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        let (token, len) = match c {
            b' ' => {
                i += 1;
                continue;
            }
            b'0'..=b'9' => number(bytes, i)?,
            b'.' if next.is_some_and(|n| n.is_ascii_digit()) => number(bytes, i)?,
            b'.' if bytes[i..].starts_with(b"...") => (Token::Op("..."), 3),
            b'.' => (Token::Op("."), 1),
            b'/' if next == Some(b'/') => (Token::Op("//"), 2),
            b'+' => (Token::Op("+"), 1),
            b'-' => (Token::Op("-"), 1),
            b'*' => (Token::Op("*"), 1),
            b'/' => (Token::Op("/"), 1),
            b'(' => {
                depth += 1;
                if depth > MAX_PAREN_DEPTH {
                    return Err(CalcError::Syntax("too many nested parentheses"));
                }
                (Token::Op("("), 1)
            }
            b')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or(CalcError::Syntax("unmatched ')'"))?;
                (Token::Op(")"), 1)
            }
            b'\'' | b'"' => string(bytes, i)?,
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => name(bytes, i)?,
            _ => return Err(CalcError::Syntax("invalid character")),
        };
        tokens.push(token);
        i += len;
    }
    Ok(tokens)
}

/// A number literal: the run of `[0-9A-Za-z_.]` from `start`. Decimal ints (no leading zeros
/// unless all zeros) and `digits.digits` floats are modelled; other forms are not.
fn number(bytes: &[u8], start: usize) -> Result<(Token, usize)> {
    let lit = run(bytes, start, b"_.");
    let len = lit.len();
    if lit.bytes().any(|b| b.is_ascii_alphabetic() || b == b'_') {
        return Err(CalcError::Unsupported("number literal with letters or _"));
    }
    let bad = CalcError::Syntax("invalid decimal literal");
    let value = match lit.matches('.').count() {
        0 if lit.starts_with('0') && lit.bytes().any(|b| b != b'0') => return Err(bad),
        0 => CalcValue::Int(lit.parse().map_err(|_| bad)?),
        1 => CalcValue::Float(lit.parse().map_err(|_| bad)?),
        _ => return Err(bad),
    };
    Ok((Token::Number(value), len))
}

/// A string literal starting at the quote at `start`: `'…'`, `"…"`, `'''…'''` or `"""…"""`
/// (no backslashes can pass the filter, so there are no escapes).
fn string(bytes: &[u8], start: usize) -> Result<(Token, usize)> {
    let quote = &bytes[start..start + 1];
    let triple = [quote[0]; 3];
    let delim: &[u8] = if bytes[start..].starts_with(&triple) {
        &triple
    } else {
        quote
    };
    let body = start + delim.len();
    let end = bytes[body..]
        .windows(delim.len())
        .position(|w| w == delim)
        .ok_or(CalcError::Syntax("unterminated string literal"))?;
    let content = String::from_utf8_lossy(&bytes[body..body + end]).into_owned();
    Ok((Token::Str(content), end + 2 * delim.len()))
}

/// An identifier, or a string literal with a prefix: `r`, `u` and `f` strings are plain strings
/// here (no backslash or brace can pass the filter); bytes literals are not modelled.
fn name(bytes: &[u8], start: usize) -> Result<(Token, usize)> {
    let name = run(bytes, start, b"_");
    let len = name.len();
    if matches!(bytes.get(start + len), Some(b'\'' | b'"')) {
        match name.to_ascii_lowercase().as_str() {
            "r" | "u" | "f" | "rf" | "fr" => {
                let (token, string_len) = string(bytes, start + len)?;
                return Ok((token, len + string_len));
            }
            "b" | "br" | "rb" => return Err(CalcError::Unsupported("bytes literal")),
            _ => {}
        }
    }
    Ok((Token::Name(name), len))
}

/// The longest run of ASCII letters, digits and `extra` bytes from `start`.
fn run(bytes: &[u8], start: usize, extra: &[u8]) -> String {
    let is_part = |b: &&u8| b.is_ascii_alphanumeric() || extra.contains(b);
    bytes[start..]
        .iter()
        .take_while(is_part)
        .map(|&b| char::from(b))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
}

#[derive(Debug)]
enum Trailer {
    Attr(String),
    Call(Option<Node>),
}

#[derive(Debug)]
enum Node {
    Const(CalcValue),
    /// Any identifier other than `True`/`False`/`None`: a NameError when evaluated.
    Name,
    /// A chain of unary `+`/`-`: whether it negates, and its operand.
    Unary(bool, Box<Node>),
    /// `first op operand op operand …`, left-associative.
    Chain(Box<Node>, Vec<(BinOp, Node)>),
    Trailers(Box<Node>, Vec<Trailer>),
    /// `[body, cond, orelse]` of `body if cond else orelse`.
    IfElse(Box<[Node; 3]>),
}

fn is_keyword(name: &str) -> bool {
    KEYWORDS.split_whitespace().any(|k| k == name)
}

/// Recursive descent over Python's grammar, restricted to the modelled forms. Operator chains
/// are loops, so recursion only deepens with parentheses (≤ 200) and `else` chains.
struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Open parentheses and pending unary signs on the current path (CPython's stack use).
    parens: usize,
    signs: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    /// The error for the current token: `not`, `and`, `in`… are valid Python this port does not
    /// model; anything else is a syntax error.
    fn unexpected(&self) -> CalcError {
        match self.peek() {
            Some(Token::Name(name)) if is_keyword(name) => CalcError::Unsupported("keyword"),
            _ => CalcError::Syntax("invalid syntax"),
        }
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let hit = matches!(self.peek(), Some(Token::Op(o)) if *o == op);
        self.pos += usize::from(hit);
        hit
    }

    fn eat_name(&mut self, name: &str) -> bool {
        let hit = matches!(self.peek(), Some(Token::Name(n)) if n == name);
        self.pos += usize::from(hit);
        hit
    }

    /// `sum ['if' sum 'else' expr]`
    fn expr(&mut self) -> Result<Node> {
        let body = self.sum()?;
        if !self.eat_name("if") {
            return Ok(body);
        }
        let cond = self.sum()?;
        if !self.eat_name("else") {
            return Err(self.unexpected());
        }
        let orelse = self.expr()?;
        Ok(Node::IfElse(Box::new([body, cond, orelse])))
    }

    /// `term (('+' | '-') term)*`
    fn sum(&mut self) -> Result<Node> {
        self.chain(Self::term, &[("+", BinOp::Add), ("-", BinOp::Sub)])
    }

    /// `unary (('*' | '/' | '//') unary)*`
    fn term(&mut self) -> Result<Node> {
        let ops = [
            ("*", BinOp::Mul),
            ("/", BinOp::Div),
            ("//", BinOp::FloorDiv),
        ];
        self.chain(Self::unary, &ops)
    }

    /// A left-associative operator chain, parsed as a loop.
    fn chain(
        &mut self,
        operand: fn(&mut Self) -> Result<Node>,
        ops: &[(&str, BinOp)],
    ) -> Result<Node> {
        let first = operand(self)?;
        let mut rest = Vec::new();
        while let Some(&(_, op)) = ops.iter().find(|(text, _)| self.eat_op(text)) {
            rest.push((op, operand(self)?));
        }
        match rest.is_empty() {
            true => Ok(first),
            false => Ok(Node::Chain(Box::new(first), rest)),
        }
    }

    /// `('+' | '-')* postfix`
    fn unary(&mut self) -> Result<Node> {
        let (mut signs, mut negate) = (0usize, false);
        loop {
            if self.eat_op("-") {
                negate = !negate;
            } else if !self.eat_op("+") {
                break;
            }
            signs += 1;
        }
        self.signs += signs;
        let operand = match 28 * self.parens + self.signs > MAX_PARSER_FRAMES {
            true => Err(CalcError::Syntax("MemoryError: parser stack overflow")),
            false => self.postfix(),
        };
        self.signs -= signs;
        let operand = operand?;
        Ok(match signs {
            0 => operand,
            _ => Node::Unary(negate, Box::new(operand)),
        })
    }

    /// `atom ('.' NAME | '(' [expr] ')')*`
    fn postfix(&mut self) -> Result<Node> {
        let base = self.atom()?;
        let mut trailers = Vec::new();
        loop {
            if self.eat_op(".") {
                match self.tokens.get(self.pos) {
                    Some(Token::Name(name)) if !is_keyword(name) => {
                        trailers.push(Trailer::Attr(name.clone()));
                        self.pos += 1;
                    }
                    _ => return Err(CalcError::Syntax("expected a name after '.'")),
                }
            } else if self.eat_op("(") {
                trailers.push(Trailer::Call(self.parenthesised()?));
            } else {
                break;
            }
        }
        Ok(if trailers.is_empty() {
            base
        } else {
            Node::Trailers(Box::new(base), trailers)
        })
    }

    /// After a `(`: `)` (None) or `expr )`.
    fn parenthesised(&mut self) -> Result<Option<Node>> {
        if self.eat_op(")") {
            return Ok(None);
        }
        self.parens += 1;
        let inner = self.expr();
        self.parens -= 1;
        let inner = inner?;
        match self.eat_op(")") {
            true => Ok(Some(inner)),
            false => Err(CalcError::Syntax("'(' was never closed")),
        }
    }

    fn atom(&mut self) -> Result<Node> {
        let token = self
            .peek()
            .cloned()
            .ok_or(CalcError::Syntax("unexpected end of expression"))?;
        self.pos += 1;
        match token {
            Token::Number(value) => Ok(Node::Const(value)),
            Token::Str(mut s) => {
                while let Some(Token::Str(more)) = self.peek() {
                    s.push_str(more);
                    self.pos += 1;
                }
                Ok(Node::Const(CalcValue::Str(s)))
            }
            Token::Name(name) => match name.as_str() {
                "True" => Ok(Node::Const(CalcValue::Bool(true))),
                "False" => Ok(Node::Const(CalcValue::Bool(false))),
                "None" => Ok(Node::Const(CalcValue::None)),
                n if is_keyword(n) => Err(CalcError::Unsupported("keyword")),
                _ => Ok(Node::Name),
            },
            Token::Op("...") => Ok(Node::Const(CalcValue::Ellipsis)),
            Token::Op("(") => Ok(self
                .parenthesised()?
                .unwrap_or(Node::Const(CalcValue::EmptyTuple))),
            Token::Op(_) => Err(CalcError::Syntax("invalid syntax")),
        }
    }
}

fn eval(node: &Node) -> Result<CalcValue> {
    match node {
        Node::Const(value) => Ok(value.clone()),
        Node::Name => Err(CalcError::Eval("NameError: name is not defined")),
        Node::Unary(negate, operand) => unary(*negate, eval(operand)?),
        Node::Chain(first, rest) => rest
            .iter()
            .try_fold(eval(first)?, |acc, (op, rhs)| binary(*op, acc, eval(rhs)?)),
        Node::Trailers(base, trailers) => eval_trailers(eval(base)?, trailers),
        Node::IfElse(parts) => {
            let [body, cond, orelse] = &**parts;
            eval(if eval(cond)?.truthy() { body } else { orelse })
        }
    }
}

fn eval_trailers(mut value: CalcValue, trailers: &[Trailer]) -> Result<CalcValue> {
    let mut rest = trailers;
    while let Some(trailer) = rest.first() {
        match (trailer, rest.get(1)) {
            (Trailer::Attr(name), Some(Trailer::Call(arg))) => {
                let arg = arg.as_ref().map(eval).transpose()?;
                value = call_method(value, name, arg)?;
                rest = &rest[2..];
            }
            (Trailer::Attr(_), _) => return Err(CalcError::Unsupported("attribute value")),
            (Trailer::Call(_), _) => {
                return Err(CalcError::Eval("TypeError: object is not callable"))
            }
        }
    }
    Ok(value)
}

fn call_method(receiver: CalcValue, name: &str, arg: Option<CalcValue>) -> Result<CalcValue> {
    use CalcValue::{Bool, EmptyTuple, Int, Str};
    let type_error = Err(CalcError::Eval("TypeError: bad method argument"));
    match (name, receiver, arg) {
        ("count", Str(s), Some(Str(sub))) => Ok(Int(BigInt::from(str_count(&s, &sub)))),
        ("count", Str(_), _) => type_error,
        ("count", EmptyTuple, Some(_)) => Ok(Int(BigInt::zero())),
        ("count", EmptyTuple, None) => type_error,
        ("bit_length", Int(n), None) => Ok(Int(BigInt::from(n.bits()))),
        ("bit_length", Bool(b), None) => Ok(Int(BigInt::from(u8::from(b)))),
        ("bit_length", Int(_) | Bool(_), Some(_)) => type_error,
        _ => Err(CalcError::Unsupported("method")),
    }
}

/// Python's `str.count`: non-overlapping occurrences; the empty string occurs `len + 1` times.
fn str_count(s: &str, sub: &str) -> usize {
    match sub.is_empty() {
        true => s.chars().count() + 1,
        false => s.matches(sub).count(),
    }
}

fn unary(negate: bool, value: CalcValue) -> Result<CalcValue> {
    match (bool_as_int(value), negate) {
        (CalcValue::Int(n), true) => Ok(CalcValue::Int(-n)),
        (CalcValue::Float(x), true) => Ok(CalcValue::Float(-x)),
        (value @ (CalcValue::Int(_) | CalcValue::Float(_)), false) => Ok(value),
        _ => Err(CalcError::Eval("TypeError: bad operand type for unary -/+")),
    }
}

fn binary(op: BinOp, lhs: CalcValue, rhs: CalcValue) -> Result<CalcValue> {
    use CalcValue::{EmptyTuple, Float, Int};
    match (op, bool_as_int(lhs), bool_as_int(rhs)) {
        (_, Int(a), Int(b)) => int_op(op, &a, &b),
        (_, Int(a), Float(b)) => float_op(op, int_to_float(&a)?, b),
        (_, Float(a), Int(b)) => float_op(op, a, int_to_float(&b)?),
        (_, Float(a), Float(b)) => float_op(op, a, b),
        (BinOp::Add, EmptyTuple, EmptyTuple) => Ok(EmptyTuple),
        (BinOp::Mul, EmptyTuple, Int(n)) | (BinOp::Mul, Int(n), EmptyTuple) => match n.to_i64() {
            Some(_) => Ok(EmptyTuple),
            None => Err(CalcError::Eval(
                "OverflowError: cannot fit 'int' into an index-sized integer",
            )),
        },
        _ => Err(CalcError::Eval("TypeError: unsupported operand types")),
    }
}

fn bool_as_int(value: CalcValue) -> CalcValue {
    match value {
        CalcValue::Bool(b) => CalcValue::Int(BigInt::from(u8::from(b))),
        other => other,
    }
}

fn int_op(op: BinOp, a: &BigInt, b: &BigInt) -> Result<CalcValue> {
    let result = match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul if a.bits() + b.bits() > MAX_INT_BITS + 1 => {
            return Err(CalcError::Limit("int too large"))
        }
        BinOp::Mul => a * b,
        BinOp::Div => return int_true_div(a, b).map(CalcValue::Float),
        BinOp::FloorDiv if b.is_zero() => return Err(CalcError::Eval("ZeroDivisionError")),
        BinOp::FloorDiv => a.div_floor(b),
    };
    match result.bits() > MAX_INT_BITS {
        true => Err(CalcError::Limit("int too large")),
        false => Ok(CalcValue::Int(result)),
    }
}

fn float_op(op: BinOp, a: f64, b: f64) -> Result<CalcValue> {
    let zero_division = Err(CalcError::Eval("ZeroDivisionError: float division by zero"));
    Ok(CalcValue::Float(match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div | BinOp::FloorDiv if b == 0.0 => return zero_division,
        BinOp::Div => a / b,
        BinOp::FloorDiv => float_floor_div(a, b),
    }))
}
