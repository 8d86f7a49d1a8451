#!/usr/bin/env python3
"""How early can any rule catch the generator's churn wave? (README, "Other
shapes of traffic": "Why not in 30 minutes below ten times the volume".)

The model is the generator's own (src/generator.rs, src/generator/crises.rs,
src/generator/sample.rs): the vip customers of us-east place
300 × volume × 0.27 × 0.10 × daily_rhythm orders a minute, 0.4 % of orders are
cancelled; from 18:00 the wave adds 11 times the normal cancellations, 40 % at
once and 60 % 2–55 minutes after a complaint by the same customer.

Part 1 (cancellations alone): for each volume and window (30 / 15 minutes,
judged every minute on one-minute panes), the smallest count whose exact
Poisson up-crossing rate over a day with the daily rhythm is at most
0.001 per slice, and the share of simulated waves whose window reaches that
count by minute 27 (a rule then needs its 3 minutes of `for`).

Part 2 (every sign of the wave, demo volume): a detector that knows the
wave's rates and weighs cancellations, complaints and complaint-then-cancel
pairs by their log likelihood ratios over a 30-minute window; its threshold
is set on simulated normal days (constant evening rates) for a false-page
rate per slice and day, with the generator's chance rate of such pairs
(about 0.2 % of cancellations) and with 5 %.

Pure Python, seeded; about ten minutes on one core.
"""
import math
import random

VIP_US_EAST = 0.27 * 0.10
CANCEL = 0.004
WAVE_EXTRA = 11.0
AT_ONCE = 0.4


def rhythm(h):
    """daily_rhythm of src/generator/sample.rs, `h` in hours UTC."""
    if 3 <= h < 14:
        rise = (1 - math.cos(math.pi * (h - 3) / 11)) / 2
    else:
        d = h - 14 if h >= 14 else h + 10
        rise = (1 + math.cos(math.pi * d / 13)) / 2
    return 0.35 + 0.65 * rise


def pmf(k, lam):
    if k < 0:
        return 0.0
    if lam <= 0:
        return 1.0 if k == 0 else 0.0
    return math.exp(-lam + k * math.log(lam) - math.lgamma(k + 1))


def cdf(k, lam):
    if k < 0:
        return 0.0
    return min(1.0, sum(pmf(i, lam) for i in range(k + 1)))


def pois(rng, lam):
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p < limit:
            return k
        k += 1


def false_per_day(volume, window, k):
    """Expected up-crossings of `count in window >= k` in a day: in each
    minute, the window newly reaches k (exact for Poisson minute counts)."""
    total = 0.0
    for m in range(1440):
        lam = 300 * volume * VIP_US_EAST * rhythm((m + 0.5) / 60) * CANCEL
        shared = lam * (window - 1)
        total += sum(
            pmf(j, shared) * (1 - cdf(k - j - 1, lam)) * cdf(k - j - 1, lam)
            for j in range(k)
        )
    return total


def wave_caught(rng, volume, window, k, by, n):
    lam0 = 300 * volume * VIP_US_EAST * rhythm(18.25) * CANCEL
    extra = lam0 * WAVE_EXTRA
    hit = 0
    for _ in range(n):
        bins = [0] * (by + window)
        for m in range(-window, by):
            bins[m + window] += pois(rng, lam0)
        for m in range(by):
            bins[m + window] += pois(rng, extra * AT_ONCE)
            for _ in range(pois(rng, extra * (1 - AT_ONCE))):
                c = m + rng.random() + rng.uniform(2, 55)
                if c < by:
                    bins[int(c) + window] += 1
        hit += any(
            sum(bins[t + 1 : t + window + 1]) >= k for t in range(by)
        )
    return hit / n


def part1(rng):
    print("| volume | normal / 30 min | extra by minute 27 | window | count needed | false / slice-day | caught by minute 27 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for volume in [0.1, 0.3, 1, 3, 10]:
        lam = 300 * volume * VIP_US_EAST * rhythm(18.25) * CANCEL
        extra = lam * WAVE_EXTRA * (AT_ONCE * 27 + (1 - AT_ONCE) * 25**2 / (2 * 53))
        for window in [30, 15]:
            k = 1
            while false_per_day(volume, window, k) > 0.001:
                k += 1
            f = false_per_day(volume, window, k)
            p = wave_caught(rng, volume, window, k, 27, 1500)
            print(f"| x{volume} | {lam * 30:.2f} | {extra:.1f} | {window} | {k} | {f:.4f} | {p:.0%} |", flush=True)


def part2(rng, link_share, days=1000, window=30):
    lam_c = 300 * VIP_US_EAST * rhythm(18.25) * CANCEL
    lam_p = lam_c * 5  # complaints are 2 % of orders
    lam_l = lam_c * link_share
    extra = lam_c * WAVE_EXTRA
    wc = math.log((lam_c + extra * 0.7) / lam_c)
    wp = math.log((lam_p + extra * (1 - AT_ONCE)) / lam_p)
    wl = math.log((lam_l + extra * (1 - AT_ONCE) * 0.5) / lam_l)

    def normal_minute():
        return wc * pois(rng, lam_c - lam_l) + wp * pois(rng, lam_p) + (wl + wc) * pois(rng, lam_l)

    maxima = []
    for _ in range(days):
        s = [normal_minute() for _ in range(1440)]
        acc = sum(s[:window])
        best = acc
        for t in range(window, 1440):
            acc += s[t] - s[t - window]
            best = max(best, acc)
        maxima.append(best)
    maxima.sort()
    waves = []
    for _ in range(3000):
        s = [0.0] * (27 + window)
        for m in range(-window, 27):
            s[m + window] += normal_minute()
        for m in range(27):
            s[m + window] += wc * pois(rng, extra * AT_ONCE)
            for _ in range(pois(rng, extra * (1 - AT_ONCE))):
                ts = m + rng.random()
                s[int(ts) + window] += wp
                c = ts + rng.uniform(2, 55)
                if c < 27:
                    s[int(c) + window] += wc + wl
        waves.append(max(sum(s[t + 1 : t + window + 1]) for t in range(27)))
    for rate in [0.01, 0.003]:
        threshold = maxima[int((1 - rate) * len(maxima))]
        caught = sum(w > threshold for w in waves) / len(waves)
        print(f"pairs by chance {link_share:.1%} of cancellations, {rate} false pages per slice-day: {caught:.0%} of waves by minute 27", flush=True)


if __name__ == "__main__":
    rng = random.Random(11)
    part1(rng)
    print()
    part2(rng, 0.0017)
    part2(rng, 0.05)
