//! `token_bytes.pt`: a 1-D int32 tensor with, per token id, how many UTF-8 bytes it decodes to
//! (0 for specials). bits-per-byte evaluation divides by these numbers, so it must be the file
//! nanochat wrote — note that tokens which are not valid UTF-8 on their own count their U+FFFD
//! as 3 bytes (reference §2.5); load it rather than recomputing it for someone else's model.

use std::path::Path;

use nanochat_pt::torch_write::{write_torch_file, SaveRoot, TensorToWrite};
use nanochat_pt::{DType, TorchFile};

use crate::error::{Result, TokenizerError};

/// Reads `token_bytes.pt` (any archive prefix) into one length per token id.
pub fn load_token_bytes(path: &Path) -> Result<Vec<i32>> {
    let bad = |message: String| TokenizerError::BadFile {
        path: path.into(),
        message,
    };
    let mut file = TorchFile::open(path).map_err(|e| bad(e.to_string()))?;
    let tensor = file.single_tensor().map_err(|e| bad(e.to_string()))?;
    if tensor.shape.len() != 1 || tensor.dtype != DType::I32 {
        return Err(bad(format!(
            "expected a 1-D int32 tensor, found a {:?} tensor of shape {:?}",
            tensor.dtype, tensor.shape
        )));
    }
    file.read_i32(&tensor).map_err(|e| bad(e.to_string()))
}

/// Writes `token_bytes.pt` as `torch.save` does when given an open file (archive prefix
/// `archive/`, which is how nanochat's `tok_train.py` saves it), readable by torch and by
/// [`load_token_bytes`]. Written to a temporary file first, then renamed into place.
pub fn save_token_bytes(path: &Path, lengths: &[i32]) -> Result<()> {
    let data: Vec<u8> = lengths.iter().flat_map(|v| v.to_le_bytes()).collect();
    let root = SaveRoot::Tensor(TensorToWrite {
        dtype: DType::I32,
        shape: vec![lengths.len()],
        data: &data,
    });
    let tmp = path.with_extension("pt.tmp");
    write_torch_file(&tmp, "archive", &root).map_err(|e| TokenizerError::BadFile {
        path: path.into(),
        message: e.to_string(),
    })?;
    std::fs::rename(&tmp, path).map_err(|source| TokenizerError::Io {
        path: path.into(),
        source,
    })
}
