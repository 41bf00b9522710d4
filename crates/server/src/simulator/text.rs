//! English-like filler text for simulated models, and the simulator's tokenizer.
//!
//! Simulated models have no weights, so their answers are assembled from a word bank with a few
//! sentence templates: grammatical enough to look like an answer in a UI or a load test, sized
//! to a requested length, and deterministic for a seeded RNG so tests and benchmarks repeat.
//! Text is produced as tokens (word pieces with their leading whitespace, or punctuation marks)
//! so a backend can stream it piece by piece; [`split_pieces`] cuts any text the same way.

use rand::rngs::StdRng;
use rand::Rng;

/// How long a simulated answer is (the `response_length` request extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseLength {
    Short,
    Medium,
    Long,
}

impl ResponseLength {
    /// "short" | "medium" | "long" (case-insensitive); None otherwise.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "short" => Some(Self::Short),
            "medium" => Some(Self::Medium),
            "long" => Some(Self::Long),
            _ => None,
        }
    }

    /// Infers a length from the average message length in characters, like the Go simulator:
    /// avg < 50 → 80% short (else medium); avg > 250 → 80% long (else medium); otherwise
    /// 20% short / 65% medium / 15% long.
    pub fn infer(average_message_chars: f64, rng: &mut StdRng) -> Self {
        let roll: f64 = rng.random();
        if average_message_chars < 50.0 {
            if roll < 0.8 {
                Self::Short
            } else {
                Self::Medium
            }
        } else if average_message_chars > 250.0 {
            if roll < 0.8 {
                Self::Long
            } else {
                Self::Medium
            }
        } else if roll < 0.20 {
            Self::Short
        } else if roll < 0.85 {
            Self::Medium
        } else {
            Self::Long
        }
    }

    /// Target size in characters: short 120–450, medium 450–1500, long 1500–5000 (uniform).
    pub fn target_chars(self, rng: &mut StdRng) -> usize {
        match self {
            Self::Short => rng.random_range(120..=450),
            Self::Medium => rng.random_range(450..=1500),
            Self::Long => rng.random_range(1500..=5000),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Word bank. Nouns and verbs are regular so plurals and third-person forms follow simple rules.

#[rustfmt::skip]
const ADJECTIVES: &[&str] = &[
    "able", "active", "ancient", "basic", "bright", "broad", "busy", "calm", "careful", "central",
    "cheap", "clean", "clear", "clever", "cold", "common", "complex", "constant", "curious",
    "dark", "deep", "different", "direct", "distant", "early", "easy", "empty", "entire", "equal",
    "exact", "fair", "familiar", "famous", "fast", "final", "fresh", "friendly", "full", "gentle",
    "good", "great", "green", "happy", "heavy", "honest", "huge", "important", "large", "late",
    "light", "little", "local", "long", "loud", "main", "modern", "narrow", "natural", "new",
    "nice", "old", "open", "ordinary", "patient", "perfect", "plain", "polite", "popular",
    "practical", "private", "proper", "public", "quick", "quiet", "rare", "ready", "real",
    "recent", "regular", "rich", "rough", "safe", "serious", "sharp", "short", "silent", "simple",
    "slow", "small", "smooth", "soft", "solid", "special", "steady", "strange", "strong",
    "sudden", "sweet", "tall", "thin", "tiny", "useful", "usual", "warm", "whole", "wide", "wild",
    "wise", "young",
];

#[rustfmt::skip]
const NOUNS: &[&str] = &[
    "answer", "apple", "area", "article", "artist", "author", "bank", "bird", "boat", "book",
    "bottle", "box", "bridge", "building", "business", "car", "card", "chair", "chapter",
    "church", "city", "class", "cloud", "coast", "computer", "country", "course", "day",
    "decision", "design", "detail", "dinner", "door", "dream", "engine", "evening", "event",
    "example", "experience", "face", "fact", "family", "farm", "feeling", "field", "figure",
    "film", "flower", "forest", "friend", "game", "garden", "glass", "group", "hand", "heart",
    "hill", "history", "home", "hope", "horse", "hour", "house", "idea", "island", "journey",
    "key", "kitchen", "lake", "language", "lesson", "letter", "library", "line", "machine",
    "market", "meeting", "memory", "message", "method", "minute", "moment", "morning", "mountain",
    "name", "nation", "network", "night", "note", "number", "ocean", "office", "order", "page",
    "painter", "paper", "park", "partner", "path", "pattern", "picture", "piece", "place", "plan",
    "plant", "player", "point", "problem", "process", "project", "question", "reason", "record",
    "report", "result", "river", "road", "room", "rule", "school", "season", "secret", "signal",
    "skill", "song", "sound", "source", "space", "station", "step", "story", "street", "student",
    "system", "table", "teacher", "team", "test", "theory", "thing", "thought", "tool", "tower",
    "town", "train", "tree", "valley", "village", "voice", "wall", "window", "winter", "word",
    "world", "writer",
];

#[rustfmt::skip]
const TRANSITIVE_VERBS: &[&str] = &[
    "accept", "admire", "answer", "build", "carry", "change", "check", "choose", "clean",
    "collect", "compare", "consider", "create", "cross", "describe", "design", "discover",
    "explain", "explore", "find", "follow", "gather", "guide", "help", "hold", "imagine",
    "improve", "include", "join", "keep", "know", "lead", "learn", "leave", "like", "make",
    "measure", "mention", "move", "notice", "open", "paint", "plan", "prepare", "protect",
    "reach", "read", "remember", "repair", "share", "show", "study", "support", "teach", "test",
    "touch", "trust", "understand", "use", "visit", "watch", "write",
];

const INTRANSITIVE_VERBS: &[&str] = &[
    "appear", "arrive", "begin", "continue", "grow", "happen", "laugh", "listen", "matter", "rest",
    "return", "rise", "shine", "sleep", "smile", "stay", "stop", "travel", "wait", "wander",
    "work",
];

/// Adverbs that read well right before a verb.
#[rustfmt::skip]
const ADVERBS: &[&str] = &[
    "almost", "always", "barely", "calmly", "carefully", "certainly", "clearly", "easily",
    "eventually", "finally", "gently", "gradually", "happily", "honestly", "mostly", "nearly",
    "never", "often", "openly", "probably", "quickly", "quietly", "rarely", "really", "simply",
    "slowly", "sometimes", "soon", "suddenly", "usually",
];

/// Adverbs that close a clause.
const TRAILING_ADVERBS: &[&str] = &[
    "again", "today", "tonight", "together", "outside", "anyway", "later", "instead",
];

#[rustfmt::skip]
const INTENSIFIERS: &[&str] = &[
    "very", "quite", "rather", "truly", "fairly", "surprisingly", "remarkably", "always",
];

const PREPOSITIONS: &[&str] = &[
    "about", "above", "across", "after", "against", "along", "around", "at", "before", "behind",
    "below", "beside", "beyond", "during", "for", "from", "in", "inside", "into", "near", "on",
    "over", "past", "through", "toward", "under", "with", "within", "without",
];

const SINGULAR_DETERMINERS: &[&str] = &[
    "the", "the", "the", "a", "a", "this", "that", "every", "each", "one", "our", "your", "their",
    "my", "another", "her", "his",
];
const PLURAL_DETERMINERS: &[&str] = &[
    "the", "the", "these", "those", "many", "some", "several", "our", "your", "their", "my", "few",
    "most",
];
const SINGULAR_PRONOUNS: &[&str] = &["he", "she", "it", "someone", "everyone", "nobody"];
const PLURAL_PRONOUNS: &[&str] = &["we", "they", "you", "I"];
const MODALS: &[&str] = &[
    "can", "could", "will", "would", "should", "might", "must", "may",
];
const WH_WORDS: &[&str] = &["why", "how", "when", "where"];
/// Clause joiners; the first three take a comma before them.
const CONJUNCTIONS: &[&str] = &[
    "and", "but", "so", "because", "while", "although", "when", "since", "unless", "until",
];
const COMMA_CONJUNCTIONS: usize = 3;
/// Sentence openers, followed by a comma.
#[rustfmt::skip]
const OPENERS: &[&str] = &[
    "however", "meanwhile", "still", "sometimes", "today", "honestly", "finally", "later",
    "instead", "naturally", "besides", "in practice", "of course", "at first", "in the end",
    "for example", "after all", "in general", "by now",
];

const MIN_SENTENCE_WORDS: usize = 6;
const MAX_SENTENCE_WORDS: usize = 20;
/// Rough characters per word including its leading space, used to size sentences.
const CHARS_PER_WORD: f64 = 6.5;

fn pick<'a>(rng: &mut StdRng, words: &[&'a str]) -> &'a str {
    words[rng.random_range(0..words.len())]
}

