//! [`OwnedEvent`]: a decoded event that owns its input, for holding it (in the
//! event-time sequencer) without decoding it a second time on release.
//!
//! The input bytes are kept as they came, followed by any string the decoder
//! could not borrow from them (one with escapes); each field is a span of that
//! buffer. [`OwnedEvent::event`] lends an [`Event`] borrowing from it: no
//! parsing, no allocation beyond the attribute list's inline storage.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::Event;

/// Position of a string in [`OwnedEvent::buf`]: (start, end).
type Span = (usize, usize);

/// A decoded event with its raw bytes (see the module docs). Ordered by
/// `(ts, id, order key of the raw bytes)`, the sequencer's release order.
#[derive(Debug, Clone)]
pub struct OwnedEvent {
    ts: i64,
    score: Option<f64>,
    sentiment: Option<f64>,
    /// The input, then the strings not borrowed from it.
    buf: Box<[u8]>,
    /// Length of the input at the front of `buf`.
    raw_len: usize,
    /// id, type, customer id (`(0, 0)` with `customer == false` when absent),
    /// ref id (likewise with `reference`), then each attribute's key and
    /// value, in input order.
    spans: Box<[Span]>,
    customer: bool,
    reference: bool,
}

impl OwnedEvent {
    /// Captures `ev`, decoded from `raw`.
    pub(crate) fn new(ev: &Event<'_>, raw: &[u8]) -> Self {
        let mut extra: Vec<u8> = Vec::new();
        let mut spans: Vec<Span> = Vec::with_capacity(4 + 2 * ev.attrs.len());
        let mut span_of = |s: &str| -> Span {
            let base = raw.as_ptr() as usize;
            let at = (s.as_ptr() as usize).wrapping_sub(base);
            if at <= raw.len() && s.len() <= raw.len() - at {
                // Borrowed from the input.
                return (at, at + s.len());
            }
            let start = raw.len() + extra.len();
            extra.extend_from_slice(s.as_bytes());
            (start, raw.len() + extra.len())
        };
        spans.push(span_of(&ev.id));
        spans.push(span_of(&ev.kind));
        spans.push(match &ev.customer_id {
            Some(c) => span_of(c),
            None => (0, 0),
        });
        spans.push(match &ev.ref_id {
            Some(r) => span_of(r),
            None => (0, 0),
        });
        for (k, v) in &ev.attrs {
            spans.push(span_of(k));
            spans.push(span_of(v));
        }
        let buf: Box<[u8]> = if extra.is_empty() {
            Box::from(raw)
        } else {
            let mut b = Vec::with_capacity(raw.len() + extra.len());
            b.extend_from_slice(raw);
            b.extend_from_slice(&extra);
            b.into_boxed_slice()
        };
        OwnedEvent {
            ts: ev.ts,
            score: ev.score,
            sentiment: ev.sentiment,
            buf,
            raw_len: raw.len(),
            spans: spans.into_boxed_slice(),
            customer: ev.customer_id.is_some(),
            reference: ev.ref_id.is_some(),
        }
    }

    /// Event time (ms).
    pub(crate) fn ts(&self) -> i64 {
        self.ts
    }

    /// The event's type.
    pub(crate) fn kind(&self) -> &str {
        self.spans
            .get(1)
            .and_then(|&s| std::str::from_utf8(self.bytes(s)).ok())
            .unwrap_or_default()
    }

    /// The input bytes the event was decoded from.
    pub(crate) fn raw(&self) -> &[u8] {
        &self.buf[..self.raw_len]
    }

    fn bytes(&self, (a, b): Span) -> &[u8] {
        self.buf.get(a..b).unwrap_or_default()
    }

    /// The id's bytes.
    fn id_bytes(&self) -> &[u8] {
        self.spans.first().map_or(&[], |&s| self.bytes(s))
    }

    /// The event, borrowing from this buffer. `None` never happens for an
    /// event that decoded: each span was a `str`. The whole buffer is
    /// checked to be UTF-8 at once (the fast case); if it is not, each span
    /// on its own: the full parser skips an unknown field's string without
    /// checking it, so such a line is a valid event whose input is not UTF-8.
    pub(crate) fn event(&self) -> Option<Event<'_>> {
        let mut ev = Event::default();
        self.event_into(&mut ev).then_some(ev)
    }

    /// [`OwnedEvent::event`] into the caller's `out` (every field written):
    /// the event is large, and built in place it is not moved on its way
    /// out. False (and `out` holds no particular event) where `event` gives
    /// `None`.
    pub(crate) fn event_into<'s>(&'s self, out: &mut Event<'s>) -> bool {
        match std::str::from_utf8(&self.buf) {
            Ok(text) => self.lend(|(a, b)| text.get(a..b), out),
            Err(_) => self.lend(|span| std::str::from_utf8(self.bytes(span)).ok(), out),
        }
        .is_some()
    }

    #[inline(always)]
    fn lend<'s>(
        &'s self,
        text: impl Fn(Span) -> Option<&'s str>,
        out: &mut Event<'s>,
    ) -> Option<()> {
        let s = |span: Span| text(span).map(Cow::Borrowed);
        let (id, kind, cust, reference) = (
            *self.spans.first()?,
            *self.spans.get(1)?,
            *self.spans.get(2)?,
            *self.spans.get(3)?,
        );
        out.attrs.clear();
        for kv in self.spans.get(4..)?.chunks_exact(2) {
            out.attrs.push((s(kv[0])?, s(kv[1])?));
        }
        out.id = s(id)?;
        out.kind = s(kind)?;
        out.ts = self.ts;
        out.customer_id = if self.customer { Some(s(cust)?) } else { None };
        out.ref_id = if self.reference {
            Some(s(reference)?)
        } else {
            None
        };
        out.score = self.score;
        out.sentiment = self.sentiment;
        Some(())
    }
}

