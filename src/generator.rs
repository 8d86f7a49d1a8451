//! Seeded synthetic customer-event traffic for `crisiswatch demo` and the tests.
//!
//! The generator simulates a stream of customer events (orders, complaints,
//! NPS feedback and cancellations) over a period of *event time*, one JSON
//! object per line, in the same wire format the ingest path accepts:
//!
//! ```text
//! {"id":"e-7-1042","type":"complaint","ts":"2026-11-22T05:55:19.123Z","customer_id":"c-110293",
//!  "attrs":{"product":"router-x","region":"eu-west","channel":"social","segment":"vip",
//!           "category":"product_quality","severity":"high"},"sentiment":-0.80}
//! ```
//!
//! # Traffic model
//!
//! Simulated time is processed minute by minute. For each `(product, region)`
//! slice (5 products × 4 regions, uneven weights, each slice ≥ 2.7 % of the
//! volume) the number of orders in a minute is Poisson with mean
//! `orders_per_minute × slice weight × daily rhythm`, where the rhythm is a
//! smooth curve from 0.35 at 03:00 UTC to 1.0 at 14:00 UTC. Complaints (2 % of
//! orders), feedback (10 %, NPS ≈ 55 % promoters / 30 % passives / 15 %
//! detractors) and cancellations (0.4 %) are independent Poisson counts with
//! those means. Every event gets a uniformly random millisecond inside its
//! minute. Customers come from a pool of 200,000 ids with a stable region and
//! segment (70 % consumer, 20 % smb, 10 % vip); about 5 % of complaints come
//! from a customer who complained recently in the same slice.
//!
//! # Crises (ground truth)
//!
//! With [`GeneratorSettings::crises`] set, three playbook crises are injected
//! at fixed fractions of the period (hours given for a 24 h run starting at
//! midnight UTC) and reported by [`Generator::crises`]:
//!
//! * `quality_surge` (`product_quality_surge`, router-x × eu-west, 09:00–12:00):
//!   complaints ×8 (≈ 16 % of orders), mostly `product_quality` / `safety`
//!   with high severity, about half of the feedback from detractors, and about
//!   30 % of the crisis complaints from customers complaining 2–4 times.
//! * `social_spike` (`social_channel_spike`, phone-z × channel social,
//!   14:00–16:00): extra `service_attitude` complaints on the social channel
//!   at 6× phone-z's normal total complaint rate, strongly negative sentiment.
//! * `churn_wave` (`churn_wave`, us-east × vip, 18:00–21:00): cancellations
//!   ×12 (≈ 4.8 % of orders); about 60 % of the extra cancellations are
//!   preceded by a complaint from the same customer within the previous hour.
//!
//! Crisis traffic is drawn from its own random stream and only *added* to the
//! background (the one exception: feedback scores inside the quality-surge
//! slice and interval are pushed towards detractors), so everything outside
//! the crisis slices and intervals is exactly the traffic of a run without
//! crises: an alert rule tuned on the normal rates sees no false incidents.
//!
//! # Responses
//!
//! Every complaint gets a first response (`type = "response"`, `ref_id` =
//! the complaint's `id`, its own id `e-<seed>-r<N>`), 2–40 minutes later, or
//! 40 minutes to 4 hours later inside a complaint crisis (see
//! `generator/responses.rs`); the other events are exactly what they were
//! before responses existed. A response due after the period is not sent;
//! a history of consecutive periods hands it to the next period's generator
//! (`take_carry_over`, `carry_in`), so no backlog builds at the boundaries.
//!
//! # Noise
//!
//! With [`GeneratorSettings::noise`] set, the stream also carries, from a third
//! random stream (so the valid events are unchanged):
//!
//! * ≈ 0.05 % malformed lines (non-JSON text, a JSON array, an object without
//!   `ts`, `"ts":"yesterday"`, an object whose `id` is 300 characters long);
//! * ≈ 0.1 % exact redeliveries of a line, 1–8 s after the original;
//! * ≈ 1 % late events whose *emission* is 5–60 s after their `ts`.
//!
//! About 10 % of the events carry `ts` as integer epoch milliseconds instead
//! of an RFC 3339 string, so both accepted forms are exercised.
//!
//! # How the demo uses it
//!
//! `crisiswatch demo` builds a [`Generator`], then repeatedly advances a
//! simulated clock and calls [`Generator::generate_until`] to collect every
//! line whose emission time has been reached, feeding them to the pipeline as
//! if they arrived from the network. When the run is over it compares the
//! incidents raised against [`Generator::crises`]. The output depends only on
//! the settings: the same settings always give byte-identical lines in the
//! same order, however the clock is stepped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod crises;
mod responses;
mod sample;
mod shape;
mod wire;

