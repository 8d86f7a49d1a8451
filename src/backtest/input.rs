//! History input for backtests: JSONL files read in order, gzip accepted.
//!
//! The source stage of a backtest. Every file is read line by line into one
//! reusable buffer; a file whose first two bytes are the gzip magic number is
//! decompressed on the fly (whatever its name; concatenated gzip members, as
//! `cat a.gz b.gz` makes, are read through). `-` reads standard input.
//! A progress bar over the bytes read is drawn only when standard error is a
//! terminal. Lines are handed out with surrounding whitespace removed; blank
//! lines are skipped. Bad *lines* are not this stage's business (the decoder
//! counts them); an unreadable *file* stops the backtest with its path.
//! [`Inputs::kafka`] reads a range of Kafka topics instead
//! ([`super::kafka_input`]); every command takes either.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use super::kafka_input::{fill_type, KafkaHistory, KafkaInputError};
pub use super::line::{InputStats, LineRef};

/// Read buffer per file: large sequential reads keep decoding, not I/O, the cost.
const READ_BUFFER: usize = 1 << 20;

/// Errors reading history files.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A file could not be opened.
    #[error("cannot open input {path}: {error} (check the path and permissions)")]
    Open {
        /// The file.
        path: String,
        /// The I/O error (in the message, not a `source`: printed once).
        error: io::Error,
    },
    /// Reading (or decompressing) a file failed part-way.
    #[error(
        "cannot read input {path} after line {line}: {error}{}",
        if *.gz { " (a truncated or corrupt .gz file?)" } else { "" }
    )]
    Read {
        /// The file.
        path: String,
        /// The last line read successfully.
        line: u64,
        /// The I/O error (in the message, not a `source`: printed once).
        error: io::Error,
        /// Whether the file is gzip (then the likely cause is named).
        gz: bool,
    },
    /// A file in UTF-16 (every line would be `not_json`).
    #[error(
        "input {path} is UTF-16 text; crisiswatch reads JSONL in UTF-8: convert it first \
         ({convert} > history.jsonl)"
    )]
    Utf16 {
        /// The file.
        path: String,
        /// The command that converts it (`zcat … |` first for gzip).
        convert: String,
    },
    /// A file in a format crisiswatch does not read: another compression
    /// (bzip2, xz, zstd, zip), or one JSON array instead of JSON lines.
    #[error("input {path} is {what}; crisiswatch reads JSONL (one event per line; gzip accepted): convert it first ({convert} > history.jsonl)")]
    Format {
        /// The file.
        path: String,
        /// What it is.
        what: &'static str,
        /// The command that converts it.
        convert: String,
    },
    /// One file named twice.
    #[error("input {path} is given twice: its events would count twice")]
    Twice {
        /// The file.
        path: String,
    },
    /// No input was named.
    #[error("no input file given: pass --input FILE (JSONL, gzip accepted; \"-\" for stdin)")]
    Empty,
    /// Reading a Kafka topic failed (boxed: it is much larger than the others).
    #[error(transparent)]
    Kafka(Box<KafkaInputError>),
}

impl From<KafkaInputError> for InputError {
    fn from(e: KafkaInputError) -> Self {
        InputError::Kafka(Box::new(e))
    }
}

/// An ordered list of history files.
#[derive(Debug, Clone)]
pub struct Inputs {
    paths: Vec<PathBuf>,
    /// A Kafka topic range instead of files.
    kafka: Option<KafkaHistory>,
    progress: bool,
    /// Bytes of a line kept (the rest of a longer one is skipped): one past
    /// `engine.max_event_bytes` calls it oversized without holding it all.
    line_cap: usize,
}

/// [`Inputs`]' line cap unless set ([`Inputs::cap_lines`]): one past the
/// largest `engine.max_event_bytes`.
const DEFAULT_LINE_CAP: usize = 256 * 1024 * 1024 + 1;

impl Inputs {
    /// The files, in the order given. A progress bar is shown when standard
    /// error is a terminal.
    pub fn new(paths: Vec<PathBuf>) -> Result<Self, InputError> {
        if paths.is_empty() {
            return Err(InputError::Empty);
        }
        // The same file twice, by any path: a symlink resolves to it, a
        // hard link has its inode (`same_file` compares device and inode).
        let mut seen = std::collections::HashSet::new();
        let mut handles: Vec<same_file::Handle> = Vec::new();
        for p in &paths {
            let id = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            // Regular files only: opening a FIFO here could block.
            let handle = std::fs::metadata(p)
                .is_ok_and(|m| m.is_file())
                .then(|| same_file::Handle::from_path(p).ok())
                .flatten();
            let again = !seen.insert(id) || handle.as_ref().is_some_and(|h| handles.contains(h));
            if again {
                return Err(InputError::Twice {
                    path: p.display().to_string(),
                });
            }
            handles.extend(handle);
        }
        Ok(Inputs {
            paths,
            kafka: None,
            progress: io::stderr().is_terminal(),
            line_cap: DEFAULT_LINE_CAP,
        })
    }

