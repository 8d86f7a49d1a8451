use super::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

const DAY: i64 = DAY_MS;
const HOUR: i64 = 3_600_000;

fn midnight() -> i64 {
    DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
        .unwrap()
        .timestamp_millis()
}

fn settings(duration_ms: i64, opm: f64, crises: bool, noise: bool) -> GeneratorSettings {
    GeneratorSettings {
        seed: 7,
        start_ms: midnight(),
        duration_ms,
        orders_per_minute: opm,
        crises,
        noise,
        shape: TrafficShape::default(),
    }
}

fn run_all(s: GeneratorSettings) -> (Generator, Vec<Vec<u8>>) {
    let mut g = Generator::new(s);
    let mut out = Vec::new();
    let n = g.generate_until(i64::MAX, &mut out);
    assert_eq!(n, out.len());
    assert!(g.is_done());
    (g, out)
}

/// A parsed, fully validated event.
#[derive(Debug, Clone)]
struct Ev {
    id: String,
    kind: String,
    ts: i64,
    customer: String,
    product: String,
    region: String,
    channel: String,
    segment: String,
    category: Option<String>,
    severity: Option<String>,
    score: Option<i64>,
    sentiment: Option<f64>,
    /// Responses: the complaint answered.
    ref_id: Option<String>,
}

impl Ev {
    fn attr(&self, key: &str) -> &str {
        match key {
            "product" => &self.product,
            "region" => &self.region,
            "channel" => &self.channel,
            "segment" => &self.segment,
            _ => "",
        }
    }

    fn in_crisis(&self, c: &Crisis) -> bool {
        self.ts >= c.start_ms
            && self.ts < c.end_ms
            && c.slice.iter().all(|(k, v)| self.attr(k) == v)
    }
}

/// Parses and validates one line; `None` if it is not a well-formed event.
fn parse(line: &[u8]) -> Option<Ev> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let o = v.as_object()?;
    let id = o.get("id")?.as_str()?.to_string();
    if id.is_empty() || id.len() > 64 {
        return None;
    }
    let kind = o.get("type")?.as_str()?.to_string();
    if !["order", "complaint", "feedback", "cancellation", "response"].contains(&kind.as_str()) {
        return None;
    }
    let ts = match o.get("ts")? {
        Value::String(s) => {
            if s.len() != 24 || !s.ends_with('Z') {
                return None;
            }
            DateTime::parse_from_rfc3339(s).ok()?.timestamp_millis()
        }
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    let customer = o.get("customer_id")?.as_str()?.to_string();
    if kind == "response" {
        // `e-<seed>-r<N>` answering `e-<seed>-<N>`; nothing else.
        let ref_id = o.get("ref_id")?.as_str()?.to_string();
        let (prefix, n) = id.rsplit_once("-r")?;
        if ref_id != format!("{prefix}-{n}") || o.len() != 5 {
            return None;
        }
        return Some(Ev {
            id,
            kind,
            ts,
            customer,
            product: String::new(),
            region: String::new(),
            channel: String::new(),
            segment: String::new(),
            category: None,
            severity: None,
            score: None,
            sentiment: None,
            ref_id: Some(ref_id),
        });
    }
    let a = o.get("attrs")?.as_object()?;
    let get = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_string);
    let (product, region, channel, segment) = (
        get("product")?,
        get("region")?,
        get("channel")?,
        get("segment")?,
    );
    if !PRODUCTS.contains(&product.as_str())
        || !REGIONS.contains(&region.as_str())
        || !CHANNELS.contains(&channel.as_str())
        || !SEGMENTS.contains(&segment.as_str())
    {
        return None;
    }
    let (category, severity) = (get("category"), get("severity"));
    let score = o.get("score").map(|s| s.as_i64()).unwrap_or(None);
    let sentiment = o.get("sentiment").map(|s| s.as_f64()).unwrap_or(None);
    match kind.as_str() {
        "complaint" => {
            if !CATEGORIES.contains(&category.as_deref()?)
                || !SEVERITIES.contains(&severity.as_deref()?)
                || score.is_some()
            {
                return None;
            }
            sentiment.filter(|s| (-1.0..=1.0).contains(s))?;
        }
        "feedback" => {
            if category.is_some() || severity.is_some() || !(0..=10).contains(&score?) {
                return None;
            }
            sentiment.filter(|s| (-1.0..=1.0).contains(s))?;
        }
        _ => {
            if category.is_some() || score.is_some() || o.contains_key("sentiment") {
                return None;
            }
        }
    }
    Some(Ev {
        id,
        kind,
        ts,
        customer,
        product,
        region,
        channel,
        segment,
        category,
        severity,
        score,
        sentiment,
        ref_id: None,
    })
}