pub use crises::Crisis;
use sample::*;
pub use shape::TrafficShape;
use wire::{Kind, Spec};

/// One minute in milliseconds; the simulation step.
const MINUTE_MS: i64 = 60_000;
/// One day in milliseconds.
const DAY_MS: i64 = 86_400_000;

const PRODUCTS: [&str; 5] = ["router-x", "phone-z", "tv-max", "laptop-pro", "earbuds-s"];
/// Share of the order volume per product (sums to 1).
const PRODUCT_WEIGHTS: [f64; 5] = [0.26, 0.22, 0.20, 0.17, 0.15];
const REGIONS: [&str; 4] = ["eu-west", "eu-north", "us-east", "apac"];
/// Share of the order volume per region (sums to 1); the smallest slice is
/// 0.15 × 0.18 = 2.7 % of all orders.
const REGION_WEIGHTS: [f64; 4] = [0.32, 0.18, 0.27, 0.23];
const CHANNELS: [&str; 6] = ["web", "app", "phone", "email", "store", "social"];
const SEGMENTS: [&str; 3] = ["consumer", "smb", "vip"];
const SEGMENT_WEIGHTS: [f64; 3] = [0.70, 0.20, 0.10];
const CATEGORIES: [&str; 8] = [
    "billing",
    "delivery",
    "product_quality",
    "service_attitude",
    "safety",
    "outage",
    "data_breach",
    "other",
];
const SEVERITIES: [&str; 3] = ["low", "medium", "high"];

// Indices into the tables above that the crises refer to.
const P_ROUTER_X: usize = 0;
const P_PHONE_Z: usize = 1;
const R_EU_WEST: usize = 0;
const R_US_EAST: usize = 2;
const CH_SOCIAL: usize = 5;
const SEG_VIP: usize = 2;
const CAT_SERVICE_ATTITUDE: usize = 3;

/// Channel mix per event type (web, app, phone, email, store, social).
const ORDER_CHANNELS: [f64; 6] = [0.48, 0.34, 0.04, 0.0, 0.14, 0.0];
const COMPLAINT_CHANNELS: [f64; 6] = [0.26, 0.20, 0.30, 0.16, 0.04, 0.04];
const FEEDBACK_CHANNELS: [f64; 6] = [0.36, 0.36, 0.0, 0.24, 0.02, 0.02];
const CANCEL_CHANNELS: [f64; 6] = [0.40, 0.22, 0.28, 0.08, 0.02, 0.0];

/// Normal complaint categories; the severe ones (product_quality,
/// service_attitude, safety, outage, data_breach) add up to 25 %.
const NORMAL_CATEGORIES: [f64; 8] = [0.30, 0.30, 0.10, 0.08, 0.02, 0.045, 0.005, 0.15];
/// Categories of the extra quality-surge complaints: 90 % product_quality or safety.
const SURGE_CATEGORIES: [f64; 8] = [0.03, 0.03, 0.65, 0.02, 0.25, 0.01, 0.0, 0.01];
/// Categories of the complaints that precede churn-wave cancellations.
const CHURN_CATEGORIES: [f64; 8] = [0.35, 0.20, 0.05, 0.20, 0.0, 0.10, 0.0, 0.10];

/// Severity mixes (low, medium, high).
const SEVERITY_MILD: [f64; 3] = [0.55, 0.35, 0.10];
const SEVERITY_SEVERE: [f64; 3] = [0.25, 0.45, 0.30];
const SEVERITY_DANGER: [f64; 3] = [0.10, 0.40, 0.50];
const SEVERITY_SURGE: [f64; 3] = [0.05, 0.20, 0.75];
const SEVERITY_SOCIAL: [f64; 3] = [0.15, 0.45, 0.40];
const SEVERITY_CHURN: [f64; 3] = [0.10, 0.50, 0.40];

