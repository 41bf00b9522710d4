//! `nanochat bench …`: speed measurements that print figures (tests never assert times).
//!
//! `bench tokenizer` reproduces the reference measurements of nanochat-reference.md §11.2 on a
//! corpus: training time at each vocabulary size, then encode (one thread, whole text and per
//! document; all threads, batch) and decode throughput of the trained tokenizer, printed next to
//! the figures rustbpe and tiktoken reached on this kind of machine (2 cores).
//!
//! `bench engine` measures prefill and decode of a random nanochat-shaped model (or a
//! checkpoint) and can save that random model as a checkpoint (`--save-checkpoint`) for
//! `nanochat serve --model`; `bench serve` load-tests a running server ([`bench_serve`]).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use nanochat_tokenizer::split::{Splitter, NANOCHAT_SPLIT_PATTERN};
use nanochat_tokenizer::train::train;
use nanochat_tokenizer::Tokenizer;

use crate::bench_serve;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Tokenizer training, encode and decode throughput on a corpus (build a 50 MB one with
    /// scripts/make_bench_corpus.sh).
    Tokenizer(TokenizerBenchArgs),
    /// Prefill and decode speed of a randomly initialised nanochat-shaped model (no download),
    /// or of a real checkpoint with --model.
    Engine(EngineBenchArgs),
    /// Load-test a running OpenAI-compatible server (`nanochat serve`): streaming chat
    /// completions at several concurrency levels; TTFT, inter-token latency, tokens/s, errors.
    Serve(bench_serve::ServeBenchArgs),
}

#[derive(Args)]
struct EngineBenchArgs {
    /// Depth of the model (nanochat's shape rule: 64·depth wide, heads of 128).
    #[arg(long, default_value_t = 20)]
    depth: usize,
    /// Vocabulary size of the random model.
    #[arg(long, default_value_t = 65536)]
    vocab_size: usize,
    /// Weight format: f32, bf16, q8_0 or q4k.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Sequences decoded together (continuous batching's decode step); tok/s is then the
    /// aggregate over all of them.
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    batch: usize,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 32)]
    prompt: usize,
    /// Tokens to generate per run.
    #[arg(long, default_value_t = 128)]
    gen: usize,
    /// Timed runs (the median is reported) after one warm-up.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Benchmark this checkpoint (directory or model_<step>.pt/.safetensors) instead.
    #[arg(long, conflicts_with = "save_checkpoint")]
    model: Option<PathBuf>,
    /// Also write the random model as a checkpoint into this directory (step 0: weights in
    /// --dtype as model_000000.safetensors, and meta_000000.json) that `nanochat serve --model
    /// DIR` loads. Add --gen 1 --runs 1 to keep the measurement itself short.
    #[arg(long, value_name = "DIR")]
    save_checkpoint: Option<PathBuf>,
    /// With --save-checkpoint: copy tokenizer.pkl (and token_bytes.pt) from this directory into
    /// the checkpoint (without it, loaders use $NANOCHAT_BASE_DIR/tokenizer).
    #[arg(
        long,
        value_name = "DIR",
        requires = "save_checkpoint",
        conflicts_with = "model"
    )]
    tokenizer: Option<PathBuf>,
    /// With --save-checkpoint: also write the weights (f32) as nanochat's own
    /// model_000000.pt (torch.save format), to measure loading nanochat's files:
    /// `nanochat bench engine --model DIR/model_000000.pt`.
    #[arg(long, requires = "save_checkpoint")]
    torch: bool,
}

#[derive(Args)]
struct TokenizerBenchArgs {
    /// Corpus file (.jsonl, .txt or .parquet); documents are used as they are (no cropping).
    #[arg(long)]
    corpus: PathBuf,
    /// Vocabulary sizes to train and measure.
    #[arg(long, value_delimiter = ',', default_value = "4096,65536")]
    vocab_size: Vec<usize>,
    /// Threads for the parallel measurements (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Repetitions of each encode/decode measurement (the best is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

/// Reference figures on this machine type (nanochat-reference.md §11.2, 50.56 MB corpus).
struct Reference {
    vocab: usize,
    train_s: f64,
    encode_1t_mb_s: f64,
    encode_2t_mb_s: f64,
}

const REFERENCES: [Reference; 2] = [
    Reference {
        vocab: 4096,
        train_s: 6.70,
        encode_1t_mb_s: 9.56,
        encode_2t_mb_s: 15.1,
    },
    Reference {
        vocab: 65536,
        train_s: 7.19,
        encode_1t_mb_s: 9.17,
        encode_2t_mb_s: 14.9,
    },
];

pub fn run(args: BenchArgs) -> Result<()> {
    match args.command {
        BenchCommand::Tokenizer(a) => bench_tokenizer(a),
        BenchCommand::Engine(a) => bench_engine(a),
        BenchCommand::Serve(a) => bench_serve::run(a),
    }
}

/// Best wall time of `repeat` runs of `f`, in seconds.
fn best_of<T>(repeat: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, T)> {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let out = f()?;
        best = best.min(t.elapsed().as_secs_f64());
        last = Some(out);
    }
    Ok((best, last.expect("at least one run")))
}