impl PartialEq for OwnedEvent {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for OwnedEvent {}

impl PartialOrd for OwnedEvent {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OwnedEvent {
    /// `(ts, id, order key)`: ids compare as their bytes, as `str` does;
    /// the order key is [`crate::sequencer::order_key`] of the raw bytes.
    fn cmp(&self, other: &Self) -> Ordering {
        self.ts
            .cmp(&other.ts)
            .then_with(|| self.id_bytes().cmp(other.id_bytes()))
            .then_with(|| crate::sequencer::tie_break(self.raw(), other.raw()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode, DecodeLimits};

    #[test]
    fn gives_back_the_decoded_event() {
        let lines: [&[u8]; 4] = [
            br#"{"id":"a1","type":"complaint","ts":5,"customer_id":"c","attrs":{"product":"p","region":"r"},"score":3}"#,
            br#"{"id":"a\u0032","type":"order","ts":"2026-11-20T00:00:00Z","attrs":{"k\"":"v\\","x":"y"}}"#,
            br#"{"id":"b","type":"response","ts":1,"customer_id":42,"ref_id":"a\u0031","sentiment":-0.5}"#,
            b" {\"id\" : \"c\", \"type\": \"order\", \"ts\": 2} ",
        ];
        for raw in lines {
            let ev = decode(raw, &DecodeLimits::default(), None).expect("valid");
            let owned = OwnedEvent::new(&ev, raw);
            let back = owned.event().expect("utf-8").into_owned();
            assert_eq!(back, ev.clone().into_owned());
            assert_eq!(owned.raw(), raw);
            assert_eq!(owned.ts(), ev.ts);
        }
    }

    /// The full parser skips an unknown field without checking that its
    /// string is UTF-8: such a line is a valid event, and holding it must
    /// lend it back (an event held and then not lent would be lost,
    /// uncounted, and its offset never committed).
    #[test]
    fn lends_an_event_whose_skipped_field_is_not_utf8() {
        let lines: [&[u8]; 3] = [
            b"{\"id\":\"a\",\"type\":\"order\",\"ts\":1,\"junk\":\"\xff\xfe\"}",
            b"{\"junk\":[\"\xc3\"],\"id\":\"b\",\"type\":\"order\",\"ts\":2,\"attrs\":{\"p\":\"\\u00e9\"}}",
            b"{\"id\":\"c\",\"type\":\"order\",\"ts\":3,\"x\":{\"y\":\"\x80\"}}",
        ];
        for raw in lines {
            assert!(std::str::from_utf8(raw).is_err());
            let ev = decode(raw, &DecodeLimits::default(), None).expect("a valid event");
            let owned = OwnedEvent::new(&ev, raw);
            let back = owned.event().map(Event::into_owned);
            assert_eq!(back, Some(ev.clone().into_owned()), "{raw:?}");
            assert_eq!(owned.kind(), "order");
            assert_eq!(owned.raw(), raw);
        }
    }

    proptest::proptest! {
        /// Any bytes in an unknown field's string, any escapes in the
        /// event's own strings: what decodes is lent back as it decoded.
        #[test]
        fn lends_back_whatever_decoded(
            junk in proptest::collection::vec(0x20u8..=0xff, 0..12),
            id in "[a-z\\\\\"é]{1,6}",
            value in "[a-z\\\\\"ü]{0,6}",
            junk_first in proptest::bool::ANY,
        ) {
            let junk: Vec<u8> = junk.into_iter().filter(|&b| b != b'"' && b != b'\\').collect();
            let esc = |s: &str| serde_json::to_string(s).unwrap_or_default();
            let mut raw = Vec::new();
            raw.extend_from_slice(b"{");
            let junk_field = [&b"\"junk\":\""[..], &junk, b"\","].concat();
            if junk_first {
                raw.extend_from_slice(&junk_field);
            }
            raw.extend_from_slice(format!("\"id\":{},\"type\":\"order\",", esc(&id)).as_bytes());
            if !junk_first {
                raw.extend_from_slice(&junk_field);
            }
            raw.extend_from_slice(format!("\"ts\":7,\"attrs\":{{\"k\":{}}}}}", esc(&value)).as_bytes());
            let ev = decode(&raw, &DecodeLimits::default(), None);
            proptest::prop_assert!(ev.is_ok(), "{:?}: {:?}", String::from_utf8_lossy(&raw), ev);
            if let Ok(ev) = ev {
                let owned = OwnedEvent::new(&ev, &raw);
                proptest::prop_assert_eq!(owned.event().map(Event::into_owned), Some(ev.into_owned()));
            }
        }
    }

    #[test]
    fn orders_by_time_id_then_bytes() {
        let mk = |raw: &'static [u8]| {
            let ev = decode(raw, &DecodeLimits::default(), None).expect("valid");
            OwnedEvent::new(&ev, raw)
        };
        let a = mk(br#"{"id":"b","type":"x","ts":1}"#);
        let b = mk(br#"{"id":"a","type":"x","ts":2}"#);
        let c = mk(br#"{"id":"b","type":"y","ts":2}"#);
        let d = mk(br#"{"type":"x","id":"b","ts":2}"#);
        assert!(a < b && b < c && b < d);
        // One time and id: by the order key of the bytes, not the bytes.
        let key = crate::sequencer::order_key;
        assert_eq!(
            c.cmp(&d),
            key(c.raw()).cmp(&key(d.raw())),
            "{:x} {:x}",
            key(c.raw()),
            key(d.raw())
        );
        assert_eq!(c.cmp(&c.clone()), Ordering::Equal);
    }
}
