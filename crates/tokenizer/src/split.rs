//! Regex pre-tokenization ("splitting"): text → chunks that BPE then encodes one by one.
//! Chunks never merge across each other, so this decides what a token can be.
//!
//! nanochat's pattern needs possessive quantifiers and a look-ahead, which `fancy-regex` runs
//! by backtracking — about half of tiktoken's encode time is spent there. For nanochat's
//! pattern (and GPT-4's, which differs only in `\p{N}{1,3}`) we run a hand-written scanner that
//! makes the same leftmost-first decisions in one pass; any other pattern goes to `fancy-regex`.
//! The scanner's character classes (`\p{L}`, `\p{N}`, `\s`, the case-insensitive letters of the
//! contractions) are taken from `regex-syntax`, the tables `fancy-regex` itself uses, and a
//! differential test checks both engines agree on random text.

use std::sync::OnceLock;

use crate::error::{Result, TokenizerError};

/// nanochat's split pattern: GPT-4's with `\p{N}{1,2}` instead of `{1,3}` (reference §2.1).
pub const NANOCHAT_SPLIT_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

/// GPT-4's (cl100k) pattern, the one nanochat's was derived from.
pub const GPT4_SPLIT_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

/// Splits text into chunks with a tiktoken-style pattern.
pub struct Splitter {
    pattern: String,
    engine: Engine,
}

enum Engine {
    /// The hand-written scanner for the GPT-4 family of patterns; the number is the longest digit run.
    Scanner {
        max_digits: usize,
    },
    Regex(Box<fancy_regex::Regex>),
}

impl Splitter {
    pub fn new(pattern: &str) -> Result<Self> {
        let engine = match pattern {
            NANOCHAT_SPLIT_PATTERN => Engine::Scanner { max_digits: 2 },
            GPT4_SPLIT_PATTERN => Engine::Scanner { max_digits: 3 },
            _ => Self::regex_engine(pattern)?,
        };
        Ok(Self {
            pattern: pattern.to_string(),
            engine,
        })
    }

    /// A splitter that always uses `fancy-regex`, whatever the pattern (for differential tests
    /// and benchmarks).
    pub fn new_regex(pattern: &str) -> Result<Self> {
        Ok(Self {
            pattern: pattern.to_string(),
            engine: Self::regex_engine(pattern)?,
        })
    }

    fn regex_engine(pattern: &str) -> Result<Engine> {
        let regex = fancy_regex::Regex::new(pattern)
            .map_err(|e| TokenizerError::BadPattern(format!("{pattern:?}: {e}")))?;
        Ok(Engine::Regex(Box::new(regex)))
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether the fast scanner (rather than `fancy-regex`) runs this pattern.
    pub fn is_scanner(&self) -> bool {
        matches!(self.engine, Engine::Scanner { .. })
    }

    /// Calls `f` on every chunk of `text`, in order. For nanochat's pattern the chunks
    /// concatenate back to `text` (every character is matched by some alternative).
    pub fn for_each_chunk<'t>(&self, text: &'t str, mut f: impl FnMut(&'t str)) -> Result<()> {
        match &self.engine {
            Engine::Scanner { max_digits } => {
                let classes = CharClasses::get();
                let mut start = 0;
                while start < text.len() {
                    let end = chunk_end(classes, text, start, *max_digits);
                    f(&text[start..end]);
                    start = end;
                }
            }
            Engine::Regex(regex) => {
                for m in regex.find_iter(text) {
                    let m = m.map_err(|e| TokenizerError::SplitFailed(e.to_string()))?;
                    f(m.as_str());
                }
            }
        }
        Ok(())
    }

    /// The chunks of `text` as a vector (convenience for tests and small inputs).
    pub fn chunks<'t>(&self, text: &'t str) -> Result<Vec<&'t str>> {
        let mut out = Vec::new();
        self.for_each_chunk(text, |c| out.push(c))?;
        Ok(out)
    }
}

// Character classes as the pattern sees them. `\r` and `\n` are whitespace too but get their
// own class because several alternatives single them out.
const OTHER: u8 = 0;
const LETTER: u8 = 1;
const NUMBER: u8 = 2;
const SPACE: u8 = 3;
const NEWLINE: u8 = 4;

