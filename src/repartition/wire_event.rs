//! The shard topic's event body: a decoded, validated [`Event`] in a compact
//! binary form. The splitter decodes and validates an input line once; the
//! owners read this body back without parsing JSON or validating again
//! (README "Running several instances", `docs/architecture.md` "Scale-out").
//!
//! Layout (integers are LEB128 varints, signed ones zigzag-encoded; a string
//! is its byte length, then its UTF-8 bytes):
//!
//! ```text
//! ts · id · type · flags (1 customer, 2 ref, 4 score, 8 sentiment)
//!    · [customer] · [ref] · [score: f64 bits, 8 bytes LE] · [sentiment: likewise]
//!    · attribute count · (key · value)*   (input order, as decoded)
//! ```
//!
//! The event comes back exactly as the splitter decoded it (the topic's
//! default type already applied; scores bit for bit), borrowing its strings
//! from the body: no allocation beyond the attribute list's inline storage.
//! Reading never panics on any bytes (a wrong body is an error).

use std::borrow::Cow;

use smallvec::SmallVec;

use crate::event::Event;

/// A body that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event body does not decode: {0}")]
pub struct BodyError(&'static str);

const CUSTOMER: u8 = 1;
const REFERENCE: u8 = 2;
const SCORE: u8 = 4;
const SENTIMENT: u8 = 8;

/// Appends the body of `ev` to `out`.
pub(crate) fn encode(ev: &Event<'_>, out: &mut Vec<u8>) {
    put_uint(out, zigzag(ev.ts));
    put_str(out, &ev.id);
    put_str(out, &ev.kind);
    let mut flags = 0u8;
    for (present, flag) in [
        (ev.customer_id.is_some(), CUSTOMER),
        (ev.ref_id.is_some(), REFERENCE),
        (ev.score.is_some(), SCORE),
        (ev.sentiment.is_some(), SENTIMENT),
    ] {
        if present {
            flags |= flag;
        }
    }
    out.push(flags);
    for s in [&ev.customer_id, &ev.ref_id].into_iter().flatten() {
        put_str(out, s);
    }
    for v in [ev.score, ev.sentiment].into_iter().flatten() {
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    put_uint(out, ev.attrs.len() as u64);
    for (k, v) in &ev.attrs {
        put_str(out, k);
        put_str(out, v);
    }
}

/// The event time and the id's position in `body`, without reading the
/// rest (what the owner orders held events by).
pub(crate) fn head(body: &[u8]) -> Result<(i64, (usize, usize)), BodyError> {
    let mut r = Reader { bytes: body, at: 0 };
    let ts = unzigzag(r.uint()?);
    let len = r.len()?;
    let start = r.at;
    r.take(len)?;
    Ok((ts, (start, start + len)))
}

/// The event of a body written by [`encode`], borrowing from it.
pub(crate) fn decode(body: &[u8]) -> Result<Event<'_>, BodyError> {
    let mut r = Reader { bytes: body, at: 0 };
    let ts = unzigzag(r.uint()?);
    let id = r.str()?;
    let kind = r.str()?;
    let flags = r.byte()?;
    if flags & !(CUSTOMER | REFERENCE | SCORE | SENTIMENT) != 0 {
        return Err(BodyError("unknown flags"));
    }
    let customer_id = if flags & CUSTOMER != 0 {
        Some(r.str()?)
    } else {
        None
    };
    let ref_id = if flags & REFERENCE != 0 {
        Some(r.str()?)
    } else {
        None
    };
    let score = if flags & SCORE != 0 {
        Some(r.f64()?)
    } else {
        None
    };
    let sentiment = if flags & SENTIMENT != 0 {
        Some(r.f64()?)
    } else {
        None
    };
    let count = r.uint()?;
    let mut attrs = SmallVec::new();
    for _ in 0..count {
        // Each attribute takes at least two bytes: a wrong count ends at
        // the end of the body, never in a large allocation.
        let k = r.str()?;
        let v = r.str()?;
        attrs.push((k, v));
    }
    if r.at != body.len() {
        return Err(BodyError("trailing bytes"));
    }
    Ok(Event {
        id,
        kind,
        ts,
        customer_id,
        ref_id,
        attrs,
        score,
        sentiment,
    })
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_uint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, BodyError> {
        let b = *self.bytes.get(self.at).ok_or(BodyError("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    fn uint(&mut self) -> Result<u64, BodyError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(BodyError("varint overflows 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                // One way to write each number: the body of an event is unique.
                if b == 0 && shift > 0 {
                    return Err(BodyError("varint not minimal"));
                }
                return Ok(v);
            }
        }
        Err(BodyError("varint longer than 10 bytes"))
    }

    fn len(&mut self) -> Result<usize, BodyError> {
        usize::try_from(self.uint()?).map_err(|_| BodyError("length overflows"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], BodyError> {
        let end = self.at.checked_add(n).ok_or(BodyError("truncated"))?;
        let s = self.bytes.get(self.at..end).ok_or(BodyError("truncated"))?;
        self.at = end;
        Ok(s)
    }

    fn str(&mut self) -> Result<Cow<'a, str>, BodyError> {
        let n = self.len()?;
        let s = self.take(n)?;
        std::str::from_utf8(s)
            .map(Cow::Borrowed)
            .map_err(|_| BodyError("not UTF-8"))
    }

    fn f64(&mut self) -> Result<f64, BodyError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(f64::from_bits(u64::from_le_bytes(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode as decode_json, DecodeLimits};
    use proptest::prelude::*;

    /// Equal, with scores compared bit for bit (`-0.0` is not `0.0` here).
    fn same(a: &Event<'_>, b: &Event<'_>) -> bool {
        let bits = |v: Option<f64>| v.map(f64::to_bits);
        a.clone().into_owned() == b.clone().into_owned()
            && bits(a.score) == bits(b.score)
            && bits(a.sentiment) == bits(b.sentiment)
    }

    fn round_trip(ev: &Event<'_>) {
        let mut body = Vec::new();
        encode(ev, &mut body);
        let back = decode(&body).expect("decodes");
        assert!(same(&back, ev), "{back:?} != {ev:?}");
        let (ts, (a, b)) = head(&body).expect("head");
        assert_eq!(ts, ev.ts);
        assert_eq!(&body[a..b], ev.id.as_bytes());
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9_-]{0,12}",
            any::<String>(),
            "[ä😀\u{0}\u{7f}\u{ffff}a-z]{0,40}",
            "x{200,3000}",
        ]
    }

    fn number() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            Just(-0.0),
            Just(f64::MAX),
            Just(f64::MIN),
            Just(f64::MIN_POSITIVE),
            Just(5e-324),
        ]
    }

    fn event() -> impl Strategy<Value = Event<'static>> {
        (
            (any::<i64>(), text(), text()),
            (
                prop::option::of(text()),
                prop::option::of(text()),
                prop::option::of(number()),
                prop::option::of(number()),
            ),
            prop::collection::vec((text(), text()), 0..20),
        )
            .prop_map(
                |((ts, id, kind), (customer, reference, score, sentiment), attrs)| Event {
                    id: Cow::Owned(id),
                    kind: Cow::Owned(kind),
                    ts,
                    customer_id: customer.map(Cow::Owned),
                    ref_id: reference.map(Cow::Owned),
                    attrs: attrs
                        .into_iter()
                        .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v)))
                        .collect(),
                    score,
                    sentiment,
                },
            )
    }

    proptest! {
        #[test]
        fn any_event_comes_back_exactly(ev in event()) {
            round_trip(&ev);
        }

        /// Whatever the bytes: an error or an event, never a panic; and an
        /// event that decodes encodes back to the same bytes.
        #[test]
        fn any_bytes_decode_or_fail(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(ev) = decode(&bytes) {
                let mut again = Vec::new();
                encode(&ev, &mut again);
                prop_assert_eq!(&again, &bytes);
            }
            let _ = head(&bytes);
        }
    }

    #[test]
    fn decoded_lines_come_back_exactly() {
        let lines: [&[u8]; 5] = [
            br#"{"id":"a1","type":"complaint","ts":5,"customer_id":"c","attrs":{"product":"p","region":"r"},"score":3}"#,
            r#"{"id":"a\u0032","type":"order","ts":"2026-11-20T00:00:00.123+02:00","attrs":{"k\"":"v\\","x":"ÿ😀\ud83d\ude00"}}"#.as_bytes(),
            br#"{"id":"b","type":"response","ts":-1,"customer_id":42,"ref_id":"a\u0031","sentiment":-0.0}"#,
            br#"{"id":"c","type":"feedback","ts":253402300799999,"score":1e-300,"attrs":{"a":"1","a":"2"}}"#,
            b" {\"id\" : \"d\", \"type\": \"order\", \"ts\": 2} ",
        ];
        let limits = DecodeLimits {
            score_range: (f64::MIN, f64::MAX),
            ..DecodeLimits::default()
        };
        for raw in lines {
            let ev = decode_json(raw, &limits, None).expect("valid");
            round_trip(&ev);
        }
    }

    #[test]
    fn a_wrong_body_is_an_error() {
        let ev = decode_json(
            br#"{"id":"a","type":"x","ts":1,"attrs":{"k":"v"}}"#,
            &DecodeLimits::default(),
            None,
        )
        .expect("valid");
        let mut body = Vec::new();
        encode(&ev, &mut body);
        for cut in 0..body.len() {
            assert!(decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        // An attribute count far beyond the body: an error, no allocation.
        let mut many = body[..body.len() - 5].to_vec();
        put_uint(&mut many, u64::MAX);
        assert!(decode(&many).is_err());
        assert!(decode(&[0xff; 11]).is_err());
    }
}
