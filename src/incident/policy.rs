//! The delivery policy, as pure functions of the attempt history: how a
//! response is classified, how long to wait before the next attempt
//! (exponential backoff with jitter, honouring `Retry-After`), and the
//! per-receiver circuit breaker.
//!
//! Used by the delivery workers; kept free of I/O and clocks (times are
//! passed in, randomness is an argument) so property tests pin it down.

use rand::Rng;

use crate::config::DeliveryConfig;

/// Why an attempt did not succeed; the label of `crisiswatch_notification_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// No response within the timeout.
    Timeout,
    /// No connection (refused, reset, DNS, TLS).
    Connect,
    /// 429 Too Many Requests.
    RateLimited,
    /// A 5xx.
    ServerError,
    /// Another 4xx: the receiver refuses this notification for good.
    Rejected,
    /// Anything else (unexpected status, bad response).
    Other,
}

impl FailureReason {
    /// Every reason.
    pub(crate) const ALL: [FailureReason; 6] = [
        FailureReason::Timeout,
        FailureReason::Connect,
        FailureReason::RateLimited,
        FailureReason::ServerError,
        FailureReason::Rejected,
        FailureReason::Other,
    ];

    /// Metric label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Connect => "connect",
            FailureReason::RateLimited => "rate_limited",
            FailureReason::ServerError => "server_error",
            FailureReason::Rejected => "rejected",
            FailureReason::Other => "other",
        }
    }

    /// Whether another attempt may succeed.
    pub(crate) fn retryable(self) -> bool {
        !matches!(self, FailureReason::Rejected)
    }
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// Failed; `retry_after_ms` from a `Retry-After` header.
    Failed {
        /// Why.
        reason: FailureReason,
        /// For operators: status line or error text.
        detail: String,
        /// The receiver's `Retry-After`, ms.
        retry_after_ms: Option<i64>,
    },
}

/// Classifies an HTTP status (`docs/contract.md` §4).
pub(crate) fn classify(status: u16) -> Option<FailureReason> {
    match status {
        200..=299 => None,
        429 => Some(FailureReason::RateLimited),
        // Request Timeout: the server or a proxy gave up waiting for the
        // request; RFC 9110 lets the client repeat it.
        408 => Some(FailureReason::Timeout),
        500..=599 => Some(FailureReason::ServerError),
        400..=499 => Some(FailureReason::Rejected),
        _ => Some(FailureReason::Other),
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP date (relative to
/// `now_ms`) in any of the three forms RFC 9110 §5.6.7 says a recipient
/// must accept (IMF-fixdate, RFC 850, asctime).
pub(crate) fn parse_retry_after(value: &str, now_ms: i64) -> Option<i64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX));
    }
    let at_ms = match httpdate::parse_http_date(v) {
        Ok(t) => match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(_) => return Some(0),
        },
        // A numeric offset ("+0000") is not an HTTP date; said plainly, it
        // still means that time.
        Err(_) => chrono::DateTime::parse_from_rfc2822(v)
            .ok()?
            .timestamp_millis(),
    };
    Some(at_ms.saturating_sub(now_ms).max(0))
}

/// Retry delays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Backoff {
    /// First delay, ms.
    pub(crate) initial_ms: i64,
    /// Cap, ms.
    pub(crate) max_ms: i64,
    /// ± fraction.
    pub(crate) jitter: f64,
}

impl Backoff {
    /// From a receiver's delivery settings.
    pub(crate) fn new(d: &DeliveryConfig) -> Backoff {
        Backoff {
            initial_ms: d.backoff_initial.as_ms().max(1),
            max_ms: d.backoff_max.as_ms().max(1),
            jitter: d.jitter,
        }
    }

    /// The un-jittered delay after `failures` failed attempts (≥ 1):
    /// initial × 2^(failures − 1), capped.
    pub(crate) fn base_ms(&self, failures: u32) -> i64 {
        let shift = failures.saturating_sub(1).min(40);
        self.initial_ms
            .saturating_mul(1i64 << shift)
            .min(self.max_ms)
    }

    /// A receiver's `Retry-After` as honoured: at most the backoff cap.
    pub(crate) fn cap_retry_after(&self, retry_after_ms: i64) -> i64 {
        retry_after_ms.clamp(0, self.max_ms)
    }

    /// The delay before the next attempt: the jittered base (never above the
    /// cap), and never shorter than the receiver's `Retry-After`.
    pub(crate) fn delay_ms(
        &self,
        failures: u32,
        retry_after_ms: Option<i64>,
        rng: &mut impl Rng,
    ) -> i64 {
        let base = self.base_ms(failures) as f64;
        let factor = if self.jitter > 0.0 {
            1.0 + rng.gen_range(-self.jitter..=self.jitter)
        } else {
            1.0
        };
        let d = ((base * factor).round() as i64).clamp(1, self.max_ms);
        d.max(retry_after_ms.unwrap_or(0))
    }
}

/// Per-receiver circuit breaker: after `threshold` consecutive failures no
/// attempt is made for `cooldown_ms`; then one trial attempt closes it again
/// on success or reopens it on failure.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown_ms: i64,
    consecutive: u32,
    open_until: Option<i64>,
    /// The receiver asked for a pause (`Retry-After`): nothing is sent to it
    /// before this, whichever notification it refused.
    held_until: Option<i64>,
}

// === impl Breaker ===