/// `box` → `boxes`, `city` → `cities`, `tree` → `trees`: plurals and third-person verb forms.
fn with_s(word: &str, add: bool) -> String {
    let stem = word
        .strip_suffix('y')
        .filter(|stem| !stem.ends_with(['a', 'e', 'i', 'o', 'u']));
    match stem {
        _ if !add => word.to_string(),
        Some(stem) => format!("{stem}ies"),
        None if word.ends_with(['s', 'x']) || word.ends_with("ch") || word.ends_with("sh") => {
            format!("{word}es")
        }
        None => format!("{word}s"),
    }
}

/// Grammatical number of a subject, for verb agreement.
#[derive(Clone, Copy, PartialEq)]
enum Person {
    Singular,
    Plural,
    /// "I": plural verb forms, but "am".
    First,
}

impl Person {
    fn of(plural: bool) -> Self {
        [Person::Singular, Person::Plural][plural as usize]
    }
    fn be(self) -> &'static str {
        ["is", "are", "am"][self as usize]
    }
    fn verb(self, base: &str) -> String {
        with_s(base, self == Person::Singular)
    }
}

/// A sentence under construction: words and punctuation marks, not yet capitalised or spaced.
#[derive(Default)]
struct Sentence {
    tokens: Vec<Token>,
}

