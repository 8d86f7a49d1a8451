//! The wire format of the generated lines: an event as the generator plans it
//! ([`Spec`]), formatted into the contract's JSON (RFC 3339 or integer `ts`),
//! queued with its noise (late copies, redeliveries), and the malformed lines.

use super::*;

/// Event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Order,
    Complaint,
    Feedback,
    Cancellation,
}

impl Kind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Kind::Order => "order",
            Kind::Complaint => "complaint",
            Kind::Feedback => "feedback",
            Kind::Cancellation => "cancellation",
        }
    }
}

/// A compact, not yet formatted event.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spec {
    pub(super) ts: i64,
    pub(super) kind: Kind,
    pub(super) product: u8,
    pub(super) region: u8,
    pub(super) channel: u8,
    pub(super) customer: u32,
    /// Index into [`CATEGORIES`] (complaints only).
    pub(super) category: u8,
    /// Index into [`SEVERITIES`] (complaints only).
    pub(super) severity: u8,
    /// NPS score 0–10 (feedback only).
    pub(super) score: u8,
    /// Sentiment in hundredths, −100…100 (complaints and feedback).
    pub(super) sentiment: i16,
    /// Write `ts` as integer milliseconds instead of RFC 3339.
    pub(super) int_ts: bool,
}

impl Spec {
    /// Sets the complaint fields (`category`, `severity` are table indices < 8).
    pub(super) fn complaint(mut self, category: usize, severity: usize, sentiment: i16) -> Self {
        self.category = category as u8;
        self.severity = severity as u8;
        self.sentiment = sentiment;
        self
    }

    pub(super) fn new(
        ts: i64,
        kind: Kind,
        product: usize,
        region: usize,
        channel: usize,
        customer: u32,
        int_ts: bool,
    ) -> Self {
        // The indices come from the fixed tables (< 8), so they fit u8.
        Spec {
            ts,
            kind,
            product: product as u8,
            region: region as u8,
            channel: channel as u8,
            customer,
            category: 0,
            severity: 0,
            score: 0,
            sentiment: 0,
            int_ts,
        }
    }
}

impl Generator {
    /// Formats one event, assigns its id and queues it (plus any noise) for emission.
    pub(super) fn emit_spec(&mut self, spec: &Spec) {
        let id = self.next_id;
        self.next_id += 1;
        if spec.kind == Kind::Complaint {
            self.respond(id, spec);
        }
        let mut line = Vec::with_capacity(256);
        self.write_event(&mut line, id, spec);
        if !self.settings.noise {
            self.push_pending(spec.ts, line);
            return;
        }
        let last = self.end_ms - 1;
        let mut emit = spec.ts;
        if self.noise_rng.gen_bool(NOISE_LATE) {
            emit = (spec.ts + self.noise_rng.gen_range(5_000..=60_000)).min(last);
        }
        if self.noise_rng.gen_bool(NOISE_DUPLICATE) {
            let again = (emit + self.noise_rng.gen_range(1_000..=8_000)).min(last);
            self.push_pending(again, line.clone());
        }
        if self.noise_rng.gen_bool(NOISE_MALFORMED) {
            let bad = self.malformed_line(spec.ts);
            self.push_pending(spec.ts, bad);
        }
        self.push_pending(emit, line);
    }

