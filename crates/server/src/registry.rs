//! The models a server answers for: checkpoints (discovered under the nanochat base directory,
//! or given by path) and simulated models, each with a stable id, what `/v1/models` shows, and
//! its backend.
//!
//! Discovered checkpoints are named `<stage>-<tag>` (`sft-d20`, `base-d32`, …) after nanochat's
//! `<stage>_checkpoints/<tag>/` layout and always serve that tag's last step; they load on
//! first use, so a base directory full of models costs nothing until one is asked for.
//! Checkpoints given with `--model` load at startup (and `/ready` waits for them).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use nanochat_model::checkpoint::{checkpoint_in_dir, CheckpointFiles, Source};
use serde_json::{json, Value};

use crate::backend::SharedBackend;
use crate::model_backend::CheckpointLocation;

/// `created` of simulated models: fixed, so the listing is stable across restarts.
const SIMULATED_CREATED: u64 = 1_734_470_400;

pub struct ModelEntry {
    pub id: String,
    pub owned_by: &'static str,
    pub created: u64,
    /// `fp_` + 10 hex digits of (version, id, weights, dtype).
    pub fingerprint: String,
    pub backend: SharedBackend,
}

impl ModelEntry {
    pub fn simulated(id: &str, backend: SharedBackend) -> Self {
        Self {
            id: id.to_string(),
            owned_by: "nanochat-simulator",
            created: SIMULATED_CREATED,
            fingerprint: fingerprint(&[id, "simulated"]),
            backend,
        }
    }

    /// A checkpoint; `created` is its weights' modification time (the start time for one
    /// still to be fetched).
    pub fn checkpoint(
        id: &str,
        location: &CheckpointLocation,
        dtype: &str,
        backend: SharedBackend,
    ) -> Self {
        let (modified, weights) = match location {
            CheckpointLocation::Local(files) => (
                std::fs::metadata(&files.weights)
                    .and_then(|m| m.modified())
                    .ok(),
                files.weights.display().to_string(),
            ),
            CheckpointLocation::Remote { name, .. } => {
                (Some(std::time::SystemTime::now()), name.clone())
            }
        };
        let created = modified
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        Self {
            id: id.to_string(),
            owned_by: "nanochat",
            created,
            fingerprint: fingerprint(&[id, &weights, dtype]),
            backend,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut model = json!({"id": self.id, "object": "model", "created": self.created, "owned_by": self.owned_by});
        if let Some(context) = self.backend.context_length() {
            model["max_model_len"] = json!(context);
        }
        model
    }
}

fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    parts.hash(&mut hasher);
    format!("fp_{:010x}", hasher.finish() & 0xff_ffff_ffff)
}

#[derive(Default)]
pub struct ModelRegistry {
    entries: Vec<ModelEntry>,
}

impl ModelRegistry {
    /// Adds a model; an id that is already taken is refused with a message.
    pub fn add(&mut self, entry: ModelEntry) -> Result<(), String> {
        if self.get(&entry.id).is_some() {
            return Err(format!(
                "two models are named {:?}: give one another name with --model-alias",
                entry.id
            ));
        }
        self.entries.push(entry);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&ModelEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    pub fn entries(&self) -> &[ModelEntry] {
        &self.entries
    }
}

/// A checkpoint found under the base directory.
pub struct Discovered {
    pub id: String,
    pub files: CheckpointFiles,
}

/// Every `<stage>_checkpoints/<tag>/` under `base_dir` with at least one complete checkpoint,
/// in stage then tag order; also returns the directories looked at (for the startup log).
pub fn discover_checkpoints(base_dir: &Path) -> (Vec<Discovered>, Vec<PathBuf>) {
    let mut found = Vec::new();
    let mut looked = Vec::new();
    for source in Source::ALL {
        let stage_dir = base_dir.join(source.dir_name());
        looked.push(stage_dir.clone());
        let Ok(read) = std::fs::read_dir(&stage_dir) else {
            continue;
        };
        let mut tags: Vec<PathBuf> = read
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        tags.sort();
        for tag_dir in tags {
            let Some(tag) = tag_dir.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Ok(files) = checkpoint_in_dir(&tag_dir, None) {
                found.push(Discovered {
                    id: format!("{}-{tag}", stage_name(source)),
                    files,
                });
            }
        }
    }
    (found, looked)
}

fn stage_name(source: Source) -> &'static str {
    match source {
        Source::Base => "base",
        Source::Mid => "mid",
        Source::Sft => "sft",
        Source::Rl => "rl",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_base_dir_gives_stage_tag_ids() {
        let (found, looked) = discover_checkpoints(&nanochat_fixtures::fixture("nanochat-2025"));
        let ids: Vec<_> = found.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            ids,
            ["base-d2", "mid-d2", "sft-d1", "sft-d2", "sft-d3", "rl-d1"]
        );
        assert_eq!(found[4].files.step, 650);
        assert_eq!(looked.len(), 4);
        assert!(fingerprint(&["a"]).starts_with("fp_") && fingerprint(&["a"]).len() == 13);
        assert_ne!(fingerprint(&["a"]), fingerprint(&["b"]));
    }
}
