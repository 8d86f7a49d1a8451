//! Input events: the decoder for the event contract (`contract.md` §1).
//!
//! This is the first stage of the data flow: bytes from Kafka, a JSONL file or
//! the demo generator become an [`Event`] that borrows from the input buffer, or
//! an [`Invalid`] with a typed [`InvalidReason`]. Decoding never panics on any
//! input (a property test feeds it arbitrary bytes) and allocates only when a
//! string contains escapes.
//!
//! The decoder is a hand-written serde visitor over the top-level object so that
//! each bad field gets its own reason (a derived struct would only say "invalid
//! type"). Unknown top-level fields are skipped: producers evolve.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use smallvec::SmallVec;

mod fast;
mod time;

pub use time::{format_ts, parse_rfc3339_ms};

/// Largest accepted `id`, in bytes (`contract.md` §1).
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
    pub customer_id: Option<Cow<'a, str>>,
    /// Slicing dimensions and categories, in input order.
    pub attrs: SmallVec<[(Cow<'a, str>, Cow<'a, str>); 8]>,
    /// Feedback score (NPS 0–10, CSAT 1–5), within the decoder's `score_range`.
    pub score: Option<f64>,
    /// Sentiment, within the decoder's `sentiment_range` (default [-1, 1]).
    pub sentiment: Option<f64>,
}

impl Event<'_> {
    /// The value of attribute `name`, if the event carries it.
    #[inline]
    pub fn attr(&self, name: &str) -> Option<&str> {
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
}

impl InvalidReason {
    /// Every reason, for pre-registering metric series.
    pub const ALL: [InvalidReason; 11] = [
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
    ];

    /// The stable snake_case name used in metrics, logs and DLQ headers.
    pub fn as_str(self) -> &'static str {
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

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Inputs larger than this are rejected before parsing.
    pub max_event_bytes: usize,
    /// Reject events whose time is later than `now + max_future_skew_ms`, when `now` is given.
    pub max_future_skew_ms: i64,
    /// Valid `score` values, (min, max) inclusive; outside is `out_of_range`.
    pub score_range: (f64, f64),
    /// Valid `sentiment` values, (min, max) inclusive; outside is `out_of_range`.
    pub sentiment_range: (f64, f64),
}

impl DecodeLimits {
    /// No limit at all: any size, any time, any finite value (for decoding
    /// that only looks at an event's time or type; the engine's own limits
    /// apply when the event is fed).
    pub const OPEN: DecodeLimits = DecodeLimits {
        max_event_bytes: usize::MAX,
        max_future_skew_ms: i64::MAX,
        score_range: (f64::NEG_INFINITY, f64::INFINITY),
        sentiment_range: (f64::NEG_INFINITY, f64::INFINITY),
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
    check_size(bytes, limits)?;
    let raw = match fast::parse(bytes) {
        Some(raw) => raw,
        None => parse_full(bytes)?,
    };
    finish(raw, limits, now_ms, default_type)
}

/// The size limit, checked before any parsing.
fn check_size(bytes: &[u8], limits: &DecodeLimits) -> Result<(), Invalid> {
    if bytes.len() > limits.max_event_bytes {
        return Err(Invalid::new(
            InvalidReason::Oversized,
            format!(
                "{} bytes exceeds the limit of {}",
                bytes.len(),
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
    check_size(bytes, limits)?;
    let raw = parse_full(bytes)?;
    finish(raw, limits, now_ms, default_type)
}

/// Whether the fast path handles `bytes` itself (tests: typical lines must).
#[doc(hidden)]
pub fn fast_path_accepts(bytes: &[u8]) -> bool {
    fast::parse(bytes).is_some()
}

/// The full JSON parse (serde_json and the visitors below).
fn parse_full(bytes: &[u8]) -> Result<RawEvent<'_>, Invalid> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = match de.deserialize_any(TopVisitor) {
        Ok(p) => p,
        Err(e) => return Err(classify_json_error(&e)),
    };
    if let Err(e) = de.end() {
        return Err(classify_json_error(&e));
    }
    match parsed {
        Top::Object(raw) => Ok(raw),
        Top::Other(what) => Err(Invalid::new(
            InvalidReason::NotObject,
            format!("top-level value is {what}, not an object"),
        )),
    }
}

/// Default type, validation and the future-skew check of a parsed object.
#[inline(always)]
fn finish<'a>(
    mut raw: RawEvent<'a>,
    limits: &DecodeLimits,
    now_ms: Option<i64>,
    default_type: Option<&'a str>,
) -> Result<Event<'a>, Invalid> {
    if let (None | Some(Scalar::Null), Some(d)) = (&raw.kind, default_type) {
        raw.kind = Some(Scalar::Str(Cow::Borrowed(d)));
    }
    let event = raw.validate()?;
    check_range(
        "score",
        event.score,
        limits.score_range,
        "engine.score_range",
    )?;
    check_range(
        "sentiment",
        event.sentiment,
        limits.sentiment_range,
        "engine.sentiment_range",
    )?;
    if let Some(now) = now_ms {
        if event.ts > now.saturating_add(limits.max_future_skew_ms) {
            return Err(Invalid::new(
                InvalidReason::FutureTimestamp,
                format!(
                    "ts is {} ms ahead of the clock (allowed skew {} ms)",
                    event.ts - now,
                    limits.max_future_skew_ms
                ),
            ));
        }
    }
    Ok(event)
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
        Some(v) if !(min..=max).contains(&v) => Err(Invalid::new(
            InvalidReason::OutOfRange,
            format!("{field} {v} is outside [{min}, {max}] ({key})"),
        )),
        _ => Ok(()),
    }
}

