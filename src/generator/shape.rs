//! The shape of the generated traffic: knobs that make the synthetic stream
//! look like another company's (issue 11, item 6), so the example rules can be
//! tested on more than the demo's own mix.
//!
//! [`TrafficShape::default`] is the demo's shape, and with it the generator's
//! output is exactly what it was before the knobs existed (every default
//! below is the constant it replaces, and a knob at its default takes the
//! original code path).

use super::{
    CANCEL_RATE, CATEGORIES, CH_SOCIAL, COMPLAINT_CHANNELS, FEEDBACK_RATE, NORMAL_CATEGORIES,
    PRODUCTS, REGIONS,
};

/// Complaint categories counted as severe (product_quality, service_attitude,
/// safety, outage, data_breach): indices into `CATEGORIES`.
const SEVERE: [usize; 5] = [2, 3, 4, 5, 6];

/// How the traffic looks. Every field keeps the demo's value by default.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficShape {
    /// Volume multiplier on every slice (orders, and with them every other
    /// event type and the crises' extra traffic): 0.1 to 10.
    pub volume: f64,
    /// Share of normal complaints that arrive on the social channel (0.04 in
    /// the demo; consumer brands see up to 0.3).
    pub social_share: f64,
    /// Share of normal complaints in a severe category (0.25 in the demo).
    pub severe_share: f64,
    /// Feedback responses per order (0.10).
    pub feedback_rate: f64,
    /// Cancellations per order (0.004).
    pub cancel_rate: f64,
    /// Products sold: the first N of router-x, phone-z, tv-max, laptop-pro,
    /// earbuds-s (2–5: the crises need router-x and phone-z).
    pub products: usize,
    /// Regions served: the first N of eu-west, eu-north, us-east, apac (3–4:
    /// the churn wave is in us-east).
    pub regions: usize,
    /// Weekly rhythm: volume on Saturdays and Sundays (UTC) relative to
    /// weekdays (1 = no weekly rhythm).
    pub weekend_factor: f64,
}

/// The demo's social share of complaints (`COMPLAINT_CHANNELS`).
const DEFAULT_SOCIAL_SHARE: f64 = 0.04;
/// The demo's severe share of complaints (`NORMAL_CATEGORIES`).
const DEFAULT_SEVERE_SHARE: f64 = 0.25;

impl Default for TrafficShape {
    fn default() -> Self {
        TrafficShape {
            volume: 1.0,
            social_share: DEFAULT_SOCIAL_SHARE,
            severe_share: DEFAULT_SEVERE_SHARE,
            feedback_rate: FEEDBACK_RATE,
            cancel_rate: CANCEL_RATE,
            products: PRODUCTS.len(),
            regions: REGIONS.len(),
            weekend_factor: 1.0,
        }
    }
}

impl TrafficShape {
    /// Every problem with the knobs, as `name: why` (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |ok: bool, what: &str| {
            if !ok {
                out.push(what.to_string());
            }
        };
        check(
            (0.1..=10.0).contains(&self.volume),
            "volume must lie in [0.1, 10]",
        );
        check(
            (0.0..1.0).contains(&self.social_share),
            "social_share must lie in [0, 1)",
        );
        check(
            (0.0..1.0).contains(&self.severe_share),
            "severe_share must lie in [0, 1)",
        );
        check(
            (0.0..=1.0).contains(&self.feedback_rate),
            "feedback_rate must lie in [0, 1]",
        );
        check(
            (0.0..=0.5).contains(&self.cancel_rate),
            "cancel_rate must lie in [0, 0.5]",
        );
        check(
            (2..=PRODUCTS.len()).contains(&self.products),
            "products must be 2 to 5",
        );
        check(
            (3..=REGIONS.len()).contains(&self.regions),
            "regions must be 3 or 4",
        );
        check(
            (0.0..=10.0).contains(&self.weekend_factor),
            "weekend_factor must lie in [0, 10]",
        );
        out
    }

    /// The complaint channel mix (web, app, phone, email, store, social).
    pub(super) fn complaint_channels(&self) -> [f64; 6] {
        if self.social_share == DEFAULT_SOCIAL_SHARE {
            return COMPLAINT_CHANNELS;
        }
        let others = 1.0 - COMPLAINT_CHANNELS[CH_SOCIAL];
        let mut mix = COMPLAINT_CHANNELS.map(|w| w / others * (1.0 - self.social_share));
        mix[CH_SOCIAL] = self.social_share;
        mix
    }

    /// The normal complaint category mix.
    pub(super) fn categories(&self) -> [f64; CATEGORIES.len()] {
        if self.severe_share == DEFAULT_SEVERE_SHARE {
            return NORMAL_CATEGORIES;
        }
        let severe: f64 = SEVERE.iter().map(|&i| NORMAL_CATEGORIES[i]).sum();
        let mut mix = NORMAL_CATEGORIES;
        for (i, w) in mix.iter_mut().enumerate() {
            *w = if SEVERE.contains(&i) {
                *w / severe * self.severe_share
            } else {
                *w / (1.0 - severe) * (1.0 - self.severe_share)
            };
        }
        mix
    }

    /// The volume factor of the day `ms` falls on (weekly rhythm).
    pub(super) fn day_factor(&self, ms: i64) -> f64 {
        // 1970-01-01 was a Thursday: day 0 → weekday 3 (Monday = 0).
        let weekday = (ms.div_euclid(super::DAY_MS) + 3).rem_euclid(7);
        if weekday >= 5 {
            self.weekend_factor
        } else {
            1.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_keep_their_shares() {
        let s = TrafficShape {
            social_share: 0.25,
            severe_share: 0.4,
            ..TrafficShape::default()
        };
        let ch = s.complaint_channels();
        assert!((ch.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!((ch[CH_SOCIAL] - 0.25).abs() < 1e-12);
        let cat = s.categories();
        assert!((cat.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let severe: f64 = SEVERE.iter().map(|&i| cat[i]).sum();
        assert!((severe - 0.4).abs() < 1e-9);
        assert_eq!(
            TrafficShape::default().complaint_channels(),
            COMPLAINT_CHANNELS
        );
        assert!(TrafficShape::default().problems().is_empty());
        let bad = TrafficShape {
            volume: 20.0,
            products: 1,
            ..TrafficShape::default()
        };
        assert_eq!(bad.problems().len(), 2);
        // 2026-11-21 is a Saturday, 2026-11-23 a Monday.
        let w = TrafficShape {
            weekend_factor: 0.5,
            ..TrafficShape::default()
        };
        assert_eq!(w.day_factor(1_795_219_200_000), 0.5);
        assert_eq!(w.day_factor(1_795_392_000_000), 1.0);
    }
}
