//! `crisiswatch demo`: the whole pipeline on a built-in, seeded stream.
//!
//! A source at the edge of the data flow: the [`generator`](crate::generator)
//! produces a simulated period of realistic traffic with the playbook crises;
//! time runs accelerated (`demo.speed` simulated seconds per second). Every line
//! goes through the same decoder and [`Engine`] as a live event; incidents
//! are printed as the pager gets them ([`pager`]: open with evidence and
//! hints, escalations, progress updates, resolve — one block per
//! notification), `/metrics` and the web console are served while it runs, and at the end a summary compares the incidents with the crises
//! that were injected.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::admin;
use crate::alert::{State, Transition};
use crate::backtest::labels;
use crate::config::Config;
use crate::config::ProcessEnv;
use crate::engine::{Engine, EngineError, EngineStats};
use crate::event::decode;
use crate::event::{format_ts, parse_rfc3339_ms};
use crate::generator::{Crisis, Generator, GeneratorSettings};
use crate::http::{self, AppState, HttpError};
use crate::metrics::Recorder;
use crate::metrics::{Metrics, MetricsError};

mod pager;
mod print;

use print::{print_summary, print_transition};

/// Simulated time processed per step.
const STEP_MS: i64 = 60_000;

/// Errors that stop the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The rules could not be compiled.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Metrics could not be set up.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The HTTP listener failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// `demo.start` is not a time (validation normally catches this).
    #[error("demo.start {0:?} is not an RFC 3339 time")]
    Start(String),
    /// Writing to the output failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    /// Admin state could not be set up.
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// The incident outbox could not be opened.
    #[error(transparent)]
    Incident(#[from] crate::incident::IncidentError),
    /// Another process delivers from the data directory.
    #[error(transparent)]
    Locked(#[from] crate::dir_lock::DirLockError),
}

/// Options of one demo run (command-line overrides of `[demo]`).
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// The configuration file, for reloads and `/api/v1/status` (`None`: embedded example).
    pub(crate) config_path: Option<std::path::PathBuf>,
    /// The configuration text, for the config hash.
    pub(crate) config_text: String,
    /// Keep serving `/metrics` this long after the simulated period ends.
    pub(crate) linger: Duration,
    /// Also print every per-rule transition: pending too, beside OPEN (firing),
    /// ESCALATE and RESOLVE.
    pub(crate) verbose: bool,
    /// Do not serve HTTP even if `server.listen` is set.
    pub(crate) no_http: bool,
    /// The generated traffic's shape (`demo --volume …`; the demo's by default).
    pub(crate) shape: crate::generator::TrafficShape,
}

/// One alert instance seen by the demo, for the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Rule.
    pub rule: String,
    /// Group labels.
    pub group: Vec<(String, String)>,
    /// Highest severity reached.
    pub(crate) severity: crate::config::Severity,
    /// First firing time.
    pub fired_at: i64,
    /// Resolution time, if resolved.
    pub resolved_at: Option<i64>,
    /// Peak value seen in its transitions.
    pub(crate) peak: Option<f64>,
    /// Dedup key.
    pub dedup_key: String,
}

/// What a demo run did.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    /// Lines produced by the generator.
    pub(crate) lines: u64,
    /// Engine counters at the end.
    pub(crate) stats: EngineStats,
    /// Every alert instance that fired.
    pub(crate) incidents: Vec<Incident>,
    /// Injected crises.
    pub(crate) crises: Vec<Crisis>,
}

impl DemoReport {
    /// For each crisis: the incidents that match its slice and time (fired
    /// between its start and its end plus `grace_ms`).
    pub(crate) fn detections(&self, grace_ms: i64) -> Vec<(&Crisis, Vec<&Incident>)> {
        let truth = labels::from_generator(&self.crises);
        self.crises
            .iter()
            .zip(&truth)
            .map(|(c, l)| {
                let hits = self
                    .incidents
                    .iter()
                    .filter(|i| labels::matches(&i.group, i.fired_at, l, grace_ms))
                    .collect();
                (c, hits)
            })
            .collect()
    }

    /// Incidents that match no crisis.
    pub(crate) fn false_incidents(&self, grace_ms: i64) -> Vec<&Incident> {
        let truth = labels::from_generator(&self.crises);
        self.incidents
            .iter()
            .filter(|i| {
                !truth
                    .iter()
                    .any(|l| labels::matches(&i.group, i.fired_at, l, grace_ms))
            })
            .collect()
    }
}