enum Token {
    Word(String),
    Punct(char),
}

impl Sentence {
    fn word(&mut self, w: &str) {
        self.tokens.push(Token::Word(w.to_string()));
    }
    fn punct(&mut self, c: char) {
        self.tokens.push(Token::Punct(c));
    }
    fn word_count(&self) -> usize {
        self.tokens
            .iter()
            .filter(|t| matches!(t, Token::Word(_)))
            .count()
    }
    /// Rendered length with one separator before the sentence.
    fn chars(&self) -> usize {
        let size = |t: &Token| {
            if let Token::Word(w) = t {
                w.len() + 1
            } else {
                1
            }
        };
        self.tokens.iter().map(size).sum()
    }
    fn maybe(&mut self, rng: &mut StdRng, p: f64, words: &[&str]) {
        if rng.random_bool(p) {
            self.word(pick(rng, words));
        }
    }

    /// Determiner, optional adjective, noun; "a" becomes "an" before a vowel sound.
    fn noun_phrase(&mut self, rng: &mut StdRng, plural: bool) {
        let determiner = pick(
            rng,
            [SINGULAR_DETERMINERS, PLURAL_DETERMINERS][plural as usize],
        );
        let adjective = rng.random_bool(0.45).then(|| pick(rng, ADJECTIVES));
        let noun = pick(rng, NOUNS);
        let next = adjective.unwrap_or(noun);
        let vowel_sound = next.starts_with(['a', 'e', 'i', 'o'])
            || next.starts_with("hour")
            || next.starts_with("honest");
        self.word(match determiner {
            "a" if vowel_sound => "an",
            other => other,
        });
        if let Some(adjective) = adjective {
            self.word(adjective);
        }
        self.word(&with_s(noun, plural));
    }

    fn object(&mut self, rng: &mut StdRng) {
        let plural = rng.random_bool(0.4);
        self.noun_phrase(rng, plural);
    }

    fn subject(&mut self, rng: &mut StdRng) -> Person {
        let plural = rng.random_bool(0.5);
        if rng.random_bool(0.2) {
            let pronoun = pick(rng, [SINGULAR_PRONOUNS, PLURAL_PRONOUNS][plural as usize]);
            self.word(pronoun);
            return if pronoun == "I" {
                Person::First
            } else {
                Person::of(plural)
            };
        }
        let plural = rng.random_bool(0.35);
        self.noun_phrase(rng, plural);
        Person::of(plural)
    }

    fn prepositional_phrase(&mut self, rng: &mut StdRng) {
        self.word(pick(rng, PREPOSITIONS));
        let plural = rng.random_bool(0.3);
        self.noun_phrase(rng, plural);
    }

