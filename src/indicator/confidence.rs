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
//! * **NPS**: promoters and detractors are a trinomial. The textbook
//!   (Wald) margin `100·√((P + D − (P − D)²)/n)` collapses to zero when every
//!   response is in one category — a single detractor would be an NPS of
//!   −100 "with certainty" — so the bound uses the *adjusted-Wald* interval
//!   instead (Rocks 2016, *The American Statistician* 70(4), the best of the
//!   six methods compared there; an Agresti–Caffo style correction): ¾ of a
//!   pseudo-response is added to the promoters and to the detractors and 1½
//!   to the passives (`n + 3` in all) before the estimate and its trinomial
//!   variance are computed, and the bound is normal around that, clamped to
//!   [−100, 100]. The pseudo-counts move a large sample's bound by about
//!   `300/n` NPS points at most (0.3 at n = 1,000), a tiny one's a lot.
//! * **Mean score**: Student's t with `n − 1` degrees of freedom (the
//!   sample variance is itself estimated: at n = 2 the 99 % quantile is 31.8,
//!   not 2.33), and a variance that cannot collapse to zero: the sample's
//!   `n − 1` degrees of freedom are pooled with **one pseudo-observation** of
//!   the variance `R²/12` of scores spread evenly over the configured
//!   `engine.score_range` (width `R`) — the posterior scale of a conjugate
//!   scaled-inverse-χ² prior with one degree of freedom, i.e. the weakest
//!   prior that still says "scores vary over their range":
//!   `s̃² = ((n − 1)·s² + R²/12) / n`. Two identical scores then do not make
//!   the spread zero, while from a few hundred scores on the prior's weight
//!   (1/n) is negligible. The degrees of freedom stay `n − 1`
//!   (conservatively, the prior's is not counted); the bound is clamped to
//!   the score range; "no data" below two scores, where the sample says
//!   nothing about its own spread.
//!
//! Student quantiles come from Hill's (1970) algorithm 396: exact for one
//! and two degrees of freedom, and within 10⁻⁵ relative of the exact
//! quantile beyond (checked against the exact integer-df distribution for
//! levels 0.6–0.999 and 1–2,000 degrees of freedom): far below what a
//! threshold needs.

/// Pseudo-responses the adjusted-Wald NPS interval adds to the promoters and
/// to the detractors (Rocks 2016); twice as many go to the passives.
const NPS_PSEUDO: f64 = 0.75;

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
    // At the ends the bound is exact: the arithmetic below would leave a
    // residue (2.8e-17 for 0 of 25), which breaches a threshold of 0 —
    // and a `below 1` one at `x = n`.
    if lower && x <= 0 {
        return 0.0;
    }
    if !lower && x >= n {
        return 1.0;
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

/// The bound of an NPS from `promoters` and `detractors` among `n`
/// responses: the adjusted-Wald interval (¾ pseudo-response added to the
/// promoters and to the detractors, 3 to `n`), so that a sample all in one
/// category — one detractor — still has a spread.
pub(crate) fn nps(promoters: i64, detractors: i64, n: i64, z: f64, lower: bool) -> f64 {
    if n <= 0 {
        return 0.0;
    }
    let nf = n as f64 + 4.0 * NPS_PSEUDO;
    let p = (promoters as f64 + NPS_PSEUDO) / nf;
    let d = (detractors as f64 + NPS_PSEUDO) / nf;
    let v = p - d;
    let se = ((p + d - v * v).max(0.0) / nf).sqrt();
    let b = if lower { v - z * se } else { v + z * se };
    (b * 100.0).clamp(-100.0, 100.0)
}

/// The prior a guarded `mean_score` pools its sample variance with: the
/// configured score range (`engine.score_range`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ScoreScale {
    lo: f64,
    hi: f64,
}

impl ScoreScale {
    pub(crate) fn new([lo, hi]: [f64; 2]) -> Self {
        ScoreScale { lo, hi }
    }

    /// `R²/12`: the variance of scores spread evenly over the range.
    fn prior_variance(&self) -> f64 {
        let r = (self.hi - self.lo).max(0.0);
        if r.is_finite() {
            r * r / 12.0
        } else {
            0.0
        }
    }

    fn clamp(&self, x: f64) -> f64 {
        if self.lo <= self.hi && self.lo.is_finite() && self.hi.is_finite() {
            x.clamp(self.lo, self.hi)
        } else {
            x
        }
    }
}

/// The bound at one-sided level `1 − tail` (`z = Φ⁻¹(1 − tail)`) of a mean
/// from the sum (`sum_milli`, thousandths), count and sum of squares
/// (`sumsq_milli`, thousandths) of scores on `scale`: Student's t with
/// `n − 1` degrees of freedom around the sample mean, the sample variance
/// pooled with one pseudo-observation of `R²/12` (see the module docs),
/// clamped to the score range; `None` below two values.
pub(crate) fn mean(
    sum_milli: i64,
    n: i64,
    sumsq_milli: i64,
    z: f64,
    tail: f64,
    scale: ScoreScale,
    lower: bool,
) -> Option<f64> {
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    let mean = sum_milli as f64 / 1000.0 / nf;
    let ss = (sumsq_milli as f64 / 1000.0 - nf * mean * mean).max(0.0);
    let var = (ss + scale.prior_variance()) / nf;
    let se = (var / nf).sqrt();
    let t = t_one_sided(z, tail, nf - 1.0);
    Some(scale.clamp(if lower { mean - t * se } else { mean + t * se }))
}