fn bench_tokenizer(args: TokenizerBenchArgs) -> Result<()> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("building the thread pool")?;
    let docs = crate::tok_train::read_documents(&args.corpus, None)?;
    let bytes: usize = docs.iter().map(String::len).sum();
    let mb = bytes as f64 / 1e6;
    let whole = docs.concat();
    println!(
        "corpus {}: {:.2} MB in {} documents; {threads} threads for parallel runs",
        args.corpus.display(),
        mb,
        docs.len()
    );

    // Splitting alone: our scanner against fancy-regex (what tiktoken and rustbpe run).
    let scanner = Splitter::new(NANOCHAT_SPLIT_PATTERN)?;
    let regex = Splitter::new_regex(NANOCHAT_SPLIT_PATTERN)?;
    let count_chunks = |s: &Splitter| -> Result<usize> {
        let mut n = 0;
        s.for_each_chunk(&whole, |_| n += 1)?;
        Ok(n)
    };
    let (t_scan, chunks) = best_of(args.repeat, || count_chunks(&scanner))?;
    let (t_regex, _) = best_of(1, || count_chunks(&regex))?;
    println!(
        "split, 1 thread: scanner {:.1} MB/s, fancy-regex {:.1} MB/s ({chunks} chunks)",
        mb / t_scan,
        mb / t_regex
    );

    for &vocab in &args.vocab_size {
        let reference = REFERENCES.iter().find(|r| r.vocab == vocab);
        println!("\nvocab {vocab}");
        let t = Instant::now();
        let trained =
            pool.install(|| train(docs.iter().map(Ok), vocab, NANOCHAT_SPLIT_PATTERN, |_| {}))?;
        let t_train = t.elapsed().as_secs_f64();
        let vs = |ours: f64, theirs: Option<f64>, name: &str| match theirs {
            Some(v) => format!(" ({name} {v:.2} → {:.2}×)", ours / v),
            None => String::new(),
        };
        println!(
            "  train            {t_train:>8.2} s{}",
            vs(t_train, reference.map(|r| r.train_s), "rustbpe s")
        );
        let tok = Tokenizer::with_nanochat_specials(trained.ranks)?;

        let (t_whole, ids) = best_of(args.repeat, || Ok(tok.encode(&whole)?))?;
        println!(
            "  encode whole, 1t {:>8.2} MB/s{}  {:.2} bytes/token",
            mb / t_whole,
            vs(
                mb / t_whole,
                reference.map(|r| r.encode_1t_mb_s),
                "tiktoken MB/s"
            ),
            bytes as f64 / ids.len() as f64
        );
        let (t_docs, _) = best_of(args.repeat, || {
            let mut n = 0;
            for d in &docs {
                n += tok.encode(d)?.len();
            }
            Ok(n)
        })?;
        println!("  encode docs, 1t  {:>8.2} MB/s", mb / t_docs);
        let (t_batch, _) = best_of(args.repeat, || {
            pool.install(|| Ok(tok.encode_batch(&docs, None, None)?))
        })?;
        println!(
            "  encode batch, {threads}t {:>8.2} MB/s{}",
            mb / t_batch,
            vs(
                mb / t_batch,
                reference.map(|r| r.encode_2t_mb_s),
                "tiktoken 2t MB/s"
            )
        );
        let (t_decode, text) = best_of(args.repeat, || Ok(tok.decode_bytes(&ids)?))?;
        anyhow::ensure!(
            text == whole.as_bytes(),
            "decode(encode(corpus)) differs from the corpus"
        );
        println!("  decode, 1t       {:>8.2} MB/s", mb / t_decode);
    }
    Ok(())
}

