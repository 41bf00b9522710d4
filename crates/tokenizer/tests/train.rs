//! The BPE trainer (rustbpe's algorithm) and the training-corpus reader, against the golden
//! fixtures: training on `tokenizer-train/train_docs.jsonl` at vocab 512 must reproduce
//! `tokenizer/vocab.json` exactly.

use std::path::{Path, PathBuf};

use nanochat_fixtures::{fixture, fixture_json, scratch_dir};
use nanochat_tokenizer::corpus::{crop_chars, CorpusOptions, CorpusReader};
use nanochat_tokenizer::split::NANOCHAT_SPLIT_PATTERN;
use nanochat_tokenizer::train::{train, train_from_chunk_counts, TrainProgress, TrainedBpe};
use nanochat_tokenizer::TokenizerError;

const TRAIN_DOCS: &str = "tokenizer-train/train_docs.jsonl";
const SHARD_0: &str = "nanochat-2025/base_data/shard_00000.parquet";
const SHARD_1: &str = "nanochat-2025/base_data/shard_00001.parquet";

fn read_all<P: AsRef<Path>>(paths: &[P], options: CorpusOptions) -> Vec<String> {
    CorpusReader::open(paths, options)
        .expect("open corpus")
        .collect::<Result<Vec<_>, _>>()
        .expect("read corpus")
}

fn train_docs(docs: &[String], vocab_size: usize) -> TrainedBpe {
    train(
        docs.iter().map(|d| Ok(d.as_str())),
        vocab_size,
        NANOCHAT_SPLIT_PATTERN,
        |_| {},
    )
    .expect("train")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a trained vocabulary against `tokenizer/vocab.json` (merges and id → bytes).
fn assert_matches_fixture_vocab(bpe: &TrainedBpe) {
    let vocab = fixture_json("tokenizer/vocab.json");
    let expected: Vec<(u32, u32, u32)> = vocab["merges"]
        .as_array()
        .expect("merges")
        .iter()
        .map(|m| {
            let m = m.as_array().expect("merge triple");
            let n = |i: usize| m[i].as_u64().expect("id") as u32;
            (n(0), n(1), n(2))
        })
        .collect();
    assert_eq!(expected.len(), 247);
    let got: Vec<(u32, u32, u32)> = bpe
        .merges
        .iter()
        .enumerate()
        .map(|(k, &(a, b))| (a, b, 256 + k as u32))
        .collect();
    for (k, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "merge {k} differs");
    }
    assert_eq!(got.len(), expected.len(), "number of merges");

    let hexes: Vec<&str> = vocab["id_to_bytes_hex"]
        .as_array()
        .expect("id_to_bytes_hex")
        .iter()
        .map(|h| h.as_str().expect("hex string"))
        .collect();
    assert_eq!(bpe.ranks.len(), hexes.len());
    for (id, (r, h)) in bpe.ranks.iter().zip(&hexes).enumerate() {
        assert_eq!(hex(r), *h, "bytes of id {id}");
    }
    assert_eq!(bpe.vocab_size(), 512);
    assert_eq!(bpe.pattern, NANOCHAT_SPLIT_PATTERN);
}

/// Writes `bytes` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write scratch file");
    path
}

fn read_err(path: &Path) -> String {
    let mut reader = CorpusReader::open(&[path], CorpusOptions::default()).expect("open");
    let err = reader
        .by_ref()
        .find_map(|d| d.err())
        .unwrap_or_else(|| panic!("reading {} should fail", path.display()));
    assert!(
        reader.next().is_none(),
        "the reader must stop after an error"
    );
    err.to_string()
}

// ---------------------------------------------------------------------------------------------
// Golden fixtures.

