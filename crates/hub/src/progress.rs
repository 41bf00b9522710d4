//! How a pull reports what it does: the CLI draws progress bars, the server logs, tests stay
//! quiet. Calls come from the pulling thread only, in order: `file_started`, `advanced`…,
//! `file_finished` per downloaded file, and `note` for anything worth telling.

pub trait Progress: Send + Sync {
    /// A line for the user (waiting for a lock, a tokenizer kept, a file already present).
    fn note(&self, text: &str);
    /// A download starts: `total` bytes expected (if known), `resumed_from` already on disk.
    fn file_started(&self, file: &str, total: Option<u64>, resumed_from: u64);
    /// `bytes` more of the current file arrived.
    fn advanced(&self, bytes: u64);
    /// The current file is complete and verified.
    fn file_finished(&self, file: &str);
}

/// Reports nothing.
pub struct SilentProgress;

impl Progress for SilentProgress {
    fn note(&self, _: &str) {}
    fn file_started(&self, _: &str, _: Option<u64>, _: u64) {}
    fn advanced(&self, _: u64) {}
    fn file_finished(&self, _: &str) {}
}