impl Breaker {
    /// A closed breaker; `threshold = 0` never opens.
    pub(crate) fn new(threshold: u32, cooldown_ms: i64) -> Breaker {
        Breaker {
            threshold,
            cooldown_ms,
            consecutive: 0,
            open_until: None,
            held_until: None,
        }
    }

    /// `None` when attempts may go ahead at `now`, else when they may.
    pub(crate) fn blocked_until(&self, now: i64) -> Option<i64> {
        [self.open_until, self.held_until]
            .into_iter()
            .flatten()
            .filter(|&t| now < t)
            .max()
    }

    /// The receiver said `Retry-After` (ms from `now`): hold every
    /// notification to it until then, not only the refused one.
    pub(crate) fn hold(&mut self, now: i64, retry_after_ms: i64) {
        let until = now.saturating_add(retry_after_ms.max(0));
        self.held_until = Some(self.held_until.map_or(until, |h| h.max(until)));
    }

    /// Whether the breaker is open (including a pending trial).
    pub(crate) fn is_open(&self) -> bool {
        self.open_until.is_some()
    }

    /// Records a success (the receiver answers, even with a 4xx).
    pub(crate) fn success(&mut self) {
        self.consecutive = 0;
        self.open_until = None;
        self.held_until = None;
    }

    /// Records a retryable failure at `now`; `true` if the breaker (re)opened.
    pub(crate) fn failure(&mut self, now: i64) -> bool {
        self.consecutive = self.consecutive.saturating_add(1);
        let trial_failed = self.open_until.is_some();
        if self.threshold > 0 && (trial_failed || self.consecutive >= self.threshold) {
            self.open_until = Some(now.saturating_add(self.cooldown_ms));
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    proptest! {
        #[test]
        fn delays_stay_within_jitter_and_cap(
            initial in 1i64..10_000, factor in 1i64..1000, jitter in 0.0f64..0.99,
            failures in 1u32..64, ra in proptest::option::of(0i64..1_000_000), seed: u64,
        ) {
            let b = Backoff { initial_ms: initial, max_ms: initial * factor, jitter };
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let d = b.delay_ms(failures, ra, &mut rng);
            let base = b.base_ms(failures) as f64;
            prop_assert!(base <= b.max_ms as f64);
            let lo = ((base * (1.0 - jitter)).floor() as i64).max(1);
            let hi = ((base * (1.0 + jitter)).ceil() as i64).min(b.max_ms);
            match ra {
                Some(r) if r > hi => prop_assert_eq!(d, r),
                Some(r) => prop_assert!(d >= lo.max(r) && d <= hi),
                None => prop_assert!(d >= lo && d <= hi, "{} not in [{}, {}]", d, lo, hi),
            }
        }

        #[test]
        fn base_doubles_until_the_cap(initial in 1i64..1000, failures in 1u32..30) {
            let b = Backoff { initial_ms: initial, max_ms: i64::MAX / 4, jitter: 0.0 };
            prop_assert_eq!(b.base_ms(failures + 1), b.base_ms(failures) * 2);
        }
    }

    #[test]
    fn a_retry_after_is_honoured_up_to_backoff_max() {
        let b = Backoff {
            initial_ms: 1000,
            max_ms: 300_000,
            jitter: 0.0,
        };
        assert_eq!(b.cap_retry_after(20_000), 20_000);
        let far = parse_retry_after("Wed, 21 Oct 2099 07:28:00 GMT", 0).unwrap();
        assert_eq!(b.cap_retry_after(far), 300_000);
        assert_eq!(b.cap_retry_after(86_400_000), 300_000);
    }

    #[test]
    fn statuses_and_retry_after() {
        assert_eq!(classify(202), None);
        assert_eq!(classify(429), Some(FailureReason::RateLimited));
        assert_eq!(classify(503), Some(FailureReason::ServerError));
        assert_eq!(classify(400), Some(FailureReason::Rejected));
        assert!(!FailureReason::Rejected.retryable());
        assert_eq!(parse_retry_after("1", 0), Some(1000));
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(30_000)
        );
        // The two obsolete forms a recipient must accept too (RFC 9110
        // §5.6.7: RFC 850 and asctime), and a numeric offset.
        for form in [
            "Wednesday, 21-Oct-15 07:28:30 GMT",
            "Wed Oct 21 07:28:30 2015",
            "Wed, 21 Oct 2015 07:28:30 +0000",
        ] {
            assert_eq!(parse_retry_after(form, now), Some(30_000), "{form}");
        }
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", 0), None);
        // 408: the server gave up waiting for the request; retried.
        assert_eq!(classify(408), Some(FailureReason::Timeout));
        assert!(FailureReason::Timeout.retryable());
    }

    #[test]
    fn breaker_opens_after_threshold_and_trial_decides() {
        let mut b = Breaker::new(3, 1000);
        assert!(!b.failure(0) && !b.failure(1));
        assert!(b.failure(2));
        assert_eq!(b.blocked_until(500), Some(1002));
        assert_eq!(
            b.blocked_until(1002),
            None,
            "trial allowed after the cooldown"
        );
        assert!(b.failure(1002), "a failed trial reopens at once");
        assert_eq!(b.blocked_until(1500), Some(2002));
        b.success();
        assert!(!b.is_open() && b.blocked_until(1500).is_none());
        let mut never = Breaker::new(0, 1000);
        assert!((0..100).all(|t| !never.failure(t)));
    }
}
