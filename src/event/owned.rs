//! [`OwnedEvent`]: a decoded event that owns its input, for holding it (in the
//! event-time sequencer) without decoding it a second time on release.
//!
//! The input is kept as it came, as text (the decoder already checked it is
//! UTF-8), followed by any string the decoder could not borrow from it (one
//! with escapes); each field is a span of that text. [`OwnedEvent::event`]
//! lends an [`Event`] borrowing from it: no parsing, no UTF-8 check, no
//! allocation beyond the attribute list's inline storage.
//!
//! An input that is not UTF-8 can still be a valid event: the full parser
//! skips an unknown field's string without checking it. Then the text holds
//! the event's own strings only and the input bytes are kept beside it.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::ops::Range;

use super::Event;

/// Position of a string in [`OwnedEvent::text`]: (start, end). 32 bits
/// each: `engine.max_event_bytes` is at most 256 MiB, and the text is at
/// most twice the input (see [`OwnedEvent::from_text`] for larger inputs).
type Span = (u32, u32);

/// A decoded event with its input (see the module docs). Ordered by
/// `(ts, id, order key of the input bytes)`, the sequencer's release order.
#[derive(Debug, Clone)]
pub struct OwnedEvent {
    ts: i64,
    /// `score` and `sentiment`, NaN when absent (a decoded value is finite):
    /// a smaller event is moved for less.
    score: f64,
    sentiment: f64,
    /// The input when it is UTF-8 (its first `raw_len` bytes), then the
    /// strings not borrowed from it.
    text: Box<str>,
    /// The input when it is not UTF-8 (then `text` holds the event's own
    /// strings only) or too long for 32-bit spans; `raw_len` is then 0.
    raw_bytes: Option<Box<Box<[u8]>>>,
    raw_len: u32,
    /// id, type, customer id (`(0, 0)` with `customer == false` when absent),
    /// ref id (likewise with `reference`), then each attribute's key and
    /// value, in input order.
    spans: Box<[Span]>,
    customer: bool,
    reference: bool,
}

impl OwnedEvent {
    /// Captures `ev`, decoded from `raw`. Checks `raw` is UTF-8; a decoder
    /// that already knows gives it to [`OwnedEvent::from_text`].
    pub(crate) fn new(ev: &Event<'_>, raw: &[u8]) -> Self {
        Self::from_text(ev, raw, std::str::from_utf8(raw).ok())
    }

    /// Captures `ev`, decoded from `raw`, which is `text` when it is UTF-8
    /// (`None`: it is not).
    ///
    /// A text longer than 32-bit spans can address (only possible for an
    /// input over 2 GiB, far beyond the largest `engine.max_event_bytes`)
    /// is kept with empty spans: it is then not lent back
    /// ([`OwnedEvent::event`] gives `None`).
    pub(crate) fn from_text(ev: &Event<'_>, raw: &[u8], text: Option<&str>) -> Self {
        let input = text.unwrap_or_default();
        let base = input.as_ptr() as usize;
        // Exactly the input's size: nothing to copy is the usual case, and a
        // boxed string with spare capacity would be reallocated.
        let mut buf = String::with_capacity(input.len());
        buf.push_str(input);
        let mut spans: Vec<Span> = Vec::with_capacity(4 + 2 * ev.attrs.len());
        let mut span_of = |s: &str| -> Span {
            let at = (s.as_ptr() as usize).wrapping_sub(base);
            let (a, b) = if at <= input.len() && s.len() <= input.len() - at {
                // Borrowed from the input.
                (at, at + s.len())
            } else {
                let start = buf.len();
                buf.push_str(s);
                (start, buf.len())
            };
            // Both within `buf`, whose length is checked below.
            (a as u32, b as u32)
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
        if u32::try_from(buf.len()).is_err() {
            spans.clear();
        }
        OwnedEvent {
            ts: ev.ts,
            score: ev.score.unwrap_or(f64::NAN),
            sentiment: ev.sentiment.unwrap_or(f64::NAN),
            text: buf.into_boxed_str(),
            raw_bytes: (text.is_none() || u32::try_from(input.len()).is_err())
                .then(|| Box::new(Box::from(raw))),
            raw_len: u32::try_from(input.len()).unwrap_or(0),
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
            .and_then(|&s| self.str(s))
            .unwrap_or_default()
    }

    /// The text the event's strings lie in ([`OwnedEvent::attr_ranges`]).
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Each attribute's key and value as byte ranges of
    /// [`OwnedEvent::text`], in input order: read without lending the
    /// whole event.
    pub(crate) fn attr_ranges(&self) -> impl Iterator<Item = (Range<usize>, Range<usize>)> + '_ {
        let range = |(a, b): Span| a as usize..b as usize;
        self.spans
            .get(4..)
            .unwrap_or_default()
            .chunks_exact(2)
            .map(move |kv| (range(kv[0]), range(kv[1])))
    }

    /// The input bytes the event was decoded from.
    pub(crate) fn raw(&self) -> &[u8] {
        match &self.raw_bytes {
            Some(b) => &b[..],
            None => self
                .text
                .as_bytes()
                .get(..self.raw_len as usize)
                .unwrap_or_default(),
        }
    }

    #[inline]
    fn str(&self, (a, b): Span) -> Option<&str> {
        self.text.get(a as usize..b as usize)
    }

    /// The id's bytes.
    fn id_bytes(&self) -> &[u8] {
        self.spans
            .first()
            .and_then(|&s| self.str(s))
            .map_or(&[], str::as_bytes)
    }

    /// The event, borrowing from this buffer. `None` never happens for an
    /// event that decoded from an input of less than 2 GiB.
    pub(crate) fn event(&self) -> Option<Event<'_>> {
        let mut ev = Event::default();
        self.event_into(&mut ev).then_some(ev)
    }

