//! `nanochat pull`: a nanochat release from the hub into the nanochat base directory.
//!
//! 1. Lock `<base>/.pulls/<owner>--<repo>.lock` (a second pull of the same repository waits,
//!    then finds the work done).
//! 2. Ask the hub for the file list at the revision (unless offline) and pick the release.
//! 3. If the manifest `<base>/.pulls/<owner>--<repo>.json` says this commit is installed and
//!    its files are there, stop: nothing to do. Offline, or when the hub cannot be reached and
//!    the caller allows it (serve, chat), the manifest alone says where the model is.
//! 4. Download what changed into `<base>/.pulls/<owner>--<repo>/` (resumable, verified).
//! 5. Read the meta: the stage (`--source`, else inferred from the meta's keys, as each of
//!    nanochat's training scripts writes different ones) and tag (`--tag`, else `d<n_layer>`)
//!    give the directory, e.g. `<base>/chatsft_checkpoints/d20/`.
//! 6. Move the files there — the meta last, so a server scanning the directory never sees a
//!    checkpoint without its weights. A file already there that we did not put there and that
//!    differs is never replaced without `--force`.
//! 7. The tokenizer goes beside the model (our loaders prefer it there) and into
//!    `<base>/tokenizer/` if none is there yet; a different tokenizer already there is kept
//!    (other checkpoints may need it) and the user is told.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nanochat_model::checkpoint::Source;
use serde::{Deserialize, Serialize};

use crate::client::{HubClient, RemoteFile};
use crate::download::{download, is_verified_copy, sha256_file};
use crate::error::{HubError, Result};
use crate::progress::Progress;
use crate::release::{self, Release, TOKENIZER_FILE, TOKEN_BYTES_FILE};
use crate::repo_ref::RepoRef;

/// What to pull and where.
#[derive(Clone, Debug)]
pub struct PullOptions {
    pub repo: RepoRef,
    /// Repository paths to fetch instead of picking the release's files.
    pub files: Vec<String>,
    /// The step to fetch (default: the last).
    pub step: Option<u64>,
    /// Training stage directory (default: inferred from the meta).
    pub source: Option<Source>,
    /// Directory under the stage (default: `d<n_layer>`).
    pub tag: Option<String>,
    /// Use only what was pulled before; never touch the network.
    pub offline: bool,
    /// Replace files in the way that differ from the release.
    pub force: bool,
    /// When the hub cannot be reached, use the copy pulled before (with a note) instead of
    /// failing — what `serve`/`chat --model hf:…` want; `nanochat pull` itself fails.
    pub cache_on_network_error: bool,
}

impl PullOptions {
    pub fn new(repo: RepoRef) -> Self {
        Self {
            repo,
            files: Vec::new(),
            step: None,
            source: None,
            tag: None,
            offline: false,
            force: false,
            cache_on_network_error: false,
        }
    }
}

/// What a pull did.
#[derive(Clone, Debug)]
pub struct Pulled {
    /// The checkpoint directory (`<base>/chatsft_checkpoints/d20`).
    pub dir: PathBuf,
    pub step: u64,
    /// The model file in `dir`.
    pub model: PathBuf,
    pub commit: String,
    /// Bytes transferred by this pull (0 when up to date or offline).
    pub downloaded_bytes: u64,
    /// Files fetched (or resumed) by this pull.
    pub downloaded_files: usize,
    /// Nothing needed fetching.
    pub up_to_date: bool,
    /// The hub was not asked (offline, or unreachable and the cache stood in).
    pub from_cache: bool,
    /// Things the user should know (tokenizer kept, hub unreachable, …).
    pub notes: Vec<String>,
}

/// What is installed for a repository: `<base>/.pulls/<owner>--<repo>.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Manifest {
    repo: String,
    revision: String,
    commit: String,
    endpoint: String,
    step: u64,
    /// Checkpoint directory, relative to the base directory.
    dir: PathBuf,
    /// Model file name in `dir`.
    model: String,
    files: Vec<InstalledFile>,
    pulled_at_unix: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct InstalledFile {
    /// Path in the repository.
    remote: String,
    /// Where it was put, relative to the base directory.
    local: PathBuf,
    size: Option<u64>,
    sha256: Option<String>,
    git_sha1: Option<String>,
}

impl InstalledFile {
    fn same_content(&self, remote: &RemoteFile) -> bool {
        self.size == remote.size
            && match (
                &self.sha256,
                &remote.sha256,
                &self.git_sha1,
                &remote.git_sha1,
            ) {
                (Some(a), Some(b), _, _) => a == b,
                (_, _, Some(a), Some(b)) => a == b,
                _ => false,
            }
    }
}