    /// One independent declarative clause of four to about ten words.
    fn clause(&mut self, rng: &mut StdRng) {
        if rng.random_bool(0.08) {
            let plural = rng.random_bool(0.4);
            self.word("there");
            self.word(["is", "are"][plural as usize]);
            self.noun_phrase(rng, plural);
            self.prepositional_phrase(rng);
            return;
        }
        let person = self.subject(rng);
        match rng.random_range(0..4) {
            0 => {
                self.word(person.be());
                self.maybe(rng, 0.6, INTENSIFIERS);
                self.word(pick(rng, ADJECTIVES));
            }
            1 => {
                self.maybe(rng, 0.3, ADVERBS);
                self.word(&person.verb(pick(rng, INTRANSITIVE_VERBS)));
                if rng.random_bool(0.5) {
                    self.prepositional_phrase(rng);
                } else {
                    self.word(pick(rng, TRAILING_ADVERBS));
                }
            }
            2 => {
                self.word(pick(rng, MODALS));
                self.maybe(rng, 0.3, ADVERBS);
                self.word(pick(rng, TRANSITIVE_VERBS));
                self.object(rng);
            }
            _ => {
                self.maybe(rng, 0.3, ADVERBS);
                self.word(&person.verb(pick(rng, TRANSITIVE_VERBS)));
                self.object(rng);
            }
        }
    }

    /// A yes/no or wh- question, without its question mark: "is it…", "why does…",
    /// "should we…", "does the…".
    fn question(&mut self, rng: &mut StdRng) {
        let mut subject = Sentence::default();
        let person = subject.subject(rng);
        let kind = rng.random_range(0..4);
        match kind {
            0 => self.word(person.be()),
            1 => self.word(pick(rng, WH_WORDS)),
            2 => self.word(pick(rng, MODALS)),
            _ => {}
        }
        if kind % 2 == 1 {
            self.word(if person == Person::Singular {
                "does"
            } else {
                "do"
            });
        }
        self.tokens.append(&mut subject.tokens);
        if kind == 0 {
            self.word(pick(rng, ADJECTIVES));
        } else {
            self.word(pick(rng, TRANSITIVE_VERBS));
            self.object(rng);
        }
    }

    /// A whole sentence of roughly `want` words (always 6–20), with its final mark.
    fn generate(rng: &mut StdRng, want: usize) -> Sentence {
        for _ in 0..100 {
            let mut s = Sentence::default();
            let is_question = rng.random_bool(0.12);
            if is_question {
                s.question(rng);
            } else {
                if rng.random_bool(0.18) {
                    pick(rng, OPENERS).split(' ').for_each(|w| s.word(w));
                    s.punct(',');
                }
                s.clause(rng);
            }
            while s.word_count() + 2 < want {
                if is_question || rng.random_bool(0.4) {
                    s.prepositional_phrase(rng);
                } else {
                    let index = rng.random_range(0..CONJUNCTIONS.len());
                    if index < COMMA_CONJUNCTIONS {
                        s.punct(',');
                    }
                    s.word(CONJUNCTIONS[index]);
                    s.clause(rng);
                }
            }
            let exclaim = !is_question && rng.random_bool(0.06);
            s.punct(if is_question {
                '?'
            } else if exclaim {
                '!'
            } else {
                '.'
            });
            if (MIN_SENTENCE_WORDS..=MAX_SENTENCE_WORDS).contains(&s.word_count()) {
                return s;
            }
        }
        // Practically unreachable: a hundred draws all out of bounds.
        let mut s = Sentence::default();
        "the simple plan works for everyone"
            .split(' ')
            .for_each(|w| s.word(w));
        s.punct('.');
        s
    }
}