#[test]
fn deterministic_across_step_sizes() {
    let s = settings(6 * HOUR, 300.0, true, true);
    let (g1, big) = run_all(s.clone());

    let mut g2 = Generator::new(s.clone());
    let mut minute_steps = Vec::new();
    let mut t = s.start_ms;
    while !g2.is_done() {
        t += MINUTE_MS;
        g2.generate_until(t, &mut minute_steps);
    }
    assert!(t <= s.start_ms + s.duration_ms + MINUTE_MS);

    let mut g3 = Generator::new(s.clone());
    let mut odd_steps = Vec::new();
    let mut t = s.start_ms - 5_000;
    let mut step = 1;
    while !g3.is_done() {
        g3.generate_until(t, &mut odd_steps);
        t += step;
        step = (step * 7 + 13_337) % 250_000;
    }

    assert!(big.len() > 30_000);
    assert_eq!(big, minute_steps);
    assert_eq!(big, odd_steps);
    assert_eq!(g1.emitted(), big.len() as u64);
    assert_eq!(g2.emitted(), big.len() as u64);
    assert_eq!(g3.emitted(), big.len() as u64);

    // Another seed gives different traffic.
    let (_, other) = run_all(GeneratorSettings { seed: 8, ..s });
    assert_ne!(big, other);
}

#[test]
fn emission_respects_to_ms_and_period() {
    let s = settings(2 * HOUR + 30_500, 200.0, false, false);
    let end = s.start_ms + s.duration_ms;
    let mut g = Generator::new(s.clone());
    let mut out = Vec::new();
    let mut t = s.start_ms;
    while t < end + 2 * MINUTE_MS {
        t += 45_000;
        let before = out.len();
        g.generate_until(t, &mut out);
        // Without noise the emission time is the ts.
        for line in &out[before..] {
            let ev = parse(line).unwrap();
            assert!(ev.ts < t, "line emitted before its time");
            assert!(ev.ts >= s.start_ms && ev.ts < end);
        }
    }
    assert!(g.is_done());
    assert_eq!(g.generate_until(i64::MAX, &mut out), 0);
    let ts: Vec<i64> = out.iter().map(|l| parse(l).unwrap().ts).collect();
    assert!(
        ts.windows(2).all(|w| w[0] <= w[1]),
        "ts not sorted without noise"
    );
    assert!(*ts.last().unwrap() >= end - 60_000);

    // Degenerate periods produce nothing.
    for d in [0, -5] {
        let mut g = Generator::new(GeneratorSettings {
            duration_ms: d,
            ..s.clone()
        });
        assert!(g.is_done());
        assert_eq!(g.generate_until(i64::MAX, &mut out), 0);
    }
}