/// Normal per-order rates.
const COMPLAINT_RATE: f64 = 0.02;
const FEEDBACK_RATE: f64 = 0.10;
const CANCEL_RATE: f64 = 0.004;
/// Share of events whose `ts` is written as integer milliseconds.
const INT_TS_SHARE: f64 = 0.10;
/// Share of normal complaints made by a recent complainer of the same slice.
const REPEAT_SHARE: f64 = 0.05;
/// Recent complainers remembered per slice.
const RECENT_CAP: usize = 32;

/// Complaint multiplier in the quality-surge slice (extra = multiplier − 1).
const SURGE_MULT: f64 = 8.0;
/// Probability that an extra surge complaint comes from an earlier surge complainer.
const SURGE_REPEAT_SHARE: f64 = 0.34;
/// Probability that a feedback score in the surge slice is replaced by a
/// detractor score: 0.15 + 0.85 × 0.41 ≈ 0.50 detractors.
const SURGE_DETRACTOR_OVERRIDE: f64 = 0.41;
/// Extra social complaints, as a multiple of phone-z's normal complaint rate.
const SOCIAL_MULT: f64 = 6.0;
/// Cancellation multiplier in the churn-wave slice (extra = multiplier − 1).
const CHURN_MULT: f64 = 12.0;
/// Share of the extra churn cancellations preceded by a complaint.
const CHURN_PRECEDED_SHARE: f64 = 0.6;

/// Noise rates (per valid event; responses carry none).
const NOISE_LATE: f64 = 0.01;
const NOISE_DUPLICATE: f64 = 0.001;
const NOISE_MALFORMED: f64 = 0.0005;

/// Number of customer ids per run; ids are `c-100000` … `c-299999`.
const CUSTOMER_POOL: u32 = 200_000;
const CUSTOMER_ID_BASE: u32 = 100_000;

/// Parameters of a generated run. The output is a pure function of these.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorSettings {
    /// Seed of the random streams; also appears in every event id (`e-<seed>-<n>`).
    pub seed: u64,
    /// Simulated start of the period (event time, ms since the Unix epoch).
    pub start_ms: i64,
    /// Length of the simulated period in ms; events have `ts` in `[start, start + duration)`.
    pub duration_ms: i64,
    /// Total order rate across all slices at the daily peak (14:00 UTC).
    pub orders_per_minute: f64,
    /// Inject the three playbook crises (see [`Generator::crises`]).
    pub crises: bool,
    /// Inject malformed lines, duplicate ids and out-of-order events.
    pub noise: bool,
    /// The shape of the traffic (volume, channel and category mix, rates,
    /// products, regions, weekly rhythm); the demo's by default.
    pub shape: TrafficShape,
}

/// A half-open event-time interval `[start, end)`.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    end: i64,
}

impl Window {
    fn contains(&self, ts: i64) -> bool {
        ts >= self.start && ts < self.end
    }

    /// Intersection with `[lo, lo + len)` as `(start, len)`, if not empty.
    fn overlap(&self, lo: i64, len: i64) -> Option<(i64, i64)> {
        let a = self.start.max(lo);
        let b = self.end.min(lo + len);
        (b > a).then_some((a, b - a))
    }
}

/// Ring of the most recent complainers of one slice.
#[derive(Debug, Clone, Default)]
struct Recent {
    buf: Vec<u32>,
    next: usize,
}

impl Recent {
    fn push(&mut self, customer: u32) {
        if self.buf.len() < RECENT_CAP {
            self.buf.push(customer);
        } else {
            self.buf[self.next] = customer;
        }
        self.next = (self.next + 1) % RECENT_CAP;
    }

    fn pick(&self, rng: &mut ChaCha8Rng) -> Option<u32> {
        if self.buf.is_empty() {
            None
        } else {
            Some(self.buf[rng.gen_range(0..self.buf.len())])
        }
    }
}

/// A formatted line waiting for its emission time: `(emit_ms, seq, bytes)`.
/// `seq` is unique, so the bytes never take part in the ordering.
type Pending = Reverse<(i64, u64, Vec<u8>)>;

