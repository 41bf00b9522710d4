//! The BPE trainer: rustbpe's algorithm (nanochat@01f5f10 `rustbpe/src/lib.rs`, reference §2.4),
//! producing exactly the same merges.
//!
//! 1. Every document is split with the pattern; every chunk string is counted globally (chunks
//!    never span documents).
//! 2. Every unique chunk becomes a "word": its UTF-8 bytes as ids 0..=255, weighted by its count.
//! 3. Pair counts over overlapping windows of every word, times the word's weight.
//! 4. Merge `k` creates id `256 + k` for the pair with the highest live count, **ties going to the
//!    smaller pair** (left id, then right id). In every word containing it, the non-overlapping
//!    occurrences are replaced left to right (`a a a` → `X a`), and the pair counts are updated
//!    live. Stops after `vocab_size − 9 − 256` merges, or earlier when no pair is left.
//!
//! Why this reproduces rustbpe exactly, although its heap is visited in hash-map order: the choice
//! of each merge only depends on the *live* counts. A pair is only ever created in one step (the
//! initial count for byte pairs, or the merge that creates its newest id: merges never make two
//! old ids adjacent), so after it is pushed its count can only go down; a max-heap keyed by
//! `(count, smaller pair first)` with lazy refresh (a popped entry whose count is stale is
//! re-pushed with its live count) therefore always yields the exact argmax — a total order, with
//! no dependence on visiting order. Our heap uses the same key and refresh rule.
//!
//! Speed: documents are read in batches; each batch is split and counted in parallel (rayon),
//! into one chunk→count map per worker thread (allocating only for chunks new to that thread).
//! Words live in one flat arena and are merged in place; each pair keeps its count and the list of
//! words it was created in (a superset of where it occurs; duplicates are skipped with a per-word
//! stamp).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Mutex;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::error::{Result, TokenizerError};
use crate::split::Splitter;

/// nanochat's special tokens (reference §2.1) take the ids after the BPE ranks; `vocab_size`
/// arguments include them.
pub const N_SPECIAL_TOKENS: usize = 9;

/// Documents are split and counted in batches of about this many bytes.
const BATCH_BYTES: usize = 8 << 20;
/// … or this many documents, whichever comes first.
const BATCH_DOCS: usize = 1 << 16;

/// The result of training.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainedBpe {
    /// The split pattern the corpus was split with.
    pub pattern: String,
    /// Merges in training order: merge `k` joins `(left, right)` into id `256 + k`.
    pub merges: Vec<(u32, u32)>,
    /// Mergeable ranks: `ranks[id]` = the bytes of token `id` (`0..256` are the single bytes,
    /// `256 + k` = `ranks[left] ++ ranks[right]` of merge `k`). The rank of a token is its id;
    /// the special tokens come after: `ranks.len() + i` (§2.1).
    pub ranks: Vec<Vec<u8>>,
}

impl TrainedBpe {
    /// Vocabulary size including the special tokens: `ranks.len() + 9`.
    pub fn vocab_size(&self) -> usize {
        self.ranks.len() + N_SPECIAL_TOKENS
    }
}

/// Progress reports of [`train`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrainProgress {
    /// After every batch of documents has been split and counted (running totals).
    Counting {
        docs: u64,
        bytes: u64,
        unique_chunks: usize,
    },
    /// Counting is finished (totals), merging starts.
    Counted {
        docs: u64,
        bytes: u64,
        unique_chunks: usize,
        unique_pairs: usize,
    },
    /// Merges done so far out of the number asked for (reported about 1000 times in all).
    Merging { done: usize, total: usize },
    /// Training finished with this many merges (fewer than asked if the corpus ran out of pairs).
    Done { merges: usize },
}

/// Checks `vocab_size` (including the 9 special tokens) and returns the number of merges to do.
pub fn merges_for_vocab_size(vocab_size: usize) -> Result<usize> {
    let min = 256 + N_SPECIAL_TOKENS;
    if vocab_size < min {
        return Err(TokenizerError::BadTrainingInput(format!(
            "vocab_size {vocab_size} is too small: it must be at least {min} \
             (256 byte tokens + {N_SPECIAL_TOKENS} special tokens)"
        )));
    }
    if vocab_size > u32::MAX as usize {
        return Err(TokenizerError::BadTrainingInput(format!(
            "vocab_size {vocab_size} is too large for 32-bit token ids"
        )));
    }
    Ok(vocab_size - min)
}