#[test]
fn all_lines_valid_without_noise_and_noise_only_when_enabled() {
    let s = settings(12 * HOUR, 300.0, true, false);
    let (_, clean) = run_all(s.clone());
    let mut ids = HashSet::new();
    let mut int_ts = 0;
    for line in &clean {
        let ev = parse(line).unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(line)));
        assert!(ev.ts >= s.start_ms && ev.ts < s.start_ms + s.duration_ms);
        assert!(ev.id.starts_with("e-7-"));
        assert!(ev.customer.starts_with("c-"));
        let n: u32 = ev.customer[2..].parse().unwrap();
        assert!((CUSTOMER_ID_BASE..CUSTOMER_ID_BASE + CUSTOMER_POOL).contains(&n));
        assert!(ids.insert(ev.id.clone()), "duplicate id without noise");
        if !line.windows(6).any(|w| w == b"\"ts\":\"") {
            int_ts += 1;
        }
    }
    let share = int_ts as f64 / clean.len() as f64;
    assert!((0.08..0.12).contains(&share), "integer ts share {share}");

    let (_, noisy) = run_all(GeneratorSettings {
        noise: true,
        ..s.clone()
    });
    let mut bad = 0usize;
    let mut bad_kinds = HashSet::new();
    let mut seen = HashSet::new();
    let mut dups = 0usize;
    let mut valid = Vec::new();
    let mut inversions = 0usize;
    let mut last_ts = i64::MIN;
    for line in &noisy {
        match parse(line) {
            Some(ev) => {
                if !seen.insert(ev.id.clone()) {
                    dups += 1;
                }
                if ev.ts < last_ts {
                    inversions += 1;
                }
                last_ts = last_ts.max(ev.ts);
                assert!(ev.ts >= s.start_ms && ev.ts < s.start_ms + s.duration_ms);
                valid.push(line.clone());
            }
            None => {
                bad += 1;
                let kind = match serde_json::from_slice::<Value>(line) {
                    Err(_) => "not json",
                    Ok(Value::Array(_)) => "array",
                    Ok(Value::Object(o)) => match o.get("ts") {
                        None => "missing ts",
                        Some(Value::String(t)) if t == "yesterday" => "bad ts",
                        Some(_) if o["id"].as_str().map_or(0, str::len) == 300 => "long id",
                        Some(_) => "other",
                    },
                    Ok(_) => "other",
                };
                bad_kinds.insert(kind);
            }
        }
    }
    let mut kinds: Vec<_> = bad_kinds.into_iter().collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["array", "bad ts", "long id", "missing ts", "not json"]
    );
    let n = noisy.len() as f64;
    println!(
        "noise: {} lines, malformed {:.4}%, duplicates {:.4}%, late {:.3}%",
        noisy.len(),
        bad as f64 / n * 100.0,
        dups as f64 / n * 100.0,
        inversions as f64 / n * 100.0
    );
    assert!(bad > 0 && (bad as f64) < n * 0.0015);
    assert!(dups > 0 && (dups as f64) < n * 0.003);
    assert!(inversions as f64 > n * 0.003);
    // The valid events are the clean run's events (plus redeliveries).
    let clean_set: HashSet<&Vec<u8>> = clean.iter().collect();
    assert!(valid.iter().all(|l| clean_set.contains(l)));
    assert_eq!(valid.len() - dups, clean.len());
}

#[test]
fn crises_ground_truth() {
    let (g, _) = run_all(settings(DAY, 1.0, false, false));
    assert!(g.crises().is_empty());
    let g = Generator::new(settings(DAY, 300.0, true, false));
    let c = g.crises();
    let m = midnight();
    let names: Vec<_> = c.iter().map(|c| (c.name, c.kind)).collect();
    assert_eq!(
        names,
        vec![
            ("quality_surge", "product_quality_surge"),
            ("social_spike", "social_channel_spike"),
            ("churn_wave", "churn_wave")
        ]
    );
    let hours: Vec<_> = c
        .iter()
        .map(|c| ((c.start_ms - m) / HOUR, (c.end_ms - m) / HOUR))
        .collect();
    assert_eq!(hours, vec![(9, 12), (14, 16), (18, 21)]);
    assert!(c.windows(2).all(|w| w[0].start_ms <= w[1].start_ms));
}

