//! Incremental parser of server-sent events: turns the bytes of a streaming response, split
//! anywhere across network reads, into the `data` of each event, without allocating once its
//! buffers have grown.

/// Incremental SSE parser (the WHATWG event-stream rules that matter for OpenAI streams): lines
/// end in `\n`, `\r\n` or `\r` (a pair split across reads included), `data:` lines of one event
/// are joined with `\n`, a blank line dispatches the event, `:` lines are comments (keep-alive),
/// other fields are ignored. Frames may be split anywhere across [`feed`](Self::feed) calls.
/// The buffers are reused, so a long stream allocates nothing once they have grown.
#[derive(Default)]
pub struct SseParser {
    /// Bytes received and not yet consumed (from `pos`).
    buf: Vec<u8>,
    pos: usize,
    /// The data of the event being assembled (each line followed by `\n`).
    data: Vec<u8>,
    has_data: bool,
    /// The previous line ended with `\r`: a `\n` that comes next belongs to it.
    skip_lf: bool,
    /// The last dispatched event.
    event: Vec<u8>,
}

impl SseParser {
    /// Forgets everything (a new response).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.data.clear();
        self.has_data = false;
        self.skip_lf = false;
    }

    /// Adds received bytes; then call [`next_event`](Self::next_event) until it returns `None`.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The data of the next complete event, if one is complete.
    pub fn next_event(&mut self) -> Option<&[u8]> {
        loop {
            if self.skip_lf {
                if self.pos == self.buf.len() {
                    return None;
                }
                if self.buf[self.pos] == b'\n' {
                    self.pos += 1;
                }
                self.skip_lf = false;
            }
            let rest = &self.buf[self.pos..];
            let end = rest.iter().position(|&b| b == b'\n' || b == b'\r')?;
            let line = &rest[..end];
            self.skip_lf = rest[end] == b'\r';
            let start = self.pos;
            self.pos += end + 1;
            if line.is_empty() {
                if !self.has_data {
                    continue;
                }
                std::mem::swap(&mut self.event, &mut self.data);
                self.data.clear();
                self.has_data = false;
                self.event.pop(); // the '\n' after the last data line
                return Some(&self.event);
            }
            let line = &self.buf[start..start + end];
            if line[0] == b':' {
                continue;
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => {
                    let value = &line[i + 1..];
                    (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &[][..]),
            };
            if field == b"data" {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(parser: &mut SseParser, bytes: &[u8]) -> Vec<String> {
        parser.feed(bytes);
        let mut out = Vec::new();
        while let Some(e) = parser.next_event() {
            out.push(String::from_utf8(e.to_vec()).unwrap());
        }
        out
    }

    const STREAM: &str = "data: {\"a\":1}\n\n: keep-alive\n\ndata: {\"b\":2}\r\n\r\ndata:x\ndata: y\n\nevent: ping\nid: 3\nretry: 10\n\ndata\n\ndata: [DONE]\r\r";

    #[test]
    fn sse_whole_stream() {
        let mut p = SseParser::default();
        assert_eq!(
            events(&mut p, STREAM.as_bytes()),
            ["{\"a\":1}", "{\"b\":2}", "x\ny", "", "[DONE]"]
        );
    }

    #[test]
    fn sse_split_at_every_byte_boundary() {
        let want = events(&mut SseParser::default(), STREAM.as_bytes());
        let bytes = STREAM.as_bytes();
        // Two reads, split at every position.
        for cut in 0..=bytes.len() {
            let mut p = SseParser::default();
            let mut got = events(&mut p, &bytes[..cut]);
            got.extend(events(&mut p, &bytes[cut..]));
            assert_eq!(got, want, "split at {cut}");
        }
        // One byte per read.
        let mut p = SseParser::default();
        let got: Vec<String> = bytes.iter().flat_map(|b| events(&mut p, &[*b])).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn sse_crlf_split_between_reads_is_one_line_end() {
        let mut p = SseParser::default();
        assert!(events(&mut p, b"data: a\r").is_empty());
        // The \n completes "\r\n"; then the blank line "\r\n" dispatches.
        assert!(events(&mut p, b"\n").is_empty());
        assert_eq!(events(&mut p, b"\r\n"), ["a"]);
        // A lone \r ends a line too.
        assert_eq!(events(&mut p, b"data: b\r\rdata: c\n\n"), ["b", "c"]);
    }

    #[test]
    fn sse_incomplete_event_waits_and_reset_forgets_it() {
        let mut p = SseParser::default();
        assert!(events(&mut p, b"data: {\"partial\":").is_empty());
        assert!(events(&mut p, b" true}\n").is_empty());
        assert_eq!(events(&mut p, b"\n"), ["{\"partial\": true}"]);
        assert!(events(&mut p, b"data: lost\n").is_empty());
        p.reset();
        assert_eq!(events(&mut p, b"\ndata: new\n\n"), ["new"]);
    }
}