/// The one-sided Student t quantile `t(1 − tail; df)` for `df ≥ 1`, given
/// `z = Φ⁻¹(1 − tail)`: Hill's algorithm 396 (Comm. ACM 13(10), 1970), the
/// approximation R's `qt` starts from; exact for `df` = 1 (Cauchy) and 2.
pub(crate) fn t_one_sided(z: f64, tail: f64, df: f64) -> f64 {
    // Hill works with the two-sided tail probability.
    let p = (2.0 * tail).clamp(f64::MIN_POSITIVE, 1.0);
    if df < 1.0 + 1e-9 {
        return 1.0 / (std::f64::consts::FRAC_PI_2 * p).tan();
    }
    if (df - 2.0).abs() < 1e-9 {
        return (2.0 / (p * (2.0 - p)) - 2.0).max(0.0).sqrt();
    }
    let a = 1.0 / (df - 0.5);
    let b = 48.0 / (a * a);
    let mut c = ((20700.0 * a / b - 98.0) * a - 16.0) * a + 96.36;
    let d = ((94.5 / (b + c) - 3.0) / b + 1.0) * (a * std::f64::consts::FRAC_PI_2).sqrt() * df;
    let y = (d * p).powf(2.0 / df);
    let y = if y > 0.05 + a {
        // Asymptotic inverse expansion about the normal (Hill's deviate is
        // the lower one, `Φ⁻¹(tail)`).
        let x = -z;
        let y = x * x;
        if df < 5.0 {
            c += 0.3 * (df - 4.5) * (x + 0.6);
        }
        c += (((0.05 * d * x - 5.0) * x - 7.0) * x - 2.0) * x + b;
        let y = (((((0.4 * y + 6.3) * y + 36.0) * y + 94.5) / c - y - 3.0) / b + 1.0) * x;
        (a * y * y).exp_m1()
    } else {
        ((1.0 / (((df + 6.0) / (df * y) - 0.089 * d - 0.822) * (df + 2.0) * 3.0)
            + 0.5 / (df + 4.0))
            * y
            - 1.0)
            * (df + 1.0)
            / (df + 2.0)
            + 1.0 / y
    };
    (df * y).sqrt()
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

    /// None of one kind: the bound is exactly 0 (or 1), never a residue
    /// that breaches a threshold of 0 (or a `below 1` one).
    #[test]
    fn wilson_bounds_are_exact_at_the_ends() {
        for level in [0.8, 0.9, 0.95, 0.975, 0.99, 0.999] {
            let z = z_one_sided(level);
            for n in 1..=3000 {
                assert_eq!(proportion(0, n, z, true), 0.0, "0 of {n} at {level}");
                assert_eq!(proportion(n, n, z, false), 1.0, "{n} of {n} at {level}");
                assert!(proportion(1, n, z, true) > 0.0);
                assert!(proportion(n - 1, n, z, false) < 1.0 || n == 1);
            }
        }
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

    const SCALE: [f64; 2] = [0.0, 10.0];

    /// `mean` at level `level` of `scores`, on [0, 10].
    fn mean_of(scores: &[f64], level: f64, lower: bool) -> Option<f64> {
        let milli = |x: f64| (x * 1000.0).round() as i64;
        let sum = scores.iter().map(|&s| milli(s)).sum();
        let sumsq = scores.iter().map(|&s| milli(s * s)).sum();
        let (z, tail) = (z_one_sided(level), 1.0 - level);
        mean(
            sum,
            scores.len() as i64,
            sumsq,
            z,
            tail,
            ScoreScale::new(SCALE),
            lower,
        )
    }

    #[test]
    fn student_quantiles_match_tables() {
        // One-sided t(level; df), from the standard tables.
        for (level, df, t, tol) in [
            (0.99, 1.0, 31.820_5, 1e-3),
            (0.95, 1.0, 6.313_8, 1e-3),
            (0.99, 2.0, 6.964_6, 1e-3),
            (0.95, 2.0, 2.920_0, 1e-3),
            (0.95, 3.0, 2.353_4, 1e-3),
            (0.99, 3.0, 4.540_7, 2e-3),
            (0.99, 5.0, 3.364_9, 2e-3),
            (0.975, 10.0, 2.228_1, 1e-3),
            (0.995, 30.0, 2.750_0, 1e-3),
            (0.999, 4.0, 7.173_2, 5e-3),
            (0.95, 120.0, 1.657_7, 1e-3),
            (0.9, 20.0, 1.325_3, 1e-3),
        ] {
            let got = t_one_sided(z_one_sided(level), 1.0 - level, df);
            assert!(close(got, t, tol), "t({level}; {df}) = {got}, table {t}");
        }
        // Many degrees of freedom: the normal quantile.
        let z = z_one_sided(0.99);
        assert!(close(t_one_sided(z, 0.01, 1e6), z, 1e-5));
    }

    #[test]
    fn a_tiny_mean_sample_does_not_breach() {
        // The reviewer's cases: `below 5` at 0.99 on two scores of 2 (the
        // sample variance is 0) and on 2 and 3.
        let hi = mean_of(&[2.0, 2.0], 0.99, false).unwrap();
        assert!(hi > 5.0, "{hi}");
        let hi = mean_of(&[2.0, 3.0], 0.99, false).unwrap();
        assert!(hi > 5.0, "{hi}");
        // `above 5` alike: two scores of 9 are not evidence of a mean above 5.
        let lo = mean_of(&[9.0, 9.0], 0.99, true).unwrap();
        assert!(lo < 5.0, "{lo}");
        // The bound stays within the score range.
        assert_eq!(mean_of(&[2.0, 2.0], 0.99, false), Some(10.0));
        assert_eq!(mean_of(&[9.0, 9.0], 0.99, true), Some(0.0));
        // One score: no bound.
        assert_eq!(mean_of(&[2.0], 0.99, false), None);
        // Zero spread in a sizeable sample still is evidence: 30 scores of 2
        // are below 5 at 0.99.
        let hi = mean_of(&[2.0; 30], 0.99, false).unwrap();
        assert!(hi < 3.0, "{hi}");
    }

    #[test]
    fn a_single_detractor_does_not_breach() {
        let z = z_one_sided(0.99);
        // `below 0` at 0.99: one detractor (NPS −100) is no evidence.
        assert!(nps(0, 1, 1, z, false) > 0.0);
        // Nor one promoter for `above 0`.
        assert!(nps(1, 0, 1, z, true) < 0.0);
        // A dozen detractors out of a dozen is.
        assert!(nps(0, 12, 12, z, false) < 0.0);
    }

    #[test]
    fn large_samples_are_essentially_unchanged() {
        let z = z_one_sided(0.95);
        // NPS: 5,000 promoters and 3,000 detractors of 10,000; the plain
        // trinomial (Wald) bound is 20 ± 100·z·√(0.76/10⁴).
        let wald = 100.0 * z * (0.76f64 / 1e4).sqrt();
        assert!(close(nps(5000, 3000, 10_000, z, false), 20.0 + wald, 0.05));
        assert!(close(nps(5000, 3000, 10_000, z, true), 20.0 - wald, 0.05));
        // Mean: 9,999 scores of 4, 5, 6 (mean 5, variance 2/3): 5 ± z·se.
        let scores: Vec<f64> = (0..9999).map(|i| [4.0, 5.0, 6.0][i % 3]).collect();
        let se = ((2.0 / 3.0) * 9999.0 / 9998.0 / 9999.0f64).sqrt();
        let hi = mean_of(&scores, 0.95, false).unwrap();
        assert!(close(hi, 5.0 + z * se, 2e-4), "{hi} vs {}", 5.0 + z * se);
        let lo = mean_of(&scores, 0.95, true).unwrap();
        assert!(close(lo, 5.0 - z * se, 2e-4), "{lo}");
    }

    #[test]
    fn nps_and_mean_bounds_bracket_the_estimate() {
        let z = 1.645;
        // 50 promoters, 30 detractors of 100: NPS 20; adjusted-Wald
        // 50.75 and 30.75 of 103: 19.42, ±100·z·√((0.7913 − 0.0377)/103).
        let (lo, hi) = (nps(50, 30, 100, z, true), nps(50, 30, 100, z, false));
        let center = 100.0 * 20.0 / 103.0;
        assert!(lo < 20.0 && 20.0 < hi && close(hi - center, center - lo, 1e-9));
        let (p, d) = (50.75 / 103.0, 30.75 / 103.0);
        let margin = 100.0 * z * ((p + d - (p - d) * (p - d)) / 103.0f64).sqrt();
        assert!(close(hi - center, margin, 1e-9));
        assert_eq!(nps(100, 0, 100, z, false), 100.0);
        // Scores 2, 4, 6: mean 4, sum of squared deviations 8, pooled with
        // R²/12 = 100/12 over n = 3; t(0.95; 2) = 2.920.
        let se = ((8.0 + 100.0 / 12.0) / 3.0 / 3.0f64).sqrt();
        let t = 2.919_986;
        let m = |lower| mean_of(&[2.0, 4.0, 6.0], 0.95, lower).unwrap();
        assert!(close(m(true), 4.0 - t * se, 1e-4), "{}", m(true));
        assert!(close(m(false), 4.0 + t * se, 1e-4));
        assert_eq!(mean_of(&[5.0], 0.95, true), None);
    }
}
