//! Input events: the decoder for the event contract (`docs/contract.md` §1).
//!
//! This is the first stage of the data flow: bytes from Kafka, a JSONL file or
//! the demo generator become an [`Event`] that borrows from the input buffer, or
//! an [`Invalid`] with a typed [`InvalidReason`]. Decoding never panics on any
//! input (a property test feeds it arbitrary bytes) and allocates only when a
//! string contains escapes.
//!
//! Typical lines take a hand-written fast path (`fast.rs`); the rest take the
//! full serde parse (`full.rs`), whose visitors give each bad field its own
//! reason (a derived struct would only say "invalid type"). Both fill the same
//! raw event (`raw.rs`), validated by one set of rules. Unknown top-level fields are
//! skipped: producers evolve. `time.rs` parses and formats RFC 3339.

use std::borrow::Cow;
use std::fmt;

use smallvec::SmallVec;

pub(crate) mod ahead;
mod fast;
mod full;
pub(crate) mod order;
mod owned;
mod raw;
mod time;

use full::parse_full;
use raw::{AttrList, RawEvent, Scalar};

pub use owned::OwnedEvent;
pub use time::{format_ts, parse_rfc3339_ms};

/// One input line as the tools read it: without surrounding ASCII white
/// space (a CRLF's CR included) and without a UTF-8 byte-order mark, which
/// editors on Windows put at the start of a file.
pub fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.trim_ascii();
    line.strip_prefix(b"\xEF\xBB\xBF")
        .map_or(line, <[u8]>::trim_ascii_start)
}

/// The bytes [`trim_line`] takes off the start of `line` (white space, a
/// byte-order mark), at most `cap`: line readers keep them beyond their
/// cap, so that an event within `engine.max_event_bytes` is not cut short
/// by what is not part of it.
pub(crate) fn lead_len(line: &[u8], cap: usize) -> usize {
    let a = line.trim_ascii_start();
    let b = a
        .strip_prefix(b"\xEF\xBB\xBF")
        .map_or(a, <[u8]>::trim_ascii_start);
    (line.len() - b.len()).min(cap)
}

/// Largest accepted `id`, in bytes (`docs/contract.md` §1).
pub const MAX_ID_BYTES: usize = 128;

/// A decoded event. Borrows its strings from the input buffer where possible.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// Producer-assigned unique id, 1..=128 bytes.
    pub id: Cow<'a, str>,
    /// Event type: `complaint`, `feedback`, `order`, `cancellation` or any other string.
    pub kind: Cow<'a, str>,
    /// Event time in milliseconds since the Unix epoch.
    pub ts: i64,
    /// The customer, for customer-level indicators.
    pub(crate) customer_id: Option<Cow<'a, str>>,
    /// The `id` of the event this one answers (a `response` naming its
    /// complaint: the response-SLA indicators), 1..=128 bytes.
    pub(crate) ref_id: Option<Cow<'a, str>>,
    /// Slicing dimensions and categories, in input order.
    pub(crate) attrs: SmallVec<[(Cow<'a, str>, Cow<'a, str>); 8]>,
    /// Feedback score (NPS 0–10, CSAT 1–5), within the decoder's `score_range`.
    pub score: Option<f64>,
    /// Sentiment, within the decoder's `sentiment_range` (default [-1, 1]).
    pub sentiment: Option<f64>,
}

impl Default for Event<'_> {
    /// An empty event (no id, no type, time 0): a slot for [`decode_into`].
    fn default() -> Self {
        Event {
            id: Cow::Borrowed(""),
            kind: Cow::Borrowed(""),
            ts: 0,
            customer_id: None,
            ref_id: None,
            attrs: SmallVec::new(),
            score: None,
            sentiment: None,
        }
    }
}

impl Event<'_> {
    /// The value of attribute `name`, if the event carries it.
    #[inline]
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Copies every borrowed string so the event outlives its input buffer.
    pub fn into_owned(self) -> Event<'static> {
        Event {
            id: Cow::Owned(self.id.into_owned()),
            kind: Cow::Owned(self.kind.into_owned()),
            ts: self.ts,
            customer_id: self.customer_id.map(|c| Cow::Owned(c.into_owned())),
            ref_id: self.ref_id.map(|c| Cow::Owned(c.into_owned())),
            attrs: self
                .attrs
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
            score: self.score,
            sentiment: self.sentiment,
        }
    }
}

