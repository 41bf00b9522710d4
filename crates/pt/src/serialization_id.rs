//! The 40-digit `.data/serialization_id` that `torch.save` writes, reproduced exactly.
//!
//! `PyTorchStreamWriter::writeSerializationId` prints two 20-digit numbers:
//! 1. `hash_combine` folded over `std::hash<std::string>` of every record name written so
//!    far (without the archive prefix), in the iteration order of the
//!    `std::unordered_set<std::string>` that holds them;
//! 2. `hash_combine` folded over the CRC-32 of every zip data descriptor written so far
//!    (the writer spots them as writes starting with `PK\x07\x08`).
//!
//! Part 1 depends on libstdc++ (the C++ runtime of Linux torch builds): its string hash
//! (`_Hash_bytes`, a MurmurHash2 variant) and its hashtable's bucket-count policy and
//! node order, simulated below. Checked against the ids of all fixture files.

/// `c10::hash_combine`.
pub(crate) fn hash_combine(seed: u64, value: u64) -> u64 {
    seed ^ value
        .wrapping_add(0x9e37_79b9)
        .wrapping_add(seed << 6)
        .wrapping_add(seed >> 2)
}

/// The id for these record names (in write order) and combined descriptor CRCs.
pub(crate) fn serialization_id<'a>(
    record_names: impl IntoIterator<Item = &'a str>,
    combined_crc: u64,
) -> String {
    let mut set = StringSetOrder::default();
    for name in record_names {
        set.insert(libstdcxx_string_hash(name.as_bytes()));
    }
    let combined_names = set.iteration_order().fold(0, hash_combine);
    format!("{combined_names:020}{combined_crc:020}")
}

/// `std::_Hash_bytes(data, len, 0xc70f6907)` on a 64-bit little-endian target.
fn libstdcxx_string_hash(data: &[u8]) -> u64 {
    const MUL: u64 = (0xc6a4_a793 << 32) + 0x5bd1_e995;
    let shift_mix = |value: u64| value ^ (value >> 47);
    let aligned = data.len() & !7;
    let mut hash = 0xc70f_6907_u64 ^ (data.len() as u64).wrapping_mul(MUL);
    for chunk in data[..aligned].chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let mixed = shift_mix(u64::from_le_bytes(word).wrapping_mul(MUL)).wrapping_mul(MUL);
        hash = (hash ^ mixed).wrapping_mul(MUL);
    }
    if data.len() > aligned {
        let tail = data[aligned..]
            .iter()
            .rev()
            .fold(0u64, |word, &byte| (word << 8) | u64::from(byte));
        hash = (hash ^ tail).wrapping_mul(MUL);
    }
    shift_mix(shift_mix(hash).wrapping_mul(MUL))
}

/// libstdc++ `__prime_list` (bucket counts), up to the 32-bit entries.
const PRIME_LIST: [u64; 256] = [
    2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    103, 109, 113, 127, 137, 139, 149, 157, 167, 179, 193, 199, 211, 227, 241, 257, 277, 293, 313,
    337, 359, 383, 409, 439, 467, 503, 541, 577, 619, 661, 709, 761, 823, 887, 953, 1031, 1109,
    1193, 1289, 1381, 1493, 1613, 1741, 1879, 2029, 2179, 2357, 2549, 2753, 2971, 3209, 3469, 3739,
    4027, 4349, 4703, 5087, 5503, 5953, 6427, 6949, 7517, 8123, 8783, 9497, 10273, 11113, 12011,
    12983, 14033, 15173, 16411, 17749, 19183, 20753, 22447, 24281, 26267, 28411, 30727, 33223,
    35933, 38873, 42043, 45481, 49201, 53201, 57557, 62233, 67307, 72817, 78779, 85229, 92203,
    99733, 107897, 116731, 126271, 136607, 147793, 159871, 172933, 187091, 202409, 218971, 236897,
    256279, 277261, 299951, 324503, 351061, 379787, 410857, 444487, 480881, 520241, 562841, 608903,
    658753, 712697, 771049, 834181, 902483, 976369, 1056323, 1142821, 1236397, 1337629, 1447153,
    1565659, 1693859, 1832561, 1982627, 2144977, 2320627, 2510653, 2716249, 2938679, 3179303,
    3439651, 3721303, 4026031, 4355707, 4712381, 5098259, 5515729, 5967347, 6456007, 6984629,
    7556579, 8175383, 8844859, 9569143, 10352717, 11200489, 12117689, 13109983, 14183539, 15345007,
    16601593, 17961079, 19431899, 21023161, 22744717, 24607243, 26622317, 28802401, 31160981,
    33712729, 36473443, 39460231, 42691603, 46187573, 49969847, 54061849, 58488943, 63278561,
    68460391, 74066549, 80131819, 86693767, 93793069, 101473717, 109783337, 118773397, 128499677,
    139022417, 150406843, 162723577, 176048909, 190465427, 206062531, 222936881, 241193053,
    260944219, 282312799, 305431229, 330442829, 357502601, 386778277, 418451333, 452718089,
    489790921, 529899637, 573292817, 620239453, 671030513, 725980837, 785430967, 849749479,
    919334987, 994618837, 1076067617, 1164186217, 1259520799, 1362662261, 1474249943, 1594975441,
    1725587117, 1866894511, 2019773507, 2185171673, 2364114217, 2557710269, 2767159799, 2993761039,
    3238918481, 3504151727, 3791104843, 4101556399, 4294967291,
];