/// Seeded, deterministic generator of synthetic crisiswatch traffic.
///
/// Lines are produced in *emission* order: normally an event is emitted at
/// its `ts`, but with noise enabled some are emitted late (and duplicated),
/// so `ts` is not monotonic in the output.
#[derive(Debug)]
pub struct Generator {
    settings: GeneratorSettings,
    end_ms: i64,
    crises: Vec<Crisis>,
    quality: Option<Window>,
    social: Option<Window>,
    churn: Option<Window>,
    /// Background traffic.
    rng: ChaCha8Rng,
    /// Crisis traffic (only drawn from when crises are on).
    crisis_rng: ChaCha8Rng,
    /// Noise decisions (only drawn from when noise is on).
    noise_rng: ChaCha8Rng,
    /// Start of the next simulated minute to generate.
    next_minute: i64,
    /// Next event id counter.
    next_id: u64,
    /// Counter for the ids of malformed lines.
    next_bad: u64,
    /// Tie-breaker for equal emission times (generation order).
    seq: u64,
    /// Formatted lines not yet emitted.
    pending: BinaryHeap<Pending>,
    /// Events created ahead of their minute (churn-wave cancellations).
    scheduled: Vec<Spec>,
    /// First responses due after the period (not sent by this generator;
    /// [`Generator::take_carry_over`] hands them to the next period's).
    carry_over: Vec<(i64, Vec<u8>)>,
    /// Recent complainers per `(product, region)` slice.
    recent: Vec<Recent>,
    /// Quality-surge complainers with the number of further complaints they will make.
    surge_pool: Vec<(u32, u8)>,
    /// Reused per-minute batch.
    batch: Vec<Spec>,
    /// `{"id":"e-<seed>-` prefix.
    id_prefix: Vec<u8>,
    /// Minute (ms) whose RFC 3339 prefix is cached in `ts_prefix`.
    ts_minute: i64,
    /// `YYYY-MM-DDTHH:MM:` of `ts_minute`, or empty if not representable.
    ts_prefix: Vec<u8>,
    emitted: u64,
}

impl Generator {
    /// Creates a generator for `settings`. Nothing is generated until
    /// [`Generator::generate_until`] is called.
    pub fn new(settings: GeneratorSettings) -> Self {
        let end_ms = settings
            .start_ms
            .saturating_add(settings.duration_ms.max(0));
        let mut crises = Vec::new();
        let (mut quality, mut social, mut churn) = (None, None, None);
        if settings.crises && end_ms > settings.start_ms {
            let at = |num: i128, den: i128| -> i64 {
                // The fraction is ≤ 1, so the result lies in [start, end] and fits i64.
                let off = (end_ms - settings.start_ms) as i128 * num / den;
                settings.start_ms + off as i64
            };
            let all = [
                Crisis {
                    name: "quality_surge",
                    kind: "product_quality_surge",
                    slice: slice_of(&[("product", "router-x"), ("region", "eu-west")]),
                    start_ms: at(3, 8),
                    end_ms: at(1, 2),
                    description: "router-x in eu-west: complaints x8 (mostly product_quality/safety, \
                                  high severity), ~50% detractor feedback, repeat complainers",
                },
                Crisis {
                    name: "social_spike",
                    kind: "social_channel_spike",
                    slice: slice_of(&[("product", "phone-z"), ("channel", "social")]),
                    start_ms: at(7, 12),
                    end_ms: at(2, 3),
                    description: "phone-z on the social channel: extra service_attitude complaints \
                                  at 6x the product's normal complaint rate, strongly negative sentiment",
                },
                Crisis {
                    name: "churn_wave",
                    kind: "churn_wave",
                    slice: slice_of(&[("region", "us-east"), ("segment", "vip")]),
                    start_ms: at(3, 4),
                    end_ms: at(7, 8),
                    description: "vip customers in us-east: cancellations x12, most extra ones \
                                  preceded by a complaint from the same customer within the hour",
                },
            ];
            for c in all {
                if c.end_ms <= c.start_ms {
                    continue;
                }
                let w = Some(Window {
                    start: c.start_ms,
                    end: c.end_ms,
                });
                match c.name {
                    "quality_surge" => quality = w,
                    "social_spike" => social = w,
                    _ => churn = w,
                }
                crises.push(c);
            }
        }
        let rng = ChaCha8Rng::seed_from_u64(settings.seed);
        let mut crisis_rng = ChaCha8Rng::seed_from_u64(settings.seed);
        crisis_rng.set_stream(1);
        let mut noise_rng = ChaCha8Rng::seed_from_u64(settings.seed);
        noise_rng.set_stream(2);
        let id_prefix = format!("{{\"id\":\"e-{}-", settings.seed).into_bytes();
        Generator {
            next_minute: settings.start_ms,
            settings,
            end_ms,
            crises,
            quality,
            social,
            churn,
            rng,
            crisis_rng,
            noise_rng,
            next_id: 1,
            next_bad: 1,
            seq: 0,
            pending: BinaryHeap::new(),
            scheduled: Vec::new(),
            carry_over: Vec::new(),
            recent: vec![Recent::default(); PRODUCTS.len() * REGIONS.len()],
            surge_pool: Vec::new(),
            batch: Vec::new(),
            id_prefix,
            ts_minute: i64::MIN,
            ts_prefix: Vec::new(),
            emitted: 0,
        }
    }

