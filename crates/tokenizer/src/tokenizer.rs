//! The tokenizer as nanochat uses it (`RustBPETokenizer` over a `tiktoken.Encoding`):
//! load/save `tokenizer.pkl` + `token_bytes.pt`, `encode` (= tiktoken's `encode_ordinary`:
//! special-token *strings* in text are plain text), batch encode in parallel, `decode`
//! (specials render as their literal text; invalid UTF-8 becomes U+FFFD per maximal invalid
//! subsequence, like Python's `errors="replace"`), special-token lookup by name.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::bpe::BytePairEncoder;
use crate::error::{Result, TokenizerError};
use crate::split::{Splitter, NANOCHAT_SPLIT_PATTERN};

/// nanochat's nine special tokens, in id order (they follow the BPE ranks).
pub const SPECIAL_TOKENS: [&str; 9] = [
    "<|bos|>",
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|python_start|>",
    "<|python_end|>",
    "<|output_start|>",
    "<|output_end|>",
];

pub const BOS: &str = "<|bos|>";

/// File names inside a tokenizer directory, as nanochat writes them.
pub const TOKENIZER_PICKLE: &str = "tokenizer.pkl";
pub const TOKEN_BYTES_FILE: &str = "token_bytes.pt";

/// The ids of nanochat's nine special tokens, looked up once (the chat format and the engine
/// act on them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialIds {
    pub bos: u32,
    pub user_start: u32,
    pub user_end: u32,
    pub assistant_start: u32,
    pub assistant_end: u32,
    pub python_start: u32,
    pub python_end: u32,
    pub output_start: u32,
    pub output_end: u32,
}

pub struct Tokenizer {
    name: String,
    splitter: Splitter,
    bpe: BytePairEncoder,
    /// Special tokens in file order.
    specials: Vec<(String, u32)>,
    special_by_name: FxHashMap<String, u32>,
    /// Text of each special id.
    special_text_by_id: FxHashMap<u32, String>,
    vocab_size: usize,
}

impl Tokenizer {
    /// Builds a tokenizer from mergeable ranks (`ranks[id]` = bytes of token `id`), a split
    /// pattern and special tokens. The ids of ranks and specials together must be exactly
    /// `0..vocab_size` (no gaps, no collisions).
    pub fn new(
        name: &str,
        pattern: &str,
        ranks: Vec<Vec<u8>>,
        specials: Vec<(String, u32)>,
    ) -> Result<Self> {
        let n_ranks = ranks.len();
        let vocab_size = n_ranks + specials.len();
        let mut special_by_name = FxHashMap::default();
        let mut special_text_by_id = FxHashMap::default();
        for (text, id) in &specials {
            if (*id as usize) < n_ranks || *id as usize >= vocab_size {
                return Err(TokenizerError::BadVocab(format!(
                    "special token {text:?} has id {id}, but with {n_ranks} ranks and {} specials \
                     the specials must use ids {n_ranks}..{vocab_size} (is the vocabulary missing ids?)",
                    specials.len()
                )));
            }
            if special_text_by_id.insert(*id, text.clone()).is_some() {
                return Err(TokenizerError::BadVocab(format!(
                    "two special tokens have id {id}"
                )));
            }
            if special_by_name.insert(text.clone(), *id).is_some() {
                return Err(TokenizerError::BadVocab(format!(
                    "special token {text:?} appears twice"
                )));
            }
        }
        Ok(Self {
            name: name.to_string(),
            splitter: Splitter::new(pattern)?,
            bpe: BytePairEncoder::new(ranks)?,
            specials,
            special_by_name,
            special_text_by_id,
            vocab_size,
        })
    }

    /// nanochat's layout: the nine specials get the ids right after the ranks.
    pub fn with_nanochat_specials(ranks: Vec<Vec<u8>>) -> Result<Self> {
        let n = ranks.len() as u32;
        let specials = SPECIAL_TOKENS
            .iter()
            .enumerate()
            .map(|(i, s)| (s.to_string(), n + i as u32))
            .collect();
        Self::new("rustbpe", NANOCHAT_SPLIT_PATTERN, ranks, specials)
    }