/// Small bucket counts `_Prime_rehash_policy::_M_next_bkt` answers directly.
const FAST_BUCKETS: [u64; 14] = [2, 2, 2, 3, 5, 5, 7, 7, 11, 11, 11, 11, 13, 13];

/// Where a bucket's chain is entered from: the list head or the node before it.
#[derive(Clone, Copy)]
enum Before {
    Head,
    Node(usize),
}

/// The node order of a libstdc++ `std::unordered_set` with cached hash codes and
/// `max_load_factor() == 1`, fed distinct keys (only their hash codes matter).
struct StringSetOrder {
    codes: Vec<u64>,
    next: Vec<Option<usize>>,
    first: Option<usize>,
    buckets: Vec<Option<Before>>,
    next_resize: u64,
}

impl Default for StringSetOrder {
    fn default() -> Self {
        StringSetOrder {
            codes: Vec::new(),
            next: Vec::new(),
            first: None,
            buckets: vec![None],
            next_resize: 0,
        }
    }
}

impl StringSetOrder {
    fn bucket_of(&self, node: usize) -> usize {
        (self.codes[node] % self.buckets.len() as u64) as usize
    }

    fn next_of(&self, before: Before) -> Option<usize> {
        match before {
            Before::Head => self.first,
            Before::Node(node) => self.next[node],
        }
    }

    fn set_next(&mut self, before: Before, node: Option<usize>) {
        match before {
            Before::Head => self.first = node,
            Before::Node(previous) => self.next[previous] = node,
        }
    }

    /// `_M_insert_unique_node`: maybe rehash, then insert at the start of the bucket.
    fn insert(&mut self, code: u64) {
        if let Some(bucket_count) = self.need_rehash(self.codes.len() as u64) {
            self.rehash(bucket_count);
        }
        let node = self.codes.len();
        self.codes.push(code);
        self.next.push(None);
        let bucket = self.bucket_of(node);
        match self.buckets[bucket] {
            Some(before) => {
                self.next[node] = self.next_of(before);
                self.set_next(before, Some(node));
            }
            None => {
                self.next[node] = self.first;
                self.first = Some(node);
                if let Some(old_first) = self.next[node] {
                    let old_bucket = self.bucket_of(old_first);
                    self.buckets[old_bucket] = Some(Before::Node(node));
                }
                self.buckets[bucket] = Some(Before::Head);
            }
        }
    }

    /// `_Prime_rehash_policy::_M_need_rehash` for one insertion.
    fn need_rehash(&mut self, element_count: u64) -> Option<u64> {
        let bucket_count = self.buckets.len() as u64;
        if element_count < self.next_resize {
            return None;
        }
        let minimum_buckets = (element_count + 1).max(if self.next_resize == 0 { 11 } else { 0 });
        if minimum_buckets >= bucket_count {
            Some(self.next_bucket_count((minimum_buckets + 1).max(bucket_count * 2)))
        } else {
            self.next_resize = bucket_count;
            None
        }
    }

    /// `_Prime_rehash_policy::_M_next_bkt`.
    fn next_bucket_count(&mut self, wanted: u64) -> u64 {
        if let Some(&fast) = FAST_BUCKETS.get(wanted as usize) {
            self.next_resize = fast;
            return fast;
        }
        let candidates = &PRIME_LIST[6..PRIME_LIST.len() - 1];
        let position = candidates.partition_point(|&prime| prime < wanted);
        let count = PRIME_LIST[6 + position];
        self.next_resize = if 6 + position == PRIME_LIST.len() - 1 {
            u64::MAX
        } else {
            count
        };
        count
    }

    /// `_M_rehash_aux` for unique keys: relinks nodes bucket by bucket.
    fn rehash(&mut self, bucket_count: u64) {
        self.buckets = vec![None; bucket_count as usize];
        let mut cursor = self.first.take();
        let mut first_bucket = 0;
        while let Some(node) = cursor {
            cursor = self.next[node];
            let bucket = self.bucket_of(node);
            match self.buckets[bucket] {
                None => {
                    self.next[node] = self.first;
                    self.first = Some(node);
                    self.buckets[bucket] = Some(Before::Head);
                    if self.next[node].is_some() {
                        self.buckets[first_bucket] = Some(Before::Node(node));
                    }
                    first_bucket = bucket;
                }
                Some(before) => {
                    self.next[node] = self.next_of(before);
                    self.set_next(before, Some(node));
                }
            }
        }
    }

    fn iteration_order(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::successors(self.first, |&node| self.next[node]).map(|node| self.codes[node])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_token_bytes_fixture_names_part() {
        // archive/.data/serialization_id of nanochat-2025/tokenizer/token_bytes.pt
        let names = [
            "data.pkl",
            ".format_version",
            ".storage_alignment",
            "byteorder",
            "data/0",
            "version",
        ];
        assert!(serialization_id(names, 0).starts_with("15728199511854643026"));
    }

    #[test]
    fn string_hash_handles_every_tail_length() {
        let hashes: Vec<u64> = (0..20)
            .map(|length| libstdcxx_string_hash(&vec![b'a'; length]))
            .collect();
        let distinct: std::collections::HashSet<_> = hashes.iter().collect();
        assert_eq!(distinct.len(), hashes.len());
    }

    #[test]
    fn grows_through_several_rehashes() {
        let mut set = StringSetOrder::default();
        for index in 0..5000 {
            set.insert(libstdcxx_string_hash(format!("data/{index}").as_bytes()));
        }
        assert_eq!(set.iteration_order().count(), 5000);
        assert!(set.buckets.len() >= 5000);
    }
}