/// Two-level lookup table: code point → class, built once from regex-syntax's Unicode tables.
struct CharClasses {
    ascii: [u8; 128],
    /// `block_of[cp >> 8]` = index of the 256-entry block holding `cp`'s class.
    block_of: Vec<u16>,
    blocks: Vec<[u8; 256]>,
    /// `(?i:[sdmt])`, `(?i:l)`, `(?i:v)`, `(?i:e)`, `(?i:r)` as Unicode case folding sees them.
    contraction_single: Vec<(char, char)>,
    fold_l: Vec<(char, char)>,
    fold_v: Vec<(char, char)>,
    fold_e: Vec<(char, char)>,
    fold_r: Vec<(char, char)>,
}

fn unicode_class_ranges(pattern: &str) -> Vec<(char, char)> {
    use regex_syntax::hir::{Class, HirKind};
    let hir = regex_syntax::parse(pattern).expect("built-in class pattern parses");
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => class
            .ranges()
            .iter()
            .map(|r| (r.start(), r.end()))
            .collect(),
        HirKind::Literal(lit) => {
            let c = std::str::from_utf8(&lit.0)
                .ok()
                .and_then(|s| s.chars().next())
                .expect("built-in literal is one char");
            vec![(c, c)]
        }
        other => panic!("built-in class pattern {pattern:?} parsed to {other:?}"),
    }
}

fn in_ranges(ranges: &[(char, char)], c: char) -> bool {
    ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi)
}

impl CharClasses {
    fn get() -> &'static CharClasses {
        static TABLES: OnceLock<CharClasses> = OnceLock::new();
        TABLES.get_or_init(CharClasses::build)
    }

    fn build() -> CharClasses {
        let mut flat = vec![OTHER; 0x110000];
        for (class, pattern) in [(SPACE, r"\s"), (LETTER, r"\p{L}"), (NUMBER, r"\p{N}")] {
            for (lo, hi) in unicode_class_ranges(pattern) {
                flat[lo as usize..=hi as usize].fill(class);
            }
        }
        flat['\r' as usize] = NEWLINE;
        flat['\n' as usize] = NEWLINE;
        let mut ascii = [OTHER; 128];
        ascii.copy_from_slice(&flat[..128]);
        let mut blocks: Vec<[u8; 256]> = Vec::new();
        let mut block_of = Vec::with_capacity(0x110000 >> 8);
        let mut seen = rustc_hash::FxHashMap::default();
        for chunk in flat.chunks_exact(256) {
            let block: [u8; 256] = chunk.try_into().expect("256-entry chunk");
            let index = *seen.entry(block).or_insert_with(|| {
                blocks.push(block);
                blocks.len() - 1
            });
            block_of.push(index as u16);
        }
        CharClasses {
            ascii,
            block_of,
            blocks,
            contraction_single: unicode_class_ranges("(?i:[sdmt])"),
            fold_l: unicode_class_ranges("(?i:l)"),
            fold_v: unicode_class_ranges("(?i:v)"),
            fold_e: unicode_class_ranges("(?i:e)"),
            fold_r: unicode_class_ranges("(?i:r)"),
        }
    }

    #[inline(always)]
    fn of(&self, c: char) -> u8 {
        let cp = c as usize;
        if cp < 128 {
            self.ascii[cp]
        } else {
            self.blocks[self.block_of[cp >> 8] as usize][cp & 0xff]
        }
    }
}

/// Decodes the char starting at byte `i` of `text` (which must be a char boundary < len).
#[inline(always)]
fn char_at(text: &str, i: usize) -> (char, usize) {
    let b = text.as_bytes()[i];
    if b < 0x80 {
        return (b as char, 1);
    }
    let c = text[i..].chars().next().expect("char boundary inside text");
    (c, c.len_utf8())
}

/// Class of the char at byte `i`, or `None` at the end of the text.
#[inline(always)]
fn class_at(classes: &CharClasses, text: &str, i: usize) -> Option<(u8, usize)> {
    if i >= text.len() {
        return None;
    }
    let b = text.as_bytes()[i];
    if b < 0x80 {
        return Some((classes.ascii[b as usize], 1));
    }
    let (c, len) = char_at(text, i);
    Some((classes.of(c), len))
}

/// End of the run of chars starting at `i` whose class satisfies `keep`.
#[inline(always)]
fn run_end(classes: &CharClasses, text: &str, mut i: usize, keep: impl Fn(u8) -> bool) -> usize {
    let bytes = text.as_bytes();
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            if !keep(classes.ascii[b as usize]) {
                break;
            }
            i += 1;
        } else {
            let (c, len) = char_at(text, i);
            if !keep(classes.of(c)) {
                break;
            }
            i += len;
        }
    }
    i
}