#[test]
fn traffic_outside_crises_is_unchanged_by_crises() {
    let strip = |lines: &[Vec<u8>], crises: &[Crisis]| -> Vec<String> {
        let evs: Vec<Ev> = lines.iter().map(|l| parse(l).unwrap()).collect();
        // A response is in a crisis when its complaint is.
        let inside: HashSet<&str> = evs
            .iter()
            .filter(|e| crises.iter().any(|c| e.in_crisis(c)))
            .map(|e| e.id.as_str())
            .collect();
        let mut v: Vec<String> = evs
            .iter()
            .filter(|e| !inside.contains(e.ref_id.as_deref().unwrap_or(e.id.as_str())))
            .map(|e| {
                format!(
                    "{} {} {} {} {} {} {} {:?} {:?} {:?} {:?}",
                    e.kind,
                    e.ts,
                    e.customer,
                    e.product,
                    e.region,
                    e.channel,
                    e.segment,
                    e.category,
                    e.severity,
                    e.score,
                    e.sentiment
                )
            })
            .collect();
        v.sort();
        v
    };
    let s = settings(DAY, 60.0, true, false);
    let (g, with) = run_all(s.clone());
    let (_, without) = run_all(GeneratorSettings { crises: false, ..s });
    let a = strip(&with, g.crises());
    let b = strip(&without, g.crises());
    assert!(a.len() > 50_000);
    assert_eq!(a, b);
}