fn classify_json_error(e: &serde_json::Error) -> Invalid {
    let msg = e.to_string();
    if msg.starts_with("number out of range") {
        Invalid::new(InvalidReason::NonFiniteNumber, msg)
    } else if let Some(rest) = msg.strip_prefix(FIELD_ERR_PREFIX) {
        // Errors raised by our own visitor carry their reason in the message.
        let (reason, detail) = rest.split_once('|').unwrap_or(("wrong_type", rest));
        let reason = InvalidReason::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == reason)
            .unwrap_or(InvalidReason::WrongType);
        let detail = detail.split(" at line ").next().unwrap_or(detail);
        Invalid::new(reason, detail.to_string())
    } else {
        Invalid::new(InvalidReason::NotJson, msg)
    }
}

const FIELD_ERR_PREFIX: &str = "crisiswatch-field:";

fn field_err<E: de::Error>(reason: InvalidReason, detail: fmt::Arguments<'_>) -> E {
    E::custom(format_args!(
        "{FIELD_ERR_PREFIX}{}|{detail}",
        reason.as_str()
    ))
}

// === impl TopVisitor ===

// A stack temporary returned once per decode: boxing the large variant would
// cost an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Top<'a> {
    Object(RawEvent<'a>),
    Other(&'static str),
}

#[derive(Default)]
struct RawEvent<'a> {
    id: Option<Scalar<'a>>,
    kind: Option<Scalar<'a>>,
    ts: Option<Scalar<'a>>,
    customer_id: Option<Scalar<'a>>,
    attrs: Option<AttrList<'a>>,
    score: Option<Scalar<'a>>,
    sentiment: Option<Scalar<'a>>,
}

/// Any JSON value, reduced to what validation needs.
enum Scalar<'a> {
    Str(Cow<'a, str>),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool,
    Null,
    Compound(&'static str),
}

impl Scalar<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Scalar::Str(_) => "a string",
            Scalar::I64(_) | Scalar::U64(_) | Scalar::F64(_) => "a number",
            Scalar::Bool => "a boolean",
            Scalar::Null => "null",
            Scalar::Compound(w) => w,
        }
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawEvent::default();
        while let Some(key) = map.next_key::<Key<'de>>()?.map(|k| k.0) {
            match key.as_ref() {
                "id" => raw.id = Some(map.next_value::<ScalarSeed>()?.0),
                "type" => raw.kind = Some(map.next_value::<ScalarSeed>()?.0),
                "ts" => raw.ts = Some(map.next_value::<ScalarSeed>()?.0),
                "customer_id" => raw.customer_id = Some(map.next_value::<ScalarSeed>()?.0),
                "score" => raw.score = Some(map.next_value::<ScalarSeed>()?.0),
                "sentiment" => raw.sentiment = Some(map.next_value::<ScalarSeed>()?.0),
                "attrs" => raw.attrs = map.next_value::<AttrsSeed>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Top::Object(raw))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Top::Other("an array"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Top::Other("a string"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Top::Other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Top::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Top::Other("a number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Top::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Top::Other("null"))
    }
}

/// A map key that borrows from the input when it has no escapes (serde's own
/// `Cow<str>` always allocates).
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

struct ScalarSeed<'a>(Scalar<'a>);

impl<'de> de::Deserialize<'de> for ScalarSeed<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor).map(ScalarSeed)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::I64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Compound("an object"))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Compound("an array"))
    }
}

type AttrList<'a> = SmallVec<[(Cow<'a, str>, Cow<'a, str>); 8]>;

struct AttrsSeed<'a>(Option<AttrList<'a>>);

impl<'de> de::Deserialize<'de> for AttrsSeed<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AttrsVisitor).map(AttrsSeed)
    }
}

struct AttrsVisitor;

