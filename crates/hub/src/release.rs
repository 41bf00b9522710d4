//! Which files of a hub repository make a nanochat release: a `model_<step>.pt` (or our
//! `.safetensors`), its `meta_<step>.json`, and the tokenizer (`tokenizer.pkl`, with
//! `token_bytes.pt` when present — only bits-per-byte evaluation needs it). nanochat uploads
//! them side by side, e.g. `sdobson/nanochat`: `model_000650.pt`, `meta_000650.json`,
//! `tokenizer.pkl`. The last step wins unless one is asked for; `--files` names the files.

use crate::client::{RemoteFile, RepoListing};
use crate::error::{HubError, Result};

pub const TOKENIZER_FILE: &str = "tokenizer.pkl";
pub const TOKEN_BYTES_FILE: &str = "token_bytes.pt";

/// The files to download, meta first (its depth decides where the rest go).
#[derive(Clone, Debug)]
pub struct Release {
    pub step: u64,
    pub meta: RemoteFile,
    pub model: RemoteFile,
    /// `tokenizer.pkl` (absent only if `--files` left it out).
    pub tokenizer: Option<RemoteFile>,
    pub token_bytes: Option<RemoteFile>,
}

impl Release {
    pub fn files(&self) -> Vec<&RemoteFile> {
        let mut files = vec![&self.meta, &self.model];
        files.extend(self.tokenizer.iter());
        files.extend(self.token_bytes.iter());
        files
    }
}

