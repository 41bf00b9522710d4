//! `pull` against a loopback imitation of the hub (nanochat_fixtures::fake_hub) serving a tiny
//! nanochat release built from the fixtures: fresh pull, no-op second pull, resume after an
//! interruption, corruption caught by the hash, 404/401, offline, concurrent pulls, and files
//! of the user's that must not be overwritten.

use std::path::Path;

use nanochat_fixtures::fake_hub::{tiny_release, FakeHub, HubFile, HubRepo};
use nanochat_fixtures::scratch_dir;
use nanochat_hub::{pull, HubClient, HubError, PullOptions, RepoRef, SilentProgress};
use nanochat_model::checkpoint::checkpoint_in_dir;

const REPO: &str = "tiny/nanochat";

fn hub_with_release() -> FakeHub {
    let hub = FakeHub::start();
    hub.add_repo(
        REPO,
        HubRepo {
            commit: "a".repeat(40),
            files: tiny_release(),
            token: None,
        },
    );
    hub
}

fn options(repo: &str) -> PullOptions {
    PullOptions::new(RepoRef::parse(repo).unwrap())
}

fn pull_from(
    hub: &FakeHub,
    base: &Path,
    options: &PullOptions,
) -> Result<nanochat_hub::Pulled, HubError> {
    pull(
        base,
        &HubClient::new(&hub.endpoint(), None),
        options,
        &SilentProgress,
    )
}

fn file_requests(hub: &FakeHub) -> usize {
    hub.requests()
        .iter()
        .filter(|r| !r.path.starts_with("/api/"))
        .count()
}

fn release_file(name: &str) -> HubFile {
    tiny_release().into_iter().find(|f| f.path == name).unwrap()
}