    /// Loads `dir/tokenizer.pkl`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_pickle_file(&dir.join(TOKENIZER_PICKLE))
    }

    /// Loads a pickled `tiktoken.Encoding` (what nanochat saves as `tokenizer.pkl`).
    pub fn from_pickle_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
            path: path.into(),
            source,
        })?;
        Self::from_pickle_bytes(&bytes).map_err(|e| match e {
            TokenizerError::BadFile { message, .. } => TokenizerError::BadFile {
                path: path.into(),
                message,
            },
            other => TokenizerError::BadFile {
                path: path.into(),
                message: other.to_string(),
            },
        })
    }

    pub fn from_pickle_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |message: String| TokenizerError::BadFile {
            path: PathBuf::from("<pickle>"),
            message,
        };
        let enc =
            nanochat_pt::tiktoken::encoding_from_pickle(bytes).map_err(|e| bad(e.to_string()))?;
        let n = enc.mergeable_ranks.len();
        let mut ranks: Vec<Option<Vec<u8>>> = vec![None; n];
        for (bytes, rank) in enc.mergeable_ranks {
            let slot = ranks.get_mut(rank as usize).ok_or_else(|| {
                bad(format!(
                    "mergeable_ranks has rank {rank} but only {n} entries: the ranks have gaps"
                ))
            })?;
            if slot.replace(bytes).is_some() {
                return Err(bad(format!("mergeable_ranks has rank {rank} twice")));
            }
        }
        let ranks: Vec<Vec<u8>> = ranks
            .into_iter()
            .map(|r| r.expect("n ranks in 0..n, no duplicates"))
            .collect();
        let specials = enc
            .special_tokens
            .into_iter()
            .map(|(s, id)| {
                u32::try_from(id)
                    .map(|id| (s.clone(), id))
                    .map_err(|_| bad(format!("special token {s:?} has id {id}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(&enc.name, &enc.pat_str, ranks, specials)
    }

    /// The pickle nanochat would write for this tokenizer (byte-identical to Python's
    /// `pickle.dump` of the equivalent `tiktoken.Encoding`).
    pub fn to_pickle_bytes(&self) -> Vec<u8> {
        let enc = nanochat_pt::tiktoken::TiktokenEncoding {
            name: self.name.clone(),
            pat_str: self.splitter.pattern().to_string(),
            mergeable_ranks: self
                .bpe
                .ranks()
                .iter()
                .enumerate()
                .map(|(i, b)| (b.clone(), i as u64))
                .collect(),
            special_tokens: self
                .specials
                .iter()
                .map(|(s, id)| (s.clone(), *id as u64))
                .collect(),
        };
        nanochat_pt::tiktoken::encoding_to_pickle(&enc)
    }

    /// Writes `tokenizer.pkl` and `token_bytes.pt` into `dir` (created if missing), as
    /// nanochat's `tok_train.py` does.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| TokenizerError::Io {
            path: dir.into(),
            source,
        })?;
        let pickle_path = dir.join(TOKENIZER_PICKLE);
        write_atomically(&pickle_path, &self.to_pickle_bytes())?;
        crate::token_bytes::save_token_bytes(
            &dir.join(TOKEN_BYTES_FILE),
            &self.token_byte_lengths(),
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pattern(&self) -> &str {
        self.splitter.pattern()
    }

    pub fn splitter(&self) -> &Splitter {
        &self.splitter
    }

    /// Total number of ids (ranks + specials), tiktoken's `n_vocab`.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Number of BPE (mergeable) tokens.
    pub fn n_ranks(&self) -> usize {
        self.bpe.len()
    }

    /// `ranks[id]` = the bytes of mergeable token `id`.
    pub fn ranks(&self) -> &[Vec<u8>] {
        self.bpe.ranks()
    }

    pub fn special_tokens(&self) -> &[(String, u32)] {
        &self.specials
    }

    /// Id of a special token by its text, e.g. `"<|assistant_end|>"`.
    pub fn special(&self, name: &str) -> Result<u32> {
        self.special_by_name
            .get(name)
            .copied()
            .ok_or_else(|| TokenizerError::UnknownSpecialToken(name.to_string()))
    }

    /// The nine chat/tool special tokens; an error names the first one this tokenizer lacks.
    pub fn special_ids(&self) -> Result<SpecialIds> {
        Ok(SpecialIds {
            bos: self.special("<|bos|>")?,
            user_start: self.special("<|user_start|>")?,
            user_end: self.special("<|user_end|>")?,
            assistant_start: self.special("<|assistant_start|>")?,
            assistant_end: self.special("<|assistant_end|>")?,
            python_start: self.special("<|python_start|>")?,
            python_end: self.special("<|python_end|>")?,
            output_start: self.special("<|output_start|>")?,
            output_end: self.special("<|output_end|>")?,
        })
    }

    pub fn bos_id(&self) -> Result<u32> {
        self.special(BOS)
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special_text_by_id.contains_key(&id)
    }

    /// tiktoken's `encode_ordinary`: special-token strings in `text` are encoded as plain text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        self.encode_into(text, &mut out)?;
        Ok(out)
    }

    /// Appends the tokens of `text` to `out`.
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        self.splitter
            .for_each_chunk(text, |chunk| self.bpe.encode_chunk(chunk.as_bytes(), out))
    }

    /// nanochat's `encode(text, prepend=…, append=…)` with the special ids already resolved.
    pub fn encode_with_specials(
        &self,
        text: &str,
        prepend: Option<u32>,
        append: Option<u32>,
    ) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        out.extend(prepend);
        self.encode_into(text, &mut out)?;
        out.extend(append);
        Ok(out)
    }

    /// Encodes many texts in parallel (on the current rayon pool); same result per text as
    /// `encode_with_specials`.
    pub fn encode_batch<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        prepend: Option<u32>,
        append: Option<u32>,
    ) -> Result<Vec<Vec<u32>>> {
        texts
            .par_iter()
            .map(|t| self.encode_with_specials(t.as_ref(), prepend, append))
            .collect()
    }

    /// The raw bytes of `ids` (specials as their literal text).
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            match self.bpe.token_bytes(id) {
                Some(bytes) => out.extend_from_slice(bytes),
                None => match self.special_text_by_id.get(&id) {
                    Some(text) => out.extend_from_slice(text.as_bytes()),
                    None => return Err(TokenizerError::UnknownTokenId(id)),
                },
            }
        }
        Ok(out)
    }

    /// Decodes to text; invalid UTF-8 becomes U+FFFD exactly like Python's
    /// `bytes.decode("utf-8", errors="replace")` (one per maximal invalid subsequence).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }

    /// nanochat's `id_to_token`: the text of one id.
    pub fn id_to_token(&self, id: u32) -> Result<String> {
        self.decode(&[id])
    }

    /// The content of nanochat's `token_bytes.pt`: 0 for specials, else the UTF-8 length of
    /// `decode([id])` — so a token that is not valid UTF-8 alone counts its U+FFFD as 3 bytes.
    pub fn token_byte_lengths(&self) -> Vec<i32> {
        (0..self.vocab_size as u32)
            .map(|id| {
                if self.is_special(id) {
                    0
                } else {
                    let bytes = self.bpe.token_bytes(id).expect("non-special ids are ranks");
                    String::from_utf8_lossy(bytes).len() as i32
                }
            })
            .collect()
    }
}

/// Writes through a temporary file and a rename, so a crash never leaves half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|source| TokenizerError::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| TokenizerError::Io {
        path: path.into(),
        source,
    })
}
