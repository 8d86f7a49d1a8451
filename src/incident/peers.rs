//! What the other instances of a scaled group (`sources.kafka.scale_out`)
//! hold: each instance publishes its open incidents on the controls topic
//! (`src/run/scaled/controls.rs`), and every instance keeps the latest list
//! of each here. The admin API uses it to accept a close, an acknowledgement
//! or a label for an incident another instance holds, and to show who holds
//! what (`GET /api/v1/incidents`, `elsewhere`). One embedded instance has no
//! peers and never consults this.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::alert::Labels;

/// An open incident as its holder publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Held {
    /// The incident's key (`dedup_key`).
    pub(crate) key: String,
    /// Its route.
    pub(crate) route: String,
    /// Its grouping labels.
    pub(crate) labels: Labels,
    /// Its incident partition (which instance owns it follows from this).
    pub(crate) partition: u32,
    /// Breach start (event time, ms).
    pub(crate) started_at: i64,
    /// The highest severity of its active alerts.
    pub(crate) severity: Option<String>,
    /// Whether its `open` has gone out.
    pub(crate) opened: bool,
}

/// One instance's open incidents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Holding {
    /// The instance's id (its outbox's, see `Outbox::instance_id`).
    pub(crate) instance: String,
    /// Where its admin API listens (the bound address), for operators.
    pub(crate) listen: String,
    /// When it published this list (wall clock, ms).
    pub(crate) at_ms: i64,
    /// Its open incidents.
    pub(crate) incidents: Vec<Held>,
}

/// A holding older than this is from an instance that stopped (a running
/// one publishes its holding at least every minute) and is left out.
const STALE_MS: i64 = 180_000;

/// Whether `h` was published by a running instance (within [`STALE_MS`]).
fn fresh(h: &Holding) -> bool {
    chrono::Utc::now().timestamp_millis() - h.at_ms < STALE_MS
}

/// The latest [`Holding`] of every instance, and this instance's id.
#[derive(Debug)]
pub struct Peers {
    me: String,
    held: Mutex<BTreeMap<String, Holding>>,
}

impl Peers {
    /// No holdings known yet; `me` is this instance's id.
    pub(crate) fn new(me: String) -> Self {
        Peers {
            me,
            held: Mutex::new(BTreeMap::new()),
        }
    }

    /// This instance's id.
    pub(crate) fn me(&self) -> &str {
        &self.me
    }

    /// Records an instance's latest holding (this instance's own is kept too,
    /// but [`Peers::elsewhere`] and [`Peers::holder`] leave it out).
    pub(crate) fn set(&self, h: Holding) {
        if let Ok(mut m) = self.held.lock() {
            m.insert(h.instance.clone(), h);
        }
    }

    /// Forgets an instance's holding (its tombstone was read: it stopped).
    pub(crate) fn remove(&self, instance: &str) {
        if let Ok(mut m) = self.held.lock() {
            m.remove(instance);
        }
    }

    /// The holdings the controls stage keeps in `ob` (for the CLI, a
    /// separate process); `me`: `ob`'s instance id.
    pub(crate) fn stored(
        ob: &crate::incident::outbox::Outbox,
    ) -> Result<Self, crate::incident::outbox::OutboxError> {
        let p = Peers::new(ob.instance_id()?);
        for h in ob.holdings()? {
            p.set(h);
        }
        Ok(p)
    }

    /// Another running instance holding incident `key` (the newest list naming it).
    pub(crate) fn holder(&self, key: &str) -> Option<(String, Held)> {
        let m = self.held.lock().ok()?;
        m.values()
            .filter(|h| h.instance != self.me && fresh(h))
            .filter_map(|h| {
                h.incidents
                    .iter()
                    .find(|i| i.key == key)
                    .map(|i| (h.at_ms, h.instance.clone(), i.clone()))
            })
            .max_by_key(|(at, _, _)| *at)
            .map(|(_, instance, held)| (instance, held))
    }

    /// Every other running instance's latest holding.
    pub(crate) fn elsewhere(&self) -> Vec<Holding> {
        self.held
            .lock()
            .map(|m| {
                m.values()
                    .filter(|h| h.instance != self.me && fresh(h))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(instance: &str, at_ms: i64, key: &str) -> Holding {
        Holding {
            instance: instance.into(),
            listen: String::new(),
            at_ms,
            incidents: vec![Held {
                key: key.into(),
                route: "r".into(),
                labels: Vec::new(),
                partition: 1,
                started_at: 0,
                severity: None,
                opened: true,
            }],
        }
    }

    #[test]
    fn others_running_instances_only() {
        let now = chrono::Utc::now().timestamp_millis();
        let p = Peers::new("me".into());
        p.set(holding("me", now, "mine"));
        p.set(holding("b", now - 1_000, "k"));
        p.set(holding("c", now - STALE_MS - 1, "old"));
        assert!(p.holder("mine").is_none());
        assert_eq!(p.holder("k").map(|(i, _)| i).as_deref(), Some("b"));
        assert!(p.holder("old").is_none());
        assert_eq!(p.elsewhere().len(), 1);
        p.remove("b");
        assert!(p.holder("k").is_none());
        assert!(p.elsewhere().is_empty());
    }
}
