//! Constrained decoding: token masks from a grammar, so that `response_format`
//! (`json_object` / `json_schema`) and forced tool calls always produce JSON that parses and
//! validates, whatever the model's logits say.
//!
//! Built on `llguidance` (an Earley parser over a derivative-based lexer, walked against a
//! token trie): [`ConstraintFactory`] turns our tokenizer into a token environment once per
//! model, and compiles a JSON schema into a per-row [`Constraint`] whose
//! [`Constraint::mask_logits`] sets every token the grammar forbids to −∞ before sampling and
//! whose [`Constraint::commit`] advances the grammar by the sampled token.
//!
//! Choices:
//! * Compact JSON only (`,` and `:` separators, no whitespace between tokens): a weak model
//!   could otherwise emit whitespace forever. A user's `x-guidance` key is overwritten.
//! * Strict schemas: a keyword llguidance cannot enforce (e.g. `oneOf`, an unknown `format`) is
//!   a [`EngineError::BadRequest`] naming it, never silently ignored, so output always validates.
//! * Special tokens are bytes `\xFF<|name|>` in the token environment: JSON is valid UTF-8 and
//!   never contains 0xFF, so the grammar can never allow one. `<|assistant_end|>` is the
//!   environment's EOS: allowed exactly when the output so far is a complete value, and the only
//!   token allowed once the grammar cannot be extended. The other specials (and logit rows past
//!   the tokenizer's vocabulary) are also set to −∞ explicitly.
//! * Forced bytes (e.g. `{"name":"` of a schema's fixed keys) are tokenized canonically with our
//!   BPE and forced one token at a time by the mask, so the model sees in-distribution
//!   tokenizations.
//! * llguidance logs nothing (log levels 0, the `logging` feature off).
//!
//! Usage: one [`Constraint`] per row (`clone()` one for the other rows of a request); in
//! `Generation::next_column_with` call `mask_logits` on the row's logits, then `commit` every
//! token the row received. Tokens the grammar did not allow (the calculator tool's forced
//! output) make `commit` fail, so constrained requests run with `use_tools: false`. A row cut
//! by `max_tokens` is, of course, unfinished JSON (`is_complete()` says so).
//!
//! Measured costs (`constraint_costs` in `tests/constraint.rs`; test profile, i.e. llguidance at
//! opt-level 3; one core of a 2-core machine):
//! * 65,536-token tokenizer: `ConstraintFactory::new` ≈ 190–200 ms (token trie 40 ms, the
//!   private tokenizer copy 50 ms, llguidance's sliced tries ≈ 110 ms); compiling a small
//!   schema ≈ 0.4–0.7 ms; `mask_logits` ≈ 70–80 µs per token on average for a 4-field record
//!   schema (max ≈ 0.9 ms, at the first token of a free string), ≈ 30 µs inside long strings.
//! * 512-token tokenizer: `ConstraintFactory::new` ≈ 3 ms; compiling ≈ 0.4 ms; `mask_logits`
//!   ≈ 5–7 µs per token (max ≈ 90 µs).

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::{JsonCompileOptions, Matcher, ParserFactory};
use nanochat_tokenizer::Tokenizer;
use serde_json::Value;
use toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

use crate::error::{EngineError, Result};

/// Built once per tokenizer (≈ 0.2 s for a 65k vocabulary: token trie, sliced tries, a copy of
/// the tokenizer): `Send + Sync`, shared behind an `Arc` by every request to a model.
pub struct ConstraintFactory {
    parser_factory: ParserFactory,
    vocab_size: usize,
    eos: u32,
    /// Special tokens other than `<|assistant_end|>`: never allowed.
    forbidden: Arc<[u32]>,
}

/// One row's grammar state. `Clone` gives another row of the same request the same grammar
/// state at a fraction of the compile cost (clones share the compiled grammar and lexer cache).
#[derive(Clone)]
pub struct Constraint {
    matcher: Matcher,
    vocab_size: usize,
    eos: u32,
    forbidden: Arc<[u32]>,
}