/// Peak resident memory of this process (Linux `VmHWM`), in bytes.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Checks that `dir` holds a tokenizer that fits a model of `vocab_size` tokens.
fn check_tokenizer(dir: &std::path::Path, vocab_size: usize) -> Result<()> {
    let tokenizer =
        Tokenizer::from_dir(dir).with_context(|| format!("--tokenizer {}", dir.display()))?;
    anyhow::ensure!(
        tokenizer.vocab_size() <= vocab_size,
        "--tokenizer {}: {} tokens, but the model has only {vocab_size} (pass --vocab-size)",
        dir.display(),
        tokenizer.vocab_size()
    );
    Ok(())
}

/// `--save-checkpoint`: the random model as checkpoint step 0 in `dir`, plus the tokenizer
/// files of `tokenizer` when given.
/// Writes a model's weights as nanochat's `model_<step>.pt` (a torch.save'd state dict, f32).
fn save_torch_weights(model: &nanochat_model::Gpt, path: &std::path::Path) -> Result<()> {
    use nanochat_pt::{default_archive_prefix, write_torch_file, SaveRoot, TensorToWrite};
    let started = Instant::now();
    let mut buffers = Vec::new();
    for (name, tensor) in model.named_weights()? {
        let values: Vec<f32> = tensor
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        buffers.push((name, tensor.dims().to_vec(), bytes));
    }
    if !model.quantized_weights()?.is_empty() {
        anyhow::bail!("--torch writes f32 or bf16 models only");
    }
    let tensors = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            let tensor = TensorToWrite {
                dtype: nanochat_pt::DType::F32,
                shape: shape.clone(),
                data: bytes,
            };
            (name.clone(), tensor)
        })
        .collect();
    let root = SaveRoot::StateDict {
        tensors,
        module_versions: None,
    };
    write_torch_file(path, &default_archive_prefix(path), &root)
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "saved {} in {:.1}s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn save_random_model(
    model: &nanochat_model::Gpt,
    depth: usize,
    dir: &std::path::Path,
    tokenizer: Option<&std::path::Path>,
) -> Result<()> {
    use nanochat_model::save::{save_model, SaveOptions, TOKENIZER_FILES};

    let started = Instant::now();
    let meta = serde_json::json!({
        "step": 0,
        "source": format!(
            "nanochat bench engine --depth {depth}: random weights (seed 42; lm_head zero, so \
             every logit is 0 and greedy decoding repeats token 0; c_proj ~ N(0, 0.02))"
        ),
    });
    let files = save_model(dir, 0, model, Some(&meta), &SaveOptions::default())
        .with_context(|| format!("--save-checkpoint {}", dir.display()))?;
    if let Some(src) = tokenizer {
        for name in TOKENIZER_FILES {
            let from = src.join(name);
            if from.is_file() {
                // Read and write rather than fs::copy, which would carry a read-only mode over.
                let to = dir.join(name);
                std::fs::read(&from)
                    .and_then(|bytes| std::fs::write(&to, bytes))
                    .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
            }
        }
    }
    let bytes = std::fs::metadata(&files.weights).map_or(0, |m| m.len());
    println!(
        "saved {} ({:.2} GB) and {} in {:.1}s; tokenizer: {}",
        files.weights.display(),
        bytes as f64 / 1e9,
        files.meta.display(),
        started.elapsed().as_secs_f64(),
        match tokenizer {
            Some(src) => format!("copied from {}", src.display()),
            None =>
                "none copied (loaders use $NANOCHAT_BASE_DIR/tokenizer; --tokenizer DIR copies one)"
                    .into(),
        }
    );
    println!(
        "serve it: nanochat serve --no-simulate --model {}",
        dir.display()
    );
    Ok(())
}