#[test]
fn train_on_fixture_jsonl_reproduces_vocab_512() {
    let reader = CorpusReader::open(&[fixture(TRAIN_DOCS)], CorpusOptions::default()).unwrap();
    let progress = reader.progress();
    let mut reports = Vec::new();
    let bpe = train(reader, 512, NANOCHAT_SPLIT_PATTERN, |p| {
        reports.push(p.clone())
    })
    .unwrap();
    assert_matches_fixture_vocab(&bpe);
    assert_eq!(progress.docs(), 112);
    assert_eq!(progress.bytes_read(), progress.total_bytes());
    assert!(matches!(
        reports.last(),
        Some(TrainProgress::Done { merges: 247 })
    ));
    assert!(reports
        .iter()
        .any(|r| matches!(r, TrainProgress::Counted { docs: 112, .. })));
    assert!(reports.iter().any(|r| matches!(
        r,
        TrainProgress::Merging {
            done: 247,
            total: 247
        }
    )));
}

#[test]
fn parquet_shard_holds_the_same_documents_as_the_jsonl() {
    let jsonl = read_all(
        &[fixture(TRAIN_DOCS)],
        CorpusOptions {
            doc_cap: None,
            max_chars: None,
        },
    );
    let parquet = read_all(
        &[fixture(SHARD_0)],
        CorpusOptions {
            doc_cap: None,
            max_chars: None,
        },
    );
    assert_eq!(jsonl.len(), 112);
    assert_eq!(parquet, jsonl);
    // The val shard holds the first 4 documents.
    let val = read_all(&[fixture(SHARD_1)], CorpusOptions::default());
    assert_eq!(val, jsonl[..4]);
}

#[test]
fn train_on_fixture_parquet_reproduces_vocab_512() {
    let reader = CorpusReader::open(&[fixture(SHARD_0)], CorpusOptions::default()).unwrap();
    let progress = reader.progress();
    let bpe = train(reader, 512, NANOCHAT_SPLIT_PATTERN, |_| {}).unwrap();
    assert_matches_fixture_vocab(&bpe);
    assert_eq!(progress.docs(), 112);
    assert_eq!(progress.bytes_read(), progress.total_bytes());
}

#[test]
fn training_is_deterministic_and_independent_of_thread_count() {
    let docs = read_all(&[fixture(TRAIN_DOCS)], CorpusOptions::default());
    let a = train_docs(&docs, 700);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let b = pool.install(|| train_docs(&docs, 700));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(5)
        .build()
        .unwrap();
    let c = pool.install(|| train_docs(&docs, 700));
    assert_eq!(a.merges.len(), 700 - 265);
    assert_eq!(a, b);
    assert_eq!(a, c);
    // A larger vocabulary extends a smaller one.
    let small = train_docs(&docs, 512);
    assert_eq!(a.merges[..247], small.merges[..]);
}

// ---------------------------------------------------------------------------------------------
// The algorithm on small hand-made cases.

#[test]
fn overlapping_pairs_merge_left_to_right_and_training_stops_when_no_pair_is_left() {
    // "aaaa" is one chunk: (a,a)×3 → [X, X] → [Y]; then nothing is left to merge.
    let bpe = train_docs(&["aaaa".to_string()], 512);
    assert_eq!(bpe.merges, vec![(97, 97), (256, 256)]);
    assert_eq!(bpe.ranks[256], b"aa");
    assert_eq!(bpe.ranks[257], b"aaaa");
    assert_eq!(bpe.ranks.len(), 258);

    // "aaa": (a,a) count 2, but merging gives [X, a]: only one occurrence is replaced.
    let bpe = train_docs(&["aaa".to_string()], 512);
    assert_eq!(bpe.merges, vec![(97, 97), (256, 97)]);
}