/// `model_000650.pt` → 650 (also `.safetensors`).
fn model_step(name: &str) -> Option<u64> {
    let stem = name
        .strip_prefix("model_")?
        .strip_suffix(".pt")
        .or_else(|| name.strip_prefix("model_")?.strip_suffix(".safetensors"))?;
    (!stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

/// Picks the release in `listing`: from `only` (paths the user named, all of which must
/// exist) or from every file; `step` picks a step instead of the last.
pub fn select(
    repo: &str,
    listing: &RepoListing,
    only: &[String],
    step: Option<u64>,
) -> Result<Release> {
    let files: Vec<&RemoteFile> = if only.is_empty() {
        listing.files.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for wanted in only {
            let file = listing
                .files
                .iter()
                .find(|f| &f.path == wanted)
                .ok_or_else(|| HubError::NotARelease {
                    repo: repo.to_string(),
                    expected: format!("a file {wanted:?} (named with --files)"),
                    found: describe(listing),
                })?;
            chosen.push(file);
        }
        chosen
    };
    let not_a_release = |what: String| HubError::NotARelease {
        repo: repo.to_string(),
        expected: what,
        found: describe(listing),
    };
    let meta_of = |model: &RemoteFile, step: u64| {
        let dir = &model.path[..model.path.len() - model.name().len()];
        let meta_path = format!("{dir}meta_{step:06}.json");
        files.iter().find(|f| f.path == meta_path).copied()
    };
    // Models with their meta, by step; safetensors before .pt for the same step (loads faster).
    let mut candidates: Vec<(u64, bool, &RemoteFile, &RemoteFile)> = files
        .iter()
        .filter_map(|f| {
            let s = model_step(f.name())?;
            Some((s, f.path.ends_with(".safetensors"), *f, meta_of(f, s)?))
        })
        .filter(|(s, ..)| step.is_none_or(|wanted| *s == wanted))
        .collect();
    candidates.sort_by_key(|(s, safetensors, ..)| (*s, *safetensors));
    let Some(&(step, _, model, meta)) = candidates.last() else {
        let expected = match step {
            Some(s) => format!("model_{s:06}.pt (or .safetensors) with meta_{s:06}.json beside it"),
            None => "model_<step>.pt (or .safetensors) with meta_<step>.json beside it, and tokenizer.pkl".into(),
        };
        let hint = if listing.files.iter().any(|f| f.name() == "config.json") {
            " (config.json suggests the Hugging Face transformers layout, which nanochat-rs does not read: look for the repository of the original nanochat checkpoint)"
        } else {
            ""
        };
        return Err(not_a_release(format!("{expected}{hint}")));
    };
    let dir = &model.path[..model.path.len() - model.name().len()];
    // The tokenizer beside the model, else anywhere in the repository.
    let find = |name: &str| {
        files
            .iter()
            .find(|f| f.path == format!("{dir}{name}"))
            .or_else(|| files.iter().find(|f| f.name() == name))
            .map(|f| (*f).clone())
    };
    let tokenizer = find(TOKENIZER_FILE);
    if tokenizer.is_none() && only.is_empty() {
        return Err(not_a_release(format!(
            "{TOKENIZER_FILE} next to {} (the model cannot be used without its tokenizer)",
            model.path
        )));
    }
    Ok(Release {
        step,
        meta: meta.clone(),
        model: model.clone(),
        tokenizer,
        token_bytes: find(TOKEN_BYTES_FILE),
    })
}

/// "a.pt, b.json and 3 more" — what a repository holds, for errors.
fn describe(listing: &RepoListing) -> String {
    const SHOWN: usize = 8;
    if listing.files.is_empty() {
        return "no files".into();
    }
    let names: Vec<&str> = listing
        .files
        .iter()
        .take(SHOWN)
        .map(|f| f.path.as_str())
        .collect();
    let more = listing.files.len().saturating_sub(SHOWN);
    if more > 0 {
        format!("{} and {more} more", names.join(", "))
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(paths: &[&str]) -> RepoListing {
        RepoListing {
            commit: "c0ffee".into(),
            files: paths
                .iter()
                .map(|p| RemoteFile {
                    path: p.to_string(),
                    size: Some(1),
                    sha256: None,
                    git_sha1: None,
                })
                .collect(),
        }
    }

    #[test]
    fn picks_the_last_step_with_its_meta_and_the_tokenizer() {
        let l = listing(&[
            "README.md",
            "model_000650.pt",
            "meta_000650.json",
            "model_000700.pt",
            "model_000500.pt",
            "meta_000500.json",
            "tokenizer.pkl",
            "token_bytes.pt",
        ]);
        let r = select("o/r", &l, &[], None).unwrap();
        // 700 has no meta, so 650 is the last complete step.
        assert_eq!(
            (r.step, r.model.path.as_str(), r.meta.path.as_str()),
            (650, "model_000650.pt", "meta_000650.json")
        );
        assert_eq!(r.tokenizer.unwrap().path, "tokenizer.pkl");
        assert_eq!(r.token_bytes.unwrap().path, "token_bytes.pt");
        let r = select("o/r", &l, &[], Some(500)).unwrap();
        assert_eq!(r.model.path, "model_000500.pt");
    }

    #[test]
    fn prefers_safetensors_and_finds_files_in_a_folder() {
        let l = listing(&[
            "d20/model_000010.pt",
            "d20/model_000010.safetensors",
            "d20/meta_000010.json",
            "d20/tokenizer.pkl",
        ]);
        let r = select("o/r", &l, &[], None).unwrap();
        assert_eq!(r.model.path, "d20/model_000010.safetensors");
        assert_eq!(r.meta.path, "d20/meta_000010.json");
        assert!(r.token_bytes.is_none());
    }

    #[test]
    fn says_what_was_expected_and_what_is_there() {
        let l = listing(&["config.json", "model.safetensors"]);
        let err = select("o/r", &l, &[], None).unwrap_err().to_string();
        assert!(
            err.contains("model_<step>.pt")
                && err.contains("config.json, model.safetensors")
                && err.contains("transformers"),
            "{err}"
        );
        let l = listing(&["model_000001.pt", "meta_000001.json"]);
        let err = select("o/r", &l, &[], None).unwrap_err().to_string();
        assert!(err.contains("tokenizer.pkl"), "{err}");
        let err = select("o/r", &l, &["nope.pt".into()], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"nope.pt\""), "{err}");
        // --files without the tokenizer is allowed (one may already be in the base directory).
        let r = select(
            "o/r",
            &l,
            &["model_000001.pt".into(), "meta_000001.json".into()],
            None,
        )
        .unwrap();
        assert!(r.tokenizer.is_none());
    }
}
