//! The exact fallback of a tuning pass that reached the group cap: one
//! engine per candidate, a few candidates per reading of the history, so
//! memory stays bounded however many candidates there are.

use super::super::super::input::Inputs;
use super::super::rows::TuneResult;
use super::super::TuneError;
use super::{conclude, TuneOptions, Tuner};
use crate::config::Config;

/// Candidates given an engine of their own in one pass of the exact
/// fallback (the group cap reached): each may hold
/// `engine.max_groups_per_rule` groups (about 1.6 KB each), so the history
/// is read once per this many candidates instead of holding every
/// candidate's groups at once (24 candidates at the default cap took 4 GB).
pub(crate) const SEPARATE_PER_PASS: usize = 4;

/// The exact fallback: one engine per candidate, [`SEPARATE_PER_PASS`] of
/// them per reading of the history (`read_all` feeds the whole history
/// to a tuner once per call).
pub(crate) fn separate_passes(
    cfg: &Config,
    opts: &TuneOptions,
    mut read_all: impl FnMut(&mut Tuner) -> Result<(), TuneError>,
) -> Result<TuneResult, TuneError> {
    let n = Tuner::separate(cfg, opts, 0..0)?.len();
    let mut whole: Option<TuneResult> = None;
    let mut start = 0;
    while start < n {
        let only = start..(start + SEPARATE_PER_PASS).min(n);
        let mut tuner = Tuner::separate(cfg, opts, only.clone())?;
        read_all(&mut tuner)?;
        let part = tuner.finish_rows(opts);
        match whole.as_mut() {
            None => whole = Some(part),
            Some(w) => {
                for i in only.clone() {
                    if let (Some(slot), Some(row)) = (w.rows.get_mut(i), part.rows.get(i)) {
                        *slot = row.clone();
                    }
                }
            }
        }
        start = only.end;
    }
    match whole {
        Some(w) => conclude(w, opts),
        // No candidate at all cannot happen (the current rule is one).
        None => Tuner::separate(cfg, opts, 0..0)?.finish(opts),
    }
}

/// [`separate_passes`] over `inputs` (files: read again).
pub(crate) fn run_separate(
    cfg: &Config,
    inputs: &Inputs,
    opts: &TuneOptions,
) -> Result<TuneResult, TuneError> {
    separate_passes(cfg, opts, |tuner| {
        inputs.for_each_line(|line, _| tuner.feed(line))?;
        Ok(())
    })
}
