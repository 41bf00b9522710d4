//! What can go wrong getting a model, each worded so the user knows what to do next.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, HubError>;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{given:?} is not a hub repository: {why}")]
    BadRepo { given: String, why: String },

    #[error("repository {repo} was not found on {endpoint} (check the name; a private repository also needs a token: set HF_TOKEN or pass --token)")]
    RepoNotFound { repo: String, endpoint: String },

    #[error("repository {repo} has no revision {revision:?} (a branch, tag or commit)")]
    RevisionNotFound { repo: String, revision: String },

    #[error("{repo} is {what} on {endpoint} (HTTP {status}): {advice}")]
    Unauthorized {
        repo: String,
        endpoint: String,
        status: u16,
        what: &'static str,
        advice: &'static str,
    },

    #[error("cannot reach {url}: {reason} (no network? with --offline, or HF_HUB_OFFLINE=1, a model pulled before is used from the cache)")]
    Network { url: String, reason: String },

    #[error("the download of {file} stopped after {done} of {total} bytes: {reason}. Run the same command again to resume from there")]
    Interrupted {
        file: String,
        done: u64,
        total: String,
        reason: String,
    },

    #[error("{url} answered HTTP {status}: {body}")]
    Http {
        url: String,
        status: u16,
        body: String,
    },

    #[error("{url} did not answer with a hub file list: {reason}")]
    BadListing { url: String, reason: String },

    #[error("{repo} is not a nanochat release: expected {expected}; it has {found}")]
    NotARelease {
        repo: String,
        expected: String,
        found: String,
    },

    #[error("{file} is corrupt: its {check} is {got}, the hub says {expected}. The partial download was deleted; run the command again to fetch it anew")]
    Mismatch {
        file: String,
        check: &'static str,
        expected: String,
        got: String,
    },

    #[error("the disk is full writing {path} ({needed} bytes needed in all): free some space and run the command again to resume")]
    DiskFull { path: PathBuf, needed: u64 },

    #[error("not enough disk space in {path}: this pull needs {needed} more bytes, {available} are free. Free some space (or point NANOCHAT_BASE_DIR at a larger disk) and run it again")]
    NotEnoughSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
    },

    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} already exists and differs from {file} of {repo}; nothing was replaced. Pull into another directory with --tag (e.g. --tag {suggested_tag}) or replace it with --force")]
    Conflict {
        path: PathBuf,
        file: String,
        repo: String,
        suggested_tag: String,
    },

    #[error("{repo} is not in the cache under {base} (offline: HF_HUB_OFFLINE or --offline is set); {hint}")]
    NotCached {
        repo: String,
        base: PathBuf,
        hint: String,
    },

    #[error("meta file {file}: {reason}")]
    BadMeta { file: String, reason: String },
}

impl HubError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        Self::Io { op, path, source }
    }

    /// An error writing `path`: the disk being full gets its own message.
    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error, needed: u64) -> Self {
        if source.kind() == std::io::ErrorKind::StorageFull {
            Self::DiskFull {
                path: path.into(),
                needed,
            }
        } else {
            Self::io("writing", path, source)
        }
    }

    /// Whether the hub could not be reached at all (the cache may then stand in).
    pub fn is_network(&self) -> bool {
        matches!(self, Self::Network { .. })
    }
}