/// Byte end of the chunk that starts at byte `p`: the alternatives of the pattern, tried in
/// order (leftmost-first), exactly as the backtracking engine would decide.
fn chunk_end(classes: &CharClasses, text: &str, p: usize, max_digits: usize) -> usize {
    let (c0, len0) = char_at(text, p);
    let class0 = classes.of(c0);
    let next = p + len0;

    // 1. '(?i:[sdmt]|ll|ve|re)
    if c0 == '\'' && next < text.len() {
        let (c1, len1) = char_at(text, next);
        if in_ranges(&classes.contraction_single, c1) {
            return next + len1;
        }
        let after1 = next + len1;
        if after1 < text.len() {
            let (c2, len2) = char_at(text, after1);
            let pair =
                |a: &[(char, char)], b: &[(char, char)]| in_ranges(a, c1) && in_ranges(b, c2);
            if pair(&classes.fold_l, &classes.fold_l)
                || pair(&classes.fold_v, &classes.fold_e)
                || pair(&classes.fold_r, &classes.fold_e)
            {
                return after1 + len2;
            }
        }
    }

    // 2. [^\r\n\p{L}\p{N}]?+\p{L}+  (the optional prefix is possessive: taken when it can be)
    if class0 == LETTER {
        return run_end(classes, text, next, |k| k == LETTER);
    }
    let class1 = class_at(classes, text, next).map(|(k, _)| k);
    if (class0 == OTHER || class0 == SPACE) && class1 == Some(LETTER) {
        return run_end(classes, text, next, |k| k == LETTER);
    }

    // 3. \p{N}{1,max_digits}
    if class0 == NUMBER {
        let mut end = next;
        for _ in 1..max_digits {
            match class_at(classes, text, end) {
                Some((NUMBER, len)) => end += len,
                _ => break,
            }
        }
        return end;
    }

    // 4. " ?[^\s\p{L}\p{N}]++[\r\n]*"
    let symbols_from = if class0 == OTHER {
        Some(p)
    } else if c0 == ' ' && class1 == Some(OTHER) {
        Some(next)
    } else {
        None
    };
    if let Some(start) = symbols_from {
        let end = run_end(classes, text, start, |k| k == OTHER);
        return run_end(classes, text, end, |k| k == NEWLINE);
    }

    // Only whitespace is left: c0 is in \s.
    // 5. \s*[\r\n]: up to the last newline of the whitespace run.
    let bytes = text.as_bytes();
    let mut end = p;
    let mut last_newline_end = None;
    let mut last_char_start = p;
    while end < bytes.len() {
        let (class, len) = class_at(classes, text, end).expect("inside text");
        if class != SPACE && class != NEWLINE {
            break;
        }
        if class == NEWLINE {
            last_newline_end = Some(end + len);
        }
        last_char_start = end;
        end += len;
    }
    if let Some(newline_end) = last_newline_end {
        return newline_end;
    }
    // 6. \s+(?!\S): the whole run at the end of the text, else all but its last char.
    if end == bytes.len() || last_char_start > p {
        return if end == bytes.len() {
            end
        } else {
            last_char_start
        };
    }
    // 7. \s+
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(text: &str) -> (Vec<&str>, Vec<&str>) {
        let fast = Splitter::new(NANOCHAT_SPLIT_PATTERN).unwrap();
        let slow = Splitter::new_regex(NANOCHAT_SPLIT_PATTERN).unwrap();
        assert!(fast.is_scanner() && !slow.is_scanner());
        (fast.chunks(text).unwrap(), slow.chunks(text).unwrap())
    }

    #[test]
    fn scanner_matches_regex_on_reference_behaviours() {
        for text in [
            "I'm",
            " 'S",
            ",\n",
            "   end",
            "नमस्ते",
            " 12345",
            "\u{a0}here",
            "\u{200b}width",
            "\x00chars",
            "a  \n\n b",
            "x \t\r\n",
            "end   ",
            "'ll 'LL 'Ve 'ſ 'K",
            "²³ ٣٤٥",
        ] {
            let (fast, slow) = both(text);
            assert_eq!(fast, slow, "text {text:?}");
        }
    }

    /// Random strings over an alphabet of the characters that decide between alternatives.
    #[test]
    fn scanner_matches_regex_on_random_text() {
        let alphabet: Vec<char> = "aZé ſK\u{212a}'sdmtlLvVeErR0123²٣ \t\r\n\u{a0}\u{3000}\u{200b}.,!?-_()\u{94d}\u{928}😀\x00"
            .chars()
            .collect();
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let len = (next() % 24) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let (fast, slow) = both(&text);
            assert_eq!(fast, slow, "text {text:?}");
        }
    }
}