/// Pulls `options.repo` into `base` (see the module doc for the steps).
pub fn pull(
    base: &Path,
    client: &HubClient,
    options: &PullOptions,
    progress: &dyn Progress,
) -> Result<Pulled> {
    let state_dir = base.join(".pulls");
    create_dir(&state_dir)?;
    let key = options.repo.file_key();
    let _lock = lock(
        &state_dir.join(format!("{key}.lock")),
        &options.repo,
        progress,
    )?;
    let manifest_path = state_dir.join(format!("{key}.json"));
    let manifest = read_manifest(&manifest_path);
    if options.offline {
        return from_cache(base, options, manifest, Vec::new());
    }
    let listing = match client.listing(&options.repo) {
        Ok(listing) => listing,
        Err(error)
            if error.is_network() && options.cache_on_network_error && manifest.is_some() =>
        {
            let note = format!("{error}; using the copy pulled before");
            progress.note(&note);
            return from_cache(base, options, manifest, vec![note]);
        }
        Err(error) => return Err(error),
    };
    let release = release::select(&options.repo.repo, &listing, &options.files, options.step)?;
    if let Some(m) = &manifest {
        if m.commit == listing.commit && installed_matches(base, m, &release, options) {
            return Ok(pulled_from_manifest(base, m, true, false, Vec::new()));
        }
    }

    // Download what the installed copy does not already have.
    let staging = state_dir.join(&key);
    create_dir(&staging)?;
    check_free_space(&staging, &release, manifest.as_ref(), base)?;
    let mut downloaded_bytes = 0;
    let mut downloaded_files = 0;
    let mut sources: Vec<(RemoteFile, PathBuf)> = Vec::new();
    for file in release.files() {
        let installed = manifest.as_ref().and_then(|m| {
            let entry = m.files.iter().find(|f| f.same_content(file))?;
            let path = base.join(&entry.local);
            (file_size(&path) == file.size).then_some(path)
        });
        let path = match installed {
            Some(path) => path,
            None => {
                let staged = staging.join(file.name());
                if is_verified_copy(&staged, file) {
                    // Downloaded by an earlier pull that stopped before installing it.
                    sources.push((file.clone(), staged));
                    continue;
                }
                downloaded_bytes += download(
                    client,
                    &options.repo,
                    &listing.commit,
                    file,
                    &staged,
                    progress,
                )?;
                downloaded_files += 1;
                staged
            }
        };
        sources.push((file.clone(), path));
    }

    // Where the release goes, from its meta.
    let meta_path = &sources[0].1;
    let (n_layer, inferred) = read_meta(meta_path, &release.meta.path)?;
    let source = options.source.unwrap_or(inferred);
    let tag = options.tag.clone().unwrap_or_else(|| format!("d{n_layer}"));
    let dir_rel = Path::new(source.dir_name()).join(&tag);
    let dir = base.join(&dir_rel);
    create_dir(&dir)?;

    // Check every destination before moving anything, so a conflict changes nothing.
    let ours = |path: &Path| {
        manifest
            .as_ref()
            .is_some_and(|m| m.files.iter().any(|f| base.join(&f.local) == path))
    };
    let mut plan: Vec<(RemoteFile, PathBuf, PathBuf)> = Vec::new();
    for (file, from) in &sources {
        let dest = dir.join(file.name());
        if from != &dest
            && dest.exists()
            && !ours(&dest)
            && !options.force
            && !same_file_content(&dest, file)?
        {
            return Err(HubError::Conflict {
                path: dest,
                file: file.path.clone(),
                repo: options.repo.repo.clone(),
                suggested_tag: format!(
                    "{tag}-{}",
                    options.repo.repo.split('/').next().unwrap_or("hub")
                ),
            });
        }
        plan.push((file.clone(), from.clone(), dest));
    }
    // The meta last: a checkpoint is discovered by its meta.
    plan.rotate_left(1);
    for (_, from, dest) in &plan {
        if from != dest {
            place(from, dest, from.starts_with(&staging))?;
        }
    }
    let _ = std::fs::remove_dir(&staging);

    let mut notes = Vec::new();
    if let Some(tokenizer) = &release.tokenizer {
        notes.extend(share_tokenizer(base, &dir, tokenizer.name())?);
    }
    let manifest = Manifest {
        repo: options.repo.repo.clone(),
        revision: options.repo.revision.clone(),
        commit: listing.commit.clone(),
        endpoint: client.endpoint().to_string(),
        step: release.step,
        dir: dir_rel.clone(),
        model: release.model.name().to_string(),
        files: plan
            .iter()
            .map(|(file, _, _)| InstalledFile {
                remote: file.path.clone(),
                local: dir_rel.join(file.name()),
                size: file.size,
                sha256: file.sha256.clone(),
                git_sha1: file.git_sha1.clone(),
            })
            .collect(),
        pulled_at_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    write_manifest(&manifest_path, &manifest)?;
    for note in &notes {
        progress.note(note);
    }
    let mut pulled = pulled_from_manifest(base, &manifest, downloaded_files == 0, false, notes);
    pulled.downloaded_bytes = downloaded_bytes;
    pulled.downloaded_files = downloaded_files;
    Ok(pulled)
}

/// Whether the installed copy is this release, where these options would put it, complete.
fn installed_matches(base: &Path, m: &Manifest, release: &Release, options: &PullOptions) -> bool {
    let wanted_dir = |dir: &Path| {
        let mut parts = dir.iter();
        let stage = parts.next().and_then(|s| s.to_str());
        let tag = parts.next().and_then(|s| s.to_str());
        options.source.is_none_or(|s| Some(s.dir_name()) == stage)
            && options.tag.as_deref().is_none_or(|t| Some(t) == tag)
    };
    m.step == release.step
        && wanted_dir(&m.dir)
        && release.files().iter().all(|file| {
            m.files.iter().any(|f| {
                f.remote == file.path
                    && f.same_content(file)
                    && file_size(&base.join(&f.local)) == file.size
            })
        })
}

/// The answer from the manifest alone (offline, or the hub unreachable).
fn from_cache(
    base: &Path,
    options: &PullOptions,
    manifest: Option<Manifest>,
    notes: Vec<String>,
) -> Result<Pulled> {
    let not_cached = |hint: String| HubError::NotCached {
        repo: options.repo.to_string(),
        base: base.to_path_buf(),
        hint,
    };
    let m = manifest
        .ok_or_else(|| not_cached("pull it once with the network on (without --offline)".into()))?;
    let rev = &options.repo.revision;
    if options.repo.explicit_revision && rev != &m.revision && !m.commit.starts_with(rev.as_str()) {
        return Err(not_cached(format!(
            "the cached copy is revision {} (commit {})",
            m.revision, m.commit
        )));
    }
    for file in &m.files {
        let path = base.join(&file.local);
        if file.size.is_some() && file_size(&path) != file.size {
            return Err(not_cached(format!(
                "{} is missing or incomplete; pull again with the network on",
                path.display()
            )));
        }
    }
    Ok(pulled_from_manifest(base, &m, true, true, notes))
}

fn pulled_from_manifest(
    base: &Path,
    m: &Manifest,
    up_to_date: bool,
    from_cache: bool,
    notes: Vec<String>,
) -> Pulled {
    let dir = base.join(&m.dir);
    Pulled {
        model: dir.join(&m.model),
        dir,
        step: m.step,
        commit: m.commit.clone(),
        downloaded_bytes: 0,
        downloaded_files: 0,
        up_to_date,
        from_cache,
        notes,
    }
}

/// `(n_layer, stage)` from a meta file. The stage is what wrote it: base training saves its
/// data loader and loop state, mid training `val_bpb`, SFT `val_loss`/`mmlu_acc`, RL only the
/// model config.
fn read_meta(path: &Path, name: &str) -> Result<(u64, Source)> {
    let bad = |reason: String| HubError::BadMeta {
        file: name.to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| HubError::io("reading", path, e))?;
    let meta: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let n_layer = meta
        .pointer("/model_config/n_layer")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| bad("no model_config.n_layer".into()))?;
    let has = |key: &str| meta.get(key).is_some();
    let source = if has("dataloader_state_dict") || has("loop_state") {
        Source::Base
    } else if has("val_loss") || has("mmlu_acc") {
        Source::Sft
    } else if has("val_bpb") {
        Source::Mid
    } else if meta.as_object().is_some_and(|o| o.len() == 1) {
        Source::Rl
    } else {
        Source::Sft
    };
    Ok((n_layer, source))
}

