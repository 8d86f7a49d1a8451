//! The surge arithmetic: a window's count against its trailing baseline
//! (ratio or z-score), for the point count and for a confidence bound of it.

use crate::config::SurgeMethod;

/// The surge value of a window with `current` events, against a baseline of
/// `m` panes (those with history) summing to `base_sum` with squares `base_sumsq`.
///
/// The expectation for one window of `n` panes is `n × mean`, floored at
/// `min_baseline`. Ratio: `current ÷ expectation`. Z-score:
/// `(current − expectation) ÷ σ` with `σ = √max(n × pane variance, expectation)`,
/// the variance floor being Poisson noise so a flat baseline does not divide by
/// zero. `None` until the baseline holds at least one window of history
/// (`m ≥ n`).
pub(crate) fn surge_value(
    current: i64,
    base_sum: i64,
    base_sumsq: i128,
    n: i64,
    m: i64,
    method: SurgeMethod,
    min_baseline: f64,
) -> Option<f64> {
    surge_of(
        current as f64,
        base_sum,
        base_sumsq,
        n,
        m,
        method,
        min_baseline,
    )
}

/// [`surge_value`] of a (possibly fractional) current count: the point count,
/// or a confidence bound of it.
pub(super) fn surge_of(
    current: f64,
    base_sum: i64,
    base_sumsq: i128,
    n: i64,
    m: i64,
    method: SurgeMethod,
    min_baseline: f64,
) -> Option<f64> {
    if m < n || m <= 0 {
        return None;
    }
    let mean = base_sum as f64 / m as f64;
    let expected = (n as f64 * mean).max(min_baseline);
    match method {
        SurgeMethod::Ratio => Some(current / expected),
        SurgeMethod::Zscore => {
            let var = (base_sumsq as f64 / m as f64 - mean * mean).max(0.0);
            let sigma = (n as f64 * var).max(expected).sqrt();
            Some((current - expected) / sigma)
        }
    }
}
