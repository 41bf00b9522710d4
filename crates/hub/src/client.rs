//! The hub's HTTP API, as the `huggingface_hub` library uses it:
//!
//! * `GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true` — the commit the revision
//!   points at (`sha`) and every file (`siblings`) with its size, git blob id and, for LFS files,
//!   its sha256.
//! * `GET {endpoint}/{repo}/resolve/{commit}/{path}` — the bytes; LFS files redirect to a CDN,
//!   which the client follows (the token is not sent to the other host). Files are fetched at
//!   the listed commit, so a push during a pull cannot mix two versions.
//!
//! The endpoint is `HF_ENDPOINT` (default `https://huggingface.co`), the token `HF_TOKEN`
//! (or the older `HUGGING_FACE_HUB_TOKEN`). The hub answers 401 for a repository that does not
//! exist *or* is private when no token is sent, and says which in `X-Error-Code`.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{HubError, Result};
use crate::repo_ref::RepoRef;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A file of a repository at one commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// Path in the repository (`model_000650.pt`, `subdir/meta.json`).
    pub path: String,
    /// Bytes, when the hub says.
    pub size: Option<u64>,
    /// sha256 of the content (LFS files).
    pub sha256: Option<String>,
    /// git's blob id: sha1 of `blob <size>\0<content>` (every file).
    pub git_sha1: Option<String>,
}

impl RemoteFile {
    /// The last path component.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// A repository's files at the commit a revision points at.
#[derive(Clone, Debug)]
pub struct RepoListing {
    pub commit: String,
    pub files: Vec<RemoteFile>,
}

pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    agent: ureq::Agent,
}

#[derive(Deserialize)]
struct ModelInfo {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    lfs: Option<LfsInfo>,
}

#[derive(Deserialize)]
struct LfsInfo {
    sha256: String,
    size: Option<u64>,
}

impl HubClient {
    pub fn new(endpoint: &str, token: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("nanochat-rs/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            // A stalled transfer fails (and resumes on the next run) instead of hanging.
            .timeout_per_read(Some(Duration::from_secs(120)))
            .build()
            .into();
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.trim().is_empty()),
            agent,
        }
    }

    /// `HF_ENDPOINT` and `HF_TOKEN` (or `HUGGING_FACE_HUB_TOKEN`); `token` overrides the latter.
    pub fn from_env(token: Option<String>) -> Self {
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let token = token
            .or_else(|| std::env::var("HF_TOKEN").ok())
            .or_else(|| std::env::var("HUGGING_FACE_HUB_TOKEN").ok());
        Self::new(&endpoint, token)
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The file list of `repo` at its revision.
    pub fn listing(&self, repo: &RepoRef) -> Result<RepoListing> {
        let url = format!(
            "{}/api/models/{}/revision/{}?blobs=true",
            self.endpoint,
            repo.repo,
            encode_path(&repo.revision)
        );
        let mut response = self.get(&url, None)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(self.status_error(repo, &url, &mut response));
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| network(&url, e))?;
        let info: ModelInfo = serde_json::from_str(&text).map_err(|e| HubError::BadListing {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let commit = info.sha.ok_or_else(|| HubError::BadListing {
            url: url.clone(),
            reason: "no \"sha\" (commit) in the answer".into(),
        })?;
        let files = info
            .siblings
            .into_iter()
            .map(|s| {
                let (sha256, lfs_size) = match s.lfs {
                    Some(lfs) => (Some(lfs.sha256.to_ascii_lowercase()), lfs.size),
                    None => (None, None),
                };
                RemoteFile {
                    path: s.rfilename,
                    size: lfs_size.or(s.size),
                    sha256,
                    git_sha1: s.blob_id.map(|b| b.to_ascii_lowercase()),
                }
            })
            .collect();
        Ok(RepoListing { commit, files })
    }

    /// Where `path` of `repo` at `commit` is downloaded from.
    pub fn file_url(&self, repo: &RepoRef, commit: &str, path: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            repo.repo,
            encode_path(commit),
            encode_path(path)
        )
    }

    /// A GET with the token, from byte `from` on if given (`Range: bytes=from-`).
    pub(crate) fn get(
        &self,
        url: &str,
        from: Option<u64>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut request = self.agent.get(url).header("Accept-Encoding", "identity");
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {}", token.trim()));
        }
        if let Some(from) = from {
            request = request.header("Range", format!("bytes={from}-"));
        }
        request.call().map_err(|e| network(url, e))
    }

    /// The error for a non-success answer about `repo`.
    pub(crate) fn status_error(
        &self,
        repo: &RepoRef,
        url: &str,
        response: &mut ureq::http::Response<ureq::Body>,
    ) -> HubError {
        let status = response.status().as_u16();
        let code = response
            .headers()
            .get("x-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let endpoint = self.endpoint.clone();
        let repo_name = repo.repo.clone();
        if code == "GatedRepo" {
            return HubError::Unauthorized {
                repo: repo_name,
                endpoint,
                status,
                what: "gated",
                advice: if self.token.is_some() {
                    "accept its terms on the hub's page with the account your token belongs to"
                } else {
                    "accept its terms on the hub's page, then set HF_TOKEN (or pass --token) to a token of that account"
                },
            };
        }
        if status == 404 && code == "RevisionNotFound" {
            return HubError::RevisionNotFound {
                repo: repo_name,
                revision: repo.revision.clone(),
            };
        }
        if status == 404 || (status == 401 && code == "RepoNotFound") {
            return HubError::RepoNotFound {
                repo: repo_name,
                endpoint,
            };
        }
        if status == 401 || status == 403 {
            return HubError::Unauthorized {
                repo: repo_name,
                endpoint,
                status,
                what: "private or needs a token",
                advice: if self.token.is_some() {
                    "the token given (HF_TOKEN / --token) is not allowed to read it"
                } else {
                    "set HF_TOKEN (or pass --token) to a token that can read it"
                },
            };
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(4096)
            .read_to_string()
            .unwrap_or_default();
        HubError::Http {
            url: url.to_string(),
            status,
            body: body.chars().take(300).collect(),
        }
    }
}

fn network(url: &str, error: ureq::Error) -> HubError {
    HubError::Network {
        url: url.to_string(),
        reason: error.to_string(),
    }
}

/// Percent-encodes what is not safe in a URL path, keeping `/` between segments.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode_path;

    #[test]
    fn paths_are_percent_encoded_but_keep_slashes() {
        assert_eq!(encode_path("dir/model 1.pt"), "dir/model%201.pt");
        assert_eq!(encode_path("refs/pr/1"), "refs/pr/1");
        assert_eq!(encode_path("ü"), "%C3%BC");
    }
}
