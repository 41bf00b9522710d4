//! Byte-level BPE of one pre-split chunk, with tiktoken's semantics: start from single bytes and
//! repeatedly merge the adjacent pair whose concatenated bytes have the lowest rank (ties →
//! leftmost) until no adjacent concatenation is a token.
//!
//! tiktoken hashes byte slices for every candidate pair. We precompute, once per vocabulary, the
//! complete table `(left id, right id) → merged id`: every token of two or more bytes is tried at
//! every split point whose two halves are both tokens. Since bytes → id is a bijection, a pair of
//! tokens concatenates to a token exactly when the table has it, so looking up integer pairs gives
//! the same merges as looking up byte strings — for any tiktoken vocabulary, not only for merge
//! tables produced by a trainer. Ranks are ids (tiktoken's convention), so "lowest rank" is
//! "lowest merged id".

use rustc_hash::FxHashMap;

use crate::error::{Result, TokenizerError};

/// Chunks longer than this (in bytes) use the heap-based merge; shorter ones scan linearly,
/// which is faster for the short chunks that dominate real text.
const LINEAR_MERGE_MAX_LEN: usize = 64;

pub struct BytePairEncoder {
    /// id → bytes, for every mergeable id (0..n).
    id_to_bytes: Vec<Vec<u8>>,
    /// bytes → id, for whole-chunk lookups.
    bytes_to_id: FxHashMap<Vec<u8>, u32>,
    /// id of each single byte.
    byte_ids: [u32; 256],
    /// `(left << 32) | right` → merged id.
    pair_to_id: FxHashMap<u64, u32>,
}

#[inline(always)]
fn pair_key(left: u32, right: u32) -> u64 {
    ((left as u64) << 32) | right as u64
}