    /// History from Kafka topics instead of files. A progress bar is shown
    /// when standard error is a terminal.
    pub fn kafka(history: KafkaHistory) -> Self {
        Inputs {
            paths: Vec::new(),
            kafka: Some(history),
            progress: io::stderr().is_terminal(),
            line_cap: DEFAULT_LINE_CAP,
        }
    }

    /// Keeps at most `max_event_bytes + 1` bytes of each line of a file: a
    /// longer line is invalid (`oversized`) whatever its length, and is not
    /// held in memory whole.
    pub fn cap_lines(mut self, max_event_bytes: usize) -> Self {
        self.line_cap = max_event_bytes.saturating_add(1);
        self
    }

    /// Turns the progress bar off (tests, benches, nested passes).
    pub fn quiet(mut self) -> Self {
        self.progress = false;
        self
    }

    /// The files.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Whether the inputs are files (not a Kafka topic range).
    pub(crate) fn are_files(&self) -> bool {
        self.kafka.is_none()
    }

    /// The name of input `file` (its path; `stdin`).
    pub(crate) fn name(&self, file: usize) -> String {
        match self.paths.get(file) {
            Some(p) if p.as_os_str() == "-" => "stdin".to_string(),
            Some(p) => p.display().to_string(),
            None => format!("input {file}"),
        }
    }

    /// Where a line came from, for messages: `file:line`, or
    /// `topic[partition]@offset` for Kafka history.
    pub(crate) fn describe(&self, at: LineRef) -> String {
        if let Some(k) = &self.kafka {
            return k.describe(at);
        }
        match self.paths.get(at.file) {
            Some(p) if p.as_os_str() == "-" => format!("stdin:{}", at.line),
            Some(p) => format!("{}:{}", p.display(), at.line),
            None => format!("line {}", at.line),
        }
    }

    /// Whether some file can be read only once: standard input, or anything
    /// that is not a regular file (a pipe, `<(…)` process substitution, a
    /// character device). Commands that read the history twice refuse it,
    /// or keep to one pass.
    pub(crate) fn read_once(&self) -> bool {
        self.paths
            .iter()
            .any(|p| p.as_os_str() == "-" || std::fs::metadata(p).is_ok_and(|m| !m.is_file()))
    }

    /// Calls `f` with every non-blank line of every file, in order (Kafka:
    /// every selected message value, partitions merged by event time). A
    /// Kafka value without a type comes with its topic's `default_type`
    /// filled in (re-serialised: see [`Inputs::for_each_line_with_default`]
    /// for the value as received).
    pub(crate) fn for_each_line(
        &self,
        mut f: impl FnMut(&[u8], LineRef),
    ) -> Result<InputStats, InputError> {
        if let Some(k) = &self.kafka {
            let mut typed = |line: &[u8], default_type: Option<&str>, at: LineRef| {
                let filled = default_type.and_then(|d| fill_type(line, d));
                f(filled.as_deref().unwrap_or(line), at);
            };
            return Ok(k.for_each_line(self.progress, &mut typed)?);
        }
        self.file_lines(f)
    }

    /// Like [`Inputs::for_each_line`], but every line as read, with the event
    /// type to assume when it has none: its Kafka topic's `default_type`
    /// (`None` for files). Decoded with
    /// [`decode_with_default`](crate::event::decode_with_default), it is
    /// exactly the event `run` decodes from the message.
    pub(crate) fn for_each_line_with_default(
        &self,
        mut f: impl FnMut(&[u8], Option<&str>, LineRef),
    ) -> Result<InputStats, InputError> {
        if let Some(k) = &self.kafka {
            return Ok(k.for_each_line(self.progress, &mut f)?);
        }
        self.file_lines(|line, at| f(line, None, at))
    }

