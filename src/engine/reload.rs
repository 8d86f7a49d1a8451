//! Hot reload of the engine: unchanged rules keep their windows and alert state.

use std::cmp::Reverse;

use crate::config::{Config, RuleConfig};

use super::{check_config, Engine, EngineError, RuleRt};
use crate::dedup::Dedup;

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloadSummary {
    /// Rules kept with their state.
    pub(crate) kept: Vec<String>,
    /// New rules, starting empty.
    pub(crate) added: Vec<String>,
    /// Rules whose configuration changed: they start empty.
    pub(crate) changed: Vec<String>,
    /// Rules whose thresholds, `clear`, `for` or `keep_firing_for` changed
    /// (and nothing that computes their values): kept with their windows and
    /// alerts, judged by the new settings from their next evaluation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) retuned: Vec<String>,
    /// Rules no longer configured.
    pub(crate) removed: Vec<String>,
}

/// Whether two rule configurations compute the same thing: they may differ
/// in what only people read (description, runbook, dashboard), which a reload
/// changes without resetting the rule's windows and alerts.
fn same_definition(a: &RuleConfig, b: &RuleConfig) -> bool {
    let strip = |r: &RuleConfig| RuleConfig {
        description: String::new(),
        runbook: None,
        dashboard: None,
        ..r.clone()
    };
    strip(a) == strip(b)
}

/// Whether two rule configurations compute the same values and differ at
/// most in how the alert judges them (`thresholds`, `clear`, `for`,
/// `keep_firing_for`) besides what [`same_definition`] allows: a reload
/// keeps such a rule's windows and alerts and retunes it in place, so an
/// open incident goes on under its key instead of resolving and opening
/// again.
fn same_computation(a: &RuleConfig, b: &RuleConfig) -> bool {
    computation(a) == computation(b)
}

/// What a rule computes, less how its alert judges the values and what only
/// people read: equal for two configurations a reload retunes in place (and
/// a restore matches, `snapshot::incremental`).
pub(super) fn computation(r: &RuleConfig) -> RuleConfig {
    RuleConfig {
        description: String::new(),
        runbook: None,
        dashboard: None,
        thresholds: Default::default(),
        clear: None,
        for_: Default::default(),
        keep_firing_for: Default::default(),
        ..r.clone()
    }
}

/// What a configuration reload switches: one [`Engine`] or a
/// [`ShardedEngine`](super::ShardedEngine).
pub(crate) trait Reconfigure {
    /// Switches to `cfg` (see [`Engine::reconfigure`]).
    fn reconfigure(&mut self, cfg: &Config) -> Result<ReloadSummary, EngineError>;
}

impl Reconfigure for Engine {
    fn reconfigure(&mut self, cfg: &Config) -> Result<ReloadSummary, EngineError> {
        Engine::reconfigure(self, cfg)
    }
}

impl Reconfigure for super::ShardedEngine {
    fn reconfigure(&mut self, cfg: &Config) -> Result<ReloadSummary, EngineError> {
        super::ShardedEngine::reconfigure(self, cfg)
    }
}

impl Engine {
    /// Hot reload: switches to a new configuration. Rules whose name and
    /// configuration are unchanged (or changed only in description, runbook or
    /// dashboard) keep their windows and alert state; changed
    /// and new rules start empty; removed rules are dropped. Engine settings
    /// take effect at once (the dedup memory is kept unless its settings changed).
    /// On error nothing changes.
    pub(crate) fn reconfigure(&mut self, cfg: &Config) -> Result<ReloadSummary, EngineError> {
        check_config(cfg)?;
        let e = &cfg.engine;
        // The kept rules' keys, for the tables rebuilt below.
        super::table::stash(&self.tables, &mut self.rules);
        let mut old: Vec<Option<RuleRt>> = self.rules.drain(..).map(Some).collect();
        let mut summary = ReloadSummary::default();
        // old index → new index, for the deadline timers.
        let mut remap: Vec<Option<u32>> = vec![None; old.len()];
        let mut rules = Vec::with_capacity(cfg.rules.len());
        for (new_idx, rc) in cfg.rules.iter().enumerate() {
            let same = old
                .iter()
                .position(|o| o.as_ref().is_some_and(|o| same_definition(&o.cfg, rc)))
                .or_else(|| {
                    old.iter().position(|o| {
                        o.as_ref()
                            .is_some_and(|o| o.cfg.name == rc.name && same_computation(&o.cfg, rc))
                    })
                });
            match same.and_then(|i| old[i].take().map(|r| (i, r))) {
                Some((i, mut rule)) => {
                    remap[i] = Some(new_idx as u32);
                    if !same_definition(&rule.cfg, rc) {
                        rule.retune(rc);
                        summary.retuned.push(rc.name.clone());
                    }
                    // The description, runbook and dashboard may have changed.
                    rule.cfg = rc.clone();
                    rule.max_groups = e.max_groups_per_rule;
                    rule.indicator.set_score_range(e.score_range);
                    rule.shape.max_customers = e.max_customers_per_group;
                    rule.set_silence(e.silence_after.as_ms());
                    summary.kept.push(rc.name.clone());
                    rules.push(rule);
                }
                None => {
                    summary.added.push(rc.name.clone());
                    rules.push(RuleRt::new(rc, cfg));
                }
            }
        }
        for r in old.into_iter().flatten() {
            if let Some(pos) = summary.added.iter().position(|n| *n == r.cfg.name) {
                summary.changed.push(summary.added.remove(pos));
            } else {
                summary.removed.push(r.cfg.name);
            }
        }
        self.rules = rules;
        let timers = std::mem::take(&mut self.timers);
        self.timers = timers
            .into_iter()
            .filter_map(|Reverse((t, r, slot, gen))| {
                remap
                    .get(r as usize)
                    .copied()
                    .flatten()
                    .map(|nr| Reverse((t, nr, slot, gen)))
            })
            .collect();
        self.index_rules();
        let dedup_changed = self.dedup_settings != (e.dedup_horizon.as_ms(), e.dedup_max_ids);
        if dedup_changed {
            let key = self.dedup.key();
            self.dedup = Dedup::new(e.dedup_horizon.as_ms(), e.dedup_max_ids);
            self.dedup.set_key(key);
            self.dedup_settings = (e.dedup_horizon.as_ms(), e.dedup_max_ids);
        }
        self.limits = e.decode_limits();
        self.lateness_ms = e.allowed_lateness.as_ms();
        self.sample_ids = e.sample_event_ids;
        Ok(summary)
    }
}
