//! Where the live service's alert transitions go: the incident manager.
//!
//! Every batch's transitions are persisted to the incident outbox
//! ([`IncidentManager::submit`]) *before* the batch's offsets become
//! committable, so a crash between the two re-reads the events rather than
//! losing an incident. The manager groups alerts into incidents and delivers
//! them to the configured receivers (`console` writes to standard output).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::alert::Transition;
use crate::config::Config;
use crate::engine::{EngineView, ShardedEngine};
use crate::http::AppState;
use crate::incident::{IncidentError, IncidentManager, ManagerOptions};

/// The transition output of `crisiswatch run`.
#[derive(Debug)]
pub(crate) struct TransitionSink {
    manager: Arc<IncidentManager>,
    /// Transitions submitted.
    submitted: u64,
}

impl TransitionSink {
    /// Opens the incident outbox in `incidents.data_dir` and starts delivery;
    /// attaches the outbox to the silences API. Must run inside the runtime.
    pub(crate) fn open(cfg: &Config, state: &AppState) -> Result<Self, IncidentError> {
        let manager = IncidentManager::open(
            cfg,
            state.metrics.registry(),
            Path::new(&cfg.incidents.data_dir),
            ManagerOptions {
                console: Some(Box::new(std::io::stdout())),
                serves_console: !cfg.server.listen.is_empty(),
                hand_off_queued: cfg
                    .sources
                    .kafka
                    .as_ref()
                    .is_some_and(|k| k.scale_out.is_some()),
            },
        )?;
        crate::http::silences::attach(state, Arc::clone(manager.outbox()));
        Ok(TransitionSink {
            manager,
            submitted: 0,
        })
    }

    /// Persists a batch of transitions (in order) at event time `now`.
    pub(crate) fn submit(
        &mut self,
        transitions: &[Transition],
        now: i64,
    ) -> Result<(), IncidentError> {
        if transitions.is_empty() {
            return Ok(());
        }
        for t in transitions {
            tracing::debug!(rule = %t.rule, state = t.state.as_str(), dedup_key = %t.dedup_key, "Alert transition.");
        }
        self.manager.submit(transitions, now)?;
        self.submitted += transitions.len() as u64;
        Ok(())
    }

    /// Sends the opens and progress updates due at event time `now`.
    pub(crate) fn tick(
        &mut self,
        now: i64,
        engine: &mut ShardedEngine,
    ) -> Result<(), IncidentError> {
        self.manager.tick(now, engine).map(|_| ())
    }

    /// The incident manager (for a configuration reload).
    pub(crate) fn manager(&self) -> &Arc<IncidentManager> {
        &self.manager
    }

    /// Applies operators' close requests and closes incidents whose alerts
    /// the engine no longer has (`check_engine`: compare with the engine now;
    /// it walks every live group, so the stage does it at start and every
    /// few seconds while an incident has active alerts).
    /// `quiet_clock`: the event time to judge by when the engine has no
    /// clock yet because the stream has been quiet since the start.
    pub(crate) fn operator(
        &mut self,
        engine: &ShardedEngine,
        check_engine: bool,
        quiet_clock: Option<i64>,
    ) -> Result<(), IncidentError> {
        self.manager.apply_close_requests()?;
        if check_engine && self.manager.has_active_alerts() {
            let live: std::collections::HashSet<String> =
                engine.active_alert_keys().into_iter().collect();
            let rules: std::collections::HashSet<String> = (0..engine.rule_count())
                .map(|i| engine.rule_config(i).name.clone())
                .collect();
            self.manager
                .retire_missing(&live, &rules, engine.clock().or(quiet_clock))?;
        }
        Ok(())
    }

    /// Transitions submitted so far.
    pub(crate) fn submitted(&self) -> u64 {
        self.submitted
    }

    /// Drains pending notifications for at most `timeout`; the rest stays in
    /// the outbox for the next start.
    pub(crate) async fn shutdown(&self, timeout: Duration) {
        let report = self.manager.shutdown(timeout).await;
        if report.pending > 0 {
            tracing::info!(
                pending = report.pending,
                "Notifications left in the outbox for the next start."
            );
        }
    }
}

/// The live service's engine answers the incident stage's progress updates.
impl crate::incident::lifecycle::ValueSource for crate::engine::ShardedEngine {
    fn current(&mut self, rule: &str, group: &crate::alert::Labels) -> Option<f64> {
        self.current_value(rule, group)
    }

    fn hints(
        &mut self,
        rule: &str,
        group: &crate::alert::Labels,
    ) -> Option<Vec<crate::explain::Hint>> {
        crate::engine::ShardedEngine::hints(self, rule, group)
    }
}