/// Runs the demo to the end of the simulated period (or until `shutdown`).
pub async fn run(
    cfg: &Config,
    opts: &DemoOptions,
    out: &mut (dyn Write + Send),
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<DemoReport, DemoError> {
    let d = &cfg.demo;
    let start = parse_rfc3339_ms(&d.start).ok_or_else(|| DemoError::Start(d.start.clone()))?;
    let duration = d.duration.as_ms();
    let mut engine = Engine::new(cfg)?;
    let metrics = Metrics::new(cfg.server.max_series_per_rule)?;
    let mut recorder = Recorder::new(cfg);
    let state = AppState::new(Arc::clone(&metrics));
    let (mut reload_rx, reload_metrics) = admin::set_up(
        &state.admin,
        metrics.registry(),
        cfg,
        opts.config_path.clone(),
        &opts.config_text,
    )?;
    // Incidents always go through the incident stage, so the demo prints
    // them as the pager gets them and the console shows them. With an HTTP
    // receiver the outbox is `incidents.data_dir` and they are delivered;
    // without one it is a scratch directory removed at the end, so every
    // demo run shows its incidents again.
    let http_receivers = crate::incident::has_http_receivers(cfg);
    // Removed however the demo ends (an error such as a port in use
    // included), unless it holds pages still to send (below). Declared
    // before the lock and the outbox, so it is dropped after them.
    let mut scratch = (!http_receivers).then(Scratch::new);
    let data_dir = scratch
        .as_ref()
        .map(|s| s.dir.clone())
        .unwrap_or_else(|| std::path::PathBuf::from(&cfg.incidents.data_dir));
    // One sender per outbox: a running service or `outbox deliver` on the
    // same directory would send the same rows at the same time.
    let _lock = crate::dir_lock::DirLock::acquire(&data_dir)?;
    let m = crate::incident::IncidentManager::open(
        cfg,
        metrics.registry(),
        &data_dir,
        crate::incident::ManagerOptions {
            // The example's `console` receiver: its rows are what the demo
            // prints (from the outbox), so its own lines go nowhere.
            console: Some(Box::new(std::io::sink())),
            serves_console: !cfg.server.listen.is_empty() && !opts.no_http,
            hand_off_queued: false,
        },
    )?;
    crate::http::silences::attach(&state, Arc::clone(m.outbox()));
    if http_receivers {
        writeln!(
            out,
            "Delivering incidents to {} (outbox {}).",
            m.receivers().join(", "),
            m.outbox().path().display()
        )?;
    }
    // Without any receiver the stage stores no notification: print the
    // transitions. An outbox that holds earlier runs' rows (an HTTP
    // receiver's `incidents.data_dir`) is printed and counted from here on.
    let first_row = crate::incident::replay_delivery::newest_id(m.outbox()).unwrap_or(0);
    let mut pager = (!m.receivers().is_empty()).then(|| pager::Pager::after(first_row));
    let incidents = Some(m);
    let (stop_http_tx, stop_http_rx) = tokio::sync::watch::channel(false);
    let mut server = None;
    if !cfg.server.listen.is_empty() && !opts.no_http {
        let (addr, fut) = http::bind(&cfg.server.listen, Arc::clone(&state), stop_http_rx).await?;
        writeln!(out, "Serving metrics on http://{addr}/metrics")?;
        writeln!(
            out,
            "Console: http://{addr}/ (open incidents, silences, rules, health)"
        )?;
        server = Some(tokio::spawn(fut));
    }
    state.admin.publish(admin::snapshot(&engine));
    state.ready.store(true, Ordering::Relaxed);
    let mut gen = Generator::new(GeneratorSettings {
        seed: d.seed,
        start_ms: start,
        duration_ms: duration,
        orders_per_minute: d.orders_per_minute,
        crises: d.crises,
        noise: d.noise,
        shape: opts.shape.clone(),
    });
    writeln!(
        out,
        "Simulating {} of traffic from {} at {}x ({} rules, seed {}).",
        d.duration,
        format_ts(start),
        d.speed,
        engine.rule_count(),
        d.seed
    )?;
    let mut report = DemoReport {
        crises: gen.crises().to_vec(),
        ..Default::default()
    };
    let step_wall = Duration::from_secs_f64((STEP_MS as f64 / 1000.0) / d.speed);
    let mut ticker = tokio::time::interval(step_wall.max(Duration::from_micros(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lines = Vec::new();
    let mut transitions = Vec::new();
    let mut sim = start;
    let end = start.saturating_add(duration);
    let mut stopped = false;
    while sim < end {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => { stopped = true; }
            Some(req) = reload_rx.recv() => {
                let result = admin::reload(&mut engine, &state.admin, &reload_metrics, &ProcessEnv, incidents.as_deref());
                let reply = match result {
                    Ok((summary, new_cfg)) => {
                        writeln!(out, "Configuration reloaded: kept {:?}, added {:?}, changed {:?}, removed {:?}.",
                            summary.kept, summary.added, summary.changed, summary.removed)?;
                        recorder = Recorder::new(&new_cfg);
                        Ok(summary)
                    }
                    Err(e) => {
                        writeln!(out, "Configuration reload failed (still running the previous one): {e}")?;
                        Err(e)
                    }
                };
                // Publish first, so a client that sees the reply also sees the new rules.
                state.admin.publish(admin::snapshot(&engine));
                if let Some(tx) = req.reply {
                    let _ = tx.send(reply);
                }
                continue;
            }
        }
        if stopped || *shutdown.borrow() {
            writeln!(out, "Interrupted at {}.", format_ts(sim))?;
            break;
        }
        sim = (sim + STEP_MS).min(end);
        lines.clear();
        report.lines += gen.generate_until(sim, &mut lines) as u64;
        for line in &lines {
            // The simulated time is the demo's wall clock for the future-skew check.
            match decode(line, engine.limits(), Some(sim)) {
                Ok(ev) => {
                    recorder.event(&ev.kind, sim - ev.ts);
                    engine.process(&ev, &mut transitions);
                }
                Err(inv) => engine.record_invalid(inv.reason),
            }
        }
        engine.advance_clock(sim, &mut transitions);
        if let Some(m) = &incidents {
            // Persisted when it returns (errors are logged at ERROR); delivery
            // runs in the background. The transitions go in up to the last
            // one's time (what fell due before it goes out first, without
            // live values); the progress updates due after it, up to `sim`,
            // come from `tick` with the engine's current values and hints.
            let last = transitions.last().map(|t| t.at);
            let ok = last.is_none_or(|at| m.submit(&transitions, at).is_ok());
            if ok {
                let _ = m.tick(sim, &mut engine);
            }
            // What the console asked for: acknowledgements reach the
            // receivers that take them, closes send their resolve.
            if let Err(e) = m.apply_close_requests() {
                tracing::warn!(error = %e, "Cannot apply the console's acknowledgements and close requests.");
            }
        }
        metrics.record_transitions(transitions.iter());
        for t in transitions.drain(..) {
            if matches!(t.state, State::Firing | State::Escalated) {
                recorder.incident(t.at, sim);
            }
            if pager.is_none() || opts.verbose {
                print_transition(out, &t, opts.verbose)?;
            }
            track(&mut report.incidents, &t);
        }
        if let (Some(p), Some(m)) = (pager.as_mut(), &incidents) {
            if let Err(e) = p.print_new(m.outbox(), out) {
                tracing::warn!(error = %e, "Cannot read the incident notifications back from the outbox.");
            }
        }
        metrics.batches.inc();
        metrics.absorb("demo", &mut recorder);
        metrics.publish(&engine, sim);
        state.admin.publish(admin::snapshot(&engine));
    }
    report.stats = engine.stats().clone();
    // Incidents the stage opened (the alerts grouped by route), counted
    // from the outbox once the last ones are flushed: known only when
    // there is a receiver to write notifications for.
    let mut opened = None;
    if let Some(m) = &incidents {
        // HTTP may linger on: acknowledgements and closes are refused from
        // now on instead of stored and never carried out; those taken until
        // now are carried out before the stage stops.
        state.incidents_stop();
        if let Err(e) = m.apply_close_requests() {
            tracing::warn!(error = %e, "Cannot apply the console's acknowledgements and close requests.");
        }
        let _ = m.flush(sim);
        if let Some(p) = pager.as_mut() {
            let _ = p.print_new(m.outbox(), out);
            opened = m
                .outbox()
                .list(None, None, u32::MAX as usize)
                .ok()
                .map(|rows| {
                    rows.iter()
                        .filter(|r| r.id > first_row)
                        .map(|r| r.incident.as_str())
                        .collect::<std::collections::BTreeSet<_>>()
                        .len()
                });
        }
    }
    print_summary(out, &report, &engine, opened)?;
    if let Some(m) = &incidents {
        let drain = m.shutdown(cfg.incidents.drain_timeout.0).await;
        // What the receivers did not take: queued still, refused for good,
        // and dead-lettered (the outbox keeps them for `crisiswatch outbox …
        // list` and `retry`).
        let count = |st| {
            m.outbox()
                .list(Some(st), None, u32::MAX as usize)
                .map_or(0, |rows| i64::try_from(rows.len()).unwrap_or(i64::MAX))
        };
        let (failed, dead) = (
            count(crate::incident::outbox::Status::Failed),
            count(crate::incident::outbox::Status::Dead),
        );
        // A receiver a reload added to a demo that started without one
        // left pages in the scratch outbox: keep it, and say how to send
        // (or retry) them.
        if let (Some(s), true) = (&mut scratch, drain.pending + failed + dead > 0) {
            s.keep = true;
            let d = &s.dir;
            writeln!(
                out,
                "  {} incident notification(s) not delivered ({} queued, {} refused, {} dead-lettered), \
                 for receivers added by a reload; kept in {} (`crisiswatch outbox --config <file> \
                 --data-dir {} list --status all`; `retry`, then `deliver`, sends them)",
                drain.pending + failed + dead,
                drain.pending,
                failed,
                dead,
                d.display(),
                d.display()
            )?;
        }
        if http_receivers {
            writeln!(
                out,
                "  incident notifications still queued: {} (outbox {}; `crisiswatch outbox --config <file> deliver`, or the next start, sends them)",
                drain.pending,
                m.outbox().path().display()
            )?;
            let n = |v: i64| u64::try_from(v).unwrap_or(0);
            if let Some(hint) = crate::incident::replay_delivery::not_delivered(n(failed), n(dead))
            {
                writeln!(out, "  {hint}")?;
            }
        }
    }
    if !opts.linger.is_zero() && server.is_some() && !stopped {
        writeln!(
            out,
            "Still serving /metrics, the console and the API for {:?} (the incident stage has stopped).",
            opts.linger
        )?;
        linger(opts.linger, &mut shutdown, &mut reload_rx, out).await?;
    }
    let _ = stop_http_tx.send(true);
    if let Some(s) = server {
        match s.await {
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => tracing::warn!(error = %e, "HTTP task ended abnormally."),
            Ok(Ok(())) => {}
        }
    }
    drop(incidents);
    drop(scratch);
    Ok(report)
}

/// The demo's scratch outbox directory (when no HTTP receiver is
/// configured): unique, so a kept one outlives a later demo with the same
/// pid, and removed when dropped unless `keep` is set.
struct Scratch {
    dir: std::path::PathBuf,
    keep: bool,
}

impl Scratch {
    fn new() -> Self {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("crisiswatch-demo-{}-{stamp}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self { dir, keep: false }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Keeps serving HTTP for `linger` after the simulated period ends (or until
/// `shutdown`). A reload asked for meanwhile (`POST /api/v1/reload`, SIGHUP)
/// is answered at once instead of waiting out `server.request_timeout`: the
/// simulated run has ended, so there is nothing to reload. Its reply is
/// dropped unsent, which the API answers with 503.
async fn linger(
    linger: Duration,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    reload_rx: &mut tokio::sync::mpsc::Receiver<admin::ReloadRequest>,
    out: &mut (dyn Write + Send),
) -> std::io::Result<()> {
    let until = tokio::time::sleep(linger);
    tokio::pin!(until);
    loop {
        tokio::select! {
            _ = &mut until => return Ok(()),
            _ = shutdown.changed() => return Ok(()),
            Some(req) = reload_rx.recv() => {
                writeln!(
                    out,
                    "Reload refused: the simulated run has ended, there is nothing to reload \
                     (start the demo again to run another configuration)."
                )?;
                drop(req);
            }
        }
    }
}

fn track(incidents: &mut Vec<Incident>, t: &Transition) {
    match t.state {
        State::Pending => {}
        State::Firing => incidents.push(Incident {
            rule: t.rule.clone(),
            group: t.group.clone(),
            severity: t.severity,
            fired_at: t.at,
            resolved_at: None,
            peak: t.value,
            dedup_key: t.dedup_key.clone(),
        }),
        State::Escalated | State::Resolved => {
            if let Some(i) = incidents
                .iter_mut()
                .rev()
                .find(|i| i.dedup_key == t.dedup_key)
            {
                i.severity = i.severity.max(t.severity);
                if t.state == State::Resolved {
                    i.resolved_at = Some(t.at);
                } else {
                    i.peak = match (i.peak, t.value) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
        }
    }
}