#[test]
fn rates_over_a_day() {
    let s = settings(DAY, 300.0, true, false);
    let (g, lines) = run_all(s.clone());
    let crises = g.crises().to_vec();
    let evs: Vec<Ev> = lines
        .iter()
        .map(|l| parse(l).unwrap())
        .filter(|e| e.kind != "response")
        .collect();
    let count = |f: &dyn Fn(&Ev) -> bool, kind: &str| {
        evs.iter().filter(|e| e.kind == kind && f(e)).count() as f64
    };
    let outside = |e: &Ev| !crises.iter().any(|c| e.in_crisis(c));
    let ratio = |f: &dyn Fn(&Ev) -> bool, kind: &str| count(f, kind) / count(f, "order");

    let total_orders = count(&|_| true, "order");
    let normal_complaints = ratio(&outside, "complaint");
    let normal_feedback = ratio(&outside, "feedback");
    let normal_cancel = ratio(&outside, "cancellation");

    let (qs, ss, cw) = (&crises[0], &crises[1], &crises[2]);
    let in_q = |e: &Ev| e.in_crisis(qs);
    let surge_ratio = ratio(&in_q, "complaint");
    let surge_complaints: Vec<&Ev> = evs
        .iter()
        .filter(|e| e.kind == "complaint" && in_q(e))
        .collect();
    let severe = surge_complaints
        .iter()
        .filter(|e| matches!(e.category.as_deref(), Some("product_quality" | "safety")))
        .count() as f64
        / surge_complaints.len() as f64;
    let high = surge_complaints
        .iter()
        .filter(|e| e.severity.as_deref() == Some("high"))
        .count() as f64
        / surge_complaints.len() as f64;
    let mut seen = HashSet::new();
    let repeats = surge_complaints
        .iter()
        .filter(|e| !seen.insert(e.customer.clone()))
        .count() as f64
        / surge_complaints.len() as f64;
    let fb: Vec<&Ev> = evs
        .iter()
        .filter(|e| e.kind == "feedback" && in_q(e))
        .collect();
    let detractors = fb.iter().filter(|e| e.score.unwrap() <= 6).count() as f64 / fb.len() as f64;
    let fb_out: Vec<&Ev> = evs
        .iter()
        .filter(|e| e.kind == "feedback" && outside(e))
        .collect();
    let detractors_normal =
        fb_out.iter().filter(|e| e.score.unwrap() <= 6).count() as f64 / fb_out.len() as f64;

    // Social spike: phone-z social complaints per phone-z order in the interval.
    let in_s_time = |e: &Ev| e.ts >= ss.start_ms && e.ts < ss.end_ms && e.product == "phone-z";
    let social_in =
        count(&|e| in_s_time(e) && e.channel == "social", "complaint") / count(&in_s_time, "order");
    let phone_normal = count(&|e| outside(e) && e.product == "phone-z", "complaint")
        / count(&|e| outside(e) && e.product == "phone-z", "order");

    // Churn wave.
    let churn_slice = |e: &Ev| e.region == "us-east" && e.segment == "vip";
    let in_c = |e: &Ev| e.in_crisis(cw);
    let churn_in = ratio(&in_c, "cancellation");
    let churn_out = ratio(&|e| churn_slice(e) && !in_c(e), "cancellation");
    let mut last_complaint: HashMap<&str, i64> = HashMap::new();
    let (mut wave_cancels, mut preceded) = (0, 0);
    for e in &evs {
        if e.kind == "complaint" {
            last_complaint.insert(&e.customer, e.ts);
        } else if e.kind == "cancellation" && in_c(e) {
            wave_cancels += 1;
            if last_complaint
                .get(e.customer.as_str())
                .is_some_and(|t| e.ts - t <= HOUR)
            {
                preceded += 1;
            }
        }
    }

    // Complaint ratio of every (product, region) slice outside crises.
    let mut per_slice: HashMap<(String, String), (f64, f64)> = HashMap::new();
    for e in evs.iter().filter(|e| outside(e)) {
        let entry = per_slice
            .entry((e.product.clone(), e.region.clone()))
            .or_default();
        match e.kind.as_str() {
            "order" => entry.0 += 1.0,
            "complaint" => entry.1 += 1.0,
            _ => {}
        }
    }
    let (min_slice, max_slice) = per_slice
        .values()
        .fold((1.0f64, 0.0f64), |(lo, hi), (o, c)| {
            (lo.min(c / o), hi.max(c / o))
        });
    let min_share = per_slice
        .values()
        .map(|(o, _)| o / total_orders)
        .fold(1.0f64, f64::min);

    println!("lines {}, orders {total_orders}", evs.len());
    println!(
        "outside crises: complaints/orders {:.3}%, feedback/orders {:.2}%, cancellations/orders {:.3}%, detractors {:.1}%",
        normal_complaints * 100.0,
        normal_feedback * 100.0,
        normal_cancel * 100.0,
        detractors_normal * 100.0
    );
    println!(
        "per-slice complaint ratio outside crises: {:.2}%..{:.2}%, smallest slice share {:.2}%",
        min_slice * 100.0,
        max_slice * 100.0,
        min_share * 100.0
    );
    println!(
        "quality_surge: complaints/orders {:.2}% ({} complaints), pq+safety {:.1}%, high {:.1}%, repeat {:.1}%, detractors {:.1}%",
        surge_ratio * 100.0,
        surge_complaints.len(),
        severe * 100.0,
        high * 100.0,
        repeats * 100.0,
        detractors * 100.0
    );
    println!(
        "social_spike: phone-z social complaints/orders {:.2}% vs phone-z normal total {:.2}% (x{:.1})",
        social_in * 100.0,
        phone_normal * 100.0,
        social_in / phone_normal
    );
    println!(
        "churn_wave: cancellations/orders {:.2}% in wave, {:.3}% outside; {} wave cancellations, {:.1}% preceded by a complaint within 1 h",
        churn_in * 100.0,
        churn_out * 100.0,
        wave_cancels,
        preceded as f64 / wave_cancels as f64 * 100.0
    );

    assert!((0.015..=0.025).contains(&normal_complaints));
    assert!((0.08..=0.12).contains(&normal_feedback));
    assert!(normal_cancel < 0.01);
    assert!((0.12..0.18).contains(&detractors_normal));
    assert!(min_share >= 0.02);
    assert!(surge_ratio >= 0.10);
    assert!(severe >= 0.70);
    assert!(high >= 0.5);
    assert!((0.2..0.45).contains(&repeats));
    assert!((0.4..0.6).contains(&detractors));
    assert!(social_in / phone_normal >= 4.0);
    assert!(churn_in >= 0.03);
    assert!(churn_out < 0.01);
    assert!(preceded as f64 / wave_cancels as f64 >= 0.4);
}

#[test]
fn rhythm_shape() {
    let at = |h: f64| daily_rhythm((h * HOUR as f64) as i64);
    assert!((at(3.0) - 0.35).abs() < 1e-9);
    assert!((at(14.0) - 1.0).abs() < 1e-9);
    for m in 0..(24 * 60) {
        let r = daily_rhythm(m * MINUTE_MS);
        assert!((0.35..=1.0).contains(&r));
        let next = daily_rhythm((m + 1) * MINUTE_MS);
        assert!((r - next).abs() < 0.005, "rhythm jumps at minute {m}");
    }
}

mod responses;
