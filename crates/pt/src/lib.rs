//! Python pickles and PyTorch `.pt` files, read and written exactly as CPython and
//! PyTorch do, for what nanochat stores: `tokenizer.pkl` (a pickled
//! `tiktoken.Encoding`), `token_bytes.pt` (one tensor) and model checkpoints (state dicts).
//!
//! * [`pickle`] reads any protocol 0–5 pickle made of data, globals, reductions and
//!   persistent ids into a [`Value`] tree, without running code.
//! * [`pickle_writer`] writes `Value`s back, byte-identical to CPython's C pickler.
//! * [`tiktoken`] converts between tokenizer pickles and [`TiktokenEncoding`].
//! * [`torch_read`] opens `.pt` zips ([`TorchFile`]); [`torch_write`] writes them
//!   byte-identical to `torch.save` (layout, alignment, zip64 rules, serialization id).

pub mod dtype;
mod long_int;
pub mod opcodes;
pub mod pickle;
mod pickle_error;
mod pickle_graph;
pub mod pickle_writer;
mod serialization_id;
pub mod tensor_record;
pub mod tiktoken;
pub mod torch_error;
pub mod torch_read;
pub mod torch_write;
mod torch_zip_writer;
pub mod value;

pub use dtype::DType;
pub use pickle::{parse, PickleError, MAX_DEPTH};
pub use pickle_writer::{dumps, PickleWriteError};
pub use tensor_record::TensorRecord;
pub use tiktoken::{encoding_from_pickle, encoding_to_pickle, TiktokenEncoding, TiktokenError};
pub use torch_error::{TorchError, TorchErrorKind};
pub use torch_read::TorchFile;
pub use torch_write::{
    default_archive_prefix, torch_data_pkl, write_torch, write_torch_file, SaveRoot, TensorToWrite,
};
pub use value::{Construction, Global, Object, Value};
