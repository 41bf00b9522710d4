//! Streaming text without splitting characters (reference §5.5, nanochat's chat_web): keep every
//! token of the reply, decode all of them after each new token, and emit the new suffix only
//! when the decoded text does not end in U+FFFD. A multi-byte character spread over several
//! byte tokens therefore comes out whole, a reply cut off mid-character never emits the partial
//! bytes, and an invalid byte in the middle is emitted as U+FFFD once later text arrives.

use nanochat_tokenizer::Tokenizer;

use crate::error::Result;

#[derive(Default)]
pub struct TextStream {
    ids: Vec<u32>,
    /// Characters (code points) already emitted.
    emitted_chars: usize,
}

impl TextStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token; returns the text to emit now (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = tokenizer.decode(&self.ids)?;
        if text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let new: String = text.chars().skip(self.emitted_chars).collect();
        self.emitted_chars += new.chars().count();
        Ok(new)
    }

    /// All tokens pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}