/// Why an input was rejected. The `as_str` names are the `reason` label values
/// of `crisiswatch_events_invalid_total` and the dead-letter `reason` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InvalidReason {
    /// Larger than the configured `engine.max_event_bytes`.
    Oversized,
    /// Not valid JSON (including invalid UTF-8).
    NotJson,
    /// Valid JSON, but not an object.
    NotObject,
    /// A required field (`id`, `type`, `ts`) is absent or null.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// `id` or `type` is an empty string.
    EmptyField,
    /// `id` is longer than 128 bytes.
    IdTooLong,
    /// `ts` is neither RFC 3339 with an offset nor integer milliseconds.
    BadTimestamp,
    /// A number is not finite (overflows f64).
    NonFiniteNumber,
    /// `score` or `sentiment` outside its configured range
    /// (`engine.score_range`, `engine.sentiment_range`).
    OutOfRange,
    /// `ts` is further in the future than `engine.max_future_skew`.
    FutureTimestamp,
    /// `ts` is more than `engine.max_clock_jump` ahead of the stream's clock
    /// and the following events did not confirm the jump (see
    /// [`crate::sequencer::JumpGuard`]).
    ClockJump,
}

impl InvalidReason {
    /// Every reason, for pre-registering metric series.
    pub const ALL: [InvalidReason; 12] = [
        Self::Oversized,
        Self::NotJson,
        Self::NotObject,
        Self::MissingField,
        Self::WrongType,
        Self::EmptyField,
        Self::IdTooLong,
        Self::BadTimestamp,
        Self::NonFiniteNumber,
        Self::OutOfRange,
        Self::FutureTimestamp,
        Self::ClockJump,
    ];

    /// The stable snake_case name used in metrics, logs and DLQ headers.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::NotJson => "not_json",
            Self::NotObject => "not_object",
            Self::MissingField => "missing_field",
            Self::WrongType => "wrong_type",
            Self::EmptyField => "empty_field",
            Self::IdTooLong => "id_too_long",
            Self::BadTimestamp => "bad_timestamp",
            Self::NonFiniteNumber => "non_finite_number",
            Self::OutOfRange => "out_of_range",
            Self::FutureTimestamp => "future_timestamp",
            Self::ClockJump => "clock_jump",
        }
    }

    /// Position in [`InvalidReason::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected input: the reason and a short detail naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event ({reason}): {detail}")]
pub struct Invalid {
    /// The typed reason, for counting.
    pub reason: InvalidReason,
    /// What was wrong, for logs and the DLQ `detail` header.
    pub detail: String,
}

impl Invalid {
    fn new(reason: InvalidReason, detail: impl Into<String>) -> Self {
        Invalid {
            reason,
            detail: detail.into(),
        }
    }
}

/// Most attributes an event may carry; an event with more is invalid
/// (`oversized`). The repeated-key check is linear in their number (a scan
/// for a few, a hash index past 16), so a producer cannot make decoding slow.
pub(crate) const MAX_ATTRIBUTES: usize = 256;

/// Most bytes the attribute keys and values of one event may take together
/// (a repeated key counted once, with its last value); more is `oversized`.
pub(crate) const MAX_ATTRIBUTE_BYTES: usize = 16 * 1024;

/// `s` cut to at most `max` bytes, at a character boundary (for details
/// quoted in logs and dead-letter headers).
pub(crate) fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeLimits {
    /// Inputs larger than this are rejected before parsing.
    pub max_event_bytes: usize,
    /// Reject events whose time is later than `now + max_future_skew_ms`, when `now` is given.
    pub max_future_skew_ms: i64,
    /// Valid `score` values, (min, max) inclusive; outside is `out_of_range`.
    pub score_range: (f64, f64),
    /// Valid `sentiment` values, (min, max) inclusive; outside is `out_of_range`.
    pub sentiment_range: (f64, f64),
    /// An event this far ahead of the stream's clock does not move it alone
    /// (`engine.max_clock_jump`; 0 turns the check off). Not a decode check:
    /// the feeds apply it ([`crate::sequencer::JumpGuard`]).
    pub max_clock_jump_ms: i64,
    /// Events beyond the jump that confirm it (`engine.clock_jump_confirm`).
    pub clock_jump_confirm: u32,
}