    /// The lines of the files, in order.
    fn file_lines(&self, mut f: impl FnMut(&[u8], LineRef)) -> Result<InputStats, InputError> {
        let total: u64 = self
            .paths
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let bar = if self.progress {
            let bar = ProgressBar::new(total);
            // The template is a constant known to parse; fall back to the default style anyway.
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} {msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        let mut stats = InputStats::default();
        let mut carry: Vec<u8> = Vec::with_capacity(4096);
        for (file, path) in self.paths.iter().enumerate() {
            bar.set_message(display_name(path));
            let lines_before = stats.lines;
            let raw: Box<dyn Read> = if path.as_os_str() == "-" {
                Box::new(io::stdin().lock())
            } else {
                let open_err = |error| InputError::Open {
                    path: path.display().to_string(),
                    error,
                };
                let file = File::open(path).map_err(open_err)?;
                if file.metadata().map_err(open_err)?.is_dir() {
                    return Err(open_err(io::Error::other(
                        "it is a directory: name the files in it (e.g. DIR/*.jsonl)",
                    )));
                }
                Box::new(file)
            };
            let counted = CountingReader {
                inner: raw,
                bar: &bar,
            };
            let mut reader = BufReader::with_capacity(READ_BUFFER, counted);
            let gz = is_gzip(&mut reader).map_err(|error| InputError::Read {
                path: path.display().to_string(),
                line: 0,
                error,
                gz: false,
            })?;
            let mut lines: Box<dyn BufRead> = if gz {
                Box::new(BufReader::with_capacity(
                    READ_BUFFER,
                    gz::GzMembers::new(reader),
                ))
            } else {
                Box::new(reader)
            };
            let head = lines.fill_buf().map_err(|error| InputError::Read {
                path: path.display().to_string(),
                line: 0,
                error,
                gz,
            })?;
            if is_utf16(head) {
                return Err(InputError::utf16(&path.display().to_string(), gz));
            }
            if let Some((what, tool)) = other_format(head) {
                let shown = path.display().to_string();
                let convert = if gz {
                    format!("zcat {shown} | {tool}")
                } else {
                    format!("{tool} {shown}")
                };
                return Err(InputError::Format {
                    path: shown,
                    what,
                    convert,
                });
            }
            let read_err = |line: u64, error: io::Error| InputError::Read {
                path: path.display().to_string(),
                line,
                error,
                gz,
            };
            // Lines are handed out straight from the read buffer; only a line
            // that straddles two buffer fills is copied (into `carry`).
            let line_no = std::cell::Cell::new(0u64);
            let mut emit = |raw: &[u8], stats: &mut InputStats| {
                line_no.set(line_no.get() + 1);
                let line = crate::event::trim_line(raw);
                if !line.is_empty() {
                    stats.lines += 1;
                    f(
                        line,
                        LineRef {
                            file,
                            line: line_no.get(),
                        },
                    );
                }
            };
            carry.clear();
            loop {
                let avail = match lines.fill_buf() {
                    Ok(a) => a,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(read_err(line_no.get(), e)),
                };
                if avail.is_empty() {
                    if !carry.is_empty() {
                        emit(&carry, &mut stats);
                    }
                    break;
                }
                let mut start: usize = 0;
                let cap = self.line_cap;
                // Appends to `carry` what room the line cap leaves beyond
                // the line's leading white space and byte-order mark.
                let keep = |carry: &mut Vec<u8>, part: &[u8]| {
                    let room = cap.saturating_mul(2).saturating_sub(carry.len());
                    carry.extend_from_slice(&part[..part.len().min(room)]);
                    let lead = crate::event::lead_len(carry, cap);
                    carry.truncate(cap.saturating_add(lead));
                };
                for nl in memchr::memchr_iter(b'\n', avail) {
                    if carry.is_empty() {
                        let line = &avail[start..nl];
                        let keep = cap.saturating_add(crate::event::lead_len(line, cap));
                        emit(&line[..line.len().min(keep)], &mut stats);
                    } else {
                        keep(&mut carry, &avail[start..nl]);
                        emit(&carry, &mut stats);
                        carry.clear();
                    }
                    start = nl + 1;
                }
                keep(&mut carry, &avail[start..]);
                let n = avail.len();
                lines.consume(n);
            }
            stats.files += 1;
            if stats.lines == lines_before {
                // A wrong path to an empty export, a failed `zcat`: named,
                // never a silently thinner history.
                tracing::warn!(
                    input = %path.display(),
                    "input {} holds no event line (it is empty or blank): nothing of it was read",
                    path.display()
                );
            }
            drop(lines);
        }
        stats.bytes = bar.position();
        bar.finish_and_clear();
        Ok(stats)
    }
}

fn display_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

impl InputError {
    /// Input `path` (`-`: standard input; `gz`: read through gzip) is UTF-16.
    pub(crate) fn utf16(path: &str, gz: bool) -> Self {
        let convert = match (path == "-", gz) {
            (true, true) => "zcat | iconv -f UTF-16 -t UTF-8".to_string(),
            (true, false) => "iconv -f UTF-16 -t UTF-8".to_string(),
            (false, true) => format!("zcat {path} | iconv -f UTF-16 -t UTF-8"),
            (false, false) => format!("iconv -f UTF-16 -t UTF-8 {path}"),
        };
        InputError::Utf16 {
            path: path.to_string(),
            convert,
        }
    }
}

/// Whether the buffered stream starts with the gzip magic number.
pub(crate) fn is_gzip(r: &mut impl BufRead) -> io::Result<bool> {
    let head = r.fill_buf()?;
    Ok(head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b)
}

/// What a stream starting with `head` is when it is no JSONL crisiswatch
/// reads, and the command that turns it into JSONL: another compression's
/// magic number, or a JSON array (`[` then an object, a first line that
/// JSONL never has).
pub(crate) fn other_format(head: &[u8]) -> Option<(&'static str, &'static str)> {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    if head.starts_with(b"BZh") && head.get(3).is_some_and(|b| (b'1'..=b'9').contains(b)) {
        return Some(("bzip2-compressed", "bzcat"));
    }
    if head.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0]) {
        return Some(("xz-compressed", "xzcat"));
    }
    if head.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
        return Some(("zstd-compressed", "zstdcat"));
    }
    if head.starts_with(b"PK\x03\x04") {
        return Some(("a zip archive", "unzip -p"));
    }
    let text = head.trim_ascii_start();
    if text.first() == Some(&b'[')
        && text[1..]
            .trim_ascii_start()
            .first()
            .is_none_or(|&b| b == b'{' || b == b']')
    {
        return Some(("one JSON array", "jq -c '.[]'"));
    }
    None
}