/// Trains a BPE vocabulary of `vocab_size` tokens **including** the 9 special tokens (so
/// `vocab_size − 9 − 256` merges), exactly like nanochat's
/// `RustBPETokenizer.train_from_iterator(docs, vocab_size)`.
///
/// `docs` are the documents in order (e.g. a [`crate::corpus::CorpusReader`]); the first error
/// stops training and is returned. `progress` is called with [`TrainProgress`] reports.
///
/// Errors: `vocab_size < 265`, a pattern that does not compile, an input error, or a corpus with no
/// characters at all.
pub fn train<I, S>(
    docs: I,
    vocab_size: usize,
    pattern: &str,
    progress: impl FnMut(&TrainProgress),
) -> Result<TrainedBpe>
where
    I: IntoIterator<Item = Result<S>>,
    S: AsRef<str> + Send + Sync,
{
    let splitter = Splitter::new(pattern)?;
    train_with_splitter(docs, vocab_size, &splitter, progress)
}

/// [`train`] with an already built [`Splitter`] (e.g. [`Splitter::new_regex`] to force
/// `fancy-regex`); the result's `pattern` is the splitter's.
pub fn train_with_splitter<I, S>(
    docs: I,
    vocab_size: usize,
    splitter: &Splitter,
    mut progress: impl FnMut(&TrainProgress),
) -> Result<TrainedBpe>
where
    I: IntoIterator<Item = Result<S>>,
    S: AsRef<str> + Send + Sync,
{
    let num_merges = merges_for_vocab_size(vocab_size)?;
    let counts = count_chunks(docs, splitter, &mut progress)?;
    train_from_chunk_counts_inner(counts, num_merges, splitter.pattern(), &mut progress)
}

/// Trains from already counted chunks (`chunk bytes → count`, as rustbpe's `train_core_incremental`
/// after splitting). The order of `counts` does not matter, and a chunk listed twice counts as
/// the sum of its counts. `vocab_size` includes the 9 specials.
/// Errors if `vocab_size < 265` or all chunks are empty / have count 0.
pub fn train_from_chunk_counts<K: AsRef<[u8]>>(
    counts: impl IntoIterator<Item = (K, u64)>,
    vocab_size: usize,
    pattern: &str,
    mut progress: impl FnMut(&TrainProgress),
) -> Result<TrainedBpe> {
    let num_merges = merges_for_vocab_size(vocab_size)?;
    let mut chunks = ChunkCounts::default();
    for (k, c) in counts {
        let k = k.as_ref();
        if c > 0 && !k.is_empty() {
            chunks.total_bytes += k.len() as u64 * c;
            chunks.chunks.push((k.into(), c));
        }
    }
    train_from_chunk_counts_inner(chunks, num_merges, pattern, &mut progress)
}

// ------------------------------------------------------------------------------------------------
// Phase 1: split and count.

#[derive(Default)]
struct ChunkCounts {
    /// Unique chunks and their counts (a chunk listed twice would simply count twice).
    chunks: Vec<(Box<[u8]>, u64)>,
    docs: u64,
    /// Bytes of all chunks (= of all documents for a pattern that matches every character).
    total_bytes: u64,
}

/// One worker's chunk counts; keys are owned so the map can outlive a batch.
type LocalCounts = FxHashMap<Box<str>, u64>;

