//! What a parser fills in ([`RawEvent`]: each field as the JSON had it) and
//! its validation into an [`Event`]: one set of rules and messages for the
//! fast path ([`super::fast`]) and the full serde parse ([`super::full`]).

use std::borrow::Cow;

use smallvec::SmallVec;

use super::{
    check_future, check_range, parse_rfc3339_ms, DecodeLimits, Event, Invalid, InvalidReason,
    MAX_ID_BYTES,
};

/// The top-level fields as parsed; the attributes go straight into the
/// output event's list (it is large: moving it costs).
#[derive(Default)]
pub(super) struct RawEvent<'a> {
    pub(super) id: Option<Scalar<'a>>,
    pub(super) kind: Option<Scalar<'a>>,
    pub(super) ts: Option<Scalar<'a>>,
    pub(super) customer_id: Option<Scalar<'a>>,
    pub(super) ref_id: Option<Scalar<'a>>,
    pub(super) score: Option<Scalar<'a>>,
    pub(super) sentiment: Option<Scalar<'a>>,
}

/// Any JSON value, reduced to what validation needs.
pub(super) enum Scalar<'a> {
    Str(Cow<'a, str>),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool,
    Null,
    Compound(&'static str),
}

impl Scalar<'_> {
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Scalar::Str(_) => "a string",
            Scalar::I64(_) | Scalar::U64(_) | Scalar::F64(_) => "a number",
            Scalar::Bool => "a boolean",
            Scalar::Null => "null",
            Scalar::Compound(w) => w,
        }
    }
}

/// Attributes as parsed, in input order (a repeated key keeps its last value).
pub(super) type AttrList<'a> = SmallVec<[(Cow<'a, str>, Cow<'a, str>); 8]>;

/// Up to this many attributes a repeated key is found by a scan (fastest for
/// the few attributes events usually carry); past it, by a hash index.
const SCAN_MAX: usize = 16;

/// Which attribute limit an event broke.
pub(super) enum AttrOverflow {
    /// More than [`super::MAX_ATTRIBUTES`] keys.
    Count,
    /// Keys and values longer than [`super::MAX_ATTRIBUTE_BYTES`] together.
    Bytes,
}

/// Collects an event's attributes in linear time whatever a producer sends:
/// a repeated key keeps its last value, and the count and total size stay
/// within [`super::MAX_ATTRIBUTES`] and [`super::MAX_ATTRIBUTE_BYTES`].
pub(super) struct AttrBuilder<'s, 'a> {
    list: &'s mut AttrList<'a>,
    /// Key → position in `list`, built once `list` outgrows [`SCAN_MAX`];
    /// randomly seeded, so chosen keys cannot make its lookups collide.
    index: Option<hashbrown::HashMap<Cow<'a, str>, usize, foldhash::fast::RandomState>>,
    bytes: usize,
}

impl<'s, 'a> AttrBuilder<'s, 'a> {
    /// Fills `list` (in place: the list is large).
    pub(super) fn new(list: &'s mut AttrList<'a>) -> Self {
        AttrBuilder {
            list,
            index: None,
            bytes: 0,
        }
    }

    #[inline]
    pub(super) fn insert(
        &mut self,
        key: Cow<'a, str>,
        value: Cow<'a, str>,
    ) -> Result<(), AttrOverflow> {
        let found = match &self.index {
            Some(index) => index.get(key.as_ref()).copied(),
            // Most keys differ in length or first byte: skip the full compare.
            None => self.list.iter().position(|(k, _)| {
                k.len() == key.len() && k.as_bytes().first() == key.as_bytes().first() && *k == key
            }),
        };
        if let Some(i) = found {
            let slot = &mut self.list[i].1;
            self.bytes = self.bytes - slot.len() + value.len();
            *slot = value;
        } else {
            if self.list.len() >= super::MAX_ATTRIBUTES {
                return Err(AttrOverflow::Count);
            }
            self.bytes += key.len() + value.len();
            if self.index.is_none() && self.list.len() >= SCAN_MAX {
                let mut index = hashbrown::HashMap::with_capacity_and_hasher(
                    super::MAX_ATTRIBUTES,
                    foldhash::fast::RandomState::default(),
                );
                index.extend(
                    self.list
                        .iter()
                        .enumerate()
                        .map(|(i, (k, _))| (k.clone(), i)),
                );
                self.index = Some(index);
            }
            if let Some(index) = &mut self.index {
                index.insert(key.clone(), self.list.len());
            }
            self.list.push((key, value));
        }
        if self.bytes > super::MAX_ATTRIBUTE_BYTES {
            return Err(AttrOverflow::Bytes);
        }
        Ok(())
    }
}