/// A small text file (a transitions or labels file): gzip accepted
/// (detected by content), a UTF-8 byte-order mark dropped; another
/// compression or UTF-16 is an error that says so.
pub(crate) fn read_text(path: &std::path::Path) -> io::Result<String> {
    let mut reader = BufReader::new(File::open(path)?);
    let gz = is_gzip(&mut reader)?;
    let mut bytes = Vec::new();
    if gz {
        gz::GzMembers::new(reader).read_to_end(&mut bytes)?;
    } else {
        reader.read_to_end(&mut bytes)?;
    }
    let shown = path.display();
    // The command that converts it, read through zcat when it is gzip.
    let convert = |tool: &str| {
        if gz {
            format!("zcat {shown} | {tool}")
        } else {
            format!("{tool} {shown}")
        }
    };
    if is_utf16(&bytes[..bytes.len().min(4)]) {
        return Err(io::Error::other(format!(
            "it is UTF-16 text; convert it to UTF-8 first ({})",
            convert("iconv -f UTF-16 -t UTF-8")
        )));
    }
    if let Some((what, tool)) = other_format(&bytes[..bytes.len().min(64)]) {
        return Err(io::Error::other(format!(
            "it is {what}, not JSON lines; convert it first ({})",
            convert(tool)
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| io::Error::other(format!("it is not UTF-8 text ({e})")))?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Whether a stream starting with `head` is UTF-16: a byte-order mark, or
/// its first two characters ASCII with NUL bytes between them (`{\0"\0`:
/// JSON text in UTF-8 has no NUL; one garbled first line does not look so).
pub(crate) fn is_utf16(head: &[u8]) -> bool {
    match head {
        // A byte-order mark, then UTF-16 text (or nothing): a UTF-8 line
        // that merely starts with these bytes is one bad line, not UTF-16.
        [0xFF, 0xFE] | [0xFE, 0xFF] | [0xFF, 0xFE, _, 0, ..] | [0xFE, 0xFF, 0, _, ..] => true,
        [a, 0, c, 0, ..] | [0, a, 0, c, ..] => a.is_ascii_graphic() && c.is_ascii_graphic(),
        _ => false,
    }
}

/// Counts raw bytes into the progress bar.
struct CountingReader<'a> {
    inner: Box<dyn Read + 'a>,
    bar: &'a ProgressBar,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

mod gz;
pub(crate) use gz::GzMembers;

#[cfg(test)]
mod tests;
