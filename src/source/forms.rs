//! `run`: messages whose `type` or a selected attribute is written in
//! another form than a rule's selector names it — another letter case,
//! spaces around it, other word separators (`engine::case_watch`, which the
//! history tools use at the end of a run). Selectors compare exactly, so
//! such events feed no rule, and nothing else says so: a producer that
//! starts writing `"Social"` silently blinds `social_spike`.
//!
//! Checked on the consumer thread as each batch is decoded (the engine
//! stage pays nothing), counted in
//! `crisiswatch_kafka_value_variant_messages_total{field, named}` (labels
//! from the configuration only), and each new form logged once, with its
//! value and the rules that miss it. At most 64 forms are told apart (as in
//! the history tools); a configuration reload starts the watch afresh.

use std::collections::BTreeMap;

use prometheus::IntCounterVec;

use crate::config::RuleConfig;
use crate::engine::case_watch::CaseWatch;
use crate::event::Event;

/// The watch, and what of it the metric and the log already have.
#[derive(Debug, Default)]
pub(crate) struct Forms {
    watch: CaseWatch,
    /// The rules it watches for (to name them in the log).
    rules: Vec<RuleConfig>,
    /// Per (field, value seen, value named): events already counted, and
    /// whether the form was logged.
    exported: BTreeMap<(String, String, String), (u64, bool)>,
    /// [`CaseWatch::total`] when last exported.
    exported_total: u64,
}

impl Forms {
    /// Watches the values `rules`' selectors name.
    pub(crate) fn new(rules: &[RuleConfig]) -> Self {
        Forms {
            watch: CaseWatch::new(rules),
            rules: rules.to_vec(),
            exported: BTreeMap::new(),
            exported_total: 0,
        }
    }

    /// Looks at one valid event.
    #[inline]
    pub(crate) fn observe(&mut self, ev: &Event<'_>) {
        self.watch.observe(ev);
    }

    /// Adds to `counter` what the events observed since the last call
    /// brought, and logs each form not seen before.
    pub(crate) fn export(&mut self, counter: &IntCounterVec) {
        if self.watch.total() == self.exported_total {
            return;
        }
        self.exported_total = self.watch.total();
        let mut new_forms = false;
        for (key, n) in self.watch.counts() {
            let (before, _) = match self.exported.get_mut(key) {
                Some(known) => known,
                None => {
                    new_forms = true;
                    self.exported.entry(key.clone()).or_insert((0, false))
                }
            };
            if n > *before {
                let (field, _, named) = key;
                counter
                    .with_label_values(&[field.as_str(), named.as_str()])
                    .inc_by(n - *before);
                *before = n;
            }
        }
        if new_forms {
            self.log_new();
        }
    }

    /// Logs the forms not logged yet (their count is exported already).
    fn log_new(&mut self) {
        for v in self.watch.variants(&self.rules) {
            let key = (v.field.clone(), v.seen.clone(), v.named.clone());
            match self.exported.get_mut(&key) {
                Some((_, logged)) if !*logged => *logged = true,
                _ => continue,
            }
            let rules = v.rules_listed();
            tracing::warn!(
                field = %v.field,
                "messages have {} = {:?}, which the selectors of rule(s) {rules} write {:?}: selectors compare exactly, so those events feed none of them — make the producers write one form, or list both values (counted in crisiswatch_kafka_value_variant_messages_total)",
                v.field,
                crate::backtest::report::printable(&v.seen),
                v.named,
            );
        }
    }
}
