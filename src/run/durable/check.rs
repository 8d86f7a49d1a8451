//! The broker check of a restore: before the covered offsets of a restored
//! checkpoint are skipped, the last message it read of each partition is
//! looked for on the broker (`source::identity`), on a thread of its own; the
//! stage consumes nothing until the verdict is in.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Instant;

use crate::config::KafkaSourceConfig;
use crate::source::identity::{self, Identity, Probe};
use crate::source::Partition;

use super::{Durable, CHECK_BUDGET, CHECK_UNREACHABLE};

impl Durable {
    /// The last message each restored partition's checkpoint read, to look
    /// for on the broker before anything is skipped ([`Durable::checked`]).
    pub(crate) fn probes(&self, topics: &[String]) -> Vec<Probe> {
        let mut v: Vec<Probe> = self
            .skip
            .iter()
            .filter_map(|(&at, p)| {
                let last = p.last?;
                Some(Probe {
                    at,
                    topic: topics.get(usize::from(at.topic))?.clone(),
                    offset: last.offset,
                    print: last.print,
                })
            })
            .collect();
        v.sort_unstable_by_key(|p| p.at);
        v
    }

    /// Checks the restored partitions against the broker of `k` (now, and
    /// after a checkpoint put back while the service waited): the stage
    /// consumes nothing until the verdict is in ([`Durable::poll_check`]).
    pub(crate) fn check_with(&mut self, k: KafkaSourceConfig, topics: &[String]) {
        self.source = Some(k);
        self.start_check(topics);
    }

    pub(super) fn start_check(&mut self, topics: &[String]) {
        let Some(k) = self.source.clone() else {
            return;
        };
        let probes = self.probes(topics);
        if probes.is_empty() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("restore-check".into())
            .spawn(move || {
                let _ = tx.send(identity::check(
                    &k,
                    &probes,
                    (CHECK_BUDGET, CHECK_UNREACHABLE),
                ));
            });
        match spawned {
            Ok(_) => {
                self.check = Some(rx);
                self.check_started = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot check the restored partitions against the broker: their covered offsets are skipped unchecked.")
            }
        }
    }

    /// Takes the broker check's verdict once it is in (call on every tick).
    pub(crate) fn poll_check(&mut self, topics: &[String]) {
        let Some(rx) = &self.check else {
            return;
        };
        match rx.try_recv() {
            Ok(found) => {
                self.check = None;
                self.checked(&found, topics);
            }
            Err(mpsc::TryRecvError::Empty) => {}
            Err(mpsc::TryRecvError::Disconnected) => {
                self.check = None;
                self.metrics.unchecked.inc_by(self.skip.len() as u64);
                tracing::error!("The check of the restored partitions failed: their covered offsets are skipped unchecked.");
            }
        }
    }

    /// What the broker holds at the probes' offsets: a partition that holds
    /// other messages than those the checkpoint read (recreated while the
    /// service was down) skips nothing — every message it hands out is new.
    pub(crate) fn checked(&mut self, found: &HashMap<Partition, Identity>, topics: &[String]) {
        let (mut recreated, mut unchecked) = (0usize, 0usize);
        for (at, id) in found {
            let topic = topics
                .get(usize::from(at.topic))
                .map_or("?", String::as_str);
            match id {
                Identity::Same => {}
                Identity::Other(why) => {
                    if let Some(p) = self.skip.remove(at) {
                        recreated += 1;
                        tracing::warn!(
                            topic,
                            partition = at.partition,
                            checkpoint_next = p.next,
                            why = %why,
                            "A restored partition holds other messages than those the checkpoint read (topic recreated while crisiswatch was down?): none of its messages is skipped."
                        );
                    }
                }
                Identity::Deleted(why) => tracing::info!(
                    topic,
                    partition = at.partition,
                    why = %why,
                    "A restored partition's last message was deleted by retention: nothing the checkpoint covers is read again."
                ),
                Identity::Unknown(why) => {
                    unchecked += 1;
                    tracing::warn!(
                        topic,
                        partition = at.partition,
                        why = %why,
                        "Cannot check that a restored partition still holds the messages the checkpoint read: its covered offsets are skipped."
                    );
                }
            }
        }
        self.metrics.recreated.inc_by(recreated as u64);
        self.metrics.unchecked.inc_by(unchecked as u64);
        tracing::info!(
            partitions = found.len(),
            same = found.values().filter(|i| **i == Identity::Same).count(),
            recreated,
            unchecked,
            "Restored partitions checked against the broker: consumption starts."
        );
    }
}