fn count_chunks<I, S>(
    docs: I,
    splitter: &Splitter,
    progress: &mut dyn FnMut(&TrainProgress),
) -> Result<ChunkCounts>
where
    I: IntoIterator<Item = Result<S>>,
    S: AsRef<str> + Send + Sync,
{
    let n_threads = rayon::current_num_threads().max(1);
    let locals: Vec<Mutex<LocalCounts>> = (0..n_threads)
        .map(|_| Mutex::new(LocalCounts::default()))
        .collect();
    let mut docs_seen = 0u64;
    let mut bytes_seen = 0u64;
    let mut iter = docs.into_iter().fuse();
    let mut current: Vec<S> = Vec::new();
    let mut next: Vec<S> = Vec::new();
    let mut current_bytes = read_batch(&mut iter, &mut current)?;
    // Batch k is split and counted on the rayon pool while this thread reads batch k + 1.
    while !current.is_empty() {
        let mut counted: Result<()> = Ok(());
        let mut read: Result<usize> = Ok(0);
        rayon::in_place_scope(|scope| {
            let (batch, counted, locals) = (&current, &mut counted, &locals);
            scope.spawn(move |_| *counted = count_batch(batch, splitter, locals));
            read = read_batch(&mut iter, &mut next);
        });
        counted?;
        docs_seen += current.len() as u64;
        bytes_seen += current_bytes as u64;
        let unique = locals
            .iter()
            .map(|m| m.lock().expect("poisoned").len())
            .max()
            .unwrap_or(0);
        progress(&TrainProgress::Counting {
            docs: docs_seen,
            bytes: bytes_seen,
            unique_chunks: unique,
        });
        current_bytes = read?;
        std::mem::swap(&mut current, &mut next);
        next.clear();
    }

    // Merge the per-thread maps into the largest one.
    let mut maps: Vec<LocalCounts> = locals
        .into_iter()
        .map(|m| m.into_inner().expect("poisoned"))
        .collect();
    maps.sort_by_key(|m| std::cmp::Reverse(m.len()));
    let mut it = maps.into_iter();
    let mut merged = it.next().unwrap_or_default();
    for m in it {
        for (k, v) in m {
            if let Some(c) = merged.get_mut(&*k) {
                *c += v;
            } else {
                merged.insert(k, v);
            }
        }
    }
    let mut out = ChunkCounts {
        docs: docs_seen,
        ..Default::default()
    };
    out.chunks.reserve_exact(merged.len());
    for (k, v) in merged {
        out.total_bytes += k.len() as u64 * v;
        out.chunks.push((k.into_boxed_bytes(), v));
    }
    Ok(out)
}

/// Fills `batch` (empty on entry) with the next documents, up to [`BATCH_BYTES`] or
/// [`BATCH_DOCS`]; returns its size in bytes. An empty batch means the input is exhausted.
fn read_batch<S: AsRef<str>>(
    iter: &mut impl Iterator<Item = Result<S>>,
    batch: &mut Vec<S>,
) -> Result<usize> {
    let mut bytes = 0usize;
    for doc in iter {
        let doc = doc?;
        bytes += doc.as_ref().len();
        batch.push(doc);
        if bytes >= BATCH_BYTES || batch.len() >= BATCH_DOCS {
            break;
        }
    }
    Ok(bytes)
}

fn count_batch<S: AsRef<str> + Sync>(
    batch: &[S],
    splitter: &Splitter,
    locals: &[Mutex<LocalCounts>],
) -> Result<()> {
    batch.par_iter().try_for_each(|doc| -> Result<()> {
        let slot = rayon::current_thread_index().unwrap_or(0) % locals.len();
        // Uncontended: only this worker uses this slot, and nothing inside can re-enter rayon.
        let mut map = locals[slot].lock().expect("poisoned");
        splitter.for_each_chunk(doc.as_ref(), |chunk| {
            if let Some(c) = map.get_mut(chunk) {
                *c += 1;
            } else {
                map.insert(chunk.into(), 1);
            }
        })
    })
}

// ------------------------------------------------------------------------------------------------
// Phase 2: merges.

#[inline]
fn key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

#[inline]
fn unkey(p: u64) -> (u32, u32) {
    ((p >> 32) as u32, p as u32)
}

#[derive(Default)]
struct PairStat {
    /// Live count: Σ over words of (occurrences × word count).
    count: i64,
    /// Words the pair was created in (may list words where it no longer occurs).
    words: Vec<u32>,
}

/// All words in one arena; words with fewer than 2 ids are dropped (they have no pairs).
struct Words {
    ids: Vec<u32>,
    meta: Vec<WordMeta>,
}

/// Everything the merge loop reads about a word, together (one cache line, not four).
#[derive(Clone, Copy)]
struct WordMeta {
    /// Where its ids start in `Words::ids`.
    start: usize,
    /// How many times the chunk occurred.
    count: i64,
    /// Its current length (shrinks in place as merges apply).
    len: u32,
    /// The last merge that visited it (skips duplicates in a pair's word list).
    stamp: u32,
}

struct MergeState {
    words: Words,
    pairs: FxHashMap<u64, PairStat>,
    /// Pairs first created during the current merge.
    created: Vec<u64>,
}

