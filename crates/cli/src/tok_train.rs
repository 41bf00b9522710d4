//! `nanochat tok train`: train a BPE tokenizer like nanochat's `scripts/tok_train.py` and save
//! `tokenizer.pkl` + `token_bytes.pt`, with a progress bar while counting and merging.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use nanochat_tokenizer::corpus::{parquet_shards, CorpusOptions, CorpusReader, DEFAULT_DOC_CAP};
use nanochat_tokenizer::paths::default_tokenizer_dir;
use nanochat_tokenizer::split::NANOCHAT_SPLIT_PATTERN;
use nanochat_tokenizer::train::{train, TrainProgress};
use nanochat_tokenizer::Tokenizer;

#[derive(Args)]
pub struct TrainArgs {
    /// Training text: .jsonl (one JSON string, or object with "text", per line), .txt or no
    /// extension (plain text, documents separated by blank lines), .parquet (nanochat shards,
    /// "text" column), or a directory of .parquet shards. Read in the order given.
    #[arg(long, short = 'i', required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Vocabulary size including nanochat's 9 special tokens (at least 265).
    #[arg(long, default_value_t = 65536)]
    vocab_size: usize,
    /// Output directory for tokenizer.pkl and token_bytes.pt.
    /// Default: $NANOCHAT_BASE_DIR/tokenizer (else ~/.cache/nanochat/tokenizer).
    #[arg(long, short = 'o')]
    out: Option<PathBuf>,
    /// Stop reading after the document that brings the total above this many characters.
    #[arg(long)]
    max_chars: Option<u64>,
    /// Crop every document to this many characters (tok_train.py's --doc_cap).
    #[arg(long, default_value_t = DEFAULT_DOC_CAP)]
    doc_cap: usize,
    /// Replace a tokenizer already in the output directory.
    #[arg(long)]
    force: bool,
}

/// Expands directories into their sorted .parquet shards.
fn input_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let shards = parquet_shards(input)?;
            if shards.is_empty() {
                bail!("{} is a directory without .parquet shards", input.display());
            }
            files.extend(shards);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

pub fn run(args: TrainArgs) -> Result<()> {
    let out = args.out.clone().unwrap_or_else(default_tokenizer_dir);
    let pickle = out.join("tokenizer.pkl");
    if pickle.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to replace it, or choose another --out",
            pickle.display()
        );
    }
    let files = input_files(&args.input)?;
    let options = CorpusOptions {
        doc_cap: Some(args.doc_cap),
        max_chars: args.max_chars,
    };
    let reader = CorpusReader::open(&files, options.clone())?;
    // File bytes read (parquet files are compressed, so this, not the text size, drives the bar).
    let corpus_progress = reader.progress();
    let total_bytes = reader.total_bytes();

    let bar = ProgressBar::new(total_bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message("counting");
    let started = Instant::now();
    let trained = train(
        reader,
        args.vocab_size,
        NANOCHAT_SPLIT_PATTERN,
        |p| match p {
            TrainProgress::Counting { .. } => {
                bar.set_position(corpus_progress.bytes_read().min(total_bytes))
            }
            TrainProgress::Counted {
                docs,
                unique_chunks,
                ..
            } => {
                bar.println(format!(
                    "counted {docs} documents, {unique_chunks} unique chunks"
                ));
                bar.set_style(
                    ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} merges ({eta})")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_message("merging");
                bar.set_position(0);
            }
            TrainProgress::Merging { done, total } => {
                bar.set_length(*total as u64);
                bar.set_position(*done as u64);
            }
            TrainProgress::Done { .. } => bar.finish_and_clear(),
        },
    )?;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let merges = trained.merges.len();
    let tokenizer = Tokenizer::with_nanochat_specials(trained.ranks)?;
    check_round_trip(&tokenizer)?;
    tokenizer
        .save(&out)
        .with_context(|| format!("saving the tokenizer to {}", out.display()))?;

    println!("Training time: {seconds:.2}s");
    if tokenizer.vocab_size() < args.vocab_size {
        println!(
            "note: the corpus ran out of pairs after {merges} merges: vocabulary {} instead of {}",
            tokenizer.vocab_size(),
            args.vocab_size
        );
    }
    println!(
        "vocab size {} ({merges} merges), saved to {}",
        tokenizer.vocab_size(),
        out.display()
    );
    let (bytes, tokens) = compression_on_sample(&tokenizer, &files, &options)?;
    if tokens > 0 {
        println!(
            "compression: {:.3} bytes/token on the first {bytes} bytes of training text",
            bytes as f64 / tokens as f64
        );
    }
    Ok(())
}

/// nanochat's tok_train.py checks that a tricky string survives encode → decode.
fn check_round_trip(tokenizer: &Tokenizer) -> Result<()> {
    let text =
        "Hello world! This is a test.\nNumbers: 123, 4567, 89\nContractions: I'm, you're, it's\n\
                Special chars: @#$%^&*()\nUnicode: 你好世界 🌍";
    let decoded = tokenizer.decode(&tokenizer.encode(text)?)?;
    if decoded != text {
        bail!("the trained tokenizer does not round-trip text (this is a bug): {decoded:?}");
    }
    Ok(())
}

/// Bytes and tokens of (about) the first 10 MB of the training documents.
fn compression_on_sample(
    tokenizer: &Tokenizer,
    files: &[PathBuf],
    options: &CorpusOptions,
) -> Result<(usize, usize)> {
    const SAMPLE_BYTES: usize = 10_000_000;
    let mut docs = Vec::new();
    let mut bytes = 0;
    for doc in CorpusReader::open(files, options.clone())? {
        let doc = doc?;
        bytes += doc.len();
        docs.push(doc);
        if bytes >= SAMPLE_BYTES {
            break;
        }
    }
    let tokens = tokenizer
        .encode_batch(&docs, None, None)?
        .iter()
        .map(Vec::len)
        .sum();
    Ok((bytes, tokens))
}

/// Reads whole documents (no cropping) up to `max_chars` characters, for measuring.
pub fn read_documents(path: &Path, max_chars: Option<u64>) -> Result<Vec<String>> {
    let files = input_files(&[path.to_path_buf()])?;
    let reader = CorpusReader::open(
        &files,
        CorpusOptions {
            doc_cap: None,
            max_chars,
        },
    )?;
    reader.collect::<Result<Vec<_>, _>>().map_err(Into::into)
}