/// The token environment llguidance walks: the trie of every token's bytes, and our BPE for
/// tokenizing forced bytes canonically.
struct NanochatTokEnv {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for NanochatTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        // Forced JSON bytes are UTF-8 in practice; anything else (or an encoder error) falls
        // back to the trie's greedy tokenization, which is still a valid tokenization.
        match std::str::from_utf8(s) {
            Ok(text) => self
                .tokenizer
                .encode(text)
                .unwrap_or_else(|_| self.trie.greedy_tokenize(s)),
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

fn grammar_error(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::BadRequest(format!("{what}: {e}"))
}

impl ConstraintFactory {
    pub fn new(tokenizer: &Tokenizer) -> Result<Self> {
        let ids = tokenizer.special_ids()?;
        let vocab_size = tokenizer.vocab_size();
        let mut words: Vec<Vec<u8>> = Vec::with_capacity(vocab_size);
        words.extend(tokenizer.ranks().iter().cloned());
        words.resize(vocab_size, Vec::new());
        for (name, id) in tokenizer.special_tokens() {
            let mut bytes = Vec::with_capacity(name.len() + 1);
            bytes.push(TokTrie::SPECIAL_TOKEN_MARKER);
            bytes.extend_from_slice(name.as_bytes());
            words[*id as usize] = bytes;
        }
        if let Some(id) = words.iter().position(Vec::is_empty) {
            return Err(EngineError::BadRequest(format!(
                "cannot build a grammar token table: token {id} has no bytes"
            )));
        }
        let info = TokRxInfo {
            vocab_size: vocab_size as u32,
            tok_eos: ids.assistant_end,
            tok_bos: Some(ids.bos),
            tok_pad: None,
            tok_unk: None,
            tok_end_of_turn: Some(ids.assistant_end),
        };
        let trie = TokTrie::from(&info, &words);
        // A private copy of the tokenizer: the environment must be 'static (an `Arc<dyn …>`).
        let copy = Tokenizer::new(
            tokenizer.name(),
            tokenizer.pattern(),
            tokenizer.ranks().to_vec(),
            tokenizer.special_tokens().to_vec(),
        )?;
        let env: TokEnv = Arc::new(NanochatTokEnv {
            trie,
            tokenizer: copy,
        });
        let mut parser_factory = ParserFactory::new_simple(&env)
            .map_err(|e| grammar_error("cannot build the grammar token environment", e))?;
        parser_factory.quiet();
        // Short errors: the first lines say what is wrong; the grammar and parser state
        // llguidance would append are noise in an API error.
        parser_factory.limits_mut().verbose_errors = false;
        let forbidden: Arc<[u32]> = tokenizer
            .special_tokens()
            .iter()
            .map(|(_, id)| *id)
            .filter(|&id| id != ids.assistant_end)
            .collect();
        let factory = Self {
            parser_factory,
            vocab_size,
            eos: ids.assistant_end,
            forbidden,
        };
        // Sanity check (< 1 ms): the JSON grammar compiles against this token environment.
        factory.json_object()?;
        Ok(factory)
    }

    /// Output must be JSON valid against `schema` (OpenAI `json_schema`; also used for tool
    /// calls). An invalid or unsupported schema is a `BadRequest` saying what is wrong.
    pub fn json_schema(&self, schema: &Value) -> Result<Constraint> {
        let mut schema = match schema {
            Value::Object(_) => schema.clone(),
            Value::Bool(true) => Value::Object(Default::default()),
            Value::Bool(false) => {
                return Err(EngineError::BadRequest(
                    "invalid JSON schema: the schema `false` accepts no value".into(),
                ))
            }
            other => {
                return Err(EngineError::BadRequest(format!(
                    "invalid JSON schema: a schema must be an object, got {}",
                    json_kind(other)
                )))
            }
        };
        compile_options().apply_to(&mut schema);
        let grammar = TopLevelGrammar::from_json_schema(schema);
        let parser = self
            .parser_factory
            .create_parser(grammar)
            .map_err(schema_error)?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(grammar_error("invalid JSON schema", one_line(&e)));
        }
        Ok(Constraint {
            matcher,
            vocab_size: self.vocab_size,
            eos: self.eos,
            forbidden: self.forbidden.clone(),
        })
    }

    /// Output must be a JSON object (OpenAI `json_object`).
    pub fn json_object(&self) -> Result<Constraint> {
        self.json_schema(&serde_json::json!({ "type": "object" }))
    }

    /// The tokenizer's vocabulary size (logit rows past it are always masked).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}

/// Compact JSON: no whitespace anywhere, `,` and `:` separators; strict (no `lenient`, no
/// `oneOf` coercion) so that every output validates.
fn compile_options() -> JsonCompileOptions {
    JsonCompileOptions {
        item_separator: ",".into(),
        key_separator: ":".into(),
        whitespace_flexible: false,
        whitespace_pattern: None,
        coerce_one_of: false,
        lenient: false,
        ..JsonCompileOptions::default()
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn schema_error(e: impl std::fmt::Display) -> EngineError {
    let msg = one_line(&format!("{e:#}"));
    // llguidance suggests an option the API does not expose (it would only approximate).
    let msg = match msg.strip_prefix("oneOf constraints are not supported") {
        Some(_) => "oneOf is supported only when its alternatives cannot overlap \
                    (e.g. different types); use anyOf"
            .to_string(),
        None => msg,
    };
    grammar_error("invalid JSON schema", msg)
}

/// One line for an API error: llguidance's messages can span lines (a regex parse error shows
/// the pattern with a caret, then the reason), so the lines are joined; very long messages are
/// cut.
fn one_line(s: &str) -> String {
    const MAX: usize = 600;
    let mut out = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^'))
        .collect::<Vec<_>>()
        .join(" ");
    if out.len() > MAX {
        let mut cut = MAX;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

impl Constraint {
    /// Sets every token the grammar forbids next to −∞ (once the output is complete and cannot
    /// be extended, only `<|assistant_end|>` stays allowed). `logits` may be longer than the
    /// vocabulary (padded embedding rows): the extra entries are always forbidden.
    pub fn mask_logits(&mut self, logits: &mut [f32]) -> Result<()> {
        if logits.len() < self.vocab_size {
            return Err(EngineError::BadRequest(format!(
                "constrained decoding: {} logits for a vocabulary of {}",
                logits.len(),
                self.vocab_size
            )));
        }
        let mask = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| grammar_error("constrained decoding failed", one_line(&e.to_string())))?;
        let (vocab, extra) = logits.split_at_mut(self.vocab_size);
        extra.fill(f32::NEG_INFINITY);
        mask.iter_unset_entries(|i| {
            if let Some(l) = vocab.get_mut(i) {
                *l = f32::NEG_INFINITY;
            }
        });
        for &id in self.forbidden.iter() {
            vocab[id as usize] = f32::NEG_INFINITY;
        }
        Ok(())
    }

    /// Advances the grammar by the chosen token (`<|assistant_end|>` is accepted when the output
    /// is complete). A token the grammar forbids is an error.
    pub fn commit(&mut self, token: u32) -> Result<()> {
        if self.matcher.is_stopped() && token == self.eos {
            return Ok(()); // already finished: the end token changes nothing
        }
        self.matcher
            .consume_token(token)
            .map_err(|e| grammar_error("constrained decoding failed", one_line(&e.to_string())))
    }

    /// Whether the output so far is a complete value (the grammar accepts).
    pub fn is_complete(&mut self) -> bool {
        if self.matcher.is_error() {
            return false;
        }
        if self.matcher.is_stopped() {
            return self.matcher.stop_reason().is_ok();
        }
        self.matcher.is_accepting().unwrap_or(false)
    }

    /// Whether the grammar can no longer be extended (only `<|assistant_end|>` is allowed).
    pub fn is_stopped(&self) -> bool {
        self.matcher.is_stopped()
    }
}