impl MergeState {
    /// Takes `wc` off pair `p`; an old pair whose count reaches 0 occurs nowhere any more and can
    /// never be created again, so it is dropped (pairs with the new id `n` are settled after the
    /// merge, as they may still gain).
    #[inline]
    fn remove(&mut self, p: u64, wc: i64, n: u32) {
        if let Some(s) = self.pairs.get_mut(&p) {
            s.count -= wc;
            if s.count <= 0 {
                let (x, y) = unkey(p);
                if x != n && y != n {
                    self.pairs.remove(&p);
                }
            }
        } else {
            debug_assert!(false, "pair {:?} lost", unkey(p));
        }
    }

    #[inline]
    fn add(&mut self, p: u64, wc: i64, w: u32) {
        let created = &mut self.created;
        let s = self.pairs.entry(p).or_insert_with(|| {
            created.push(p);
            PairStat::default()
        });
        s.count += wc;
        if s.words.last() != Some(&w) {
            s.words.push(w);
        }
    }

    /// Merges `(a, b)` → `n` in word `w` (non-overlapping, left to right) and applies the pair
    /// count changes, rustbpe's way: per occurrence, `(x,a)→(x,n)` for the left neighbour `x`
    /// already written and `(b,y)→(n,y)` for the right neighbour `y` not yet read. The merged pair
    /// itself is skipped (the caller has removed it).
    fn merge_word(&mut self, w: u32, a: u32, b: u32, n: u32) {
        let meta = self.words.meta[w as usize];
        let (start, len, wc) = (meta.start, meta.len as usize, meta.count);
        let merged = key(a, b);
        let mut i = 0;
        let mut j = 0;
        while i < len {
            let cur = self.words.ids[start + i];
            if cur == a && i + 1 < len && self.words.ids[start + i + 1] == b {
                if j > 0 {
                    let x = self.words.ids[start + j - 1];
                    let old = key(x, a);
                    if old != merged {
                        self.remove(old, wc, n);
                    }
                    self.add(key(x, n), wc, w);
                }
                if i + 2 < len {
                    let y = self.words.ids[start + i + 2];
                    let old = key(b, y);
                    if old != merged {
                        self.remove(old, wc, n);
                    }
                    self.add(key(n, y), wc, w);
                }
                self.words.ids[start + j] = n;
                i += 2;
            } else {
                self.words.ids[start + j] = cur;
                i += 1;
            }
            j += 1;
        }
        self.words.meta[w as usize].len = j as u32;
    }
}

