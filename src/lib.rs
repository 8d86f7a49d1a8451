//! crisiswatch: a streaming early-warning monitor for customer crises.
//!
//! Complaint, feedback, order and cancellation events are aggregated into
//! sliding event-time windows per slice (product, region, channel, segment,
//! ...); indicators such as complaint rate, detractor share or churn are
//! compared with thresholds, and alerts open, escalate and resolve incidents.
//!
//! # Layout: one module per stage of the data flow
//!
//! (`docs/architecture.md` in the repository has the same map, file by file.)
//!
//! ```text
//!  sources ─► event ─► dedup ─► route ─► window ─► indicator ─► alert ─► (incidents)
//!  (replay,   (decode,  (repeat  (which   (panes     (count,       (state
//!   demo,      invalid   ids)     rules)   per rule,  ratio, ...)   machine,
//!   generator) reasons)                    group)                   dedup keys)
//!                                    └──────────── engine ───────────┘
//!                                                  │
//!                                     metrics ◄────┘──► http (/metrics)
//! ```
//!
//! * [`event`] decodes the input contract into borrowed [`event::Event`]s or typed
//!   [`event::Invalid`] reasons.
//! * [`dedup`] drops a repeated id within the dedup horizon, in bounded memory.
//! * [`route`] compiles selectors and indexes rules by event type.
//! * [`window`] keeps a ring of slide-sized panes per (rule, group).
//! * [`indicator`] turns events into pane counters and windows into values.
//! * [`alert`] is the per-group state machine and the transition format.
//! * [`explain`] keeps per-value counts for a rule's `explain` attributes and
//!   names the values over-represented in a breaching slice (root-cause hints).
//! * [`sequencer`] holds valid events until the watermark passes them and
//!   releases them in event-time order, so live runs equal replays.
//! * [`engine`] ties these into the deterministic core: events + rules → transitions.
//! * [`config`] loads, interpolates and validates the TOML configuration.
//! * [`replay`] drives the core over JSONL; [`generator`] and [`demo`] provide the
//!   built-in demonstration stream.
//! * [`backtest`] replays history through the core for data teams: per-rule
//!   figures against known crises, threshold tuning in one pass, charts,
//!   incident reviews and rule unit tests.
//! * [`incident`] turns alert transitions into incidents (grouping, progress
//!   updates, silences) and delivers them through a durable SQLite outbox to
//!   webhook, PagerDuty and Alertmanager receivers.
//! * [`metrics`] and [`http`] export everything to Prometheus; [`admin`] holds the
//!   admin API's snapshot and hot reload.
//! * [`clock`] advances event time with the wall clock when a live stream goes quiet.
//! * [`source`] consumes the Kafka topics at least once; [`run`] is the live
//!   service (`crisiswatch run`) that feeds them to the engine.
//! * [`cli`] is the command line, one file per command family; `main` only
//!   sets up logging and dispatches to it.
//! * [`secret`] holds tokens and keys read from the environment or files, never printed.
//! * [`signal`] turns SIGINT/SIGTERM into shutdown and SIGHUP into a reload.
//!
//! The core takes no clock and no socket: the same events and rules always give
//! the same transitions, in live runs, replays and tests.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// `eprintln!` that never panics: a message to a closed or full standard
/// error (a pipe whose reader left, `2>/dev/full`) is dropped, and the
/// command goes on to its exit code.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}
pub(crate) use say;

pub mod admin;
pub mod alert;
pub mod backtest;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dedup;
pub mod demo;
pub mod dir_lock;
pub mod engine;
pub mod event;
pub mod explain;
pub mod generator;
pub mod http;
pub mod incident;
pub mod indicator;
pub mod metrics;
pub mod repartition;
pub mod replay;
pub mod route;
pub mod run;
pub mod secret;
pub mod sequencer;
pub mod signal;
mod slots;
pub mod source;
pub mod state;
pub mod window;

#[cfg(test)]
mod testlog;