/// 1 to 3 paragraphs of plausible English (sentences of 6–20 words built from a word bank of at
/// least ~300 common words across parts of speech with simple templates, capitalised, ending in
/// '.', '?' or '!', occasional commas), about `target_chars` long, returned as TOKENS:
/// pieces whose concatenation is the text. Every piece is a word with its leading whitespace
/// (" the", "\n\nThe") or a punctuation mark (",", "."). Deterministic for a given rng state.
pub fn generate_text(rng: &mut StdRng, target_chars: usize) -> Vec<String> {
    let target = target_chars as f64;
    let mut sentences: Vec<Sentence> = Vec::new();
    let mut length = 0usize;
    let mut misses = 0;
    // Stop inside [0.85, 1.2] × target: sentences are sized to the room left, and one that
    // overshoots is redrawn a few times before settling for a slightly short text.
    while (length as f64) < 0.85 * target || sentences.is_empty() {
        let room = (target - length as f64) / CHARS_PER_WORD;
        let cap = (room as usize).clamp(MIN_SENTENCE_WORDS, MAX_SENTENCE_WORDS);
        let want = rng.random_range(MIN_SENTENCE_WORDS..=cap);
        let sentence = Sentence::generate(rng, want);
        let fits = (length + sentence.chars()) as f64 <= 1.2 * target;
        if fits || (sentences.is_empty() && misses >= 20) {
            length += sentence.chars();
            sentences.push(sentence);
        } else {
            misses += 1;
            if misses >= 30 {
                break;
            }
        }
    }

    let max_paragraphs = match target_chars {
        0..=299 => 1,
        300..=899 => 2,
        _ => 3,
    };
    let paragraphs = rng.random_range(1..=max_paragraphs).min(sentences.len());
    let per_paragraph = sentences.len().div_ceil(paragraphs);

    let mut pieces = Vec::new();
    for (index, sentence) in sentences.into_iter().enumerate() {
        let separator = match index {
            0 => "",
            _ if index % per_paragraph == 0 => "\n\n",
            _ => " ",
        };
        for (position, token) in sentence.tokens.into_iter().enumerate() {
            pieces.push(match token {
                Token::Punct(c) => c.to_string(),
                Token::Word(w) if position == 0 => format!("{separator}{}", capitalise(&w)),
                Token::Word(w) => format!(" {w}"),
            });
        }
    }
    pieces
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The simulator's tokenizer, used to count prompt tokens and to stream echoed text: splits
/// `text` into the same kind of pieces (a run of whitespace attaches to the following word;
/// each punctuation character is its own piece; a word is a run of alphanumeric chars incl.
/// non-ASCII letters). Concatenating the pieces gives `text` back exactly, for any input
/// (including emoji, CJK, trailing whitespace, empty string → empty vec).
///
/// Whitespace before a punctuation mark attaches to the mark (" ,"), and trailing whitespace
/// is a piece of its own. Any other character (emoji, symbols) is a piece by itself.
pub fn split_pieces(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut chars = text.char_indices().peekable();
    let mut start = 0;
    while let Some(&(_, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        chars.next();
        if c.is_alphanumeric() {
            while chars.next_if(|&(_, next)| next.is_alphanumeric()).is_some() {}
        }
        let end = chars.peek().map_or(text.len(), |&(i, _)| i);
        pieces.push(text[start..end].to_string());
        start = end;
    }
    if start < text.len() {
        pieces.push(text[start..].to_string());
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn text_of(pieces: &[String]) -> String {
        pieces.concat()
    }

    #[test]
    fn split_pieces_examples() {
        assert!(split_pieces("").is_empty());
        assert_eq!(split_pieces("Hello, world!"), ["Hello", ",", " world", "!"]);
        assert_eq!(split_pieces("  a\n\nb  "), ["  a", "\n\nb", "  "]);
        assert_eq!(
            split_pieces("héllo 世界 🙂x"),
            ["héllo", " 世界", " 🙂", "x"]
        );
        assert_eq!(split_pieces("a , b"), ["a", " ,", " b"]);
        assert_eq!(split_pieces("   "), ["   "]);
    }

    #[test]
    fn split_pieces_round_trips_random_strings() {
        let alphabet: Vec<char> = "ab Z9 \t\n.,!?'\"-é日本🙂\u{301}\u{200d}👍🏽\r_ß"
            .chars()
            .collect();
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..5000 {
            let len = rng.random_range(0..40);
            let s: String = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let pieces = split_pieces(&s);
            assert_eq!(pieces.concat(), s);
            assert!(pieces.iter().all(|p| !p.is_empty()));
            // Only the last piece may be pure whitespace.
            let body = &pieces[..pieces.len().saturating_sub(1)];
            assert!(body.iter().all(|p| !p.trim().is_empty()), "{pieces:?}");
        }
    }

    #[test]
    fn generated_text_is_deterministic_and_varies_with_seed() {
        let a = generate_text(&mut StdRng::seed_from_u64(1), 800);
        let b = generate_text(&mut StdRng::seed_from_u64(1), 800);
        let c = generate_text(&mut StdRng::seed_from_u64(2), 800);
        assert_eq!(a, b);
        assert_ne!(text_of(&a), text_of(&c));
    }

    #[test]
    fn generated_text_has_the_requested_shape() {
        for seed in 0..300u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let target = [120, 200, 450, 900, 1500, 3000, 5000][seed as usize % 7];
            let pieces = generate_text(&mut rng, target);
            let text = text_of(&pieces);
            let len = text.chars().count() as f64;
            let t = target as f64;
            assert!(
                len >= 0.75 * t && len <= 1.25 * t,
                "target {target}, got {len}: {text}"
            );
            assert!(text.starts_with(|c: char| c.is_ascii_uppercase()), "{text}");
            assert!(text.ends_with(['.', '?', '!']), "{text}");
            let paragraphs = text.split("\n\n").count();
            assert!((1..=3).contains(&paragraphs), "{paragraphs} paragraphs");
            // Pieces are exactly what the simulator's tokenizer would cut.
            assert_eq!(split_pieces(&text), pieces);
            for sentence in text.split_inclusive(['.', '?', '!']) {
                let words = sentence.split_whitespace().count();
                assert!((6..=20).contains(&words), "{words} words in {sentence:?}");
                let first = sentence.trim_start().chars().next();
                assert!(
                    first.is_some_and(|c| c.is_ascii_uppercase()),
                    "{sentence:?}"
                );
            }
        }
    }

    #[test]
    fn generated_text_uses_questions_commas_and_paragraphs() {
        let mut rng = StdRng::seed_from_u64(99);
        let text: String = (0..40)
            .map(|_| text_of(&generate_text(&mut rng, 2000)))
            .collect();
        for mark in [",", "?", "!", "\n\n", " an "] {
            assert!(text.contains(mark), "no {mark:?} in 80k chars of text");
        }
    }

    #[test]
    fn word_bank_is_large() {
        let banks = [
            ADJECTIVES,
            NOUNS,
            TRANSITIVE_VERBS,
            INTRANSITIVE_VERBS,
            ADVERBS,
            PREPOSITIONS,
        ];
        let mut words: Vec<&str> = banks.concat();
        words.sort_unstable();
        words.dedup();
        assert!(words.len() >= 300, "{} words", words.len());
        assert!(words
            .iter()
            .all(|w| w.chars().all(|c| c.is_ascii_lowercase())));
        let plurals = ["box", "city", "key", "watch", "tree"].map(|w| with_s(w, true));
        assert_eq!(plurals, ["boxes", "cities", "keys", "watches", "trees"]);
    }

    #[test]
    fn response_length_parse_infer_and_targets() {
        assert_eq!(ResponseLength::parse("SHORT"), Some(ResponseLength::Short));
        assert_eq!(
            ResponseLength::parse("Medium"),
            Some(ResponseLength::Medium)
        );
        assert_eq!(ResponseLength::parse("long"), Some(ResponseLength::Long));
        assert_eq!(ResponseLength::parse("huge"), None);

        let mut rng = StdRng::seed_from_u64(3);
        let mut share = |avg: f64| {
            let mut counts = [0usize; 3];
            for _ in 0..2000 {
                counts[ResponseLength::infer(avg, &mut rng) as usize] += 1;
            }
            counts.map(|c| c as f64 / 2000.0)
        };
        let close =
            |got: [f64; 3], want: [f64; 3]| got.iter().zip(want).all(|(g, w)| (g - w).abs() < 0.04);
        assert!(close(share(10.0), [0.8, 0.2, 0.0]));
        assert!(close(share(400.0), [0.0, 0.2, 0.8]));
        assert!(close(share(100.0), [0.2, 0.65, 0.15]));

        for _ in 0..500 {
            assert!((120..=450).contains(&ResponseLength::Short.target_chars(&mut rng)));
            assert!((450..=1500).contains(&ResponseLength::Medium.target_chars(&mut rng)));
            assert!((1500..=5000).contains(&ResponseLength::Long.target_chars(&mut rng)));
        }
    }
}