/// Whether `path` (not put there by us) already holds exactly `file`.
fn same_file_content(path: &Path, file: &RemoteFile) -> Result<bool> {
    if file_size(path) != file.size {
        return Ok(false);
    }
    match &file.sha256 {
        Some(expected) => Ok(&sha256_file(path)? == expected),
        // Without a sha256 a size match is not enough to call it the same.
        None => Ok(false),
    }
}

/// Copies the tokenizer files into `<base>/tokenizer/` when none is there; notes a different one.
fn share_tokenizer(base: &Path, dir: &Path, tokenizer_name: &str) -> Result<Vec<String>> {
    let shared = base.join("tokenizer");
    let ours = dir.join(tokenizer_name);
    let theirs = shared.join(TOKENIZER_FILE);
    if !theirs.exists() {
        create_dir(&shared)?;
        for name in [TOKENIZER_FILE, TOKEN_BYTES_FILE] {
            let from = dir.join(name);
            if from.exists() {
                let tmp = shared.join(format!(".{name}.tmp"));
                std::fs::copy(&from, &tmp).map_err(|e| HubError::write(&tmp, e, 0))?;
                std::fs::rename(&tmp, shared.join(name))
                    .map_err(|e| HubError::io("renaming into place", shared.join(name), e))?;
            }
        }
        return Ok(Vec::new());
    }
    if sha256_file(&theirs)? == sha256_file(&ours)? {
        return Ok(Vec::new());
    }
    Ok(vec![format!(
        "{} holds a different tokenizer; it was kept (other checkpoints may need it). This model's own tokenizer is in {}, which serve and chat use for it",
        theirs.display(),
        dir.display()
    )])
}