    /// Writes the JSON object for `spec` into `buf`.
    pub(super) fn write_event(&mut self, buf: &mut Vec<u8>, id: u64, spec: &Spec) {
        buf.extend_from_slice(&self.id_prefix);
        push_u64(buf, id);
        buf.extend_from_slice(b"\",\"type\":\"");
        buf.extend_from_slice(spec.kind.as_str().as_bytes());
        buf.extend_from_slice(b"\",\"ts\":");
        self.write_ts(buf, spec.ts, spec.int_ts);
        buf.extend_from_slice(b",\"customer_id\":\"c-");
        push_u64(buf, u64::from(CUSTOMER_ID_BASE + spec.customer));
        buf.extend_from_slice(b"\",\"attrs\":{\"product\":\"");
        buf.extend_from_slice(PRODUCTS[usize::from(spec.product)].as_bytes());
        buf.extend_from_slice(b"\",\"region\":\"");
        buf.extend_from_slice(REGIONS[usize::from(spec.region)].as_bytes());
        buf.extend_from_slice(b"\",\"channel\":\"");
        buf.extend_from_slice(CHANNELS[usize::from(spec.channel)].as_bytes());
        buf.extend_from_slice(b"\",\"segment\":\"");
        buf.extend_from_slice(SEGMENTS[segment_of(spec.customer)].as_bytes());
        buf.push(b'"');
        match spec.kind {
            Kind::Complaint => {
                buf.extend_from_slice(b",\"category\":\"");
                buf.extend_from_slice(CATEGORIES[usize::from(spec.category)].as_bytes());
                buf.extend_from_slice(b"\",\"severity\":\"");
                buf.extend_from_slice(SEVERITIES[usize::from(spec.severity)].as_bytes());
                buf.extend_from_slice(b"\"},\"sentiment\":");
                push_hundredths(buf, spec.sentiment);
            }
            Kind::Feedback => {
                buf.extend_from_slice(b"},\"score\":");
                push_u64(buf, u64::from(spec.score));
                buf.extend_from_slice(b",\"sentiment\":");
                push_hundredths(buf, spec.sentiment);
            }
            Kind::Order | Kind::Cancellation => buf.push(b'}'),
        }
        buf.push(b'}');
    }

    /// Writes `ts` as `"YYYY-MM-DDTHH:MM:SS.mmmZ"`, or as integer ms when
    /// `int_ts` is set or the time has no four-digit-year RFC 3339 form.
    pub(super) fn write_ts(&mut self, buf: &mut Vec<u8>, ts: i64, int_ts: bool) {
        if !int_ts {
            let minute = ts.div_euclid(MINUTE_MS) * MINUTE_MS;
            if minute != self.ts_minute {
                self.ts_minute = minute;
                self.ts_prefix.clear();
                if let Some(dt) = DateTime::<Utc>::from_timestamp_millis(minute) {
                    let s = dt.format("%Y-%m-%dT%H:%M:").to_string();
                    if s.len() == 17 && s.as_bytes()[0].is_ascii_digit() {
                        self.ts_prefix.extend_from_slice(s.as_bytes());
                    }
                }
            }
            if !self.ts_prefix.is_empty() {
                // 0 ≤ rem < 60_000, so every digit below is in 0..=9.
                let rem = ts - minute;
                let (sec, ms) = (rem / 1000, rem % 1000);
                buf.push(b'"');
                buf.extend_from_slice(&self.ts_prefix);
                buf.extend_from_slice(&[
                    b'0' + (sec / 10) as u8,
                    b'0' + (sec % 10) as u8,
                    b'.',
                    b'0' + (ms / 100) as u8,
                    b'0' + (ms / 10 % 10) as u8,
                    b'0' + (ms % 10) as u8,
                    b'Z',
                    b'"',
                ]);
                return;
            }
        }
        push_i64(buf, ts);
    }

    /// One malformed line (noise), of one of five kinds.
    pub(super) fn malformed_line(&mut self, ts: i64) -> Vec<u8> {
        let n = self.next_bad;
        self.next_bad += 1;
        let seed = self.settings.seed;
        let attrs = "\"attrs\":{\"product\":\"tv-max\",\"region\":\"apac\",\
                     \"channel\":\"web\",\"segment\":\"consumer\"}";
        let line = match self.noise_rng.gen_range(0..5) {
            0 => format!("<<garbled {seed}-{n}>> type=order ts={ts} {{\"id\":"),
            1 => format!("[{{\"id\":\"bad-{seed}-{n}\",\"type\":\"order\",\"ts\":{ts}}}]"),
            2 => format!(
                "{{\"id\":\"bad-{seed}-{n}\",\"type\":\"order\",\"customer_id\":\"c-100000\",{attrs}}}"
            ),
            3 => format!(
                "{{\"id\":\"bad-{seed}-{n}\",\"type\":\"order\",\"ts\":\"yesterday\",\
                 \"customer_id\":\"c-100000\",{attrs}}}"
            ),
            _ => {
                let mut id = format!("bad-{seed}-{n}-");
                while id.len() < 300 {
                    id.push('x');
                }
                format!(
                    "{{\"id\":\"{id}\",\"type\":\"order\",\"ts\":{ts},\
                     \"customer_id\":\"c-100000\",{attrs}}}"
                )
            }
        };
        line.into_bytes()
    }
}
