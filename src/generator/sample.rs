//! Sampling helpers of the generator (weighted picks, Poisson counts,
//! customers, scores, sentiment) and the number formatting its JSON writer uses.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};

use super::*;

/// Owned copy of a crisis slice definition.
pub(super) fn slice_of(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Daily traffic factor at `ms`: a smooth curve with its minimum 0.35 at
/// 03:00 UTC and its maximum 1.0 at 14:00 UTC (half-cosine up over 11 h,
/// down over 13 h).
pub(super) fn daily_rhythm(ms: i64) -> f64 {
    let h = ms.rem_euclid(DAY_MS) as f64 / 3_600_000.0;
    let rise = if (3.0..14.0).contains(&h) {
        (1.0 - (std::f64::consts::PI * (h - 3.0) / 11.0).cos()) / 2.0
    } else {
        let d = if h >= 14.0 { h - 14.0 } else { h + 10.0 };
        (1.0 + (std::f64::consts::PI * d / 13.0).cos()) / 2.0
    };
    0.35 + 0.65 * rise
}

/// Poisson sample with mean `lambda` (0 for a non-positive or non-finite mean).
pub(super) fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u64 {
    if !(lambda.is_finite() && lambda > 0.0) {
        return 0;
    }
    match Poisson::new(lambda) {
        Ok(d) => {
            let x: f64 = d.sample(rng);
            x as u64
        }
        Err(_) => 0,
    }
}

/// Index drawn with probability proportional to `weights` (zero weights never drawn).
pub(super) fn pick(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.gen::<f64>() * total;
    let mut last = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            if x < w {
                return i;
            }
            x -= w;
            last = i;
        }
    }
    last
}

/// A random customer of `region` (index) and `segment` (index into [`SEGMENTS`]).
///
/// Customer `n` (0 ≤ n < 200,000) lives in region `n % 4`; with `k = n / 4`,
/// its segment is vip when `k % 10 == 0`, smb when `k % 10` is 1 or 2, else consumer.
pub(super) fn new_customer(rng: &mut ChaCha8Rng, region: usize, segment: usize) -> u32 {
    let per_region = CUSTOMER_POOL / REGIONS.len() as u32;
    let j = rng.gen_range(0..per_region / 10);
    let offset = match segment {
        2 => 0,
        1 => 1 + rng.gen_range(0..2),
        _ => 3 + rng.gen_range(0..7),
    };
    (j * 10 + offset) * REGIONS.len() as u32 + region as u32
}

/// A random customer of `region`, with the normal segment mix.
pub(super) fn random_customer(rng: &mut ChaCha8Rng, region: usize) -> u32 {
    let segment = pick(rng, &SEGMENT_WEIGHTS);
    new_customer(rng, region, segment)
}

/// Segment index of customer `n` (see [`new_customer`]).
pub(super) fn segment_of(customer: u32) -> usize {
    match (customer / REGIONS.len() as u32) % 10 {
        0 => 2,
        1 | 2 => 1,
        _ => 0,
    }
}

/// Severity mix for a complaint category.
pub(super) fn severity_mix(category: usize) -> &'static [f64; 3] {
    match CATEGORIES[category] {
        "safety" | "data_breach" => &SEVERITY_DANGER,
        "product_quality" | "service_attitude" | "outage" => &SEVERITY_SEVERE,
        _ => &SEVERITY_MILD,
    }
}

/// Complaint sentiment (hundredths) by severity index.
pub(super) fn complaint_sentiment(rng: &mut ChaCha8Rng, severity: usize) -> i16 {
    match severity {
        0 => rng.gen_range(-55..=-5),
        1 => rng.gen_range(-80..=-30),
        _ => rng.gen_range(-100..=-60),
    }
}

/// NPS score: ≈ 55 % promoters (9–10), 30 % passives (7–8), 15 % detractors (0–6).
pub(super) fn nps_score(rng: &mut ChaCha8Rng) -> u8 {
    let x: f64 = rng.gen();
    if x < 0.55 {
        rng.gen_range(9..=10)
    } else if x < 0.85 {
        rng.gen_range(7..=8)
    } else {
        rng.gen_range(0..=6)
    }
}

/// Feedback sentiment (hundredths) loosely following the score.
pub(super) fn feedback_sentiment(rng: &mut ChaCha8Rng, score: u8) -> i16 {
    let base = (i16::from(score) * 100 - 650) / 4;
    (base + rng.gen_range(-20..=20)).clamp(-100, 100)
}

/// Appends the decimal digits of `n`.
pub(super) fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// Appends the decimal form of `n`.
pub(super) fn push_i64(buf: &mut Vec<u8>, n: i64) {
    if n < 0 {
        buf.push(b'-');
    }
    push_u64(buf, n.unsigned_abs());
}

/// Appends `v / 100` with exactly two decimals (e.g. `-0.80`, `1.00`, `0.05`).
pub(super) fn push_hundredths(buf: &mut Vec<u8>, v: i16) {
    if v < 0 {
        buf.push(b'-');
    }
    let a = v.unsigned_abs();
    push_u64(buf, u64::from(a / 100));
    buf.push(b'.');
    buf.push(b'0' + (a % 100 / 10) as u8);
    buf.push(b'0' + (a % 10) as u8);
}
