//! Why a pickle could not be read: each error names the opcode and its offset.

use crate::opcodes::describe_opcode;
use crate::pickle_graph::MAX_DEPTH;

/// The highest pickle protocol the reader accepts.
pub const HIGHEST_PROTOCOL: u8 = 5;

/// Why a pickle could not be read. Offsets are those of the failing opcode.
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    #[error("pickle truncated: {} at offset {offset} needs {needed} bytes but only {available} are left", describe_opcode(*opcode))]
    Truncated {
        offset: usize,
        opcode: u8,
        needed: u64,
        available: usize,
    },
    #[error("pickle ends at offset {offset} without a STOP opcode")]
    MissingStop { offset: usize },
    #[error("unsupported pickle opcode {} at offset {offset}", describe_opcode(*opcode))]
    UnsupportedOpcode { offset: usize, opcode: u8 },
    #[error("unsupported pickle protocol {protocol} at offset {offset} (highest known is {HIGHEST_PROTOCOL})")]
    UnsupportedProtocol { offset: usize, protocol: u8 },
    #[error("{} at offset {offset}: pickle stack underflow", describe_opcode(*opcode))]
    StackUnderflow { offset: usize, opcode: u8 },
    #[error("{} at offset {offset}: no MARK on the stack", describe_opcode(*opcode))]
    MissingMark { offset: usize, opcode: u8 },
    #[error("{} at offset {offset}: memo index {index} was never stored", describe_opcode(*opcode))]
    MissingMemo {
        offset: usize,
        opcode: u8,
        index: u64,
    },
    #[error("{} at offset {offset}: invalid UTF-8 in a string", describe_opcode(*opcode))]
    InvalidUtf8 { offset: usize, opcode: u8 },
    #[error("{} at offset {offset}: expected {expected}, found {found}", describe_opcode(*opcode))]
    UnexpectedType {
        offset: usize,
        opcode: u8,
        expected: &'static str,
        found: String,
    },
    #[error("{} at offset {offset}: {detail}", describe_opcode(*opcode))]
    Invalid {
        offset: usize,
        opcode: u8,
        detail: String,
    },
    #[error("pickle nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("pickle contains a self-referencing structure, which is not supported")]
    Recursive,
}