// === impl RawEvent ===

impl<'a> RawEvent<'a> {
    /// Validates every field, then the ranges of `score` and `sentiment` and
    /// the future skew (against `now_ms`, when given), in that order, and
    /// writes them into `out`, whose attributes the parser already filled
    /// (the event is large: it is built once, in place).
    #[inline(always)]
    pub(super) fn validate_into(
        self,
        limits: &DecodeLimits,
        now_ms: Option<i64>,
        out: &mut Event<'a>,
    ) -> Result<(), Invalid> {
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
                    format!(
                        // "valid": the shape can be right and the date not
                        // exist (2026-02-29, 24:00:00).
                        "ts {:?} is not RFC 3339 with an offset, or not a valid date and time",
                        super::truncate_bytes(&s, 64)
                    ),
                )
            })?,
            Some(Scalar::I64(v)) => v,
            Some(Scalar::U64(v)) => i64::try_from(v).map_err(|_| {
                Invalid::new(
                    InvalidReason::BadTimestamp,
                    format!("ts {v} is out of range"),
                )
            })?,
            // `-0` is an integer (JSON parses it as a float: the only
            // negative zero an integer literal gives); `0.0` is not.
            Some(Scalar::F64(v)) if v == 0.0 && v.is_sign_negative() => 0,
            Some(Scalar::F64(v)) => {
                if v.is_finite() && v.fract() == 0.0 && v.abs() >= 9.2e18 {
                    // An integer beyond 64 bits (JSON parses it as a float,
                    // whose digits would not be the line's).
                    return Err(Invalid::new(
                        InvalidReason::BadTimestamp,
                        "ts is an integer beyond 64 bits: out of range (years 0000 to 9999)",
                    ));
                }
                let why = if v.is_finite() && v.fract() == 0.0 {
                    // A whole number written with a point or an exponent.
                    format!(
                        "is written as a decimal number (a point or an exponent): write integer milliseconds, as {v:.0}"
                    )
                } else {
                    "is not an integer number of milliseconds".to_string()
                };
                return Err(Invalid::new(
                    InvalidReason::BadTimestamp,
                    format!("ts {v} {why}"),
                ));
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
        // Event times are those RFC 3339 can write (years 0000–9999): every
        // time crisiswatch writes (transitions, reports) reads back, and
        // window arithmetic cannot overflow.
        const TS_MIN: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
        const TS_MAX: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        if !(TS_MIN..=TS_MAX).contains(&ts) {
            return Err(Invalid::new(
                InvalidReason::BadTimestamp,
                format!("ts {ts} is out of range (years 0000 to 9999)"),
            ));
        }
        let customer_id = match self.customer_id {
            None | Some(Scalar::Null) => None,
            // An empty id names no customer (it was counted as one, shared
            // by every event that left it empty).
            Some(Scalar::Str(s)) if s.is_empty() => None,
            Some(Scalar::Str(s)) => Some(s),
            Some(Scalar::I64(v)) => Some(Cow::Owned(v.to_string())),
            Some(Scalar::U64(v)) => Some(Cow::Owned(v.to_string())),
            // An integer beyond 64 bits (JSON parses it as a float): its
            // digits are lost, and two customers could become one.
            Some(Scalar::F64(v)) if v.is_finite() && v.fract() == 0.0 && v.abs() >= 9.2e18 => {
                return Err(Invalid::new(
                    InvalidReason::WrongType,
                    "customer_id is an integer beyond 64 bits: write it as a string",
                ))
            }
            Some(other) => {
                return Err(Invalid::new(
                    InvalidReason::WrongType,
                    format!("customer_id is {}, expected a string", other.type_name()),
                ))
            }
        };
        let ref_id = match self.ref_id {
            None | Some(Scalar::Null) => None,
            v => Some(required_str("ref_id", v)?),
        };
        if ref_id.as_ref().is_some_and(|r| r.len() > MAX_ID_BYTES) {
            return Err(Invalid::new(
                InvalidReason::IdTooLong,
                format!("ref_id is longer than the {MAX_ID_BYTES}-byte limit of an id"),
            ));
        }
        let score = optional_number("score", self.score)?;
        let sentiment = optional_number("sentiment", self.sentiment)?;
        check_range("score", score, limits.score_range, "engine.score_range")?;
        check_range(
            "sentiment",
            sentiment,
            limits.sentiment_range,
            "engine.sentiment_range",
        )?;
        check_future(ts, limits, now_ms)?;
        out.id = id;
        out.kind = kind;
        out.ts = ts;
        out.customer_id = customer_id;
        out.ref_id = ref_id;
        out.score = score;
        out.sentiment = sentiment;
        Ok(())
    }
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
