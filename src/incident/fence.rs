//! Scaled out (`sources.kafka.scale_out`): notifications wait while this
//! process may have lost its incident partitions without knowing it yet.
//!
//! A process stopped for a while (`SIGSTOP`, a paused VM, a machine deep in
//! swap) sends no heartbeat; after `session.timeout.ms` the group gives its
//! partitions to another instance, which sends what they queued. When the
//! process resumes, its delivery workers run before its consumer learns of
//! the loss (the revoke comes with the consumer's next poll): they sent
//! notifications the new owner had already sent, older ones after newer —
//! in a field trial a PagerDuty `trigger` arrived after the new owner's
//! `resolve` and re-opened the incident for good.
//!
//! A watchdog thread ticks every [`TICK`]; a tick late by more than
//! `suspect_after` (half the session timeout: a shorter stop cannot have
//! cost the session) means the process was stopped. Deliveries then wait
//! until the group has confirmed this instance's incident partitions since
//! — its ownership updated by a rebalance ([`Fence::confirm`]) — or, when no
//! rebalance comes (the group kept them), until the session timeout has
//! passed since the stop was seen: a lost session is noticed long before
//! that. A delivery worker that runs before the watchdog after a stop sees
//! the watchdog's last tick too old and waits as well.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the watchdog ticks.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Fence {
    /// The reference instant of the millisecond counts below.
    origin: Instant,
    /// The watchdog's last tick (ms since `origin`).
    alive_ms: AtomicU64,
    /// A stop was seen and not confirmed yet.
    suspect: AtomicBool,
    /// When the stop was seen (ms since `origin`; while `suspect`).
    seen_ms: AtomicU64,
    suspect_after_ms: u64,
    session_ms: u64,
}

impl Fence {
    /// A fence for a consumer session timeout of `session_ms`, ticked by a
    /// watchdog thread of its own (which ends when the fence is dropped).
    pub(crate) fn start(session_ms: u64) -> Arc<Fence> {
        let fence = Arc::new(Fence::new(Instant::now(), session_ms));
        let weak: Weak<Fence> = Arc::downgrade(&fence);
        let spawned = std::thread::Builder::new()
            .name("crisiswatch-fence".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                match weak.upgrade() {
                    Some(f) => f.tick(Instant::now()),
                    None => break,
                }
            });
        if let Err(e) = spawned {
            // Without it every delivery would wait: none does instead.
            tracing::error!(error = %e, "Cannot start the stop watchdog; deliveries are not held after a stop.");
            fence.disable();
        }
        fence
    }

    fn new(origin: Instant, session_ms: u64) -> Fence {
        Fence {
            origin,
            alive_ms: AtomicU64::new(0),
            suspect: AtomicBool::new(false),
            seen_ms: AtomicU64::new(0),
            suspect_after_ms: (session_ms / 2).max(1_000),
            session_ms,
        }
    }

    /// Never holds (no watchdog).
    fn disable(&self) {
        // A watchdog that never ticks must not read as a stop.
        self.alive_ms.store(u64::MAX, Ordering::SeqCst);
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// The watchdog's tick at `at`.
    pub(crate) fn tick(&self, at: Instant) {
        let now = self.ms(at);
        let before = self.alive_ms.load(Ordering::SeqCst);
        if before != u64::MAX && now.saturating_sub(before) > self.suspect_after_ms {
            let gap = now - before;
            // Suspect first, then the tick: a worker that reads the new
            // tick reads the suspicion too.
            self.seen_ms.store(now, Ordering::SeqCst);
            self.suspect.store(true, Ordering::SeqCst);
            tracing::warn!(
                stopped_ms = gap,
                "This process was stopped for {:.1} s (more than half the consumer session timeout): its incident partitions may be another instance's by now; notifications wait until the consumer group confirms this instance's partitions (at most {:.0} s).",
                gap as f64 / 1000.0,
                self.session_ms as f64 / 1000.0,
            );
        }
        if before != u64::MAX {
            self.alive_ms.store(now, Ordering::SeqCst);
        }
    }

    /// This instance's incident partitions were updated by the group (a
    /// rebalance handled): what it holds now is its own.
    pub(crate) fn confirm(&self) {
        if self.suspect.swap(false, Ordering::SeqCst) {
            tracing::info!("The consumer group confirmed this instance's incident partitions after the stop: notifications go out again.");
        }
    }

    /// Whether a notification must wait at `at` (see the module docs).
    pub(crate) fn holds(&self, at: Instant) -> bool {
        let now = self.ms(at);
        let alive = self.alive_ms.load(Ordering::SeqCst);
        if self.suspect.load(Ordering::SeqCst) {
            let seen = self.seen_ms.load(Ordering::SeqCst);
            if now.saturating_sub(seen) < self.session_ms {
                return true;
            }
            // No rebalance came within a session timeout: the group kept
            // this instance's partitions.
            if self.suspect.swap(false, Ordering::SeqCst) {
                tracing::info!("No rebalance after the stop within the consumer session timeout: this instance kept its incident partitions; notifications go out again.");
            }
            return false;
        }
        // The watchdog has not run since a stop: it would have seen one.
        alive != u64::MAX && now.saturating_sub(alive) > self.suspect_after_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(f: &Fence, ms: u64) -> Instant {
        f.origin + Duration::from_millis(ms)
    }

    #[test]
    fn ticks_on_time_hold_nothing() {
        let f = Fence::new(Instant::now(), 6_000);
        for t in (0..20_000).step_by(100) {
            f.tick(at(&f, t));
            assert!(!f.holds(at(&f, t + 50)), "{t}");
        }
    }

    #[test]
    fn a_stop_holds_until_a_rebalance_confirms() {
        let f = Fence::new(Instant::now(), 6_000);
        f.tick(at(&f, 1_000));
        // Resumed 10 s later: a worker running before the watchdog waits.
        assert!(f.holds(at(&f, 11_000)));
        f.tick(at(&f, 11_001));
        assert!(f.holds(at(&f, 11_002)));
        f.tick(at(&f, 11_100));
        assert!(f.holds(at(&f, 12_000)));
        f.confirm();
        assert!(!f.holds(at(&f, 12_001)));
    }

    #[test]
    fn a_stop_without_a_rebalance_holds_one_session_timeout() {
        let f = Fence::new(Instant::now(), 6_000);
        f.tick(at(&f, 0));
        f.tick(at(&f, 4_000)); // 4 s: more than half of 6 s
        for t in (4_100..10_000).step_by(100) {
            f.tick(at(&f, t));
            assert!(f.holds(at(&f, t)), "{t}");
        }
        f.tick(at(&f, 10_000));
        assert!(!f.holds(at(&f, 10_000)));
        assert!(!f.holds(at(&f, 10_050)));
    }

    #[test]
    fn a_short_stop_holds_nothing() {
        let f = Fence::new(Instant::now(), 45_000);
        f.tick(at(&f, 0));
        // 20 s of a 45 s session timeout cannot have cost the session.
        assert!(!f.holds(at(&f, 20_000)));
        f.tick(at(&f, 20_000));
        assert!(!f.holds(at(&f, 20_001)));
        // 30 s can.
        assert!(f.holds(at(&f, 50_000)));
    }
}
