//! Live-mode event time: advancing the engine clock when the stream goes quiet.
//!
//! In replay the engine clock is the newest event time, so a slice that goes
//! quiet still resolves as later events move time on. In a live stream the
//! whole input can go quiet (night, an upstream outage); then no event moves
//! time and an open incident would never resolve. [`IdleClock`] lets the live
//! driver advance event time with the wall clock once no event has arrived for
//! `engine.idle_timeout`: from then on event time flows at wall-clock speed from
//! the last event time seen — over the wall time the consumer confirmed the
//! stream quiet (caught up, its broker answering: [`UnconfirmedTime`]); a
//! stretch cut off from the broker does not count, since its events are
//! still on their way. It uses tokio's clock, so tests drive it with paused
//! time.

use std::time::Duration;

use tokio::time::Instant;

/// Wall time of a quiet stretch during which the source was not confirmed
/// quiet (the broker did not answer, or the consumer was behind): the
/// stretch's events may still come, so event time must not flow over it.
#[derive(Debug, Clone, Default)]
pub(crate) struct UnconfirmedTime {
    total: Duration,
    looked: Option<Instant>,
}

impl UnconfirmedTime {
    /// A new quiet stretch starts at `now` (an event, a restore).
    pub(crate) fn reset(&mut self, now: Instant) {
        self.total = Duration::ZERO;
        self.looked = Some(now);
    }

    /// A look at `now`: the time since the previous look counts as
    /// unconfirmed unless the source is `confirmed` quiet now.
    pub(crate) fn look(&mut self, now: Instant, confirmed: bool) {
        if let Some(prev) = self.looked {
            if !confirmed {
                self.total += now.saturating_duration_since(prev);
            }
        }
        self.looked = Some(now);
    }

    /// Unconfirmed time since the last reset.
    pub(crate) fn total(&self) -> Duration {
        self.total
    }
}

/// Tracks the last event and tells the driver how far to advance when idle.
#[derive(Debug, Clone)]
pub struct IdleClock {
    idle_timeout: Duration,
    /// Wall time and engine clock at the last event.
    last: Option<(Instant, i64)>,
    /// Of the time since `last`, what the source did not confirm quiet.
    unconfirmed: UnconfirmedTime,
    /// `last` comes from a restored checkpoint, not from events read since
    /// the start: the clock moves on from it only while nothing is left to
    /// read ([`IdleClock::idle_target_after_restore`]).
    restored: bool,
}

impl IdleClock {
    /// A clock that starts advancing after `idle_timeout` without events.
    pub(crate) fn new(idle_timeout: Duration) -> Self {
        IdleClock {
            idle_timeout,
            last: None,
            unconfirmed: UnconfirmedTime::default(),
            restored: false,
        }
    }

    /// Records that events were applied and the engine clock is `engine_clock`.
    pub(crate) fn on_events(&mut self, engine_clock: i64) {
        let now = Instant::now();
        self.last = Some((now, engine_clock));
        self.unconfirmed.reset(now);
        self.restored = false;
    }

    /// Whether the source confirms the stream quiet now (see
    /// [`crate::source::health::Health::confirmed`]); the time since the
    /// previous look counts toward idleness only if it does.
    pub(crate) fn look(&mut self, confirmed: bool) {
        self.unconfirmed.look(Instant::now(), confirmed);
    }

    /// Whether no event (nor restore) has set the clock yet.
    pub(crate) fn unset(&self) -> bool {
        self.last.is_none()
    }

    /// The engine clock came back from a checkpoint (no event read yet):
    /// without events, event time follows the wall clock from it, as after
    /// events, so that alerts open at the restart still resolve.
    pub(crate) fn on_restore(&mut self, engine_clock: i64) {
        let now = Instant::now();
        self.last = Some((now, engine_clock));
        self.unconfirmed.reset(now);
        self.restored = true;
    }

    /// [`IdleClock::idle_target`], but after a restore only once `caught_up`
    /// (every assigned partition idle: nothing left to read). A backlog
    /// written while the service was down is read first — moving the clock
    /// past it would make it late.
    pub(crate) fn idle_target_after_restore(&self, caught_up: bool) -> Option<i64> {
        if self.restored && !caught_up {
            return None;
        }
        self.idle_target()
    }

