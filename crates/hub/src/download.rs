//! One file from the hub to disk, safely: bytes go to `<dest>.part`; after an interruption the
//! next run asks for the rest with `Range: bytes=<have>-` (a server that ignores it sends the
//! whole file, which then replaces the part); the finished part is checked against the hub's
//! sha256 (LFS files) or git blob sha1 (small files), and its size, before it is renamed over
//! `dest` — so `dest` is always either absent or complete and verified. A part that fails the
//! check is deleted, so the next run starts clean.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::client::{HubClient, RemoteFile};
use crate::error::{HubError, Result};
use crate::progress::Progress;
use crate::repo_ref::RepoRef;

const CHUNK: usize = 1 << 20;

/// `<dest>.part`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Downloads `file` of `repo` at `commit` to `dest` (resuming `<dest>.part`), verified.
/// Returns the bytes transferred by this call.
pub fn download(
    client: &HubClient,
    repo: &RepoRef,
    commit: &str,
    file: &RemoteFile,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<u64> {
    let url = client.file_url(repo, commit, &file.path);
    let part = part_path(dest);
    let mut have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    if file.size.is_some_and(|size| have > size) {
        have = 0;
    }
    let complete = have > 0 && file.size == Some(have);
    let mut transferred = 0;
    if !complete {
        let mut response = client.get(&url, (have > 0).then_some(have))?;
        let status = response.status().as_u16();
        let resumed = match status {
            206 => {
                let start = content_range_start(&response);
                if start != Some(have) {
                    return Err(HubError::Http {
                        url,
                        status,
                        body: format!(
                            "asked for bytes from {have} on, got a range starting at {start:?}"
                        ),
                    });
                }
                have
            }
            200 => 0,
            // Asked past the end: the part is longer than the file — start over (without a
            // Range header, so this cannot repeat).
            416 => {
                let _ = std::fs::remove_file(&part);
                return download(client, repo, commit, file, dest, progress);
            }
            _ => return Err(client.status_error(repo, &url, &mut response)),
        };
        let total = file
            .size
            .or_else(|| content_length(&response).map(|len| len + resumed));
        let mut out = open_part(&part, resumed)?;
        progress.file_started(&file.path, total, resumed);
        let mut reader = response.body_mut().as_reader();
        let mut buffer = vec![0u8; CHUNK];
        let mut done = resumed;
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = out.sync_all();
                    return Err(HubError::Interrupted {
                        file: file.path.clone(),
                        done,
                        total: total.map_or("?".into(), |t| t.to_string()),
                        reason: e.to_string(),
                    });
                }
            };
            out.write_all(&buffer[..n])
                .map_err(|e| HubError::write(&part, e, total.unwrap_or(0)))?;
            done += n as u64;
            transferred += n as u64;
            progress.advanced(n as u64);
        }
        out.sync_all()
            .map_err(|e| HubError::write(&part, e, total.unwrap_or(0)))?;
        if let Some(total) = total {
            if done < total {
                return Err(HubError::Interrupted {
                    file: file.path.clone(),
                    done,
                    total: total.to_string(),
                    reason: "the connection closed early".into(),
                });
            }
        }
    } else {
        progress.file_started(&file.path, file.size, have);
    }
    if let Err(error) = verify(&part, file) {
        let _ = std::fs::remove_file(&part);
        return Err(error);
    }
    std::fs::rename(&part, dest).map_err(|e| HubError::io("renaming into place", dest, e))?;
    progress.file_finished(&file.path);
    Ok(transferred)
}

/// Checks the finished part against the hub's size and hashes.
fn verify(part: &Path, file: &RemoteFile) -> Result<()> {
    let mismatch = |check, expected: &str, got: String| HubError::Mismatch {
        file: file.path.clone(),
        check,
        expected: expected.to_string(),
        got,
    };
    let size = std::fs::metadata(part)
        .map_err(|e| HubError::io("reading", part, e))?
        .len();
    if let Some(expected) = file.size {
        if size != expected {
            return Err(mismatch("size", &expected.to_string(), size.to_string()));
        }
    }
    if let Some(expected) = &file.sha256 {
        let got = hash_file(part, Sha256::new(), None)?;
        if &got != expected {
            return Err(mismatch("sha256", expected, got));
        }
    } else if let Some(expected) = &file.git_sha1 {
        let got = hash_file(part, Sha1::new(), Some(size))?;
        if &got != expected {
            return Err(mismatch("git blob sha1", expected, got));
        }
    }
    Ok(())
}

/// Whether `path` holds exactly `file` (size and hash), e.g. a download verified by an earlier
/// pull that stopped before installing it.
pub fn is_verified_copy(path: &Path, file: &RemoteFile) -> bool {
    path.is_file() && verify(path, file).is_ok()
}

/// sha256 of a file as lowercase hex (for comparing a file already present with the hub's).
pub fn sha256_file(path: &Path) -> Result<String> {
    hash_file(path, Sha256::new(), None)
}

/// Hex digest of the file; with `git_blob_size`, of git's `blob <size>\0` header plus it.
fn hash_file<D: Digest>(path: &Path, mut hasher: D, git_blob_size: Option<u64>) -> Result<String> {
    let mut input = File::open(path).map_err(|e| HubError::io("reading", path, e))?;
    if let Some(size) = git_blob_size {
        hasher.update(format!("blob {size}\0").as_bytes());
    }
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = input
            .read(&mut buffer)
            .map_err(|e| HubError::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The part file, positioned to append at `keep` (truncated there; 0 starts over).
fn open_part(part: &Path, keep: u64) -> Result<File> {
    let mut out = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(part)
        .map_err(|e| HubError::write(part, e, 0))?;
    out.set_len(keep).map_err(|e| HubError::write(part, e, 0))?;
    out.seek(SeekFrom::Start(keep))
        .map_err(|e| HubError::write(part, e, 0))?;
    Ok(out)
}

fn header<'a>(response: &'a ureq::http::Response<ureq::Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

fn content_length(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    header(response, "content-length").and_then(|v| v.trim().parse().ok())
}

/// The first byte of `Content-Range: bytes <start>-<end>/<total>`.
fn content_range_start(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let range = header(response, "content-range")?.trim();
    let spec = range.strip_prefix("bytes")?.trim_start();
    spec.split('-').next()?.trim().parse().ok()
}
