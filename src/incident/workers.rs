//! The delivery workers of a running [`super::IncidentManager`], one per
//! enabled receiver, and how a configuration reload changes them.
//!
//! A reload first readies every receiver of the new configuration
//! ([`prepare`]: secrets read, clients and TLS trust built), so a missing
//! secret or a bad `ca_file` refuses the reload before anything changes. Then
//! [`ReceiverSet::apply`] keeps the worker of a receiver whose settings and
//! secrets are unchanged (its breaker and retry schedule go on), starts one for
//! a new receiver, and replaces the worker of a changed one. A replaced or
//! removed worker finishes the request it is sending and stops; its successor
//! starts only then, so no notification is ever sent twice at once. Rows still
//! queued for a removed receiver stay in the outbox (`crisiswatch outbox list`).

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::{Config, ReceiverConfig};
use crate::secret::Secret;

use super::delivery::{Clock, ReceiverRt, Worker};
use super::metrics::IncidentMetrics;
use super::outbox::Outbox;
use super::{receiver_enabled, IncidentError};

/// Where `console` receivers write.
pub(super) type Console = Arc<Mutex<Box<dyn Write + Send>>>;

/// A receiver readied from a configuration, not yet delivering.
pub(super) struct Prepared {
    cfg: ReceiverConfig,
    rt: ReceiverRt,
}

/// Readies every enabled receiver of `cfg`.
pub(super) fn prepare(
    cfg: &Config,
    console: Option<&Console>,
    serves_console: bool,
) -> Result<Vec<Prepared>, IncidentError> {
    cfg.receivers
        .iter()
        .filter(|r| receiver_enabled(r, console.is_some()))
        .map(|r| {
            let mut rt = ReceiverRt::from_config(r, console)?;
            rt.generator_url = cfg.server.generator_url(serves_console);
            Ok(Prepared { cfg: r.clone(), rt })
        })
        .collect()
}

/// What a reload did to the receivers, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReceiverChanges {
    /// Unchanged: their workers go on.
    pub kept: Vec<String>,
    /// New: a worker started.
    pub added: Vec<String>,
    /// Settings or secrets changed: the worker was replaced.
    pub changed: Vec<String>,
    /// Gone or disabled: the worker stopped.
    pub removed: Vec<String>,
}

/// One running worker.
struct Active {
    cfg: ReceiverConfig,
    secret: Option<Secret>,
    routing_key: Option<Secret>,
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Active {
    fn same(&self, p: &Prepared) -> bool {
        let same_secret = |a: &Option<Secret>, b: &Option<Secret>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => a.matches(b.expose()),
            _ => false,
        };
        self.cfg == p.cfg
            && same_secret(&self.secret, &p.rt.secret)
            && same_secret(&self.routing_key, &p.rt.routing_key)
    }
}

/// The running workers, in configuration order.
pub(super) struct ReceiverSet {
    handle: Handle,
    outbox: Arc<Outbox>,
    metrics: Arc<IncidentMetrics>,
    clock: Clock,
    active: Vec<Active>,
    /// Workers of removed receivers that may still be finishing a request.
    retiring: Vec<(String, JoinHandle<()>)>,
}

impl ReceiverSet {
    /// No workers yet.
    pub(super) fn new(
        handle: Handle,
        outbox: Arc<Outbox>,
        metrics: Arc<IncidentMetrics>,
        clock: Clock,
    ) -> ReceiverSet {
        ReceiverSet {
            handle,
            outbox,
            metrics,
            clock,
            active: Vec::new(),
            retiring: Vec::new(),
        }
    }

    /// Names of the receivers that deliver.
    pub(super) fn names(&self) -> Vec<String> {
        self.active.iter().map(|a| a.cfg.name.clone()).collect()
    }

    /// Names of the receivers that deliver and take acknowledgements
    /// ([`ReceiverConfig::acknowledges`]).
    pub(super) fn acknowledging(&self) -> Vec<String> {
        self.active
            .iter()
            .filter(|a| a.cfg.acknowledges())
            .map(|a| a.cfg.name.clone())
            .collect()
    }

    /// Wakes every worker (rows were queued).
    pub(super) fn wake_all(&self) {
        for a in &self.active {
            a.wake.notify_one();
        }
    }

    /// Runs the prepared receivers: keeps unchanged workers, starts new ones,
    /// replaces changed ones (each successor after its predecessor stopped),
    /// stops the rest.
    pub(super) fn apply(&mut self, prepared: Vec<Prepared>) -> ReceiverChanges {
        let mut changes = ReceiverChanges::default();
        self.retiring.retain(|(_, t)| !t.is_finished());
        let mut old: Vec<Option<Active>> = std::mem::take(&mut self.active)
            .into_iter()
            .map(Some)
            .collect();
        for p in prepared {
            let name = p.cfg.name.clone();
            let prev = old
                .iter_mut()
                .find(|a| a.as_ref().is_some_and(|a| a.cfg.name == name))
                .and_then(Option::take);
            match prev {
                Some(a) if a.same(&p) => {
                    changes.kept.push(name);
                    self.active.push(a);
                }
                Some(a) => {
                    changes.changed.push(name);
                    let _ = a.stop.send(true);
                    let next = self.spawn(p, Some(a.task), true);
                    self.active.push(next);
                }
                None => {
                    self.metrics.add_receiver(&name);
                    let previous = self
                        .retiring
                        .iter()
                        .position(|(n, _)| *n == name)
                        .map(|i| self.retiring.swap_remove(i).1);
                    changes.added.push(name);
                    let next = self.spawn(p, previous, false);
                    self.active.push(next);
                }
            }
        }
        for a in old.into_iter().flatten() {
            changes.removed.push(a.cfg.name.clone());
            let _ = a.stop.send(true);
            // Finishes its current request in the background.
            self.retiring.push((a.cfg.name, a.task));
        }
        changes
    }

    /// Starts the worker of `p` once `after` (its predecessor) has ended;
    /// `changed`: it replaces a worker whose settings changed.
    fn spawn(&self, p: Prepared, after: Option<JoinHandle<()>>, changed: bool) -> Active {
        let wake = Arc::new(Notify::new());
        let (stop, stop_rx) = watch::channel(false);
        let (secret, routing_key) = (p.rt.secret.clone(), p.rt.routing_key.clone());
        let worker = Worker {
            rt: p.rt,
            outbox: Arc::clone(&self.outbox),
            metrics: Arc::clone(&self.metrics),
            clock: self.clock,
            wake: Arc::clone(&wake),
            stop: stop_rx,
            retry_queued: changed,
        };
        let task = self.handle.spawn(async move {
            if let Some(previous) = after {
                // One worker per receiver at a time: the old one ends its request first.
                let _ = previous.await;
            }
            worker.run().await;
        });
        Active {
            cfg: p.cfg,
            secret,
            routing_key,
            wake,
            stop,
            task,
        }
    }

    /// Signals every worker to stop; returns their tasks to await.
    pub(super) fn stop_all(&mut self) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = self.retiring.drain(..).map(|(_, t)| t).collect();
        for a in self.active.drain(..) {
            let _ = a.stop.send(true);
            tasks.push(a.task);
        }
        tasks
    }
}
