//! When opens and progress updates go out: at the end of a new incident's
//! group window, and every `update_interval` of event time an open incident
//! passes without other news — one per interval at the interval's own time,
//! however late the service looks, so that an incident's notifications and
//! their `seq` are a function of the transitions and of event time alone
//! (live equals replay). Only the current values they carry are taken when
//! they are made.

use std::collections::{BTreeSet, HashMap};

use super::super::model::{Action, Reason};
use super::{emit, Changes, Incident, Lifecycle, NoValues, ValueSource};

/// The most progress updates one incident sends at once for intervals that
/// passed while nobody looked: beyond (a clock that leapt weeks of event
/// time), the rest are skipped.
pub(super) const MAX_CATCH_UP: u32 = 1000;

impl Incident {
    /// When its next open or progress update is due.
    fn due_at(&self) -> Option<i64> {
        if self.opened {
            self.next_update_at
        } else {
            Some(self.open_at)
        }
    }
}

impl Lifecycle {
    /// Sends the opens whose group window has passed and the progress updates
    /// due at event time `now`.
    ///
    /// Every `update_interval` of event time without other news sends one
    /// progress update, at the boundary's own time: a look that finds several
    /// intervals passed (a backlog read fast, a clock that jumped) sends one
    /// per interval. Their number, times and `seq` — and so the `seq` of every
    /// later notification — are then a function of the transitions and of
    /// event time alone, however often the service looks (each batch, each
    /// tick, each transition of a replay). The values they carry are those
    /// `values` gives when they are made.
    pub(crate) fn due(&mut self, now: i64, values: &mut dyn ValueSource, ch: &mut Changes) {
        let interval = self.update_interval_ms;
        // In event-time order across incidents (then by key), as a replay
        // that looks before every transition sends them.
        let mut queue: BTreeSet<(i64, String)> = self
            .incidents
            .values()
            .filter_map(|i| i.due_at().filter(|&d| d <= now).map(|d| (d, i.key.clone())))
            .collect();
        let mut sent: HashMap<String, u32> = HashMap::new();
        while let Some((at, key)) = queue.pop_first() {
            let Some(inc) = self.incidents.get_mut(&key) else {
                continue;
            };
            let count = sent.entry(key).or_default();
            if *count == 0 {
                refresh(inc, values);
            }
            if !inc.opened {
                emit(inc, Action::Open, Reason::Opened, at, interval, ch);
            } else if *count < MAX_CATCH_UP {
                emit(inc, Action::Update, Reason::Progress, at, interval, ch);
            } else {
                // A guard, not the rule: a clock that leapt this far skips
                // to the next boundary after `now`.
                let skip = now.saturating_sub(at) / interval.max(1) + 1;
                inc.next_update_at = Some(at.saturating_add(skip.saturating_mul(interval)));
                tracing::warn!(incident = %inc.key, skipped = skip, "Event time leapt more than {MAX_CATCH_UP} progress intervals at once: progress updates skipped to the next interval.");
            }
            *count += 1;
            // `emit` moved `next_update_at` one interval on (`None` when
            // progress updates are off or time ran out).
            if let Some(d) = inc.due_at().filter(|&d| d <= now && d > at) {
                queue.insert((d, inc.key.clone()));
            }
        }
    }

    /// The input ended at event time `now`: sends what fell due by then, as
    /// [`Lifecycle::due`] would (with the last values seen), then every
    /// `open` still waiting for its group window (no alert can join any more).
    pub(crate) fn flush(&mut self, now: i64, ch: &mut Changes) {
        self.due(now, &mut NoValues, ch);
        let interval = self.update_interval_ms;
        for inc in self.incidents.values_mut().filter(|i| !i.opened) {
            let at = now.max(inc.started_at);
            emit(inc, Action::Open, Reason::Opened, at, interval, ch);
        }
    }

    /// The earliest event time at which [`Lifecycle::due`] has something to do.
    pub(crate) fn next_due(&self) -> Option<i64> {
        self.incidents.values().filter_map(Incident::due_at).min()
    }
}

fn refresh(inc: &mut Incident, values: &mut dyn ValueSource) {
    for a in inc.alerts.iter_mut().filter(|a| a.active) {
        let v = values.current(&a.rule, &a.group);
        a.observe(v);
        if let Some(h) = values.hints(&a.rule, &a.group) {
            a.hints = h;
        }
    }
}
