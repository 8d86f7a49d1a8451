//! One-sided confidence bounds of indicator estimates, for rules with a
//! `confidence` (issue 11: statistically guarded thresholds).
//!
//! A rule that fires when a share passes 0.6 fires on 0.63 from 19 of 30
//! complaints as readily as on 630 of 1000, although the first is well
//! within chance of a true share of 0.5. With `confidence = c`, an `above`
//! rule judges the *lower* one-sided bound at level `c` — the value the true
//! indicator exceeds with probability `c` — and a `below` rule the *upper*
//! bound; a small slice then needs a larger excess to breach, a large one
//! barely more than the point value. `z` is the one-sided standard normal
//! quantile of `c` (1.645 for 0.95). The intervals:
//!
//! * **Proportions** (`ratio`, `score_share`): the Wilson score interval.
//!   Unlike the textbook normal (Wald) interval it stays inside [0, 1], is
//!   not degenerate at 0 or 1 successes, and keeps close to its nominal
//!   coverage with the small counts the guard exists for (Brown, Cai &
//!   DasGupta 2001 recommend it for n < 40 and beyond). A `ratio` whose
//!   numerator exceeds its denominator is not a proportion (complaints per
//!   order can pass 1): its numerator is bounded as a Poisson count instead.
//! * **Counts against a baseline** (`surge`): the current window's count is
//!   Poisson; its bound (Byar's approximation of the exact Garwood interval,
//!   within 1 % of it from a count of 1 up) replaces the count in the ratio
//!   or z-score. The baseline spans many windows, so its own noise is small
//!   beside the current window's and is not bounded.
//! * **NPS**: promoters and detractors are a trinomial; the estimate
//!   `100 (P − D)` has variance `100² (P + D − (P − D)²) / n`, the standard
//!   NPS margin of error, and the bound is normal around it, clamped to
//!   [−100, 100].
//! * **Mean score**: the sample mean ± `z` standard errors, with the sample
//!   variance from the pane's sum of squares; "no data" below two scores,
//!   where there is no spread to estimate.

/// The one-sided standard normal quantile `Φ⁻¹(level)` for a confidence level
/// in (0.5, 1) (validation keeps it there).
pub(crate) fn z_one_sided(level: f64) -> f64 {
    inverse_normal_cdf(level.clamp(0.5, 1.0 - 1e-12))
}

/// The Wilson bound of `x` successes in `n` trials (`x > n`: the Poisson
/// bound of `x`, divided by `n`).
pub(crate) fn proportion(x: i64, n: i64, z: f64, lower: bool) -> f64 {
    if n <= 0 {
        return 0.0;
    }
    if x > n {
        return poisson(x, z, lower) / n as f64;
    }
    let nf = n as f64;
    let p = x.max(0) as f64 / nf;
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let center = (p + z2 / (2.0 * nf)) / denom;
    let half = z / denom * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    if lower {
        (center - half).max(0.0)
    } else {
        (center + half).min(1.0)
    }
}

/// The bound of a Poisson mean given an observed count `k` (Byar's
/// approximation): lower `k (1 − 1/(9k) − z/(3√k))³` (0 for `k = 0`),
/// upper with `k + 1` and `+ z`.
pub(crate) fn poisson(k: i64, z: f64, lower: bool) -> f64 {
    let k = k.max(0) as f64;
    if lower {
        if k == 0.0 {
            return 0.0;
        }
        (k * (1.0 - 1.0 / (9.0 * k) - z / (3.0 * k.sqrt())).powi(3)).max(0.0)
    } else {
        let k1 = k + 1.0;
        k1 * (1.0 - 1.0 / (9.0 * k1) + z / (3.0 * k1.sqrt())).powi(3)
    }
}

/// The bound of an NPS from `promoters` and `detractors` among `n` responses.
pub(crate) fn nps(promoters: i64, detractors: i64, n: i64, z: f64, lower: bool) -> f64 {
    if n <= 0 {
        return 0.0;
    }
    let nf = n as f64;
    let (p, d) = (promoters as f64 / nf, detractors as f64 / nf);
    let v = p - d;
    let se = ((p + d - v * v).max(0.0) / nf).sqrt();
    let b = if lower { v - z * se } else { v + z * se };
    (b * 100.0).clamp(-100.0, 100.0)
}