#[test]
fn equal_counts_go_to_the_smaller_pair() {
    // Chunks "ab" and " cd": all three pairs have count 1. (32,99) < (97,98) < (99,100); merging
    // " c" destroys (c,d) and creates (256,100), which ties and comes after (97,98).
    let bpe = train_docs(&["ab cd".to_string()], 512);
    assert_eq!(bpe.merges, vec![(32, 99), (97, 98), (256, 100)]);

    // Ties are decided by the left id first, then the right id.
    let bpe =
        train_from_chunk_counts([("zb", 3u64), ("ya", 3), ("yb", 3)], 512, "", |_| {}).unwrap();
    assert_eq!(bpe.merges, vec![(121, 97), (121, 98), (122, 98)]);

    // Higher counts first, whatever the ids.
    let bpe = train_from_chunk_counts([("zz", 5u64), ("ab", 4)], 512, "", |_| {}).unwrap();
    assert_eq!(bpe.merges, vec![(122, 122), (97, 98)]);
}

#[test]
fn chunks_are_counted_across_documents_but_never_span_them() {
    // "ab" in two documents: (a,b) count 2; the documents are not glued ("b" + "a" never pairs).
    let bpe = train_docs(&["ab".to_string(), "ab".to_string(), "xy".to_string()], 512);
    assert_eq!(bpe.merges, vec![(97, 98), (120, 121)]);
}

#[test]
fn vocab_size_caps_the_number_of_merges() {
    let docs = vec!["the cat sat on the mat with the hat".to_string()];
    let bpe = train_docs(&docs, 265 + 3);
    assert_eq!(bpe.merges.len(), 3);
    let bpe = train_docs(&docs, 265);
    assert!(bpe.merges.is_empty());
    assert_eq!(bpe.ranks.len(), 256);
}

/// The textbook O(n²) BPE trainer, to compare with on random inputs: recount every pair after
/// each merge, take the highest count (smallest pair on ties), merge left to right.
fn naive_train(chunks: &[(Vec<u8>, u64)], n_merges: usize) -> Vec<(u32, u32)> {
    let mut words: Vec<(Vec<u32>, u64)> = chunks
        .iter()
        .map(|(w, c)| (w.iter().map(|&b| b as u32).collect(), *c))
        .collect();
    let mut merges = Vec::new();
    while merges.len() < n_merges {
        let mut counts = std::collections::BTreeMap::<(u32, u32), u64>::new();
        for (w, c) in &words {
            for p in w.windows(2) {
                *counts.entry((p[0], p[1])).or_default() += c;
            }
        }
        let Some(&max) = counts.values().max() else {
            break;
        };
        // BTreeMap iterates pairs in ascending order: the first maximum is the smallest pair.
        let best = counts
            .iter()
            .find(|(_, &c)| c == max)
            .map(|(&p, _)| p)
            .unwrap();
        let new_id = 256 + merges.len() as u32;
        for (w, _) in &mut words {
            let mut out = Vec::with_capacity(w.len());
            let mut i = 0;
            while i < w.len() {
                if i + 1 < w.len() && (w[i], w[i + 1]) == best {
                    out.push(new_id);
                    i += 2;
                } else {
                    out.push(w[i]);
                    i += 1;
                }
            }
            *w = out;
        }
        merges.push(best);
    }
    merges
}