/// Moves (or copies, for a file that stays installed elsewhere) `from` to `to` atomically.
fn place(from: &Path, to: &Path, movable: bool) -> Result<()> {
    if movable && std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    // Another file system, or a file of an older install that stays where it is.
    let tmp = crate::download::part_path(to);
    let size = file_size(from).unwrap_or(0);
    std::fs::copy(from, &tmp).map_err(|e| HubError::write(&tmp, e, size))?;
    std::fs::rename(&tmp, to).map_err(|e| HubError::io("renaming into place", to, e))?;
    if movable {
        let _ = std::fs::remove_file(from);
    }
    Ok(())
}

/// Holds the repository's lock file until dropped; waits (saying so) if another pull has it.
fn lock(path: &Path, repo: &RepoRef, progress: &dyn Progress) -> Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| HubError::io("opening the lock", path, e))?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            progress.note(&format!(
                "another pull of {} is running; waiting for it to finish",
                repo.repo
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(HubError::io("locking", path, e)),
    }
    file.lock().map_err(|e| HubError::io("locking", path, e))?;
    Ok(file)
}

fn read_manifest(path: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_manifest(path: &Path, manifest: &Manifest) -> Result<()> {
    let text = serde_json::to_string_pretty(manifest)
        .map_err(|e| HubError::io("writing", path, std::io::Error::other(e)))?;
    let tmp = crate::download::part_path(path);
    std::fs::write(&tmp, text).map_err(|e| HubError::write(&tmp, e, 0))?;
    std::fs::rename(&tmp, path).map_err(|e| HubError::io("renaming into place", path, e))
}

/// Refuses to start when the files still to fetch cannot fit on the disk (a download that
/// fails near its end wastes the user's time; the part would stay, though, and resume).
fn check_free_space(
    staging: &Path,
    release: &Release,
    manifest: Option<&Manifest>,
    base: &Path,
) -> Result<()> {
    let needed: u64 = release
        .files()
        .iter()
        .filter(|file| {
            !manifest.is_some_and(|m| {
                m.files
                    .iter()
                    .any(|f| f.same_content(file) && file_size(&base.join(&f.local)) == file.size)
            })
        })
        .map(|file| {
            let have = file_size(&crate::download::part_path(&staging.join(file.name())))
                .or_else(|| file_size(&staging.join(file.name())))
                .unwrap_or(0);
            file.size.unwrap_or(0).saturating_sub(have)
        })
        .sum();
    match available_bytes(staging) {
        Some(available) if available < needed => Err(HubError::NotEnoughSpace {
            path: staging.to_path_buf(),
            needed,
            available,
        }),
        _ => Ok(()),
    }
}

/// Bytes free for an unprivileged user on the file system holding `path` (None if unknown).
#[cfg(unix)]
fn available_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a zeroed statvfs the call fills in.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    Some(stats.f_bavail as u64 * stats.f_frsize as u64)
}

#[cfg(not(unix))]
fn available_bytes(_path: &Path) -> Option<u64> {
    None
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| HubError::write(path, e, 0))
}

fn file_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}
