//! Where nanochat keeps its files: `$NANOCHAT_BASE_DIR`, else `~/.cache/nanochat`
//! (reference §1.1). The tokenizer lives in `<base>/tokenizer/`.

use std::path::PathBuf;

/// nanochat's base directory (not created here).
pub fn nanochat_base_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NANOCHAT_BASE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("nanochat")
}

/// `<base>/tokenizer`, where nanochat's `get_tokenizer()` looks.
pub fn default_tokenizer_dir() -> PathBuf {
    nanochat_base_dir().join("tokenizer")
}
