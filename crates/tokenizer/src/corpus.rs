//! Training-corpus reader: documents streamed from files, in file order, with the caps of
//! nanochat's `scripts/tok_train.py`.
//!
//! Supported formats, chosen by the file extension (case-insensitive):
//!
//! * `.jsonl` — one document per non-empty line; the line is either a JSON string or a JSON object
//!   with a string field `"text"` (other fields are ignored). Lines holding only whitespace are
//!   skipped.
//! * `.txt`, or no extension — plain UTF-8 text; **documents are separated by blank lines** (a line that is empty or
//!   holds only whitespace). Each document is its lines joined by their own line breaks, without
//!   the line break after its last line. Several blank lines in a row are one separator.
//! * `.parquet` — nanochat's pretraining shards (reference §7.3): the string column `text`, read
//!   row group by row group, rows in order.
//!
//! Caps (as `tok_train.py`): every document is cropped to [`CorpusOptions::doc_cap`] characters
//! (Unicode code points, Python's `len`), and iteration stops right after the document that pushes
//! the running character total (of cropped documents) above [`CorpusOptions::max_chars`].
//!
//! Progress: [`CorpusReader::progress`] gives a shareable [`CorpusProgress`] handle (atomic
//! counters of bytes read, total bytes, documents and characters) that a progress bar can poll,
//! even while the reader itself has been moved into [`crate::train::train`].

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Result, TokenizerError};

/// `tok_train.py`'s default `--doc_cap`.
pub const DEFAULT_DOC_CAP: usize = 10_000;

/// The file extensions [`CorpusReader`] understands.
pub const SUPPORTED_EXTENSIONS: &[&str] = &["jsonl", "txt", "parquet"];

/// Caps applied while reading (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusOptions {
    /// Crop every document to this many characters (code points); `None` = no cropping.
    /// Default: `Some(10_000)` (`tok_train.py --doc_cap`).
    pub doc_cap: Option<usize>,
    /// Stop right after the document that pushes the running character total above this;
    /// `None` = read everything. Default `None` (`tok_train.py`'s default is 10 B characters).
    pub max_chars: Option<u64>,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        Self {
            doc_cap: Some(DEFAULT_DOC_CAP),
            max_chars: None,
        }
    }
}

/// Live counters of a [`CorpusReader`], shareable across threads (all loads are `Relaxed`).
#[derive(Debug, Default)]
pub struct CorpusProgress {
    bytes_read: AtomicU64,
    total_bytes: AtomicU64,
    docs: AtomicU64,
    chars: AtomicU64,
}

impl CorpusProgress {
    /// Bytes of the input files consumed so far (for parquet: the compressed size of the row
    /// groups read, and the whole file once it is finished).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }
    /// Sum of the sizes of all input files (the final value of `bytes_read` when every file is
    /// read to its end).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes.load(Ordering::Relaxed)
    }
    /// Documents yielded so far.
    pub fn docs(&self) -> u64 {
        self.docs.load(Ordering::Relaxed)
    }
    /// Characters (code points, after cropping) yielded so far.
    pub fn chars(&self) -> u64 {
        self.chars.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Jsonl,
    Txt,
    Parquet,
}

