//! The three playbook crises: their ground truth ([`Crisis`]) and the
//! traffic each adds to the background (drawn from the generator's own crisis
//! stream, so everything outside the crisis slices and intervals is unchanged).

use super::*;

/// Ground truth for one injected crisis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crisis {
    /// Short name: `quality_surge`, `social_spike` or `churn_wave`.
    pub name: &'static str,
    /// Playbook kind: `product_quality_surge`, `social_channel_spike` or `churn_wave`.
    pub kind: &'static str,
    /// Attribute constraints (`(attribute, value)`, all must match) that
    /// select the affected events, e.g. `[("product","router-x"),("region","eu-west")]`.
    pub slice: Vec<(String, String)>,
    /// First affected event time (ms, inclusive).
    pub start_ms: i64,
    /// End of the affected interval (ms, exclusive).
    pub end_ms: i64,
    /// Human-readable summary of what is injected.
    pub(crate) description: &'static str,
}

impl Generator {
    /// Extra quality-surge complaints in router-x × eu-west over `[lo, lo + len)`.
    pub(super) fn surge_extras(&mut self, per_ms: f64, lo: i64, len: i64, batch: &mut Vec<Spec>) {
        let rng = &mut self.crisis_rng;
        let lambda = per_ms
            * len as f64
            * PRODUCT_WEIGHTS[P_ROUTER_X]
            * REGION_WEIGHTS[R_EU_WEST]
            * COMPLAINT_RATE
            * (SURGE_MULT - 1.0);
        for _ in 0..poisson(rng, lambda) {
            let ts = lo + rng.gen_range(0..len);
            let channel = pick(rng, &COMPLAINT_CHANNELS);
            let customer = if !self.surge_pool.is_empty() && rng.gen_bool(SURGE_REPEAT_SHARE) {
                let i = rng.gen_range(0..self.surge_pool.len());
                let (c, left) = self.surge_pool[i];
                if left <= 1 {
                    self.surge_pool.swap_remove(i);
                } else {
                    self.surge_pool[i].1 = left - 1;
                }
                c
            } else {
                let c = random_customer(rng, R_EU_WEST);
                // This customer will complain 1–3 more times (2–4 in total).
                self.surge_pool.push((c, rng.gen_range(1..=3)));
                c
            };
            let category = pick(rng, &SURGE_CATEGORIES);
            let severity = pick(rng, &SEVERITY_SURGE);
            let sentiment = complaint_sentiment(rng, severity);
            let int_ts = rng.gen_bool(INT_TS_SHARE);
            let mut s = Spec::new(
                ts,
                Kind::Complaint,
                P_ROUTER_X,
                R_EU_WEST,
                channel,
                customer,
                int_ts,
            );
            s = s.complaint(category, severity, sentiment);
            batch.push(s);
        }
    }

    /// Extra social-channel complaints about phone-z (all regions) over `[lo, lo + len)`.
    pub(super) fn social_extras(&mut self, per_ms: f64, lo: i64, len: i64, batch: &mut Vec<Spec>) {
        let rng = &mut self.crisis_rng;
        let regions = self.settings.shape.regions;
        for (r, region_weight) in REGION_WEIGHTS.iter().enumerate().take(regions) {
            let lambda = per_ms
                * len as f64
                * PRODUCT_WEIGHTS[P_PHONE_Z]
                * region_weight
                * COMPLAINT_RATE
                * SOCIAL_MULT;
            for _ in 0..poisson(rng, lambda) {
                let ts = lo + rng.gen_range(0..len);
                let customer = random_customer(rng, r);
                let severity = pick(rng, &SEVERITY_SOCIAL);
                let sentiment = rng.gen_range(-100..=-70);
                let int_ts = rng.gen_bool(INT_TS_SHARE);
                let mut s = Spec::new(
                    ts,
                    Kind::Complaint,
                    P_PHONE_Z,
                    r,
                    CH_SOCIAL,
                    customer,
                    int_ts,
                );
                s = s.complaint(CAT_SERVICE_ATTITUDE, severity, sentiment);
                batch.push(s);
            }
        }
    }

    /// Extra churn-wave cancellations (and the complaints preceding them) of
    /// vip customers in us-east over `[lo, lo + len)`. Cancellations that fall
    /// after `m_end` are scheduled for their own minute; all stay before `wave_end`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn churn_extras(
        &mut self,
        per_ms: f64,
        lo: i64,
        len: i64,
        wave_end: i64,
        m_end: i64,
        batch: &mut Vec<Spec>,
    ) {
        let rng = &mut self.crisis_rng;
        let (products, cancel_rate) = (
            self.settings.shape.products,
            self.settings.shape.cancel_rate,
        );
        for (p, product_weight) in PRODUCT_WEIGHTS.iter().enumerate().take(products) {
            let lambda = per_ms
                * len as f64
                * product_weight
                * REGION_WEIGHTS[R_US_EAST]
                * SEGMENT_WEIGHTS[SEG_VIP]
                * cancel_rate
                * (CHURN_MULT - 1.0);
            for _ in 0..poisson(rng, lambda * CHURN_PRECEDED_SHARE) {
                let ts = lo + rng.gen_range(0..len);
                let customer = new_customer(rng, R_US_EAST, SEG_VIP);
                let channel = pick(rng, &COMPLAINT_CHANNELS);
                let category = pick(rng, &CHURN_CATEGORIES);
                let severity = pick(rng, &SEVERITY_CHURN);
                let sentiment = complaint_sentiment(rng, severity);
                let int_ts = rng.gen_bool(INT_TS_SHARE);
                let mut s = Spec::new(ts, Kind::Complaint, p, R_US_EAST, channel, customer, int_ts);
                s = s.complaint(category, severity, sentiment);
                batch.push(s);
                // Cancel 2–55 minutes later, but inside the wave.
                let span = (55 * MINUTE_MS).min(wave_end - 1 - ts);
                let delay = rng.gen_range((2 * MINUTE_MS).min(span)..=span);
                let channel = pick(rng, &CANCEL_CHANNELS);
                let int_ts = rng.gen_bool(INT_TS_SHARE);
                let c = Spec::new(
                    ts + delay,
                    Kind::Cancellation,
                    p,
                    R_US_EAST,
                    channel,
                    customer,
                    int_ts,
                );
                if c.ts < m_end {
                    batch.push(c);
                } else {
                    self.scheduled.push(c);
                }
            }
            for _ in 0..poisson(rng, lambda * (1.0 - CHURN_PRECEDED_SHARE)) {
                let ts = lo + rng.gen_range(0..len);
                let customer = new_customer(rng, R_US_EAST, SEG_VIP);
                let channel = pick(rng, &CANCEL_CHANNELS);
                let int_ts = rng.gen_bool(INT_TS_SHARE);
                batch.push(Spec::new(
                    ts,
                    Kind::Cancellation,
                    p,
                    R_US_EAST,
                    channel,
                    customer,
                    int_ts,
                ));
            }
        }
    }
}
