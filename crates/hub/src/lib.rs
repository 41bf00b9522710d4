//! Getting models: `nanochat pull` and `--model hf:owner/repo` fetch a nanochat release from a
//! Hugging Face–compatible hub into the nanochat base directory, where `serve` and `chat`
//! discover it.
//!
//! * [`repo_ref`]: `owner/repo[@revision]`, as typed on the command line.
//! * [`client`]: the hub's HTTP API — the file list with sizes and hashes
//!   (`/api/models/{repo}/revision/{rev}?blobs=true`) and the bytes (`/{repo}/resolve/{rev}/{file}`,
//!   redirects followed). Endpoint from `HF_ENDPOINT`, token from `HF_TOKEN`.
//! * [`release`]: which files of a repository make a nanochat release (model, meta, tokenizer).
//! * [`download`]: one file into `<name>.part`, resumed with `Range` after an interruption,
//!   verified (sha256 for LFS files, git's blob sha1 for the others) before an atomic rename.
//! * [`pull`]: the whole job — a lock per repository, a manifest that makes the second pull a
//!   no-op and `--offline` possible, and the layout nanochat expects
//!   (`<base>/chatsft_checkpoints/d20/…`, tokenizer beside the model and in `<base>/tokenizer`).

pub mod client;
pub mod download;
mod error;
pub mod progress;
pub mod pull;
pub mod release;
pub mod repo_ref;

pub use client::HubClient;
pub use error::{HubError, Result};
pub use progress::{Progress, SilentProgress};
pub use pull::{pull, PullOptions, Pulled};
pub use repo_ref::RepoRef;