    /// The event time the engine clock should be advanced to now, if the
    /// stream has been idle for at least the timeout.
    pub(crate) fn idle_target(&self) -> Option<i64> {
        let (at, clock) = self.last?;
        let idle = Instant::now()
            .saturating_duration_since(at)
            .saturating_sub(self.unconfirmed.total());
        if idle < self.idle_timeout {
            return None;
        }
        let elapsed = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        Some(clock.saturating_add(elapsed))
    }

    /// How long until the clock would start advancing (for scheduling a tick).
    pub fn until_idle(&self) -> Duration {
        match self.last {
            None => self.idle_timeout,
            Some((at, _)) => self.idle_timeout.saturating_sub(
                Instant::now()
                    .saturating_duration_since(at)
                    .saturating_sub(self.unconfirmed.total()),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::Engine;
    use std::collections::HashMap;

    #[tokio::test(start_paused = true)]
    async fn advances_only_after_the_idle_timeout() {
        let mut c = IdleClock::new(Duration::from_secs(30));
        assert_eq!(c.idle_target(), None, "no event yet");
        c.on_events(1_000_000);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(c.idle_target(), None);
        assert_eq!(c.until_idle(), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(c.idle_target(), Some(1_030_000));
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(c.idle_target(), Some(1_120_000));
        c.on_events(2_000_000);
        assert_eq!(c.idle_target(), None, "a new event resets it");
    }

    /// Wall time the source did not confirm quiet (the broker silent, the
    /// consumer behind) does not move event time: those events may still come.
    #[tokio::test(start_paused = true)]
    async fn time_cut_off_from_the_broker_does_not_count_as_idle() {
        let mut c = IdleClock::new(Duration::from_secs(30));
        c.on_events(1_000_000);
        tokio::time::advance(Duration::from_secs(10)).await;
        c.look(true);
        // 60 s without an answer from the broker.
        tokio::time::advance(Duration::from_secs(60)).await;
        c.look(false);
        assert_eq!(c.idle_target(), None, "10 s of confirmed quiet");
        assert_eq!(c.until_idle(), Duration::from_secs(20));
        tokio::time::advance(Duration::from_secs(20)).await;
        c.look(true);
        assert_eq!(c.idle_target(), Some(1_030_000), "30 s confirmed");
        tokio::time::advance(Duration::from_secs(5)).await;
        c.look(true);
        assert_eq!(c.idle_target(), Some(1_035_000));
        // An event starts a new stretch.
        c.on_events(2_000_000);
        tokio::time::advance(Duration::from_secs(30)).await;
        c.look(true);
        assert_eq!(c.idle_target(), Some(2_030_000));
    }

    /// A firing alert resolves in a quiet live stream because the idle clock
    /// moves event time on.
    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_still_resolves() {
        let cfg = Config::from_toml_str(
            r#"
[engine]
idle_timeout = "30s"
[[rules]]
name = "c"
window = "5m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 1 }
"#,
            &HashMap::<String, String>::new(),
        )
        .unwrap();
        let mut engine = Engine::new(&cfg).unwrap();
        let mut idle = IdleClock::new(cfg.engine.idle_timeout.0);
        let mut out = Vec::new();
        let t0 = 1_795_132_800_000;
        for i in 0..2 {
            let line = format!(r#"{{"id":"{i}","type":"complaint","ts":{}}}"#, t0 + i);
            engine
                .process_bytes(line.as_bytes(), None, &mut out)
                .unwrap();
        }
        idle.on_events(engine.clock().unwrap());
        assert_eq!(out.len(), 1, "firing");
        // The live driver ticks; nothing arrives for ten minutes of wall time.
        let mut ticks = 0;
        while out.len() < 2 && ticks < 100 {
            tokio::time::sleep(Duration::from_secs(10)).await;
            if let Some(t) = idle.idle_target() {
                engine.advance_clock(t, &mut out);
            }
            ticks += 1;
        }
        assert_eq!(out[1].state, crate::alert::State::Resolved);
        // t0 is a slide boundary, so the first complaint is alone in its pane;
        // once that pane leaves the 5-minute window the count (1) is back at
        // the clear threshold and the alert resolves.
        assert_eq!(out[1].at, t0 + 4 * 60_000 + 1);
        assert!(ticks <= 40, "{ticks}");
    }
}