fn train_from_chunk_counts_inner(
    chunks: ChunkCounts,
    num_merges: usize,
    pattern: &str,
    progress: &mut dyn FnMut(&TrainProgress),
) -> Result<TrainedBpe> {
    if chunks.total_bytes == 0 {
        return Err(TokenizerError::BadTrainingInput(format!(
            "the training corpus is empty: no characters in {} documents",
            chunks.docs
        )));
    }
    let unique_chunks = chunks.chunks.len();

    // Words (only those with a pair), in a flat arena.
    let mut words = Words {
        ids: Vec::new(),
        meta: Vec::new(),
    };
    let total_ids: usize = chunks
        .chunks
        .iter()
        .map(|(k, _)| k.len())
        .filter(|&len| len >= 2)
        .sum();
    words.ids.reserve_exact(total_ids);
    for (k, c) in chunks.chunks {
        if k.len() < 2 {
            continue;
        }
        words.meta.push(WordMeta {
            start: words.ids.len(),
            count: c as i64,
            len: k.len() as u32,
            stamp: u32::MAX,
        });
        words.ids.extend(k.iter().map(|&b| b as u32));
    }
    let n_words = words.meta.len();
    if n_words > u32::MAX as usize {
        return Err(TokenizerError::BadTrainingInput(format!(
            "too many unique chunks ({n_words}) for 32-bit word indices"
        )));
    }

    // Initial byte-pair counts and word lists (dense over the 65,536 byte pairs), in parallel
    // over word ranges, concatenated in word order.
    let n_parts = (rayon::current_num_threads() * 4).max(1);
    let per = n_words.div_ceil(n_parts).max(1);
    let parts: Vec<(Vec<i64>, Vec<Vec<u32>>)> = (0..n_words)
        .step_by(per)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|lo| {
            let hi = (lo + per).min(n_words);
            let mut counts = vec![0i64; 1 << 16];
            let mut lists: Vec<Vec<u32>> = vec![Vec::new(); 1 << 16];
            for w in lo..hi {
                let m = words.meta[w];
                let ids = &words.ids[m.start..m.start + m.len as usize];
                let wc = m.count;
                for win in ids.windows(2) {
                    let p = (win[0] << 8 | win[1]) as usize;
                    counts[p] += wc;
                    let l = &mut lists[p];
                    if l.last() != Some(&(w as u32)) {
                        l.push(w as u32);
                    }
                }
            }
            (counts, lists)
        })
        .collect();
    let mut pairs: FxHashMap<u64, PairStat> = FxHashMap::default();
    {
        let mut counts = vec![0i64; 1 << 16];
        let mut sizes = vec![0usize; 1 << 16];
        for (c, l) in &parts {
            for p in 0..1 << 16 {
                counts[p] += c[p];
                sizes[p] += l[p].len();
            }
        }
        let n_pairs = counts.iter().filter(|&&c| c > 0).count();
        pairs.reserve(n_pairs);
        for p in 0..1usize << 16 {
            if counts[p] > 0 {
                let mut list = Vec::with_capacity(sizes[p]);
                for (_, l) in &parts {
                    list.extend_from_slice(&l[p]);
                }
                pairs.insert(
                    key((p >> 8) as u32, (p & 0xff) as u32),
                    PairStat {
                        count: counts[p],
                        words: list,
                    },
                );
            }
        }
    }
    drop(parts);
    progress(&TrainProgress::Counted {
        docs: chunks.docs,
        bytes: chunks.total_bytes,
        unique_chunks,
        unique_pairs: pairs.len(),
    });

    // Max-heap on (count, smaller pair first).
    let mut heap: BinaryHeap<(i64, Reverse<u64>)> =
        pairs.iter().map(|(&p, s)| (s.count, Reverse(p))).collect();
    let mut st = MergeState {
        words,
        pairs,
        created: Vec::new(),
    };
    let mut merges: Vec<(u32, u32)> = Vec::with_capacity(num_merges);
    let mut last_report = usize::MAX;

    while merges.len() < num_merges {
        // Pop the best live pair, refreshing stale entries lazily.
        let mut best = None;
        while let Some((c, Reverse(p))) = heap.pop() {
            let live = st.pairs.get(&p).map_or(0, |s| s.count);
            if live == c {
                best = Some(p);
                break;
            }
            if live > 0 {
                heap.push((live, Reverse(p)));
            }
        }
        let Some(p) = best else { break };
        let (a, b) = unkey(p);
        let k = merges.len() as u32;
        let n = 256 + k;
        let stat = st.pairs.remove(&p).expect("live pair");
        st.created.clear();
        let list = &stat.words;
        for (idx, &w) in list.iter().enumerate() {
            // The visits are random accesses: fetch ahead the metadata of a later word and the
            // ids of a nearer one (whose metadata was fetched earlier).
            if let Some(&ahead) = list.get(idx + 16) {
                prefetch(&st.words.meta[ahead as usize]);
            }
            if let Some(&ahead) = list.get(idx + 8) {
                let start = st.words.meta[ahead as usize].start;
                prefetch(&st.words.ids[start]);
            }
            let stamp = &mut st.words.meta[w as usize].stamp;
            if *stamp == k {
                continue;
            }
            *stamp = k;
            st.merge_word(w, a, b, n);
        }
        for i in 0..st.created.len() {
            let q = st.created[i];
            let c = st.pairs[&q].count;
            if c > 0 {
                heap.push((c, Reverse(q)));
            } else {
                st.pairs.remove(&q);
            }
        }
        merges.push((a, b));

        let permille = merges.len() * 1000 / num_merges.max(1);
        if permille != last_report {
            last_report = permille;
            progress(&TrainProgress::Merging {
                done: merges.len(),
                total: num_merges,
            });
        }
    }
    progress(&TrainProgress::Done {
        merges: merges.len(),
    });

    let mut ranks: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    for &(a, b) in &merges {
        let mut bytes = ranks[a as usize].clone();
        bytes.extend_from_slice(&ranks[b as usize]);
        ranks.push(bytes);
    }
    Ok(TrainedBpe {
        pattern: pattern.to_string(),
        merges,
        ranks,
    })
}

/// Hints the CPU to load `x`'s cache line (no effect on results).
#[inline(always)]
fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and does not change memory; SSE is baseline on x86_64.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            x as *const T as *const i8,
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}