fn bench_engine(args: EngineBenchArgs) -> Result<()> {
    use candle_core::Device;
    use nanochat_engine::{Engine, GenerateOptions};
    use nanochat_model::init::{random_model_as, InitOptions};
    use nanochat_model::Config;
    use nanochat_model::WeightDType;

    let dtype = WeightDType::parse(&args.dtype).map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let (model, label) = match &args.model {
        Some(path) => {
            let files = nanochat_model::checkpoint::checkpoint_at_path(path, None)?;
            let loaded = nanochat_model::checkpoint::load_checkpoint(&files, dtype, &Device::Cpu)?;
            (loaded.model, files.weights.display().to_string())
        }
        None => {
            let cfg = Config::for_depth(args.depth, args.vocab_size);
            if let Some(dir) = &args.tokenizer {
                check_tokenizer(dir, cfg.vocab_size)?;
            }
            let model = random_model_as(&cfg, 42, dtype, &Device::Cpu, &InitOptions::benchmark())?;
            if let Some(dir) = &args.save_checkpoint {
                save_random_model(&model, args.depth, dir, args.tokenizer.as_deref())?;
                if args.torch {
                    save_torch_weights(&model, &dir.join("model_000000.pt"))?;
                }
            }
            (
                model,
                format!("random d{} ({} params)", args.depth, cfg.num_parameters()),
            )
        }
    };
    let load_s = started.elapsed().as_secs_f64();
    let cfg = model.config().clone();
    println!(
        "{label}: {} layers, {} wide, vocab {}, {dtype}; built/loaded in {load_s:.2}s; {} threads, {} kernels",
        cfg.n_layer,
        cfg.n_embd,
        cfg.vocab_size,
        rayon::current_num_threads(),
        nanochat_model::kernels::kernel_path()
    );
    // The engine needs a tokenizer only for the calculator, which random tokens never trigger.
    let tokenizer = nanochat_tokenizer::Tokenizer::with_nanochat_specials(
        (0..=255u8).map(|b| vec![b]).collect(),
    )?;
    let engine = Engine::new(&model, &tokenizer)?;
    let prompt: Vec<u32> = (0..args.prompt as u32).map(|i| (i * 7919) % 256).collect();
    let run = |gen: usize| -> Result<(f64, Vec<f64>)> {
        let options = GenerateOptions {
            num_samples: args.batch,
            broadcast_first_token: false,
            max_tokens: Some(gen),
            stop_token_ids: vec![],
            use_tools: false,
            ..GenerateOptions::default()
        };
        let t = Instant::now();
        let mut generation = engine.generate(&prompt, &options)?;
        generation.next_column()?;
        let prefill = t.elapsed().as_secs_f64();
        let mut steps = Vec::with_capacity(gen);
        loop {
            let t = Instant::now();
            if generation.next_column()?.is_none() {
                break;
            }
            steps.push(t.elapsed().as_secs_f64());
        }
        Ok((prefill, steps))
    };
    run(8)?; // warm-up
    let (mut prefills, mut decodes) = (Vec::new(), Vec::new());
    for _ in 0..args.runs.max(1) {
        let (prefill, mut steps) = run(args.gen)?;
        prefills.push(prefill);
        if !steps.is_empty() {
            decodes.push(median(&mut steps));
        }
    }
    // Before the bandwidth probe's 2 GiB buffer.
    let rss = peak_rss_bytes();
    let prefill = median(&mut prefills);
    println!(
        "prefill {} tokens: {:.1} ms ({:.1} tok/s)",
        args.prompt,
        prefill * 1e3,
        args.prompt as f64 / prefill
    );
    if decodes.is_empty() {
        println!("decode: not measured (--gen {}: no decode steps)", args.gen);
    } else {
        let decode = median(&mut decodes);
        let batch = args.batch;
        println!(
            "decode: {:.1} ms/step of {batch} token{} ({:.2} tok/s), median of {} runs of {} steps",
            decode * 1e3,
            if batch == 1 { "" } else { "s" },
            batch as f64 / decode,
            args.runs,
            args.gen
        );
        let bytes = model.weight_bytes_per_token() as f64;
        let bandwidth = measure_read_bandwidth();
        println!(
            "weights read per step: {:.2} GB → {:.1} GB/s effective; this machine reads {:.1} GB/s (2 GiB, all threads)",
            bytes / 1e9,
            bytes / decode / 1e9,
            bandwidth / 1e9
        );
    }
    if let Some(rss) = rss {
        println!("peak RSS: {:.2} GB", rss as f64 / 1e9);
    }
    Ok(())
}

/// Bytes per second this machine reads from DRAM with every thread: the best of 3 passes
/// summing a 2 GiB buffer (larger than any cache).
fn measure_read_bandwidth() -> f64 {
    use rayon::prelude::*;
    let data = vec![1u64; (2usize << 30) / 8];
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let sum: u64 = data
            .par_chunks(1 << 16)
            .map(|c| c.iter().fold(0u64, |a, &b| a.wrapping_add(b)))
            .sum();
        std::hint::black_box(sum);
        best = best.min(t.elapsed().as_secs_f64());
    }
    (data.len() * 8) as f64 / best
}
