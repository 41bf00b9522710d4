//! Stop sequences on streamed text. The returned text excludes the stop sequence (OpenAI's
//! rule), and a stream must not emit the start of a stop sequence before it knows whether the
//! rest follows: text that could still grow into a stop string is held back until it either
//! completes one (generation ends, the held text is dropped) or cannot (it is released).

#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not yet released.
    held: String,
    stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Adds generated text; returns the text that may be emitted now, and whether a stop
    /// sequence was completed (then nothing more should be generated or emitted).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.held.push_str(text);
        let first_stop = self
            .stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()))
            .min();
        if let Some(at) = first_stop {
            self.stopped = true;
            let emitted = self.held[..at].to_string();
            self.held.clear();
            return (emitted, true);
        }
        let keep = self.longest_partial_suffix();
        let release_to = self.held.len() - keep;
        let emitted = self.held[..release_to].to_string();
        self.held.drain(..release_to);
        (emitted, false)
    }

    /// The held text, released at the end of generation (no stop sequence came).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length in bytes of the longest suffix of the held text that is a proper prefix of a
    /// stop sequence (always on a character boundary).
    fn longest_partial_suffix(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            for (start, _) in self.held.char_indices() {
                let suffix = &self.held[start..];
                if suffix.len() <= best {
                    break;
                }
                if stop.starts_with(suffix) {
                    best = suffix.len();
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for piece in pieces {
            let (text, stopped) = m.push(piece);
            out += &text;
            if stopped {
                return (out, true);
            }
        }
        out += &m.finish();
        (out, false)
    }

    #[test]
    fn stop_split_across_pieces_is_cut_and_excluded() {
        assert_eq!(
            run(&["END"], &["hello E", "N", "D tail"]),
            ("hello ".into(), true)
        );
        assert_eq!(run(&["\n\n"], &["a\n", "\nb"]), ("a".into(), true));
    }

    #[test]
    fn partial_matches_are_released_when_they_fail() {
        assert_eq!(
            run(&["END"], &["hello E", "Nx"]),
            ("hello ENx".into(), false)
        );
        assert_eq!(run(&["END"], &["tail E"]), ("tail E".into(), false));
    }

    #[test]
    fn held_text_is_not_emitted_early() {
        let mut m = StopMatcher::new(&["abc".to_string()]);
        assert_eq!(m.push("xxab"), ("xx".to_string(), false));
        assert_eq!(m.push("d"), ("abd".to_string(), false));
    }

    #[test]
    fn earliest_stop_wins_and_multibyte_is_safe() {
        assert_eq!(run(&["zz", "b"], &["a🌍bzz"]), ("a🌍".into(), true));
        assert_eq!(run(&["🌍x"], &["a🌍", "y"]), ("a🌍y".into(), false));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }
}
