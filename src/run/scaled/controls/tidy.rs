//! The controls stage's two decisions that depend on time, kept pure (the
//! wall clock is passed in) and unit-tested here: which records are
//! replaced by a tombstone ([`due`]), and when a close request that no
//! running instance holds is answered `not_open` ([`Unheld`]).

use std::collections::HashMap;

use super::record::Control;

/// Whether the record `c` is replaced by a tombstone at `now_ms` (wall
/// clock): a silence that ended (silences only ever end earlier, and a
/// tombstone read ends a silence still active anywhere); a close request,
/// outcome, feedback entry or holding from before `cutoff_ms` (now minus
/// `incidents.retention`: what the outboxes keep).
pub(super) fn due(c: &Control, now_ms: i64, cutoff_ms: i64) -> bool {
    match c {
        Control::Silence { silence } => silence.ends_at <= now_ms,
        Control::Close { requested_ms, .. } => *requested_ms < cutoff_ms,
        Control::Closed { done_ms, .. } => *done_ms < cutoff_ms,
        Control::Feedback { entry, .. } => entry.at_ms < cutoff_ms,
        Control::Holding { holding } => holding.at_ms < cutoff_ms,
    }
}

/// This instance's close requests published without a partition (nobody
/// named the incident then), and since when no running instance's holding
/// names their incident.
#[derive(Debug, Default)]
pub(super) struct Unheld {
    since: HashMap<String, i64>,
}

impl Unheld {
    /// Notes whether a holding names request `key`'s incident at `now_ms`;
    /// `true` once none has for `wait_ms` in a row: the request is
    /// answered `not_open` (the incident resolved, or only a stopped
    /// instance held it).
    pub(super) fn check(&mut self, key: &str, named: bool, now_ms: i64, wait_ms: i64) -> bool {
        if named {
            self.since.remove(key);
            return false;
        }
        let since = *self.since.entry(key.to_string()).or_insert(now_ms);
        now_ms - since >= wait_ms
    }

    /// Keeps only the requests `keep` says are still waiting.
    pub(super) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.since.retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::FeedbackEntry;
    use super::*;
    use crate::incident::peers::Holding;
    use crate::incident::silence::{Matcher, Silence};

    #[test]
    fn ended_silences_and_records_past_the_retention_are_tombstoned() {
        let silence = Silence::new(
            vec![Matcher::parse("product=p1").unwrap()],
            1_000,
            9_000,
            "ann".into(),
            String::new(),
        )
        .unwrap();
        let s = Control::Silence { silence };
        assert!(!due(&s, 9_999, 0), "active until 10 000");
        assert!(due(&s, 10_000, 0), "ended");

        let close = Control::Close {
            origin: "a".into(),
            id: 1,
            incident: "k".into(),
            reason: "r".into(),
            by: "b".into(),
            requested_ms: 5_000,
            partition: None,
        };
        let closed = Control::Closed {
            origin: "a".into(),
            id: 1,
            outcome: "closed".into(),
            done_ms: 5_000,
            by_instance: "b".into(),
        };
        let feedback = Control::Feedback {
            origin: "a".into(),
            id: 1,
            entry: FeedbackEntry::of(&crate::incident::outbox::feedback::Feedback {
                id: 1,
                incident: "k".into(),
                kind: "ack".into(),
                label: None,
                note: String::new(),
                by: "b".into(),
                at_ms: 5_000,
                labels: Vec::new(),
                alerts: Vec::new(),
            }),
        };
        let holding = Control::Holding {
            holding: Holding {
                instance: "a".into(),
                listen: String::new(),
                at_ms: 5_000,
                incidents: Vec::new(),
            },
        };
        for c in [&close, &closed, &feedback, &holding] {
            assert!(!due(c, i64::MAX, 5_000), "kept within the retention: {c:?}");
            assert!(due(c, i64::MAX, 5_001), "tombstoned past it: {c:?}");
        }
    }

    #[test]
    fn a_request_is_answered_after_going_unnamed_for_the_whole_wait() {
        let mut u = Unheld::default();
        assert!(!u.check("close/a/1", false, 1_000, 60_000));
        assert!(!u.check("close/a/1", false, 60_999, 60_000));
        // Named again (a holder took it): the wait starts over.
        assert!(!u.check("close/a/1", true, 61_000, 60_000));
        assert!(!u.check("close/a/1", false, 62_000, 60_000));
        assert!(!u.check("close/a/1", false, 121_999, 60_000));
        assert!(u.check("close/a/1", false, 122_000, 60_000));
        u.retain(|k| k != "close/a/1");
        assert!(!u.check("close/a/1", false, 200_000, 60_000), "forgotten");
    }
}