impl DecodeLimits {
    /// No limit at all: any size, any time, any finite value (for decoding
    /// that only looks at an event's time or type; the engine's own limits
    /// apply when the event is fed).
    pub(crate) const OPEN: DecodeLimits = DecodeLimits {
        max_event_bytes: usize::MAX,
        max_future_skew_ms: i64::MAX,
        score_range: (f64::NEG_INFINITY, f64::INFINITY),
        sentiment_range: (f64::NEG_INFINITY, f64::INFINITY),
        max_clock_jump_ms: 0,
        clock_jump_confirm: 1,
    };
}

impl Default for DecodeLimits {
    /// The defaults of `[engine]` (see `config::EngineConfig`).
    fn default() -> Self {
        DecodeLimits {
            max_event_bytes: 64 * 1024,
            max_future_skew_ms: 5 * 60 * 1000,
            score_range: (0.0, 10.0),
            sentiment_range: (-1.0, 1.0),
            max_clock_jump_ms: 24 * 3600 * 1000,
            clock_jump_confirm: 3,
        }
    }
}

/// Decodes one event. `now_ms` is the wall clock used for the future-skew check
/// (`None` skips it, e.g. for deterministic replays of synthetic data).
pub fn decode<'a>(
    bytes: &'a [u8],
    limits: &DecodeLimits,
    now_ms: Option<i64>,
) -> Result<Event<'a>, Invalid> {
    decode_with_default(bytes, limits, now_ms, None)
}

/// Like [`decode`], with the event `type` to assume when the input has none
/// (absent or `null`): a Kafka topic's configured `default_type`.
pub fn decode_with_default<'a>(
    bytes: &'a [u8],
    limits: &DecodeLimits,
    now_ms: Option<i64>,
    default_type: Option<&'a str>,
) -> Result<Event<'a>, Invalid> {
    let mut ev = Event::default();
    decode_into(bytes, limits, now_ms, default_type, &mut ev)?;
    Ok(ev)
}

/// [`decode_with_default`] into the caller's `out` (every field written;
/// after an error `out` holds no particular event). The event is large: built
/// in place, it is not moved through the parser's layers on its way out.
#[inline]
pub fn decode_into<'a>(
    bytes: &'a [u8],
    limits: &DecodeLimits,
    now_ms: Option<i64>,
    default_type: Option<&'a str>,
    out: &mut Event<'a>,
) -> Result<(), Invalid> {
    decode_checked(bytes, limits, now_ms, default_type, out).map(|_| ())
}

/// [`decode_into`], giving the input back as text when the fast path took
/// it (which checked it is UTF-8; `None` after the full parser).
#[inline(always)]
fn decode_checked<'a>(
    bytes: &'a [u8],
    limits: &DecodeLimits,
    now_ms: Option<i64>,
    default_type: Option<&'a str>,
    out: &mut Event<'a>,
) -> Result<Option<&'a str>, Invalid> {
    // The same bytes decode alike from a file line and a Kafka message:
    // white space around the object and a byte-order mark are not part of it.
    let bytes = trim_line(bytes);
    check_size(bytes, limits)?;
    let (raw, text) = match fast::parse(bytes, &mut out.attrs) {
        Some((raw, text)) => (raw, Some(text)),
        None => (parse_full(bytes, &mut out.attrs)?, None),
    };
    finish(raw, limits, now_ms, default_type, out)?;
    Ok(text)
}

/// [`decode_into`], then the event captured to be held
/// ([`OwnedEvent`]; `slot` is scratch space for the decoded event). The
/// fast path has checked the input is UTF-8 already, so the held event
/// does not check it again.
#[inline]
pub fn decode_held<'a>(
    bytes: &'a [u8],
    limits: &DecodeLimits,
    now_ms: Option<i64>,
    default_type: Option<&'a str>,
    slot: &mut Event<'a>,
) -> Result<OwnedEvent, Invalid> {
    // Held as `replay` holds a line (its order key is of these bytes).
    let bytes = trim_line(bytes);
    let text = decode_checked(bytes, limits, now_ms, default_type, slot)?
        .or_else(|| std::str::from_utf8(bytes).ok());
    Ok(OwnedEvent::from_text(slot, bytes, text))
}

