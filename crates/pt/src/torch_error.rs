//! Errors of the `.pt` reader and writer. Every error names the file (or stream) and,
//! where there is one, the zip entry or tensor that was wrong.

use crate::dtype::DType;
use crate::pickle::PickleError;
use crate::pickle_writer::PickleWriteError;

/// A failure reading or writing a torch file: `<file>: <what went wrong>`.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {kind}")]
pub struct TorchError {
    /// The path, or the name given to an in-memory archive.
    pub file: String,
    pub kind: TorchErrorKind,
}

impl TorchError {
    pub(crate) fn new(file: &str, kind: TorchErrorKind) -> TorchError {
        TorchError {
            file: file.to_owned(),
            kind,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TorchErrorKind {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a zip archive (torch .pt files are zips): {0}")]
    NotZip(String),
    #[error("no <dir>/data.pkl entry; the archive holds {entries}")]
    NoDataPkl { entries: String },
    #[error("several data.pkl entries: {names}")]
    SeveralDataPkl { names: String },
    #[error("entry {entry} is compressed ({method}); torch stores entries uncompressed")]
    CompressedEntry { entry: String, method: String },
    #[error("entry {entry} is unreadable: {detail}")]
    BadEntry { entry: String, detail: String },
    #[error("entry {entry} is truncated: expected {expected} bytes, found {actual}")]
    TruncatedEntry {
        entry: String,
        expected: u64,
        actual: u64,
    },
    #[error("entry {entry}: {source}")]
    Pickle { entry: String, source: PickleError },
    #[error("{context}: expected {expected}, found {found}")]
    NotATensor {
        context: String,
        expected: &'static str,
        found: String,
    },
    #[error("{context}: unknown storage class {class}")]
    UnknownStorageClass { context: String, class: String },
    #[error("{context}: storage entry {entry} is missing")]
    MissingStorage { context: String, entry: String },
    #[error("{context}: storage {key} holds {available} elements but the tensor's offset, shape and stride need {needed}")]
    StorageTooShort {
        context: String,
        key: String,
        needed: u64,
        available: u64,
    },
    #[error("{context}: refusing to expand {source_elements} stored elements into a view of {elements} elements")]
    ViewTooLarge {
        context: String,
        source_elements: u64,
        elements: u64,
    },
    #[error("{context}: a {actual} tensor cannot be read as {requested}")]
    WrongDType {
        context: String,
        actual: DType,
        requested: &'static str,
    },
    #[error("the root object is {found}, expected {expected}")]
    UnexpectedRoot {
        expected: &'static str,
        found: String,
    },
    #[error("the state dict has the key {0:?} more than once")]
    DuplicateKey(String),
    #[error("invalid archive prefix {0:?}: it must be a non-empty name without slashes")]
    InvalidPrefix(String),
    #[error("tensor {name}: {detail}")]
    InvalidTensorData { name: String, detail: String },
    #[error("cannot pickle data.pkl: {0}")]
    PickleWrite(#[from] PickleWriteError),
}
