//! Times the BPE trainer on a corpus file (reference §11.2: rustbpe takes 6.70 s at vocab 4096 and
//! 7.19 s at 65,536 on a 50 MB corpus on the 2-core reference machine).
//!
//! ```text
//! scripts/make_bench_corpus.sh /tmp/bench50.jsonl
//! cargo run --release -p nanochat-tokenizer --example train_bench -- /tmp/bench50.jsonl 4096
//! ```
//!
//! With a third argument `--compare-regex` it also trains with the `fancy-regex` splitter (what
//! rustbpe uses) and checks that both give the same merges.

use std::time::Instant;

use nanochat_tokenizer::corpus::{CorpusOptions, CorpusReader};
use nanochat_tokenizer::split::{Splitter, NANOCHAT_SPLIT_PATTERN};
use nanochat_tokenizer::train::{train_with_splitter, TrainProgress, TrainedBpe};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (path, vocab, compare) = match args.as_slice() {
        [_, path, vocab] => (
            path.clone(),
            vocab.parse::<usize>().expect("vocab size"),
            false,
        ),
        [_, path, vocab, flag] if flag == "--compare-regex" => (
            path.clone(),
            vocab.parse::<usize>().expect("vocab size"),
            true,
        ),
        _ => {
            eprintln!("usage: train_bench CORPUS VOCAB_SIZE [--compare-regex]");
            std::process::exit(2);
        }
    };
    let t = Instant::now();
    let docs: Vec<String> = CorpusReader::open(&[&path], CorpusOptions::default())
        .expect("open")
        .collect::<Result<_, _>>()
        .expect("read");
    let bytes: usize = docs.iter().map(|d| d.len()).sum();
    println!(
        "read {} docs, {bytes} bytes in {:.2} s",
        docs.len(),
        t.elapsed().as_secs_f64()
    );

    let splitter = Splitter::new(NANOCHAT_SPLIT_PATTERN).unwrap();
    let t = Instant::now();
    let mut n = 0usize;
    for d in &docs {
        splitter.for_each_chunk(d, |_| n += 1).unwrap();
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "split only, 1 thread: {n} chunks in {dt:.2} s ({:.1} MB/s)",
        bytes as f64 / dt / 1e6
    );

    let scanner = Splitter::new(NANOCHAT_SPLIT_PATTERN).unwrap();
    let bpe = timed_train(&path, vocab, &scanner, "scanner");
    if compare {
        let regex = Splitter::new_regex(NANOCHAT_SPLIT_PATTERN).unwrap();
        let bpe_regex = timed_train(&path, vocab, &regex, "fancy-regex");
        assert_eq!(
            bpe.merges, bpe_regex.merges,
            "the two splitters give different merges"
        );
        println!("same {} merges with both splitters", bpe.merges.len());
    }
}

/// End to end, reading included, as tok_train.py measures it.
fn timed_train(path: &str, vocab: usize, splitter: &Splitter, name: &str) -> TrainedBpe {
    let t = Instant::now();
    let mut t_counted = None;
    let reader = CorpusReader::open(&[path], CorpusOptions::default()).expect("open");
    let bpe = train_with_splitter(reader, vocab, splitter, |p| {
        if let TrainProgress::Counted {
            unique_chunks,
            unique_pairs,
            ..
        } = p
        {
            t_counted = Some(t.elapsed().as_secs_f64());
            println!("  counted: {unique_chunks} unique chunks, {unique_pairs} byte pairs");
        }
    })
    .expect("train");
    let total = t.elapsed().as_secs_f64();
    let counted = t_counted.unwrap_or(0.0);
    println!(
        "train vocab {vocab} ({name}): {} merges, {total:.2} s (read+split+count {counted:.2} s, merges {:.2} s), {} threads",
        bpe.merges.len(),
        total - counted,
        rayon::current_num_threads()
    );
    bpe
}
