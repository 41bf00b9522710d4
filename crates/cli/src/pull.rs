//! `nanochat pull owner/repo`: fetch a nanochat release from the Hugging Face hub (or any hub
//! at `HF_ENDPOINT`) into the nanochat base directory, with a progress bar per file, and
//! optionally convert it to our format. `--model hf:owner/repo` (serve, chat, generate) uses the
//! same code: pull on first use, the cache afterwards — also when the network is down.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use nanochat_hub::{HubClient, Progress, PullOptions, Pulled, RepoRef};
use nanochat_model::checkpoint::{checkpoint_in_dir, CheckpointFiles, Source};
use nanochat_model::save::{convert, ConvertOptions};
use nanochat_model::WeightDType;
use nanochat_tokenizer::paths::nanochat_base_dir;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    nanochat pull sdobson/nanochat                 # → $NANOCHAT_BASE_DIR/chatsft_checkpoints/d20/\n  \
    nanochat pull karpathy/nanochat-d32 --convert --dtype bf16\n  \
    nanochat serve --model hf:sdobson/nanochat     # pulls on first start, then uses the cache\n\n\
    Environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN, HF_HUB_OFFLINE=1.")]
pub struct PullArgs {
    /// The repository: owner/name, optionally @revision (a branch, tag or commit; default main).
    repo: String,
    /// Fetch these repository paths (comma-separated) instead of the release's files
    /// (the last step's model_<step>.pt and meta_<step>.json, tokenizer.pkl, token_bytes.pt).
    #[arg(long, value_delimiter = ',')]
    files: Vec<String>,
    /// Fetch this step when the repository holds several. Default: the last one.
    #[arg(long, short = 's')]
    step: Option<u64>,
    /// Stage directory to put it in: base, mid, sft or rl. Default: the stage that wrote the
    /// meta (each of nanochat's training scripts saves different fields).
    #[arg(long, short = 'i')]
    source: Option<Source>,
    /// Directory under the stage. Default: d<n_layer> from the meta (d20 for sdobson/nanochat).
    #[arg(long, short = 'g')]
    tag: Option<String>,
    /// Token for private or gated repositories. Default: $HF_TOKEN.
    #[arg(long, hide_env_values = true)]
    token: Option<String>,
    /// Use only what was pulled before, never the network (also HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
    /// Replace files in the target directory that differ from the release (never done silently).
    #[arg(long)]
    force: bool,
    /// Then convert it to our safetensors format beside the original, so later loads are fast.
    #[arg(long)]
    convert: bool,
    /// With --convert: store the weights as f32, bf16, q8_0 or q4k. Default: keep each
    /// tensor's dtype.
    #[arg(long, value_parser = WeightDType::parse, requires = "convert")]
    dtype: Option<WeightDType>,
}

pub fn run(args: PullArgs) -> Result<()> {
    let repo = RepoRef::parse(&args.repo)?;
    let base = nanochat_base_dir();
    let options = PullOptions {
        files: args.files.clone(),
        step: args.step,
        source: args.source,
        tag: args.tag.clone(),
        offline: args.offline || offline_from_env(),
        force: args.force,
        ..PullOptions::new(repo.clone())
    };
    let client = HubClient::from_env(args.token.clone());
    let started = Instant::now();
    let pulled = nanochat_hub::pull(&base, &client, &options, &TerminalProgress::default())
        .with_context(|| format!("pulling {repo} from {}", client.endpoint()))?;
    let seconds = started.elapsed().as_secs_f64();
    if pulled.from_cache {
        println!(
            "{repo} (cached, commit {}) is in {}",
            short(&pulled.commit),
            pulled.dir.display()
        );
    } else if pulled.up_to_date {
        println!(
            "{repo} is up to date (commit {}) in {}",
            short(&pulled.commit),
            pulled.dir.display()
        );
    } else {
        println!(
            "pulled {repo} (commit {}, step {}): {} file(s), {:.1} MB in {seconds:.1}s into {}",
            short(&pulled.commit),
            pulled.step,
            pulled.downloaded_files,
            pulled.downloaded_bytes as f64 / 1e6,
            pulled.dir.display()
        );
    }
    if args.convert {
        convert_beside(&pulled, args.dtype)?;
    }
    let files = checkpoint_in_dir(&pulled.dir, Some(pulled.step))?;
    let stage = pulled
        .dir
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let tag = pulled
        .dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let flag = Source::ALL
        .iter()
        .find(|s| s.dir_name() == stage)
        .map(|s| format!("-i {} ", s.name()))
        .unwrap_or_default();
    println!("  chat with it:  nanochat chat {flag}-g {tag}");
    println!(
        "  serve it:      nanochat serve --model {}",
        files.dir.display()
    );
    Ok(())
}

