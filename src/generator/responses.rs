//! First responses: the support team answering complaints (the response-SLA
//! backlog's input, issue 14 item 2). Each complaint gets one response, a
//! `type = "response"` event whose `ref_id` names the complaint's `id`:
//!
//! ```text
//! {"id":"e-7-r1042","type":"response","ts":"2026-11-22T06:17:40.512Z","customer_id":"c-110293","ref_id":"e-7-1042"}
//! ```
//!
//! * **When**: normally 2–40 minutes after the complaint; for a complaint of
//!   a complaint crisis (the quality surge's or the social spike's slice,
//!   inside its interval) 40 minutes to 4 hours after it — the team is
//!   overwhelmed. A response due at or after the end of the period is not
//!   sent by this generator (the complaint stays unanswered in a history of
//!   one period); a history of consecutive periods hands it to the next
//!   period's generator (`take_carry_over`, `carry_in`).
//! * **Ids**: `e-<seed>-r<N>` for the complaint `e-<seed>-<N>`: their own id
//!   space, so every other event keeps its id.
//! * **Randomness**: the delay is a keyed hash of the complaint (seed, time,
//!   customer, slice, channel), not a draw from the generator's streams, so
//!   every other event is exactly what it was without responses, and a
//!   complaint outside the crises is answered at the same time with or
//!   without crises. Responses carry no noise (no late copies, redeliveries
//!   or malformed twins).

use super::*;

/// Normal delay of a first response: [2 min, 40 min).
pub(super) const RESPONSE_FAST_MS: (i64, i64) = (2 * MINUTE_MS, 40 * MINUTE_MS);
/// Delay of a first response to a complaint of a complaint crisis: [40 min, 4 h).
pub(super) const RESPONSE_SLOW_MS: (i64, i64) = (40 * MINUTE_MS, 240 * MINUTE_MS);

impl Generator {
    /// The first responses to this period's complaints that fall after its
    /// end (each `(ts, line)`), which this generator never returns: a history
    /// made of consecutive periods passes them to the next period's
    /// generator ([`Generator::carry_in`]), so the complaints of one
    /// period's last minutes are answered in the next, as in a continuous
    /// stream, instead of staying unanswered at every period's boundary.
    pub fn take_carry_over(&mut self) -> Vec<(i64, Vec<u8>)> {
        std::mem::take(&mut self.carry_over)
    }

    /// Sends `lines` (the previous period's [`Generator::take_carry_over`])
    /// in time order with this period's own lines. Call it before the first
    /// [`Generator::generate_until`].
    pub fn carry_in(&mut self, lines: Vec<(i64, Vec<u8>)>) {
        for (ts, line) in lines {
            self.push_pending(ts, line);
        }
    }

    /// Queues the first response to complaint `id` (`spec`); one that falls
    /// after the period goes to the carry-over.
    pub(super) fn respond(&mut self, id: u64, spec: &Spec) {
        let (lo, hi) = if self.overwhelmed(spec) {
            RESPONSE_SLOW_MS
        } else {
            RESPONSE_FAST_MS
        };
        let key = response_key(self.settings.seed, spec);
        // hi > lo, so the span is positive and the remainder below it.
        let span = u64::try_from(hi - lo).unwrap_or(1).max(1);
        let delay = lo + i64::try_from(key % span).unwrap_or(0);
        let ts = spec.ts.saturating_add(delay);
        let mut line = Vec::with_capacity(128);
        line.extend_from_slice(&self.id_prefix);
        line.push(b'r');
        push_u64(&mut line, id);
        line.extend_from_slice(b"\",\"type\":\"response\",\"ts\":");
        self.write_ts(&mut line, ts, false);
        line.extend_from_slice(b",\"customer_id\":\"c-");
        push_u64(&mut line, u64::from(CUSTOMER_ID_BASE + spec.customer));
        line.extend_from_slice(b"\",\"ref_id\":\"e-");
        push_u64(&mut line, self.settings.seed);
        line.push(b'-');
        push_u64(&mut line, id);
        line.extend_from_slice(b"\"}");
        if ts >= self.end_ms {
            self.carry_over.push((ts, line));
        } else {
            self.push_pending(ts, line);
        }
    }

    /// Whether `spec` is a complaint of a complaint crisis (the quality
    /// surge's or the social spike's slice, inside its interval).
    pub(super) fn overwhelmed(&self, spec: &Spec) -> bool {
        let (p, r, ch) = (
            usize::from(spec.product),
            usize::from(spec.region),
            usize::from(spec.channel),
        );
        (p == P_ROUTER_X && r == R_EU_WEST && self.quality.is_some_and(|w| w.contains(spec.ts)))
            || (p == P_PHONE_Z
                && ch == CH_SOCIAL
                && self.social.is_some_and(|w| w.contains(spec.ts)))
    }
}

/// A hash of the complaint's content under `seed` (splitmix64 rounds): the
/// response delay's randomness, independent of generation order.
fn response_key(seed: u64, spec: &Spec) -> u64 {
    let who = (u64::from(spec.customer) << 24)
        | (u64::from(spec.product) << 16)
        | (u64::from(spec.region) << 8)
        | u64::from(spec.channel);
    mix(seed ^ mix(spec.ts as u64 ^ mix(who)))
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