fn format_of(path: &Path) -> Result<Format> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("jsonl") => Ok(Format::Jsonl),
        // A file without an extension (README, LICENSE, GPL-3…) is plain text.
        Some("txt") | None => Ok(Format::Txt),
        Some("parquet") => Ok(Format::Parquet),
        _ => Err(TokenizerError::BadFile {
            path: path.to_path_buf(),
            message: format!(
                "unsupported corpus file type (supported: {}, or no extension for plain text)",
                SUPPORTED_EXTENSIONS
                    .iter()
                    .map(|e| format!(".{e}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

fn io_err(path: &Path, source: std::io::Error) -> TokenizerError {
    TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bad_file(path: &Path, message: String) -> TokenizerError {
    TokenizerError::BadFile {
        path: path.to_path_buf(),
        message,
    }
}

/// The `*.parquet` files of a directory sorted by name (`nanochat/dataset.py`'s
/// `list_parquet_files`). nanochat's "train" split is all of them but the last; "val" is the last.
pub fn parquet_shards(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        if let Some(name) = name.to_str() {
            if name.ends_with(".parquet") {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Streams the documents of a list of files in order, applying the caps; an iterator of
/// `Result<String>`. After the first error it yields nothing more.
pub struct CorpusReader {
    files: Vec<(PathBuf, Format, u64)>,
    next_file: usize,
    /// Bytes of the files already finished.
    done_bytes: u64,
    source: Option<Source>,
    options: CorpusOptions,
    progress: Arc<CorpusProgress>,
    chars: u64,
    finished: bool,
}

impl CorpusReader {
    /// Checks every path up front (supported extension, readable size) and prepares to stream
    /// them in the given order. Files are opened lazily, one at a time.
    pub fn open<P: AsRef<Path>>(paths: &[P], options: CorpusOptions) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut total = 0u64;
        for p in paths {
            let path = p.as_ref();
            let format = format_of(path)?;
            let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
            if meta.is_dir() {
                return Err(bad_file(
                    path,
                    "is a directory, expected a corpus file".into(),
                ));
            }
            total += meta.len();
            files.push((path.to_path_buf(), format, meta.len()));
        }
        let progress = Arc::new(CorpusProgress::default());
        progress.total_bytes.store(total, Ordering::Relaxed);
        Ok(Self {
            files,
            next_file: 0,
            done_bytes: 0,
            source: None,
            options,
            progress,
            chars: 0,
            finished: false,
        })
    }

    /// A handle on the live counters, e.g. for a progress bar on another thread.
    pub fn progress(&self) -> Arc<CorpusProgress> {
        self.progress.clone()
    }
    /// See [`CorpusProgress::bytes_read`].
    pub fn bytes_read(&self) -> u64 {
        self.progress.bytes_read()
    }
    /// See [`CorpusProgress::total_bytes`].
    pub fn total_bytes(&self) -> u64 {
        self.progress.total_bytes()
    }
    /// Documents yielded so far.
    pub fn docs_read(&self) -> u64 {
        self.progress.docs()
    }
    /// Characters yielded so far (after cropping).
    pub fn chars_read(&self) -> u64 {
        self.chars
    }

    fn next_raw(&mut self) -> Option<Result<String>> {
        loop {
            if self.source.is_none() {
                if self.next_file >= self.files.len() {
                    return None;
                }
                let (path, format, _) = &self.files[self.next_file];
                match Source::open(path, *format) {
                    Ok(s) => self.source = Some(s),
                    Err(e) => return Some(Err(e)),
                }
            }
            let src = self.source.as_mut().expect("source is open");
            let path = &self.files[self.next_file].0;
            match src.next_doc(path) {
                Ok(Some(doc)) => {
                    self.progress
                        .bytes_read
                        .store(self.done_bytes + src.bytes_read(), Ordering::Relaxed);
                    return Some(Ok(doc));
                }
                Ok(None) => {
                    self.done_bytes += self.files[self.next_file].2;
                    self.progress
                        .bytes_read
                        .store(self.done_bytes, Ordering::Relaxed);
                    self.source = None;
                    self.next_file += 1;
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl Iterator for CorpusReader {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        if self.finished {
            return None;
        }
        let mut doc = match self.next_raw() {
            None => {
                self.finished = true;
                return None;
            }
            Some(Err(e)) => {
                self.finished = true;
                return Some(Err(e));
            }
            Some(Ok(d)) => d,
        };
        let n_chars = crop_chars(&mut doc, self.options.doc_cap);
        self.chars += n_chars as u64;
        self.progress.chars.store(self.chars, Ordering::Relaxed);
        self.progress.docs.fetch_add(1, Ordering::Relaxed);
        if let Some(max) = self.options.max_chars {
            if self.chars > max {
                self.finished = true;
            }
        }
        Some(Ok(doc))
    }
}

impl std::iter::FusedIterator for CorpusReader {}

/// Crops `doc` to at most `cap` code points (Python `doc[:cap]`); returns its length in code points.
pub fn crop_chars(doc: &mut String, cap: Option<usize>) -> usize {
    match cap {
        // A string of at most `cap` bytes has at most `cap` characters: no scan needed to crop.
        Some(cap) if doc.len() > cap => match doc.char_indices().nth(cap) {
            Some((byte, _)) => {
                doc.truncate(byte);
                cap
            }
            None => doc.chars().count(),
        },
        _ => doc.chars().count(),
    }
}

// ------------------------------------------------------------------------------------------------

enum Source {
    Lines(LineSource),
    Parquet(Box<ParquetSource>),
}

impl Source {
    fn open(path: &Path, format: Format) -> Result<Self> {
        Ok(match format {
            Format::Jsonl => Source::Lines(LineSource::open(path, true)?),
            Format::Txt => Source::Lines(LineSource::open(path, false)?),
            Format::Parquet => Source::Parquet(Box::new(ParquetSource::open(path)?)),
        })
    }

    fn bytes_read(&self) -> u64 {
        match self {
            Source::Lines(s) => s.offset,
            Source::Parquet(s) => s.bytes_read,
        }
    }

    fn next_doc(&mut self, path: &Path) -> Result<Option<String>> {
        match self {
            Source::Lines(s) if s.jsonl => s.next_jsonl(path),
            Source::Lines(s) => s.next_txt(path),
            Source::Parquet(s) => s.next_doc(path),
        }
    }
}

/// `.jsonl` and `.txt`: line by line.
struct LineSource {
    reader: BufReader<File>,
    jsonl: bool,
    /// Byte offset in the file of the next line.
    offset: u64,
    /// 1-based number of the last line read.
    line_no: u64,
    buf: Vec<u8>,
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

impl LineSource {
    fn open(path: &Path, jsonl: bool) -> Result<Self> {
        let file = File::open(path).map_err(|e| io_err(path, e))?;
        Ok(Self {
            reader: BufReader::with_capacity(1 << 20, file),
            jsonl,
            offset: 0,
            line_no: 0,
            buf: Vec::new(),
        })
    }

    /// Reads the next line (with its terminator) into `self.buf`, checking UTF-8.
    /// Returns the file offset of the line start, or `None` at end of file.
    fn read_line(&mut self, path: &Path) -> Result<Option<u64>> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| io_err(path, e))?;
        if n == 0 {
            return Ok(None);
        }
        let start = self.offset;
        self.offset += n as u64;
        self.line_no += 1;
        if let Err(e) = std::str::from_utf8(&self.buf) {
            let col = e.valid_up_to();
            return Err(bad_file(
                path,
                format!(
                    "line {}: invalid UTF-8 at byte offset {} (byte {} of the line)",
                    self.line_no,
                    start + col as u64,
                    col + 1
                ),
            ));
        }
        Ok(Some(start))
    }

    fn next_jsonl(&mut self, path: &Path) -> Result<Option<String>> {
        #[derive(serde::Deserialize)]
        struct WithText {
            text: String,
        }
        loop {
            if self.read_line(path)?.is_none() {
                return Ok(None);
            }
            let mut line = self.buf.trim_ascii();
            if self.line_no == 1 {
                // A UTF-8 byte-order mark is not part of the JSON.
                line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
            }
            if line.is_empty() {
                continue;
            }
            let parsed = match line[0] {
                b'"' => serde_json::from_slice::<String>(line),
                b'{' => serde_json::from_slice::<WithText>(line).map(|o| o.text),
                _ => {
                    return Err(bad_file(
                        path,
                        format!(
                            "line {}: expected a JSON string or an object with a \"text\" field",
                            self.line_no
                        ),
                    ))
                }
            };
            return match parsed {
                Ok(doc) => Ok(Some(doc)),
                Err(e) => Err(bad_file(
                    path,
                    format!("line {}: bad JSON: {e}", self.line_no),
                )),
            };
        }
    }

    fn next_txt(&mut self, path: &Path) -> Result<Option<String>> {
        let mut doc = String::new();
        loop {
            if self.read_line(path)?.is_none() {
                break;
            }
            if is_blank(&self.buf) {
                if doc.is_empty() {
                    continue;
                }
                break;
            }
            // Checked in `read_line`.
            doc.push_str(std::str::from_utf8(&self.buf).expect("validated UTF-8"));
        }
        if doc.is_empty() {
            return Ok(None);
        }
        if doc.ends_with('\n') {
            doc.pop();
            if doc.ends_with('\r') {
                doc.pop();
            }
        }
        Ok(Some(doc))
    }
}

/// `.parquet`: the `text` column, one row group at a time.
struct ParquetSource {
    reader: parquet::file::serialized_reader::SerializedFileReader<File>,
    column: usize,
    max_def: i16,
    next_row_group: usize,
    /// Documents of the current row group, reversed (popped from the back).
    pending: Vec<String>,
    bytes_read: u64,
    file_len: u64,
}

impl ParquetSource {
    fn open(path: &Path) -> Result<Self> {
        use parquet::basic::{ConvertedType, LogicalType, Type as PhysicalType};
        use parquet::file::reader::FileReader;

        let file = File::open(path).map_err(|e| io_err(path, e))?;
        let file_len = file.metadata().map_err(|e| io_err(path, e))?.len();
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(file)
            .map_err(|e| bad_file(path, format!("not a readable parquet file: {e}")))?;
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let column = (0..schema.num_columns())
            .find(|&i| schema.column(i).path().parts() == ["text"])
            .ok_or_else(|| {
                let names: Vec<String> = (0..schema.num_columns())
                    .map(|i| schema.column(i).path().string())
                    .collect();
                bad_file(
                    path,
                    format!(
                        "parquet file has no \"text\" column (columns: {})",
                        names.join(", ")
                    ),
                )
            })?;
        let descr = schema.column(column);
        let is_string = descr.physical_type() == PhysicalType::BYTE_ARRAY
            && descr.max_rep_level() == 0
            && match descr.logical_type_ref() {
                Some(LogicalType::String) => true,
                Some(_) => false,
                None => matches!(
                    descr.converted_type(),
                    ConvertedType::UTF8 | ConvertedType::NONE
                ),
            };
        if !is_string {
            return Err(bad_file(
                path,
                format!(
                    "parquet column \"text\" is not a string column (physical type {}, logical type {:?})",
                    descr.physical_type(),
                    descr.logical_type_ref()
                ),
            ));
        }
        Ok(Self {
            max_def: descr.max_def_level(),
            reader,
            column,
            next_row_group: 0,
            pending: Vec::new(),
            bytes_read: 0,
            file_len,
        })
    }

    fn read_row_group(&mut self, path: &Path) -> Result<()> {
        use parquet::column::reader::ColumnReader;
        use parquet::file::reader::FileReader;

        let rg_idx = self.next_row_group;
        let where_ = |m: String| bad_file(path, format!("row group {rg_idx}: {m}"));
        let rg = self
            .reader
            .get_row_group(rg_idx)
            .map_err(|e| where_(e.to_string()))?;
        let num_rows = rg.metadata().num_rows().max(0) as usize;
        let compressed = rg.metadata().compressed_size().max(0) as u64;
        let col = rg
            .get_column_reader(self.column)
            .map_err(|e| where_(e.to_string()))?;
        let ColumnReader::ByteArrayColumnReader(mut col) = col else {
            return Err(where_("column \"text\" is not a byte-array column".into()));
        };
        let mut values = Vec::with_capacity(num_rows);
        let mut defs: Vec<i16> = Vec::with_capacity(num_rows);
        let mut rows_read = 0;
        while rows_read < num_rows {
            let (records, _, _) = col
                .read_records(num_rows - rows_read, Some(&mut defs), None, &mut values)
                .map_err(|e| where_(e.to_string()))?;
            if records == 0 {
                return Err(where_(format!(
                    "column \"text\" ends after {rows_read} of {num_rows} rows"
                )));
            }
            rows_read += records;
        }
        if self.max_def > 0 {
            if let Some(row) = defs.iter().position(|&d| d < self.max_def) {
                return Err(where_(format!("row {row}: the \"text\" value is null")));
            }
        }
        let mut docs = Vec::with_capacity(values.len());
        for (row, v) in values.into_iter().enumerate() {
            let bytes = v.data().to_vec();
            match String::from_utf8(bytes) {
                Ok(s) => docs.push(s),
                Err(e) => {
                    return Err(where_(format!(
                        "row {row}: invalid UTF-8 at byte offset {} of the \"text\" value",
                        e.utf8_error().valid_up_to()
                    )))
                }
            }
        }
        docs.reverse();
        self.pending = docs;
        self.next_row_group += 1;
        self.bytes_read = (self.bytes_read + compressed).min(self.file_len);
        Ok(())
    }

    fn next_doc(&mut self, path: &Path) -> Result<Option<String>> {
        use parquet::file::reader::FileReader;
        loop {
            if let Some(doc) = self.pending.pop() {
                return Ok(Some(doc));
            }
            if self.next_row_group >= self.reader.num_row_groups() {
                return Ok(None);
            }
            self.read_row_group(path)?;
        }
    }
}