impl BytePairEncoder {
    /// Builds the encoder from the mergeable tokens; `ranks[id]` are the bytes of token `id`.
    /// Every single byte must be a token (otherwise some text could not be encoded), and no two
    /// ids may have the same bytes.
    pub fn new(ranks: Vec<Vec<u8>>) -> Result<Self> {
        let mut bytes_to_id = FxHashMap::default();
        bytes_to_id.reserve(ranks.len());
        for (id, bytes) in ranks.iter().enumerate() {
            if bytes.is_empty() {
                return Err(TokenizerError::BadVocab(format!("token {id} has no bytes")));
            }
            if let Some(previous) = bytes_to_id.insert(bytes.clone(), id as u32) {
                return Err(TokenizerError::BadVocab(format!(
                    "tokens {previous} and {id} have the same bytes {bytes:?}"
                )));
            }
        }
        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = *bytes_to_id.get(&[b as u8][..]).ok_or_else(|| {
                TokenizerError::BadVocab(format!(
                    "byte 0x{b:02x} is not a token; every single byte must be one"
                ))
            })?;
        }
        let mut pair_to_id = FxHashMap::default();
        for (id, bytes) in ranks.iter().enumerate() {
            for split in 1..bytes.len() {
                let (left, right) = bytes.split_at(split);
                if let (Some(&l), Some(&r)) = (bytes_to_id.get(left), bytes_to_id.get(right)) {
                    pair_to_id.insert(pair_key(l, r), id as u32);
                }
            }
        }
        Ok(Self {
            id_to_bytes: ranks,
            bytes_to_id,
            byte_ids,
            pair_to_id,
        })
    }

    /// Number of mergeable tokens (ids `0..len`).
    pub fn len(&self) -> usize {
        self.id_to_bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.id_to_bytes.is_empty()
    }

    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.id_to_bytes.get(id as usize).map(|b| b.as_slice())
    }

    pub fn id_of_bytes(&self, bytes: &[u8]) -> Option<u32> {
        self.bytes_to_id.get(bytes).copied()
    }

    pub fn ranks(&self) -> &[Vec<u8>] {
        &self.id_to_bytes
    }

    #[inline(always)]
    fn merged(&self, left: u32, right: u32) -> u32 {
        self.pair_to_id
            .get(&pair_key(left, right))
            .copied()
            .unwrap_or(u32::MAX)
    }

    /// Appends the tokens of one chunk to `out`.
    #[inline]
    pub fn encode_chunk(&self, chunk: &[u8], out: &mut Vec<u32>) {
        match chunk.len() {
            0 => {}
            1 => out.push(self.byte_ids[chunk[0] as usize]),
            _ => {
                if let Some(&id) = self.bytes_to_id.get(chunk) {
                    out.push(id);
                } else if chunk.len() <= LINEAR_MERGE_MAX_LEN {
                    self.merge_linear(chunk, out);
                } else {
                    self.merge_heap(chunk, out);
                }
            }
        }
    }

    /// The O(n²) merge on a small array: `parts[i]` is a token, `merged_with_next[i]` the id
    /// that `parts[i] + parts[i+1]` would become (u32::MAX if none).
    fn merge_linear(&self, chunk: &[u8], out: &mut Vec<u32>) {
        let mut parts: Vec<u32> = chunk.iter().map(|&b| self.byte_ids[b as usize]).collect();
        let mut merged_with_next: Vec<u32> =
            parts.windows(2).map(|w| self.merged(w[0], w[1])).collect();
        loop {
            // Lowest merged id, leftmost on ties.
            let mut best = u32::MAX;
            let mut at = 0;
            for (i, &m) in merged_with_next.iter().enumerate() {
                if m < best {
                    best = m;
                    at = i;
                }
            }
            if best == u32::MAX {
                break;
            }
            parts[at] = best;
            parts.remove(at + 1);
            merged_with_next.remove(at);
            if at + 1 < parts.len() {
                merged_with_next[at] = self.merged(best, parts[at + 1]);
            }
            if at > 0 {
                merged_with_next[at - 1] = self.merged(parts[at - 1], best);
            }
        }
        out.extend_from_slice(&parts);
    }

    /// The same merge order with a heap over (merged id, position) and a linked list of parts,
    /// O(n log n) for long chunks (a long run of spaces or symbols would be quadratic otherwise).
    /// Positions only grow left to right, so (id, position) order is "lowest id, leftmost".
    fn merge_heap(&self, chunk: &[u8], out: &mut Vec<u32>) {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;

        const NONE: usize = usize::MAX;
        let n = chunk.len();
        let mut token: Vec<u32> = chunk.iter().map(|&b| self.byte_ids[b as usize]).collect();
        let mut next: Vec<usize> = (1..=n).map(|i| if i == n { NONE } else { i }).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| if i == 0 { NONE } else { i - 1 }).collect();
        let mut alive = vec![true; n];
        let mut heap = BinaryHeap::new();
        for i in 0..n - 1 {
            let m = self.merged(token[i], token[i + 1]);
            if m != u32::MAX {
                heap.push(Reverse((m, i, token[i + 1])));
            }
        }
        while let Some(Reverse((m, i, right_token))) = heap.pop() {
            // Stale if the left part died, changed, or its right neighbour is not the one we saw.
            if !alive[i] {
                continue;
            }
            let j = next[i];
            if j == NONE || token[j] != right_token || self.merged(token[i], token[j]) != m {
                continue;
            }
            token[i] = m;
            alive[j] = false;
            next[i] = next[j];
            if next[j] != NONE {
                prev[next[j]] = i;
            }
            if next[i] != NONE {
                let k = next[i];
                let mk = self.merged(m, token[k]);
                if mk != u32::MAX {
                    heap.push(Reverse((mk, i, token[k])));
                }
            }
            if prev[i] != NONE {
                let h = prev[i];
                let mh = self.merged(token[h], m);
                if mh != u32::MAX {
                    heap.push(Reverse((mh, h, m)));
                }
            }
        }
        let mut i = 0;
        while i != NONE {
            out.push(token[i]);
            i = next[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(extra: &[&[u8]]) -> BytePairEncoder {
        let mut ranks: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        ranks.extend(extra.iter().map(|t| t.to_vec()));
        BytePairEncoder::new(ranks).unwrap()
    }

    fn both(enc: &BytePairEncoder, text: &[u8]) -> Vec<u32> {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        enc.merge_linear(text, &mut a);
        enc.merge_heap(text, &mut b);
        assert_eq!(a, b, "linear and heap merges differ on {text:?}");
        a
    }

    #[test]
    fn merges_lowest_id_first_and_leftmost_on_ties() {
        let enc = vocab(&[b"aa", b"aaa"]);
        // "aaa" is itself a token but merging is pairwise: aa(256) first (leftmost), then
        // aa+a = aaa(257).
        assert_eq!(both(&enc, b"aaa"), vec![257]);
        assert_eq!(both(&enc, b"aaaa"), vec![256, 256]);
        assert_eq!(both(&enc, b"aaaaa"), vec![256, 257]);
    }

    #[test]
    fn pairs_not_created_by_a_trainer_still_merge() {
        // "abc" is a token reachable only as "a"+"bc", and "bc" has a higher id than "abc".
        let enc = vocab(&[b"abc", b"bc"]);
        assert_eq!(both(&enc, b"abc"), vec![256]);
        assert_eq!(both(&enc, b"xbc"), vec![b'x' as u32, 257]);
    }

    #[test]
    fn heap_agrees_with_linear_on_long_repetitive_chunks() {
        let enc = vocab(&[b"  ", b"    ", b"   ", b"ab", b"ba", b"aba", b"abab"]);
        for text in [
            &b"                                         "[..],
            b"abababababababababa",
            b"aabbaabbabab  ab",
        ] {
            both(&enc, text);
        }
    }

    #[test]
    fn rejects_vocab_without_all_bytes_or_with_duplicates() {
        let missing: Vec<Vec<u8>> = (0..255u8).map(|b| vec![b]).collect();
        assert!(BytePairEncoder::new(missing).is_err());
        let mut dup: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        dup.push(vec![b'a']);
        assert!(BytePairEncoder::new(dup).is_err());
    }
}
