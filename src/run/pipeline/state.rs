//! Durable state of the engine stage: turning it on (restore, the broker
//! check of the restored partitions) and writing checkpoints
//! (`super::super::durable`).

use super::*;

impl Stage {
    /// Turns durable state on: restores the checkpoint in `store` (if any)
    /// and writes one every `every` from now on.
    pub(crate) fn restore_state(
        &mut self,
        store: Result<crate::state::StateStore, crate::state::StateError>,
        every: std::time::Duration,
        grace: std::time::Duration,
        metrics: StateMetrics,
    ) -> Result<(), RunError> {
        let mut tracker = self.shared.tracker();
        let d = Durable::restore(
            store,
            (every, grace),
            metrics,
            &self.shared.topics,
            &mut self.engine,
            &mut self.feed,
            &mut tracker,
        )?;
        drop(tracker);
        let open = self.sink.manager().open_incidents().len();
        if d.started_empty() && open > 0 {
            // The outbox remembers incidents the engine does not: its
            // state was removed (or never written beside this outbox).
            tracing::warn!(
                open_incidents = open,
                "No checkpoint, but the outbox holds open incidents: the engine state was removed or lost (state.sqlite), so the alerts behind them start over empty and those incidents close as alert_gone; events read before are not read again unless the consumer group's offsets are reset."
            );
        }
        // The outbox moved aside or removed beside the checkpoint: the
        // restored firing alerts' incidents come back under their keys.
        match self
            .sink
            .manager()
            .adopt_firing(&self.engine.firing_transitions())
        {
            Ok(adopted) if !adopted.is_empty() => tracing::warn!(
                alerts = adopted.len(),
                first = %adopted[0],
                "The checkpoint holds firing alerts the outbox never heard of (outbox.sqlite moved aside or removed): their incidents open again under the keys they had, so the receivers paged before hear their updates and resolve."
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "Cannot hand the restored firing alerts to the outbox: their incidents stay unknown until the alerts fire again.")
            }
        }
        self.durable = Some(d);
        Ok(())
    }

    /// Whether a checkpoint was loaded (at the start, or once a refused
    /// store became readable) since the last call.
    pub(crate) fn take_loaded(&mut self) -> bool {
        self.durable.as_mut().is_some_and(Durable::take_loaded)
    }

    /// Checks the restored partitions against the broker of `k` before
    /// anything is skipped (`source::identity`); the stage consumes nothing
    /// meanwhile.
    pub(crate) fn check_restore(&mut self, k: &crate::config::KafkaSourceConfig) {
        if let Some(d) = &mut self.durable {
            d.check_with(k.clone(), &self.shared.topics);
        }
    }

    /// Checkpoints now (durable state on), after what is pending in the
    /// outbox; `wait`: until it is written.
    pub(super) fn checkpoint(&mut self, wait: bool) {
        if self.blocked.is_some() {
            // The engine is ahead of the outbox: such a checkpoint would lose
            // the transitions not yet stored.
            return;
        }
        if let Some(d) = &mut self.durable {
            d.checkpoint(
                &mut self.engine,
                &mut self.feed,
                &self.shared,
                &self.reread,
                wait,
            );
        }
    }
}