    /// [`OwnedEvent::event`] into the caller's `out` (every field written):
    /// the event is large, and built in place it is not moved on its way
    /// out. False (and `out` holds no particular event) where `event` gives
    /// `None`.
    pub(crate) fn event_into<'s>(&'s self, out: &mut Event<'s>) -> bool {
        self.lend(out).is_some()
    }

    #[inline(always)]
    fn lend<'s>(&'s self, out: &mut Event<'s>) -> Option<()> {
        let s = |span: Span| self.str(span).map(Cow::Borrowed);
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
        let present = |v: f64| (!v.is_nan()).then_some(v);
        out.score = present(self.score);
        out.sentiment = present(self.sentiment);
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
    /// the order key is [`super::order::order_key`] of the raw bytes.
    fn cmp(&self, other: &Self) -> Ordering {
        self.ts
            .cmp(&other.ts)
            .then_with(|| self.id_bytes().cmp(other.id_bytes()))
            .then_with(|| super::order::tie_break(self.raw(), other.raw()))
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
                let mut slot = Event::default();
                let held = crate::event::decode_held(&raw, &DecodeLimits::default(), None, None, &mut slot);
                proptest::prop_assert!(held.is_ok());
                if let Ok(held) = held {
                    proptest::prop_assert_eq!(held.event().map(Event::into_owned), Some(ev.clone().into_owned()));
                    proptest::prop_assert_eq!(held.raw(), &raw[..]);
                    // The attributes read as ranges are the lent event's.
                    let text = held.text();
                    let pairs: Vec<(&str, &str)> = held
                        .attr_ranges()
                        .map(|(k, v)| (&text[k], &text[v]))
                        .collect();
                    let lent: Vec<(&str, &str)> =
                        ev.attrs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
                    proptest::prop_assert_eq!(&pairs, &lent);
                    proptest::prop_assert_eq!(pairs, vec![("k", value.as_str())]);
                }
                proptest::prop_assert_eq!(owned.event().map(Event::into_owned), Some(ev.into_owned()));
            }
        }
    }

    /// The decoder's own capture (which knows the input is UTF-8 when its
    /// fast path took it) holds what `new` holds, with few or many
    /// attributes, whether strings are borrowed or unescaped, and when the
    /// input is not UTF-8.
    #[test]
    fn decode_held_holds_what_new_holds() {
        let many: String = (0..9)
            .map(|i| format!("\"k{i}\":\"v{i}\""))
            .collect::<Vec<_>>()
            .join(",");
        let many = format!(r#"{{"id":"m","type":"order","ts":9,"attrs":{{{many}}}}}"#);
        let lines: [&[u8]; 5] = [
            br#"{"id":"a1","type":"complaint","ts":5,"customer_id":"c","attrs":{"product":"p","region":"r"},"score":3}"#,
            br#"{"id":"a\u0032","type":"order","ts":"2026-11-20T00:00:00Z","attrs":{"k\"":"v\\","x":"y"}}"#,
            b"{\"id\":\"b\",\"type\":\"order\",\"ts\":2,\"junk\":\"\xff\",\"attrs\":{\"p\":\"\\u00e9\"}}",
            br#"{"id":"r","type":"response","ts":1,"customer_id":42,"ref_id":"a1"}"#,
            many.as_bytes(),
        ];
        for raw in lines {
            let limits = DecodeLimits::default();
            let ev = decode(raw, &limits, None).expect("valid");
            let mut slot = Event::default();
            let held =
                crate::event::decode_held(raw, &limits, None, None, &mut slot).expect("valid");
            let new = OwnedEvent::new(&ev, raw);
            for h in [&held, &new] {
                assert_eq!(
                    h.event().map(Event::into_owned),
                    Some(ev.clone().into_owned())
                );
                assert_eq!(h.raw(), raw);
                assert_eq!(h.kind(), ev.kind);
                assert_eq!(h.cmp(&new), Ordering::Equal);
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
        let key = crate::event::order::order_key;
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