/// The bound of a mean from the sum (`sum_milli`, thousandths), count and sum
/// of squares (`sumsq_milli`, thousandths); `None` below two values.
pub(crate) fn mean(sum_milli: i64, n: i64, sumsq_milli: i64, z: f64, lower: bool) -> Option<f64> {
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    let mean = sum_milli as f64 / 1000.0 / nf;
    let var = ((sumsq_milli as f64 / 1000.0 - nf * mean * mean) / (nf - 1.0)).max(0.0);
    let se = (var / nf).sqrt();
    Some(if lower { mean - z * se } else { mean + z * se })
}

/// `Φ⁻¹(p)` for p in (0, 1): Acklam's rational approximation (relative
/// error below 1.2·10⁻⁹, far below what a threshold needs).
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn normal_quantiles() {
        assert!(close(z_one_sided(0.95), 1.644_853_6, 1e-6));
        assert!(close(z_one_sided(0.975), 1.959_964_0, 1e-6));
        assert!(close(z_one_sided(0.99), 2.326_347_9, 1e-6));
        assert!(close(z_one_sided(0.5), 0.0, 1e-9));
    }

    #[test]
    fn wilson_matches_published_values() {
        // 95 % two-sided (z = 1.96) Wilson interval of 19/30: [0.4551, 0.7813].
        let (lo, hi) = (
            proportion(19, 30, 1.96, true),
            proportion(19, 30, 1.96, false),
        );
        assert!(
            close(lo, 0.4551, 5e-4) && close(hi, 0.7813, 5e-4),
            "{lo} {hi}"
        );
        // No successes: lower 0, upper z²/(n + z²).
        assert_eq!(proportion(0, 10, 1.96, true), 0.0);
        assert!(close(
            proportion(0, 10, 1.96, false),
            1.96f64.powi(2) / (10.0 + 1.96f64.powi(2)),
            1e-12
        ));
    }

    #[test]
    fn the_issue_example_small_slice_no_longer_breaches() {
        // severe_share: 0.63 on ~25 complaints against a 0.6 threshold.
        let z = z_one_sided(0.95);
        assert!(proportion(16, 25, z, true) < 0.6);
        // The same share on 2,500 complaints still breaches 0.6.
        assert!(proportion(1600, 2500, z, true) > 0.6 + 1e-3);
    }

    #[test]
    fn poisson_bounds_match_exact_values() {
        // Exact 95 % one-sided (z = 1.645) Garwood bounds: k = 10 → [5.425, 16.962].
        assert!(close(poisson(10, 1.645, true), 5.425, 0.03));
        assert!(close(poisson(10, 1.645, false), 16.962, 0.05));
        assert_eq!(poisson(0, 1.645, true), 0.0);
        assert!(close(poisson(0, 1.645, false), 2.996, 0.05));
        // A ratio above 1 is bounded as a count.
        assert!(close(
            proportion(20, 10, 1.645, true),
            poisson(20, 1.645, true) / 10.0,
            1e-12
        ));
    }

    #[test]
    fn nps_and_mean_bounds_bracket_the_estimate() {
        let z = 1.645;
        // 50 promoters, 30 detractors of 100: NPS 20.
        let (lo, hi) = (nps(50, 30, 100, z, true), nps(50, 30, 100, z, false));
        assert!(lo < 20.0 && 20.0 < hi && close(hi - 20.0, 20.0 - lo, 1e-9));
        // var = 0.8 − 0.04 = 0.76 → se = √(0.0076) = 0.0872 → ±14.3.
        assert!(close(hi - 20.0, 100.0 * z * (0.76f64 / 100.0).sqrt(), 1e-9));
        assert_eq!(nps(100, 0, 100, z, false), 100.0);
        // Scores 2, 4, 6: mean 4, sample sd 2, se 2/√3.
        let m = |lower| mean(12_000, 3, 56_000, z, lower).unwrap();
        assert!(close(m(true), 4.0 - z * 2.0 / 3f64.sqrt(), 1e-9));
        assert!(close(m(false), 4.0 + z * 2.0 / 3f64.sqrt(), 1e-9));
        assert_eq!(mean(5000, 1, 25_000, z, true), None);
    }
}