impl<'de> Visitor<'de> for AttrsVisitor {
    type Value = Option<AttrList<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of string values")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = AttrList::new();
        while let Some(key) = map.next_key::<Key<'de>>()?.map(|k| k.0) {
            match map.next_value::<ScalarSeed>()?.0 {
                Scalar::Str(v) => {
                    if let Some(slot) = out.iter_mut().find(|(k, _)| *k == key) {
                        slot.1 = v;
                    } else {
                        out.push((key, v));
                    }
                }
                Scalar::Null => {}
                other => {
                    return Err(field_err(
                        InvalidReason::WrongType,
                        format_args!("attrs.{key} is {}, expected a string", other.type_name()),
                    ))
                }
            }
        }
        Ok(Some(out))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(wrong_attrs("a string"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(wrong_attrs("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(wrong_attrs("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(wrong_attrs("a number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(wrong_attrs("a boolean"))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(wrong_attrs("an array"))
    }
}

fn wrong_attrs<E: de::Error>(what: &str) -> E {
    field_err(
        InvalidReason::WrongType,
        format_args!("attrs is {what}, expected an object"),
    )
}

// === impl RawEvent ===

impl<'a> RawEvent<'a> {
    #[inline(always)]
    fn validate(self) -> Result<Event<'a>, Invalid> {
        let id = required_str("id", self.id)?;
        if id.len() > MAX_ID_BYTES {
            return Err(Invalid::new(
                InvalidReason::IdTooLong,
                format!("id is {} bytes, the limit is {MAX_ID_BYTES}", id.len()),
            ));
        }
        let kind = required_str("type", self.kind)?;
        let ts = match self.ts {
            None | Some(Scalar::Null) => {
                return Err(Invalid::new(InvalidReason::MissingField, "ts is missing"))
            }
            Some(Scalar::Str(s)) => parse_rfc3339_ms(&s).ok_or_else(|| {
                Invalid::new(
                    InvalidReason::BadTimestamp,
                    format!("ts {:?} is not RFC 3339 with an offset", truncate(&s, 64)),
                )
            })?,
            Some(Scalar::I64(v)) => v,
            Some(Scalar::U64(v)) => i64::try_from(v).map_err(|_| {
                Invalid::new(
                    InvalidReason::BadTimestamp,
                    format!("ts {v} is out of range"),
                )
            })?,
            Some(Scalar::F64(v)) => {
                return Err(Invalid::new(
                    InvalidReason::BadTimestamp,
                    format!("ts {v} is not an integer number of milliseconds"),
                ))
            }
            Some(other) => {
                return Err(Invalid::new(
                    InvalidReason::WrongType,
                    format!(
                        "ts is {}, expected a string or integer milliseconds",
                        other.type_name()
                    ),
                ))
            }
        };
        // Keep event times within ±100,000 years so window arithmetic cannot overflow.
        const TS_LIMIT: i64 = 3_155_760_000_000_000;
        if !(-TS_LIMIT..=TS_LIMIT).contains(&ts) {
            return Err(Invalid::new(
                InvalidReason::BadTimestamp,
                format!("ts {ts} is out of range"),
            ));
        }
        let customer_id = match self.customer_id {
            None | Some(Scalar::Null) => None,
            Some(Scalar::Str(s)) => Some(s),
            Some(Scalar::I64(v)) => Some(Cow::Owned(v.to_string())),
            Some(Scalar::U64(v)) => Some(Cow::Owned(v.to_string())),
            Some(other) => {
                return Err(Invalid::new(
                    InvalidReason::WrongType,
                    format!("customer_id is {}, expected a string", other.type_name()),
                ))
            }
        };
        let score = optional_number("score", self.score)?;
        let sentiment = optional_number("sentiment", self.sentiment)?;
        Ok(Event {
            id,
            kind,
            ts,
            customer_id,
            attrs: self.attrs.unwrap_or_default(),
            score,
            sentiment,
        })
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn required_str<'a>(field: &str, v: Option<Scalar<'a>>) -> Result<Cow<'a, str>, Invalid> {
    match v {
        None | Some(Scalar::Null) => Err(Invalid::new(
            InvalidReason::MissingField,
            format!("{field} is missing"),
        )),
        Some(Scalar::Str(s)) if s.is_empty() => Err(Invalid::new(
            InvalidReason::EmptyField,
            format!("{field} is empty"),
        )),
        Some(Scalar::Str(s)) => Ok(s),
        Some(other) => Err(Invalid::new(
            InvalidReason::WrongType,
            format!("{field} is {}, expected a string", other.type_name()),
        )),
    }
}

fn optional_number(field: &str, v: Option<Scalar<'_>>) -> Result<Option<f64>, Invalid> {
    let n = match v {
        None | Some(Scalar::Null) => return Ok(None),
        Some(Scalar::I64(v)) => v as f64,
        Some(Scalar::U64(v)) => v as f64,
        Some(Scalar::F64(v)) => v,
        Some(other) => {
            return Err(Invalid::new(
                InvalidReason::WrongType,
                format!("{field} is {}, expected a number", other.type_name()),
            ))
        }
    };
    if n.is_finite() {
        Ok(Some(n))
    } else {
        Err(Invalid::new(
            InvalidReason::NonFiniteNumber,
            format!("{field} is not finite"),
        ))
    }
}

#[cfg(test)]
mod tests;