#[test]
fn fresh_pull_installs_the_release_where_nanochat_looks() {
    let hub = hub_with_release();
    let base = scratch_dir("hub-fresh");
    let pulled = pull_from(&hub, &base, &options(REPO)).unwrap();
    let dir = base.join("chatsft_checkpoints/d3");
    assert_eq!(pulled.dir, dir);
    assert_eq!(
        (pulled.step, pulled.downloaded_files, pulled.up_to_date),
        (650, 4, false)
    );
    for file in tiny_release().iter().filter(|f| f.path != "README.md") {
        assert_eq!(
            std::fs::read(dir.join(&file.path)).unwrap(),
            *file.bytes,
            "{}",
            file.path
        );
    }
    assert!(!dir.join("README.md").exists());
    assert_eq!(
        std::fs::read(base.join("tokenizer/tokenizer.pkl")).unwrap(),
        *release_file("tokenizer.pkl").bytes
    );
    let found = checkpoint_in_dir(&dir, None).unwrap();
    assert_eq!(
        (found.step, found.weights),
        (650, dir.join("model_000650.pt"))
    );
    // The LFS file came through the CDN redirect; no part files are left.
    assert!(hub.requests().iter().any(|r| r.path.starts_with("/cdn/")));
    let leftovers: Vec<_> = walk(&base)
        .into_iter()
        .filter(|p| p.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn second_pull_is_a_no_op() {
    let hub = hub_with_release();
    let base = scratch_dir("hub-second");
    pull_from(&hub, &base, &options(REPO)).unwrap();
    let before = file_requests(&hub);
    let again = pull_from(&hub, &base, &options(REPO)).unwrap();
    assert!(again.up_to_date && again.downloaded_bytes == 0, "{again:?}");
    assert_eq!(file_requests(&hub), before, "no file was fetched again");
}

#[test]
fn an_interrupted_download_resumes_with_range() {
    let hub = hub_with_release();
    let base = scratch_dir("hub-resume");
    let model = release_file("model_000650.pt");
    hub.cut_next_transfer("model_000650.pt", 100_000);
    let err = pull_from(&hub, &base, &options(REPO)).unwrap_err();
    assert!(
        matches!(err, HubError::Interrupted { done: 100_000, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("again to resume"), "{err}");
    let part = base.join(".pulls/tiny--nanochat/model_000650.pt.part");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 100_000);
    assert!(
        !base
            .join("chatsft_checkpoints/d3/meta_000650.json")
            .exists(),
        "nothing installed yet"
    );

    let pulled = pull_from(&hub, &base, &options(REPO)).unwrap();
    let dir = base.join("chatsft_checkpoints/d3");
    assert_eq!(
        std::fs::read(dir.join("model_000650.pt")).unwrap(),
        *model.bytes
    );
    // The Range header goes to the hub and along its redirect to the CDN.
    let ranges: Vec<_> = hub
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/cdn/"))
        .filter_map(|r| r.range)
        .collect();
    assert_eq!(ranges, vec!["bytes=100000-".to_string()]);
    // Every byte of the model crossed the wire once.
    assert_eq!(hub.bytes_served("model_000650.pt"), model.bytes.len());
    // The meta, verified before the interruption, was not fetched again.
    assert_eq!(
        pulled.downloaded_bytes as usize,
        model.bytes.len() - 100_000 + other_bytes(&["model_000650.pt", "meta_000650.json"])
    );
    assert!(!part.exists());
}

/// Bytes of the release's installed files other than `except`.
fn other_bytes(except: &[&str]) -> usize {
    tiny_release()
        .iter()
        .filter(|f| f.path != "README.md" && !except.contains(&f.path.as_str()))
        .map(|f| f.bytes.len())
        .sum()
}

#[test]
fn corrupted_bytes_are_caught_by_the_hash_and_deleted() {
    let hub = hub_with_release();
    let base = scratch_dir("hub-corrupt");
    for (file, check) in [
        ("model_000650.pt", "sha256"),
        ("tokenizer.pkl", "git blob sha1"),
    ] {
        hub.corrupt_next_transfer(file);
        let err = pull_from(&hub, &base, &options(REPO)).unwrap_err();
        match &err {
            HubError::Mismatch {
                file: f, check: c, ..
            } => assert_eq!((f.as_str(), *c), (file, check)),
            other => panic!("{file}: expected a mismatch, got {other}"),
        }
        assert!(err.to_string().contains("deleted"), "{err}");
        assert!(!base
            .join(format!(".pulls/tiny--nanochat/{file}.part"))
            .exists());
        assert!(!base.join("chatsft_checkpoints/d3").join(file).exists());
    }
    pull_from(&hub, &base, &options(REPO)).unwrap();
    assert_eq!(
        std::fs::read(base.join("chatsft_checkpoints/d3/tokenizer.pkl")).unwrap(),
        *release_file("tokenizer.pkl").bytes
    );
}

#[test]
fn unknown_repositories_and_revisions_say_so() {
    let hub = hub_with_release();
    let base = scratch_dir("hub-404");
    let err = pull_from(&hub, &base, &options("nobody/nothing")).unwrap_err();
    assert!(matches!(err, HubError::RepoNotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("nobody/nothing was not found"),
        "{err}"
    );
    let err = pull_from(&hub, &base, &options("tiny/nanochat@v9")).unwrap_err();
    assert!(matches!(err, HubError::RevisionNotFound { .. }), "{err}");
    // A revision that is the commit works.
    pull_from(&hub, &base, &options(&format!("{REPO}@{}", "a".repeat(40)))).unwrap();
}

#[test]
fn private_repositories_need_the_token() {
    let hub = FakeHub::start();
    hub.add_repo(
        "me/secret",
        HubRepo {
            commit: "b".repeat(40),
            files: tiny_release(),
            token: Some("hf_right".into()),
        },
    );
    let base = scratch_dir("hub-401");
    let client = |token: Option<&str>| HubClient::new(&hub.endpoint(), token.map(str::to_string));
    let err = pull(&base, &client(None), &options("me/secret"), &SilentProgress).unwrap_err();
    assert!(
        matches!(err, HubError::Unauthorized { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("set HF_TOKEN"), "{err}");
    let err = pull(
        &base,
        &client(Some("hf_wrong")),
        &options("me/secret"),
        &SilentProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not allowed"), "{err}");
    pull(
        &base,
        &client(Some("hf_right")),
        &options("me/secret"),
        &SilentProgress,
    )
    .unwrap();
    // The token went to the hub but not along the redirect to the CDN.
    let requests = hub.requests();
    assert!(requests
        .iter()
        .any(|r| r.path.starts_with("/me/secret/resolve/") && r.authorization.is_some()));
    assert!(requests
        .iter()
        .filter(|r| r.path.starts_with("/cdn/"))
        .all(|r| r.authorization.is_none()));
}

#[test]
fn offline_uses_the_cache_only() {
    let hub = hub_with_release();
    let base = scratch_dir("hub-offline");
    let offline = PullOptions {
        offline: true,
        ..options(REPO)
    };
    let err = pull_from(&hub, &base, &offline).unwrap_err();
    assert!(matches!(err, HubError::NotCached { .. }), "{err}");
    assert!(hub.requests().is_empty(), "offline never asks the hub");
    pull_from(&hub, &base, &options(REPO)).unwrap();
    let count = hub.requests().len();
    let cached = pull_from(&hub, &base, &offline).unwrap();
    assert!(cached.from_cache && cached.dir == base.join("chatsft_checkpoints/d3"));
    assert_eq!(hub.requests().len(), count);
    // A hub that cannot be reached: `nanochat pull` fails, serve/chat fall back to the cache.
    let dead = HubClient::new("http://127.0.0.1:9", None);
    let err = pull(&base, &dead, &options(REPO), &SilentProgress).unwrap_err();
    assert!(
        err.is_network() && err.to_string().contains("--offline"),
        "{err}"
    );
    let fallback = PullOptions {
        cache_on_network_error: true,
        ..options(REPO)
    };
    let cached = pull(&base, &dead, &fallback, &SilentProgress).unwrap();
    assert!(
        cached.from_cache && cached.notes[0].contains("cannot reach"),
        "{cached:?}"
    );
    // Offline with a revision other than the one cached is refused.
    let err = pull_from(
        &hub,
        &base,
        &PullOptions {
            offline: true,
            ..options("tiny/nanochat@other")
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("cached copy is revision main"),
        "{err}"
    );
}

#[test]
fn concurrent_pulls_of_one_repository_download_once() {
    let hub = hub_with_release();
    let base = scratch_dir("hub-concurrent");
    let results: Vec<_> = std::thread::scope(|scope| {
        let pulls: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| pull_from(&hub, &base, &options(REPO))))
            .collect();
        pulls.into_iter().map(|p| p.join().unwrap()).collect()
    });
    let pulled: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        pulled.iter().filter(|p| p.up_to_date).count(),
        1,
        "one waited and found the work done"
    );
    let model = release_file("model_000650.pt");
    assert_eq!(hub.bytes_served("model_000650.pt"), model.bytes.len());
    assert_eq!(
        std::fs::read(base.join("chatsft_checkpoints/d3/model_000650.pt")).unwrap(),
        *model.bytes
    );
}

#[test]
fn a_different_file_in_the_way_is_never_replaced() {
    let hub = hub_with_release();
    let base = scratch_dir("hub-conflict");
    let dir = base.join("chatsft_checkpoints/d3");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model_000650.pt"), b"my own training run").unwrap();
    let err = pull_from(&hub, &base, &options(REPO)).unwrap_err();
    assert!(
        matches!(err, HubError::Conflict { .. }) && err.to_string().contains("--tag d3-tiny"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.join("model_000650.pt")).unwrap(),
        b"my own training run"
    );
    assert!(!dir.join("meta_000650.json").exists());
    // Elsewhere with --tag (the downloads made by the failed pull are reused).
    let served = hub.bytes_served("model_000650.pt");
    let pulled = pull_from(
        &hub,
        &base,
        &PullOptions {
            tag: Some("d3-tiny".into()),
            ..options(REPO)
        },
    )
    .unwrap();
    assert_eq!(pulled.dir, base.join("chatsft_checkpoints/d3-tiny"));
    assert_eq!(hub.bytes_served("model_000650.pt"), served);
    assert_eq!(
        std::fs::read(dir.join("model_000650.pt")).unwrap(),
        b"my own training run"
    );
}

#[test]
fn a_different_shared_tokenizer_is_kept_and_reported() {
    let hub = hub_with_release();
    let base = scratch_dir("hub-tokenizer");
    std::fs::create_dir_all(base.join("tokenizer")).unwrap();
    std::fs::write(base.join("tokenizer/tokenizer.pkl"), b"another tokenizer").unwrap();
    let pulled = pull_from(&hub, &base, &options(REPO)).unwrap();
    assert_eq!(
        std::fs::read(base.join("tokenizer/tokenizer.pkl")).unwrap(),
        b"another tokenizer"
    );
    assert!(
        pulled
            .notes
            .iter()
            .any(|n| n.contains("different tokenizer; it was kept")),
        "{:?}",
        pulled.notes
    );
    assert!(pulled.dir.join("tokenizer.pkl").exists());
}

#[test]
fn a_release_too_big_for_the_disk_is_refused_before_downloading() {
    let hub = FakeHub::start();
    let mut files = tiny_release();
    let model = files
        .iter_mut()
        .find(|f| f.path == "model_000650.pt")
        .unwrap();
    model.listed_size = Some(1 << 60);
    hub.add_repo(
        REPO,
        HubRepo {
            commit: "e".repeat(40),
            files,
            token: None,
        },
    );
    let err = pull_from(&hub, &scratch_dir("hub-disk"), &options(REPO)).unwrap_err();
    assert!(matches!(err, HubError::NotEnoughSpace { .. }), "{err}");
    assert!(err.to_string().contains("Free some space"), "{err}");
    assert_eq!(file_requests(&hub), 0, "nothing was downloaded");
}

#[test]
fn a_repository_that_is_not_a_release_says_what_was_expected() {
    let hub = FakeHub::start();
    let files = vec![
        HubFile::new("config.json", b"{}".to_vec(), false),
        HubFile::new("model.safetensors", vec![0; 16], true),
    ];
    hub.add_repo(
        "hf/transformers-style",
        HubRepo {
            commit: "c".repeat(40),
            files,
            token: None,
        },
    );
    let err = pull_from(
        &hub,
        &scratch_dir("hub-notrelease"),
        &options("hf/transformers-style"),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("not a nanochat release")
            && text.contains("model_<step>.pt")
            && text.contains("config.json"),
        "{text}"
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}