#[test]
fn matches_a_naive_trainer_on_random_inputs() {
    // xorshift: deterministic pseudo-random words over a small alphabet (many ties and repeats).
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..40 {
        let alphabet = 2 + (round % 5) as u64;
        let n_words = 1 + next() % 30;
        let mut chunks = Vec::new();
        for _ in 0..n_words {
            let len = 1 + next() % 12;
            let word: Vec<u8> = (0..len).map(|_| b'a' + (next() % alphabet) as u8).collect();
            chunks.push((word, 1 + next() % 4));
        }
        // Merge duplicate words the way the trainer's counting would.
        let mut map = std::collections::BTreeMap::<Vec<u8>, u64>::new();
        for (w, c) in &chunks {
            *map.entry(w.clone()).or_default() += c;
        }
        let chunks: Vec<(Vec<u8>, u64)> = map.into_iter().collect();
        let want = naive_train(&chunks, 60);
        let got =
            train_from_chunk_counts(chunks.iter().map(|(w, c)| (w, *c)), 265 + 60, "", |_| {})
                .unwrap();
        assert_eq!(got.merges, want, "round {round}: {chunks:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Corpus formats and caps.

#[test]
fn txt_documents_are_separated_by_blank_lines() {
    let dir = scratch_dir("txt");
    let path = write(
        &dir,
        "a.txt",
        b"\n\nfirst doc\nstill first\r\n\n \t\n\nsecond\n\nthird, no newline",
    );
    let docs = read_all(&[path], CorpusOptions::default());
    assert_eq!(
        docs,
        ["first doc\nstill first", "second", "third, no newline"]
    );
}

#[test]
fn jsonl_accepts_strings_and_objects_with_text_and_skips_blank_lines() {
    let dir = scratch_dir("jsonl");
    let path = write(
        &dir,
        "a.JSONL",
        "\u{feff}\"one\\nline\"\n\n  \n{\"id\": 7, \"text\": \"two é\"}\r\n\"\"\n\"last\""
            .as_bytes(),
    );
    let docs = read_all(&[&path], CorpusOptions::default());
    assert_eq!(docs, ["one\nline", "two é", "", "last"]);
    // Several files are read in order, and progress covers them all.
    let mut reader = CorpusReader::open(&[path.clone(), path], CorpusOptions::default()).unwrap();
    let total = reader.total_bytes();
    assert_eq!(reader.by_ref().count(), 8);
    assert_eq!(reader.bytes_read(), total);
    assert_eq!(reader.docs_read(), 8);
    assert_eq!(reader.chars_read(), 2 * 17); // 8 + 5 + 0 + 4 per file
}

#[test]
fn documents_are_cropped_to_doc_cap_characters() {
    let mut s = "héllo wörld".to_string();
    assert_eq!(crop_chars(&mut s, Some(4)), 4);
    assert_eq!(s, "héll");
    let mut s = "ab".to_string();
    assert_eq!(crop_chars(&mut s, Some(4)), 2);
    let mut s = "ééé".to_string(); // 6 bytes, 3 chars
    assert_eq!(crop_chars(&mut s, Some(3)), 3);
    assert_eq!(s, "ééé");
    assert_eq!(crop_chars(&mut s, None), 3);

    let dir = scratch_dir("cap");
    let path = write(&dir, "a.jsonl", "\"ααααα\"\n\"bbbbbbbb\"\n".as_bytes());
    let docs = read_all(
        &[path],
        CorpusOptions {
            doc_cap: Some(3),
            max_chars: None,
        },
    );
    assert_eq!(docs, ["ααα", "bbb"]);

    // Default: 10,000 characters, as tok_train.py.
    let long = "ü".repeat(10_500);
    let path = write(&dir, "b.jsonl", format!("\"{long}\"\n").as_bytes());
    let docs = read_all(&[path], CorpusOptions::default());
    assert_eq!(docs[0].chars().count(), 10_000);
}

#[test]
fn max_chars_stops_right_after_the_document_that_exceeds_it() {
    let dir = scratch_dir("max");
    let path = write(&dir, "a.jsonl", b"\"aaaa\"\n\"bbbb\"\n\"cccc\"\n\"dddd\"\n");
    let read = |max| {
        read_all(
            &[&path],
            CorpusOptions {
                doc_cap: Some(3),
                max_chars: Some(max),
            },
        )
    };
    // Cropped lengths 3, 3, 3, 3: running totals 3, 6, 9, 12.
    assert_eq!(read(6), ["aaa", "bbb", "ccc"]); // 9 > 6: stop after the third
    assert_eq!(read(5), ["aaa", "bbb"]);
    assert_eq!(read(0), ["aaa"]);
    assert_eq!(read(100).len(), 4);

    // On the fixture, as tok_train.py --max_chars would.
    let all = read_all(&[fixture(TRAIN_DOCS)], CorpusOptions::default());
    let first: usize = all[0].chars().count();
    let some = read_all(
        &[fixture(SHARD_0)],
        CorpusOptions {
            doc_cap: Some(10_000),
            max_chars: Some(first as u64),
        },
    );
    assert_eq!(some, all[..2]);
}

// ---------------------------------------------------------------------------------------------
// Errors.

#[test]
fn invalid_utf8_names_the_file_line_and_offset() {
    let dir = scratch_dir("utf8");
    let jsonl = write(&dir, "bad.jsonl", b"\"ok\"\n\"bad \xff here\"\n");
    let msg = read_err(&jsonl);
    assert!(msg.contains("bad.jsonl"), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
    assert!(msg.contains("byte offset 10"), "{msg}");
    assert!(msg.contains("UTF-8"), "{msg}");

    let txt = write(&dir, "bad.txt", b"fine\n\nfine again\nnot \xc3\x28 fine\n");
    let msg = read_err(&txt);
    assert!(
        msg.contains("bad.txt") && msg.contains("line 4") && msg.contains("byte offset 21"),
        "{msg}"
    );

    // The trainer passes the error on.
    let reader = CorpusReader::open(&[jsonl], CorpusOptions::default()).unwrap();
    let err = train(reader, 512, NANOCHAT_SPLIT_PATTERN, |_| {}).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn bad_json_lines_are_errors() {
    let dir = scratch_dir("json");
    for (name, content, want) in [
        ("a.jsonl", "\"ok\"\n\"unterminated\n", "line 2"),
        ("b.jsonl", "42\n", "line 1"),
        ("c.jsonl", "{\"body\": \"x\"}\n", "text"),
        ("d.jsonl", "{\"text\": 3}\n", "line 1"),
        ("e.jsonl", "\"a\" \"b\"\n", "line 1"),
    ] {
        let path = write(&dir, name, content.as_bytes());
        let msg = read_err(&path);
        assert!(msg.contains(name) && msg.contains(want), "{name}: {msg}");
    }
}

#[test]
fn unknown_extension_and_missing_file_are_errors() {
    let dir = scratch_dir("ext");
    let path = write(&dir, "notes.md", b"hello");
    let err = CorpusReader::open(&[path], CorpusOptions::default())
        .err()
        .expect("unsupported");
    let msg = err.to_string();
    assert!(
        msg.contains("notes.md")
            && msg.contains(".jsonl")
            && msg.contains(".txt")
            && msg.contains(".parquet"),
        "{msg}"
    );

    let missing = dir.join("missing.jsonl");
    let err = CorpusReader::open(&[missing], CorpusOptions::default())
        .err()
        .expect("missing");
    assert!(matches!(err, TokenizerError::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing.jsonl"), "{err}");

    let not_parquet = write(&dir, "x.parquet", b"this is not parquet");
    let msg = read_err(&not_parquet);
    assert!(msg.contains("x.parquet"), "{msg}");
}

/// Writes a one-row-group parquet file with the given message type and one column of values.
fn write_parquet(
    path: &Path,
    schema: &str,
    write_column: impl FnOnce(&mut parquet::column::writer::ColumnWriter),
) {
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let schema = std::sync::Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(
        file,
        schema,
        std::sync::Arc::new(WriterProperties::builder().build()),
    )
    .unwrap();
    let mut rg = writer.next_row_group().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    write_column(col.untyped());
    col.close().unwrap();
    rg.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_schema_problems_are_errors() {
    use parquet::column::writer::ColumnWriter;
    use parquet::data_type::ByteArray;
    let dir = scratch_dir("parquet");

    let no_text = dir.join("no_text.parquet");
    write_parquet(
        &no_text,
        "message m { required binary body (UTF8); }",
        |c| {
            let ColumnWriter::ByteArrayColumnWriter(w) = c else {
                panic!()
            };
            w.write_batch(&[ByteArray::from("x")], None, None).unwrap();
        },
    );
    let err = CorpusReader::open(&[&no_text], CorpusOptions::default())
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("no_text.parquet")
            && msg.contains("no \"text\" column")
            && msg.contains("body"),
        "{msg}"
    );

    let int_text = dir.join("int_text.parquet");
    write_parquet(&int_text, "message m { required int64 text; }", |c| {
        let ColumnWriter::Int64ColumnWriter(w) = c else {
            panic!()
        };
        w.write_batch(&[1, 2], None, None).unwrap();
    });
    let msg = read_err(&int_text);
    assert!(
        msg.contains("int_text.parquet") && msg.contains("not a string column"),
        "{msg}"
    );

    let null_text = dir.join("null_text.parquet");
    write_parquet(
        &null_text,
        "message m { optional binary text (UTF8); }",
        |c| {
            let ColumnWriter::ByteArrayColumnWriter(w) = c else {
                panic!()
            };
            w.write_batch(&[ByteArray::from("a")], Some(&[1, 0]), None)
                .unwrap();
        },
    );
    let msg = read_err(&null_text);
    assert!(
        msg.contains("row group 0") && msg.contains("row 1") && msg.contains("null"),
        "{msg}"
    );

    let bad_utf8 = dir.join("bad_utf8.parquet");
    write_parquet(
        &bad_utf8,
        "message m { required binary text (UTF8); }",
        |c| {
            let ColumnWriter::ByteArrayColumnWriter(w) = c else {
                panic!()
            };
            w.write_batch(
                &[ByteArray::from("ok"), ByteArray::from(vec![b'x', 0xff])],
                None,
                None,
            )
            .unwrap();
        },
    );
    let msg = read_err(&bad_utf8);
    assert!(
        msg.contains("row group 0") && msg.contains("row 1") && msg.contains("UTF-8"),
        "{msg}"
    );

    // A well-formed optional string column reads fine.
    let good = dir.join("good.parquet");
    write_parquet(&good, "message m { optional binary text (STRING); }", |c| {
        let ColumnWriter::ByteArrayColumnWriter(w) = c else {
            panic!()
        };
        w.write_batch(
            &[ByteArray::from("a b"), ByteArray::from("ü")],
            Some(&[1, 1]),
            None,
        )
        .unwrap();
    });
    assert_eq!(read_all(&[good], CorpusOptions::default()), ["a b", "ü"]);
}

#[test]
fn empty_corpus_is_an_error() {
    let err = train(
        std::iter::empty::<Result<String, _>>(),
        512,
        NANOCHAT_SPLIT_PATTERN,
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, TokenizerError::BadTrainingInput(_)), "{err}");
    assert!(err.to_string().contains("empty"), "{err}");
    let err = train_docs_err(&["", ""]);
    assert!(err.contains("empty"), "{err}");
    // A corpus of single characters has characters but no pairs: zero merges, not an error.
    let bpe = train_docs(&["a".to_string(), "b".to_string()], 512);
    assert!(bpe.merges.is_empty());
}

fn train_docs_err(docs: &[&str]) -> String {
    train(
        docs.iter().map(|d| Ok(*d)),
        512,
        NANOCHAT_SPLIT_PATTERN,
        |_| {},
    )
    .unwrap_err()
    .to_string()
}

#[test]
fn vocab_size_too_small_is_an_error() {
    for v in [0, 255, 256, 264] {
        let err = train(
            ["hello"].iter().map(|d| Ok(*d)),
            v,
            NANOCHAT_SPLIT_PATTERN,
            |_| {},
        )
        .unwrap_err();
        assert!(matches!(err, TokenizerError::BadTrainingInput(_)), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&v.to_string()) && msg.contains("265"), "{msg}");
    }
    assert!(train(
        ["hello"].iter().map(|d| Ok(*d)),
        265,
        NANOCHAT_SPLIT_PATTERN,
        |_| {}
    )
    .is_ok());
}