/// Reads one line (through its `\n`) of `r` into `buf` (appending), keeping
/// at most `cap` bytes of it beyond its leading white space and byte-order
/// mark ([`lead_len`]): the rest of a longer line is read and dropped, so
/// one huge line costs at most twice `cap` bytes of memory, not its size.
/// Returns the bytes consumed (0: the end of the input).
pub(crate) fn read_line_capped(
    r: &mut impl std::io::BufRead,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<usize> {
    let (start, mut consumed) = (buf.len(), 0);
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(consumed);
        }
        let (take, done) = match memchr::memchr(b'\n', avail) {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        let room = cap.saturating_mul(2).saturating_sub(buf.len() - start);
        buf.extend_from_slice(&avail[..take.min(room)]);
        let keep = cap.saturating_add(lead_len(&buf[start..], cap));
        buf.truncate(start.saturating_add(keep));
        r.consume(take);
        consumed += take;
        if done {
            return Ok(consumed);
        }
    }
}

/// The size limit, checked before any parsing.
fn check_size(bytes: &[u8], limits: &DecodeLimits) -> Result<(), Invalid> {
    if bytes.len() > limits.max_event_bytes {
        // Line readers keep one byte past the limit of a longer line (the
        // rest is skipped unread into memory): the size is "more than".
        return Err(Invalid::new(
            InvalidReason::Oversized,
            format!(
                "larger than the limit of {} bytes (engine.max_event_bytes)",
                limits.max_event_bytes
            ),
        ));
    }
    Ok(())
}

/// [`decode_with_default`] through the full serde parser only, without the
/// fast path: the reference the fast path is tested against.
#[doc(hidden)]
pub fn decode_reference<'a>(
    bytes: &'a [u8],
    limits: &DecodeLimits,
    now_ms: Option<i64>,
    default_type: Option<&'a str>,
) -> Result<Event<'a>, Invalid> {
    let bytes = trim_line(bytes);
    check_size(bytes, limits)?;
    let mut ev = Event::default();
    let raw = parse_full(bytes, &mut ev.attrs)?;
    finish(raw, limits, now_ms, default_type, &mut ev)?;
    Ok(ev)
}

/// Whether the fast path handles `bytes` itself (tests: typical lines must).
#[doc(hidden)]
pub fn fast_path_accepts(bytes: &[u8]) -> bool {
    fast::parse(bytes, &mut AttrList::new()).is_some()
}

/// Default type, validation and the future-skew check of a parsed object,
/// into `out` (whose attributes the parser filled).
#[inline(always)]
fn finish<'a>(
    mut raw: RawEvent<'a>,
    limits: &DecodeLimits,
    now_ms: Option<i64>,
    default_type: Option<&'a str>,
    out: &mut Event<'a>,
) -> Result<(), Invalid> {
    if let (None | Some(Scalar::Null), Some(d)) = (&raw.kind, default_type) {
        raw.kind = Some(Scalar::Str(Cow::Borrowed(d)));
    }
    raw.validate_into(limits, now_ms, out)
}

/// `future_timestamp` if `ts` is later than `now_ms + max_future_skew` (when
/// `now_ms` is given).
#[inline(always)]
fn check_future(ts: i64, limits: &DecodeLimits, now_ms: Option<i64>) -> Result<(), Invalid> {
    if let Some(now) = now_ms {
        if ts > now.saturating_add(limits.max_future_skew_ms) {
            return Err(Invalid::new(
                InvalidReason::FutureTimestamp,
                format!(
                    "ts is {} ms ahead of the clock (allowed skew {} ms)",
                    ts - now,
                    limits.max_future_skew_ms
                ),
            ));
        }
    }
    Ok(())
}

/// `out_of_range` unless `value` (when present) lies in `[min, max]`.
#[inline(always)]
fn check_range(
    field: &str,
    value: Option<f64>,
    (min, max): (f64, f64),
    key: &str,
) -> Result<(), Invalid> {
    match value {
        Some(v) if !(min..=max).contains(&v) => {
            // 1e308 in full is 309 digits: beyond ±10¹⁵, scientific notation.
            let shown = if v.abs() >= 1e15 {
                format!("{v:e}")
            } else {
                format!("{v}")
            };
            Err(Invalid::new(
                InvalidReason::OutOfRange,
                format!("{field} {shown} is outside [{min}, {max}] ({key})"),
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
