//! A hub repository as users type it: `owner/repo`, optionally `@revision` (branch, tag or
//! commit), optionally prefixed `hf:` (the form `--model` takes) or given as a hub URL.

use crate::error::{HubError, Result};

/// The branch pulled when no revision is given.
pub const DEFAULT_REVISION: &str = "main";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoRef {
    /// `owner/name`.
    pub repo: String,
    /// Branch, tag or commit; `main` unless given.
    pub revision: String,
    /// Whether the revision was given (offline mode then insists on it).
    pub explicit_revision: bool,
}

impl RepoRef {
    /// Parses `owner/repo`, `owner/repo@rev`, `hf:owner/repo[@rev]` or
    /// `https://huggingface.co/owner/repo`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| HubError::BadRepo {
            given: text.to_string(),
            why: why.to_string(),
        };
        let mut rest = text.trim();
        rest = rest.strip_prefix("hf:").unwrap_or(rest);
        for prefix in ["https://huggingface.co/", "http://huggingface.co/"] {
            rest = rest.strip_prefix(prefix).unwrap_or(rest);
        }
        let rest = rest.trim_end_matches('/');
        let (repo, revision) = match rest.split_once('@') {
            Some((repo, rev)) if !rev.is_empty() => (repo, Some(rev)),
            Some(_) => return Err(bad("nothing after @ (expected a branch, tag or commit)")),
            None => (rest, None),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(bad("expected owner/name, e.g. sdobson/nanochat"));
        }
        let valid = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !s.starts_with('.')
        };
        if !parts.iter().all(|p| valid(p)) {
            return Err(bad(
                "owner and name may hold letters, digits, '-', '_' and '.'",
            ));
        }
        if let Some(rev) = revision {
            if rev.contains("..") || rev.chars().any(|c| c.is_whitespace() || c == '\\') {
                return Err(bad("the revision is not a valid branch, tag or commit"));
            }
        }
        Ok(Self {
            repo: repo.to_string(),
            revision: revision.unwrap_or(DEFAULT_REVISION).to_string(),
            explicit_revision: revision.is_some(),
        })
    }

    /// A name usable as a file name: `owner--name` (as the Hugging Face cache does).
    pub fn file_key(&self) -> String {
        self.repo.replace('/', "--")
    }
}

impl std::fmt::Display for RepoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.explicit_revision {
            write!(f, "{}@{}", self.repo, self.revision)
        } else {
            f.write_str(&self.repo)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_type() {
        let r = RepoRef::parse("sdobson/nanochat").unwrap();
        assert_eq!(
            (r.repo.as_str(), r.revision.as_str(), r.explicit_revision),
            ("sdobson/nanochat", "main", false)
        );
        let r = RepoRef::parse("hf:karpathy/nanochat-d32@v1.0").unwrap();
        assert_eq!(
            (r.repo.as_str(), r.revision.as_str(), r.explicit_revision),
            ("karpathy/nanochat-d32", "v1.0", true)
        );
        let r = RepoRef::parse("https://huggingface.co/sdobson/nanochat/").unwrap();
        assert_eq!(r.repo, "sdobson/nanochat");
        assert_eq!(r.file_key(), "sdobson--nanochat");
    }

    #[test]
    fn refuses_malformed_names() {
        for bad in [
            "nanochat", "a/b/c", "/x", "a/", "a b/c", "a/b@", "../x/y", "a/b@x..y",
        ] {
            let err = RepoRef::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