    /// The crises this run injects (ground truth), in start order. Empty when crises == false.
    pub fn crises(&self) -> &[Crisis] {
        &self.crises
    }

    /// Appends to `out` every line (JSON bytes, no trailing newline) whose *emission* time is < to_ms, in emission order; returns how many were appended. Calling with increasing to_ms walks the simulated period; lines past start+duration are never produced.
    ///
    /// The emission time of a line is its event `ts`, except for noise: late
    /// events and redeliveries are emitted some seconds after their `ts`
    /// (never at or after `start + duration`). Calling with a `to_ms` that is
    /// not larger than a previous one appends nothing.
    pub fn generate_until(&mut self, to_ms: i64, out: &mut Vec<Vec<u8>>) -> usize {
        let before = out.len();
        while self.next_minute < self.end_ms && self.next_minute < to_ms {
            // Every line generated from now on is emitted at or after the
            // start of its minute, so everything earlier is final.
            self.flush_before(self.next_minute, out);
            self.generate_minute();
        }
        self.flush_before(to_ms, out);
        let n = out.len() - before;
        self.emitted += n as u64;
        n
    }

    /// True once every line of the period has been returned.
    pub fn is_done(&self) -> bool {
        self.next_minute >= self.end_ms && self.pending.is_empty() && self.scheduled.is_empty()
    }

    /// Number of lines returned so far (valid events, duplicates and malformed lines).
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Moves every pending line emitted before `limit` to `out`.
    fn flush_before(&mut self, limit: i64, out: &mut Vec<Vec<u8>>) {
        while let Some(Reverse((emit, _, _))) = self.pending.peek() {
            if *emit >= limit {
                break;
            }
            if let Some(Reverse((_, _, line))) = self.pending.pop() {
                out.push(line);
            }
        }
    }

    fn push_pending(&mut self, emit: i64, line: Vec<u8>) {
        self.seq += 1;
        self.pending.push(Reverse((emit, self.seq, line)));
    }

    /// Generates all events whose `ts` falls in the next simulated minute.
    fn generate_minute(&mut self) {
        let m_start = self.next_minute;
        let m_len = MINUTE_MS.min(self.end_ms - m_start);
        self.next_minute = m_start.saturating_add(MINUTE_MS);
        let m_end = m_start + m_len;
        let shape = &self.settings.shape;
        let mut per_ms =
            self.settings.orders_per_minute * daily_rhythm(m_start + m_len / 2) / MINUTE_MS as f64;
        if shape.volume != 1.0 || shape.weekend_factor != 1.0 {
            per_ms *= shape.volume * shape.day_factor(m_start);
        }
        let (products, regions) = (shape.products, shape.regions);
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();

        for (p, product_weight) in PRODUCT_WEIGHTS.iter().enumerate().take(products) {
            for (r, region_weight) in REGION_WEIGHTS.iter().enumerate().take(regions) {
                let lambda = per_ms * m_len as f64 * product_weight * region_weight;
                self.background_slice(p, r, m_start, m_len, lambda, &mut batch);
            }
        }
        if let Some(w) = self.quality {
            if let Some((lo, len)) = w.overlap(m_start, m_len) {
                self.surge_extras(per_ms, lo, len, &mut batch);
            }
        }
        if let Some(w) = self.social {
            if let Some((lo, len)) = w.overlap(m_start, m_len) {
                self.social_extras(per_ms, lo, len, &mut batch);
            }
        }
        if let Some(w) = self.churn {
            if let Some((lo, len)) = w.overlap(m_start, m_len) {
                self.churn_extras(per_ms, lo, len, w.end, m_end, &mut batch);
            }
        }
        let mut i = 0;
        while i < self.scheduled.len() {
            if self.scheduled[i].ts < m_end {
                batch.push(self.scheduled.swap_remove(i));
            } else {
                i += 1;
            }
        }

        batch.sort_by_key(|s| s.ts);
        for spec in &batch {
            self.emit_spec(spec);
        }
        self.batch = batch;
    }

