//! The test file format (TOML), as the [`super`] module documentation shows
//! it: the configuration under test, the cases, their input series or lines
//! and the expected transitions.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::alert::State;
use crate::config::Severity;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TestFile {
    /// The configuration under test, relative to the test file.
    #[serde(default)]
    pub(super) config: Option<String>,
    /// Inline engine settings (with inline rules).
    #[serde(default)]
    pub(super) engine: Option<toml::Value>,
    /// Inline rules, instead of `config`.
    #[serde(default)]
    pub(super) rules: Option<Vec<toml::Value>>,
    /// Origin of relative times.
    #[serde(default = "default_start")]
    pub(super) start: String,
    /// The cases.
    #[serde(default)]
    pub(super) tests: Vec<Case>,
}

/// A fixed origin, so relative times give the same absolute times everywhere.
fn default_start() -> String {
    "2026-01-01T00:00:00Z".to_string()
}

/// Merging by time is what a stream looks like; tests of disorder opt out.
fn default_sort() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Case {
    pub(super) name: String,
    #[serde(default)]
    pub(super) rules: Vec<String>,
    #[serde(default)]
    pub(super) input: Vec<Input>,
    #[serde(default)]
    pub(super) until: Option<String>,
    #[serde(default = "default_sort")]
    pub(super) sort: bool,
    #[serde(default)]
    pub(super) expect: Vec<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Input {
    #[serde(default)]
    pub(super) lines: Option<String>,
    #[serde(default)]
    pub(super) at: Option<String>,
    #[serde(default)]
    pub(super) count: Option<u64>,
    #[serde(default)]
    pub(super) every: Option<String>,
    #[serde(default)]
    pub(super) event: Option<Template>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Template {
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) customer_id: Option<String>,
    #[serde(default)]
    pub(super) attrs: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) score: Option<Scores>,
    #[serde(default)]
    pub(super) sentiment: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Scores {
    One(f64),
    Cycle(Vec<f64>),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ExpState {
    Pending,
    Firing,
    Escalated,
    Resolved,
}

impl ExpState {
    pub(super) fn state(&self) -> State {
        match self {
            ExpState::Pending => State::Pending,
            ExpState::Firing => State::Firing,
            ExpState::Escalated => State::Escalated,
            ExpState::Resolved => State::Resolved,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Expect {
    pub(super) rule: String,
    #[serde(default)]
    pub(super) group: BTreeMap<String, String>,
    pub(super) state: ExpState,
    pub(super) at: String,
    #[serde(default)]
    pub(super) severity: Option<Severity>,
    #[serde(default)]
    pub(super) value: Option<f64>,
}
