//! When opens and progress updates go out: at the end of a new incident's
//! group window, and every `update_interval` of event time an open incident
//! passes without other news — one per interval at the interval's own time,
//! however late the service looks, so that an incident's notifications and
//! their `seq` are a function of the transitions and of event time alone
//! (live equals replay). Only the current values they carry are taken when
//! they are made.

use std::collections::{BTreeSet, HashMap};

use super::super::model::{Action, AlertEvidence, Reason};
use super::{emit, emit_showing, release, Changes, Incident, Lifecycle, NoValues, ValueSource};

/// The most progress updates an incident sends in a row without other news
/// (a clock that leapt weeks, a tiny `update_interval`): then none until the
/// incident changes. Counted in event time, so the same in every run.
pub(super) const MAX_QUIET_UPDATES: u32 = 1000;

impl Incident {
    /// When its next open, held update or progress update is due (while an
    /// update is held, progress updates wait: there is news).
    fn due_at(&self) -> Option<i64> {
        if let Some(h) = self.held {
            Some(h.due)
        } else if self.opened {
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
    /// tick, each transition of a replay). Only the current values a
    /// progress update shows are those `values` gives when it is made; they
    /// are not kept, so every other notification carries the evidence of
    /// the transitions alone.
    pub(crate) fn due(&mut self, now: i64, values: &mut dyn ValueSource, ch: &mut Changes) {
        let interval = self.update_interval_ms;
        // In event-time order across incidents (then by key), as a replay
        // that looks before every transition sends them.
        let mut queue: BTreeSet<(i64, String)> = self
            .incidents
            .values()
            .filter_map(|i| i.due_at().filter(|&d| d <= now).map(|d| (d, i.key.clone())))
            .collect();
        // Current values, taken once per incident and look.
        let mut current: HashMap<String, Vec<AlertEvidence>> = HashMap::new();
        while let Some((at, key)) = queue.pop_first() {
            let Some(inc) = self.incidents.get_mut(&key) else {
                continue;
            };
            if inc.held.is_some() {
                // Event time passed its instant: nothing more can join it.
                release(inc, interval, ch);
            } else if !inc.opened {
                // The evidence of the transitions: the same in every run.
                emit(inc, Action::Open, Reason::Opened, at, interval, ch);
            } else if inc.quiet >= MAX_QUIET_UPDATES {
                inc.next_update_at = None;
                tracing::warn!(incident = %inc.key, "{MAX_QUIET_UPDATES} progress updates in a row without other news: no more until the incident changes.");
            } else {
                let shown = current
                    .entry(key)
                    .or_insert_with(|| with_current_values(inc, values))
                    .clone();
                emit_showing(
                    inc,
                    Action::Update,
                    Reason::Progress,
                    at,
                    interval,
                    shown,
                    ch,
                );
            }
            // `emit` moved `next_update_at` one interval on (`None` when
            // progress updates are off or time ran out).
            // (A held update's release may leave the next one due at the
            // same look: every other step moves it strictly on.)
            if let Some(d) = inc.due_at().filter(|&d| d <= now && d >= at) {
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
        // Updates held at `now` itself: nothing can join them any more.
        for inc in self.incidents.values_mut() {
            release(inc, interval, ch);
        }
        // At the time it would have gone out had the input gone on: the
        // same `at` as a run that reads further.
        for inc in self.incidents.values_mut().filter(|i| !i.opened) {
            let at = inc.open_at.max(inc.started_at);
            emit(inc, Action::Open, Reason::Opened, at, interval, ch);
        }
    }

    /// The earliest event time at which [`Lifecycle::due`] has something to do.
    pub(crate) fn next_due(&self) -> Option<i64> {
        self.incidents.values().filter_map(Incident::due_at).min()
    }
}

/// The incident's alerts as a progress update shows them: the active
/// ones with the current value folded into value and peak and the current
/// hints; the peak also folds the worst value an earlier update showed
/// (kept in `shown_peaks`), so it never goes back. Shown only: the
/// incident keeps the evidence of its transitions, so every other
/// notification is the same in every run.
fn with_current_values(inc: &mut Incident, values: &mut dyn ValueSource) -> Vec<AlertEvidence> {
    let mut shown = inc.alerts.clone();
    for a in shown.iter_mut().filter(|a| a.active) {
        // The earlier peak folds into the peak only, not the value.
        let latest = a.value;
        if let Some(&p) = inc.shown_peaks.get(&a.dedup_key) {
            a.observe(Some(p));
        }
        a.value = latest;
        a.observe(values.current(&a.rule, &a.group));
        if let Some(h) = values.hints(&a.rule, &a.group) {
            a.hints = h;
        }
    }
    inc.shown_peaks = shown
        .iter()
        .filter(|a| a.active)
        .filter_map(|a| Some((a.dedup_key.clone(), a.peak?)))
        .collect();
    shown
}
