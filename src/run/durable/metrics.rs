//! Metrics of durable state (`crisiswatch_checkpoint_*`, `crisiswatch_restore_*`).

use prometheus::{Gauge, IntCounter, IntGauge, Registry};

/// Checkpoint and restore metrics.
#[derive(Debug, Clone)]
pub(crate) struct StateMetrics {
    pub(super) duration_s: Gauge,
    pub(super) stall_s: Gauge,
    pub(super) bytes: IntGauge,
    pub(super) groups_written: IntGauge,
    pub(super) last_success: IntGauge,
    pub(super) written: IntCounter,
    pub(super) failures: IntCounter,
    pub(super) restore_s: Gauge,
    pub(super) restore_groups: IntGauge,
    pub(super) unreadable: IntGauge,
    pub(super) recreated: IntCounter,
    pub(super) unchecked: IntCounter,
}

impl StateMetrics {
    /// Registers the metrics.
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let seconds = |name: &str, help: &str| -> Result<Gauge, prometheus::Error> {
            let g = Gauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(StateMetrics {
            duration_s: seconds(
                "crisiswatch_checkpoint_duration_seconds",
                "How long the last checkpoint took, snapshot of the changes to fsynced write.",
            )?,
            stall_s: seconds(
                "crisiswatch_checkpoint_stall_seconds",
                "How long the last checkpoint held up the engine task (encoding the groups changed since the previous one; the write runs beside it).",
            )?,
            bytes: gauge(
                "crisiswatch_checkpoint_bytes",
                "Bytes of engine state the last checkpoint wrote (the changed groups' rows, new dedup ids, the record).",
            )?,
            groups_written: gauge(
                "crisiswatch_checkpoint_groups_written",
                "Groups whose rows the last checkpoint wrote (changed since the previous one; every live group when it was full).",
            )?,
            // The process's start until its first checkpoint, so the age
            // counts from there: at 0 it read as 56 years, and the stale
            // alert went pending at every start.
            last_success: {
                let g = gauge(
                    "crisiswatch_checkpoint_last_success_timestamp_seconds",
                    "Wall-clock time of the last checkpoint written, or of the process's start before its first one (age: time() minus this).",
                )?;
                g.set(chrono::Utc::now().timestamp());
                g
            },
            written: counter("crisiswatch_checkpoints_total", "Checkpoints written.")?,
            failures: counter(
                "crisiswatch_checkpoint_failures_total",
                "Checkpoints that could not be written (commits wait for the next one).",
            )?,
            restore_s: seconds(
                "crisiswatch_restore_duration_seconds",
                "How long loading the checkpoint took at start.",
            )?,
            restore_groups: gauge(
                "crisiswatch_restore_groups",
                "Live groups restored from the checkpoint at start.",
            )?,
            unreadable: gauge(
                "crisiswatch_checkpoint_unreadable",
                "1 while the stored checkpoint cannot be loaded (corrupt or of another format): nothing is consumed or overwritten until `crisiswatch state reset`.",
            )?,
            recreated: counter(
                "crisiswatch_restore_recreated_partitions_total",
                "Restored partitions whose broker holds other messages than those the checkpoint read (recreated while the service was down): none of their messages was skipped.",
            )?,
            unchecked: counter(
                "crisiswatch_restore_unchecked_partitions_total",
                "Restored partitions whose last message the broker did not show in time (or answered with an error): their covered offsets were skipped unchecked.",
            )?,
        })
    }
}
