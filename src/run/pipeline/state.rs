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
        self.durable = Some(d);
        Ok(())
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