    /// Normal traffic of one `(product, region)` slice for one minute.
    fn background_slice(
        &mut self,
        p: usize,
        r: usize,
        lo: i64,
        len: i64,
        lambda: f64,
        batch: &mut Vec<Spec>,
    ) {
        let rng = &mut self.rng;
        let slice = p * REGIONS.len() + r;
        let shape = &self.settings.shape;
        let (complaint_channels, categories) = (shape.complaint_channels(), shape.categories());
        let (feedback_rate, cancel_rate) = (shape.feedback_rate, shape.cancel_rate);

        for _ in 0..poisson(rng, lambda) {
            let ts = lo + rng.gen_range(0..len);
            let channel = pick(rng, &ORDER_CHANNELS);
            let customer = random_customer(rng, r);
            let int_ts = rng.gen_bool(INT_TS_SHARE);
            batch.push(Spec::new(ts, Kind::Order, p, r, channel, customer, int_ts));
        }

        for _ in 0..poisson(rng, lambda * COMPLAINT_RATE) {
            let ts = lo + rng.gen_range(0..len);
            let channel = pick(rng, &complaint_channels);
            let repeat = rng.gen_bool(REPEAT_SHARE);
            let customer = match self.recent[slice].pick(rng).filter(|_| repeat) {
                Some(c) => c,
                None => random_customer(rng, r),
            };
            self.recent[slice].push(customer);
            let category = pick(rng, &categories);
            let severity = pick(rng, severity_mix(category));
            let sentiment = complaint_sentiment(rng, severity);
            let int_ts = rng.gen_bool(INT_TS_SHARE);
            let mut s = Spec::new(ts, Kind::Complaint, p, r, channel, customer, int_ts);
            s = s.complaint(category, severity, sentiment);
            batch.push(s);
        }

        for _ in 0..poisson(rng, lambda * feedback_rate) {
            let ts = lo + rng.gen_range(0..len);
            let channel = pick(rng, &FEEDBACK_CHANNELS);
            let customer = random_customer(rng, r);
            let mut score = nps_score(rng);
            let mut sentiment = feedback_sentiment(rng, score);
            let int_ts = rng.gen_bool(INT_TS_SHARE);
            let in_surge =
                p == P_ROUTER_X && r == R_EU_WEST && self.quality.is_some_and(|w| w.contains(ts));
            if in_surge && self.crisis_rng.gen_bool(SURGE_DETRACTOR_OVERRIDE) {
                score = self.crisis_rng.gen_range(0..=6);
                sentiment = feedback_sentiment(&mut self.crisis_rng, score);
            }
            let mut s = Spec::new(ts, Kind::Feedback, p, r, channel, customer, int_ts);
            s.score = score;
            s.sentiment = sentiment;
            batch.push(s);
        }

        for _ in 0..poisson(rng, lambda * cancel_rate) {
            let ts = lo + rng.gen_range(0..len);
            let channel = pick(rng, &CANCEL_CHANNELS);
            let customer = random_customer(rng, r);
            let int_ts = rng.gen_bool(INT_TS_SHARE);
            batch.push(Spec::new(
                ts,
                Kind::Cancellation,
                p,
                r,
                channel,
                customer,
                int_ts,
            ));
        }
    }
}

#[cfg(test)]
mod tests;
