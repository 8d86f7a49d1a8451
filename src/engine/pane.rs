//! The pane arithmetic of event time: which pane an event falls in, which
//! pane the window evaluated at a time ends at, and when a boundary is due.
//! A leaf: every stage of the engine that places or schedules panes uses it.

/// The pane holding event time `ts`: `ceil(ts / slide)`.
#[inline]
pub fn pane_of(ts: i64, slide: i64) -> i64 {
    let q = ts.div_euclid(slide);
    if ts.rem_euclid(slide) == 0 {
        q
    } else {
        q + 1
    }
}

/// The pane the window evaluated at time `t` ends at (same as [`pane_of`]).
#[inline]
pub fn end_pane(t: i64, slide: i64) -> i64 {
    pane_of(t, slide)
}

/// The first time at which the evaluated window ends at pane `p`.
#[inline]
pub(super) fn boundary_time(p: i64, slide: i64) -> i64 {
    (p - 1).saturating_mul(slide).saturating_add(1)
}
