//! `nanochat tok …`: train a tokenizer, encode and decode with one, compare compression.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use nanochat_tokenizer::paths::default_tokenizer_dir;
use nanochat_tokenizer::Tokenizer;

#[derive(Args)]
pub struct TokArgs {
    #[command(subcommand)]
    command: TokCommand,
}

#[derive(Subcommand)]
enum TokCommand {
    /// Train a BPE tokenizer (rustbpe's algorithm) and save tokenizer.pkl + token_bytes.pt.
    Train(crate::tok_train::TrainArgs),
    /// Encode text from stdin; prints the ids on one line, space-separated.
    Encode(EncodeArgs),
    /// Decode ids from stdin (space/comma-separated or a JSON array) back to text.
    Decode(DecodeArgs),
    /// Compare compression (bytes per token) of tokenizers on text files, like nanochat's tok_eval.
    Eval(EvalArgs),
    /// Show a tokenizer's vocabulary size, special tokens and split pattern.
    Info(TokenizerArg),
}

#[derive(Args)]
struct TokenizerArg {
    /// Tokenizer directory (with tokenizer.pkl) or the tokenizer.pkl file itself.
    /// Default: $NANOCHAT_BASE_DIR/tokenizer (else ~/.cache/nanochat/tokenizer).
    #[arg(long, short = 't')]
    tokenizer: Option<PathBuf>,
}

#[derive(Args)]
struct EncodeArgs {
    #[command(flatten)]
    tokenizer: TokenizerArg,
    /// Print a JSON array instead of space-separated ids.
    #[arg(long)]
    json: bool,
    /// Prepend <|bos|> (as nanochat does for documents).
    #[arg(long)]
    bos: bool,
}

#[derive(Args)]
struct DecodeArgs {
    #[command(flatten)]
    tokenizer: TokenizerArg,
}

#[derive(Args)]
struct EvalArgs {
    /// Tokenizer directories to compare (repeatable). Default: the nanochat tokenizer.
    #[arg(long, short = 't')]
    tokenizer: Vec<PathBuf>,
    /// Text files to measure (.txt, .jsonl or .parquet: every document is encoded).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Read at most this many characters per file.
    #[arg(long, default_value_t = 10_000_000)]
    max_chars: u64,
}

pub fn run(args: TokArgs) -> Result<()> {
    match args.command {
        TokCommand::Train(a) => crate::tok_train::run(a),
        TokCommand::Encode(a) => encode(a),
        TokCommand::Decode(a) => decode(a),
        TokCommand::Eval(a) => eval(a),
        TokCommand::Info(a) => info(a),
    }
}

/// Loads a tokenizer from a directory or a .pkl path, with a message that says what to do when
/// it is missing.
pub fn load_tokenizer(path: Option<&Path>) -> Result<Tokenizer> {
    let path = path
        .map(Path::to_path_buf)
        .unwrap_or_else(default_tokenizer_dir);
    let pickle = if path.is_dir() {
        path.join("tokenizer.pkl")
    } else {
        path.clone()
    };
    if !pickle.exists() {
        bail!(
            "no tokenizer at {} — pass --tokenizer DIR, set NANOCHAT_BASE_DIR, or train one with \
             `nanochat tok train --input FILE --out DIR`",
            pickle.display()
        );
    }
    Tokenizer::from_pickle_file(&pickle)
        .with_context(|| format!("loading tokenizer {}", pickle.display()))
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("reading standard input")?;
    Ok(input)
}

fn encode(args: EncodeArgs) -> Result<()> {
    let tok = load_tokenizer(args.tokenizer.tokenizer.as_deref())?;
    let input = read_stdin()?;
    let text = std::str::from_utf8(&input).map_err(|e| {
        anyhow::anyhow!(
            "standard input is not valid UTF-8 (first bad byte at offset {})",
            e.valid_up_to()
        )
    })?;
    let prepend = if args.bos { Some(tok.bos_id()?) } else { None };
    let ids = tok.encode_with_specials(text, prepend, None)?;
    let line = if args.json {
        serde_json::to_string(&ids)?
    } else {
        ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
    };
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(())
}

/// Parses ids written as `1 2 3`, `1,2,3` or `[1, 2, 3]`.
fn parse_ids(input: &str) -> Result<Vec<u32>> {
    let trimmed = input.trim();
    let inner = trimmed
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(trimmed);
    inner
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .with_context(|| format!("{s:?} is not a token id (a non-negative integer)"))
        })
        .collect()
}

fn decode(args: DecodeArgs) -> Result<()> {
    let tok = load_tokenizer(args.tokenizer.tokenizer.as_deref())?;
    let input = String::from_utf8(read_stdin()?).context("standard input is not valid UTF-8")?;
    let ids = parse_ids(&input)?;
    let text = tok.decode(&ids)?;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    let dirs: Vec<Option<PathBuf>> = if args.tokenizer.is_empty() {
        vec![None]
    } else {
        args.tokenizer.into_iter().map(Some).collect()
    };
    let tokenizers: Vec<(String, Tokenizer)> = dirs
        .iter()
        .map(|d| {
            let name = d
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "nanochat".into());
            load_tokenizer(d.as_deref()).map(|t| (name, t))
        })
        .collect::<Result<_>>()?;
    println!(
        "{:<40} {:<40} {:>12} {:>12} {:>8}",
        "file", "tokenizer", "bytes", "tokens", "ratio"
    );
    for file in &args.files {
        let docs = crate::tok_train::read_documents(file, Some(args.max_chars))
            .with_context(|| format!("reading {}", file.display()))?;
        let bytes: usize = docs.iter().map(String::len).sum();
        for (name, tok) in &tokenizers {
            let tokens: usize = tok
                .encode_batch(&docs, None, None)?
                .iter()
                .map(Vec::len)
                .sum();
            let ratio = if tokens == 0 {
                0.0
            } else {
                bytes as f64 / tokens as f64
            };
            println!(
                "{:<40} {:<40} {bytes:>12} {tokens:>12} {ratio:>8.3}",
                file.display().to_string(),
                name
            );
        }
    }
    Ok(())
}

fn info(args: TokenizerArg) -> Result<()> {
    let tok = load_tokenizer(args.tokenizer.as_deref())?;
    println!("name:          {}", tok.name());
    println!(
        "vocab size:    {} ({} BPE tokens + {} special)",
        tok.vocab_size(),
        tok.n_ranks(),
        tok.special_tokens().len()
    );
    println!("split pattern: {}", tok.pattern());
    println!(
        "fast splitter: {}",
        if tok.splitter().is_scanner() {
            "yes"
        } else {
            "no (fancy-regex)"
        }
    );
    for (text, id) in tok.special_tokens() {
        println!("special {id:>7}: {text}");
    }
    Ok(())
}