/// `--model hf:owner/repo[@rev]` as the checkpoint it names: pulled now if needed (progress on
/// stderr), else from the cache — which also stands in when the hub cannot be reached.
pub fn hub_checkpoint(spec: &str, step: Option<u64>) -> Result<CheckpointFiles> {
    let repo = RepoRef::parse(spec)?;
    let options = PullOptions {
        step,
        offline: offline_from_env(),
        cache_on_network_error: true,
        ..PullOptions::new(repo.clone())
    };
    let client = HubClient::from_env(None);
    let pulled = nanochat_hub::pull(
        &nanochat_base_dir(),
        &client,
        &options,
        &TerminalProgress::default(),
    )
    .with_context(|| format!("getting {repo} from {}", client.endpoint()))?;
    if !pulled.up_to_date {
        eprintln!("pulled {repo} into {}", pulled.dir.display());
    }
    Ok(checkpoint_in_dir(&pulled.dir, Some(pulled.step))?)
}

/// Whether `--model` names a hub repository (`hf:owner/repo`).
pub fn is_hub_model(model: &Path) -> bool {
    model.to_str().is_some_and(|m| m.starts_with("hf:"))
}

/// `HF_HUB_OFFLINE=1` (or true/yes/on), as the Hugging Face tools read it.
fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// Writes `model_<step>.safetensors` beside the pulled `.pt` (once; the loaders prefer it).
fn convert_beside(pulled: &Pulled, dtype: Option<WeightDType>) -> Result<()> {
    let target = pulled
        .dir
        .join(format!("model_{:06}.safetensors", pulled.step));
    if target.exists() {
        println!("  already converted: {}", target.display());
        return Ok(());
    }
    // The meta and tokenizer in the directory are the ones being converted: rewriting them
    // in place (force) is what converting into the same directory means.
    let options = ConvertOptions {
        dtype,
        step: Some(pulled.step),
        force: true,
        tokenizer: None,
    };
    let done = convert(&pulled.model, &pulled.dir, &options)
        .with_context(|| format!("converting {}", pulled.model.display()))?;
    println!(
        "  converted to {} ({:.1} MB) in {:.1}s",
        done.output.weights.display(),
        done.bytes as f64 / 1e6,
        done.seconds
    );
    Ok(())
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}

/// A progress bar per file on stderr (bytes, rate, ETA); hidden when stderr is not a terminal,
/// where a line per finished file is printed instead.
#[derive(Default)]
struct TerminalProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for TerminalProgress {
    fn note(&self, text: &str) {
        eprintln!("note: {text}");
    }

    fn file_started(&self, file: &str, total: Option<u64>, resumed_from: u64) {
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::no_length(),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>20} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(file.to_string());
        bar.set_position(resumed_from);
        if resumed_from > 0 {
            bar.println(format!("resuming {file} from byte {resumed_from}"));
        }
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advanced(&self, bytes: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(bar) = slot.as_ref() {
                bar.inc(bytes);
            }
        }
    }

    fn file_finished(&self, file: &str) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
        eprintln!("  {file}: verified");
    }
}
