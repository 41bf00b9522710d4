//! `nanochat`: one binary to tokenize, train, evaluate, chat with and serve nanochat models.
//! Each subcommand lives in its own module; this file only parses the command line and turns
//! errors into a message and a non-zero exit code.

use clap::{Parser, Subcommand};

mod bench;
mod bench_serve;
mod chat;
mod convert;
mod generate;
mod model_args;
mod pull;
mod serve;
mod tok;
mod tok_train;

#[derive(Parser)]
#[command(
    name = "nanochat",
    version,
    about = "Tokenize, train, evaluate, chat with and serve nanochat models — one binary, no Python.",
    long_about = "Tokenize, train, evaluate, chat with and serve nanochat models — one binary, no Python.\n\n\
        Files are found where nanochat puts them: $NANOCHAT_BASE_DIR, else ~/.cache/nanochat \
        (the tokenizer in <base>/tokenizer/)."
)]
struct Cli {
    /// Threads for model compute (matmuls, tokenizer training). Default: every available core.
    #[arg(long, global = true, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train, inspect and run tokenizers (nanochat's tokenizer.pkl format).
    Tok(tok::TokArgs),
    /// Chat with a model in the terminal (like nanochat's chat_cli.py).
    Chat(chat::ChatArgs),
    /// Raw completion of a prompt, for scripts (--json for machine-readable output).
    Generate(generate::GenerateArgs),
    /// Convert a nanochat .pt checkpoint to our safetensors format (fast loading, optional bf16).
    Convert(convert::ConvertArgs),
    /// Download a nanochat release from the Hugging Face hub into the base directory.
    Pull(pull::PullArgs),
    /// Serve models over an OpenAI-compatible HTTP API (plus simulated models for testing apps).
    Serve(serve::ServeArgs),
    /// Measure speed: tokenizer throughput, engine prefill/decode, a server under concurrent streams.
    Bench(bench::BenchArgs),
}

fn main() {
    let cli = Cli::parse();
    // candle runs elementwise ops of ≥64K values on its own thread pool, whose workers spin
    // after each op and take a core from the matmul threads (rayon's pool, which does the
    // heavy work). One candle thread runs those ops inline. A user's setting is kept.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    if let Some(threads) = cli.threads {
        // candle's GEMM reads RAYON_NUM_THREADS; our kernels and quantised matmuls use rayon's
        // global pool. Both are set before any model work starts.
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
        if let Err(error) = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
        {
            eprintln!("error: cannot start {threads} threads: {error}");
            std::process::exit(1);
        }
    }
    let result = match cli.command {
        Command::Tok(args) => tok::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Pull(args) => pull::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
    };
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
