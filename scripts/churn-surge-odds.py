#!/usr/bin/env python3
"""False pages of a cancellation surge rule, from a model of the traffic
(README, "Other shapes of traffic": how `churn_surge` and `churn_surge_2h`
were chosen).

A surge rule (`kind = "surge"`, ratio, `confidence = 0.95`, `for = "3m"`,
slide 1m) pages when the lower 95 % Poisson bound of its window's count
(Byar's approximation, as src/indicator/confidence.rs) exceeds `warning` ×
max(expectation, `min_baseline`), the expectation being the window's share of
the trailing baseline's count. For one slice with Poisson cancellations
following the generator's daily rhythm (src/generator/sample.rs), the
expected number of false pages a day is summed exactly over the minutes: the
window newly reaching the count needed (the up-crossing, as in
scripts/churn-wave-odds.py), over the Poisson distribution of the baseline's
own count (which sets the count needed), times the chance that the breach
holds for the 3 minutes of `for`. Two days are modelled: the first day of a
stream (the baseline fills from midnight, as in tests/traffic_shapes.rs,
where every day is a first day) and a day with a full day behind it. The
slice's size is swept (0.3 to 12.5 cancellations per 30 minutes at the daily
peak, the sizes where a floor at about 1 bites), and the worst is printed: a
rule is silent enough when the worst slice pages falsely at most about once
in 400 days (0.0024 a day; 12 region × segment slices then page about once
a month), whatever the traffic's volume or cancellation rate.

Usage: churn-surge-odds.py WINDOW:BASELINE:WARNING:MIN_BASELINE ...
e.g. churn-surge-odds.py 30m:24h:5:1 2h:24h:5:2 (a minute or two per rule).
"""
import functools
import math
import sys

Z = 1.6448536269514722  # one-sided 95 %


def rhythm(h):
    """daily_rhythm of src/generator/sample.rs, `h` in hours UTC."""
    if 3 <= h < 14:
        rise = (1 - math.cos(math.pi * (h - 3) / 11)) / 2
    else:
        d = h - 14 if h >= 14 else h + 10
        rise = (1 + math.cos(math.pi * d / 13)) / 2
    return 0.35 + 0.65 * rise


RH = [rhythm((m + 0.5) / 60) for m in range(1440)]


def byar_lower(k):
    if k <= 0:
        return 0.0
    return max(0.0, k * (1 - 1 / (9 * k) - Z / (3 * math.sqrt(k))) ** 3)


LOW = [byar_lower(k) for k in range(5000)]


def k_needed(level):
    """The smallest count whose lower bound is strictly above `level`."""
    lo, hi = 0, len(LOW) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if LOW[mid] > level:
            hi = mid
        else:
            lo = mid + 1
    return lo


def pmf(k, lam):
    if k < 0:
        return 0.0
    if lam <= 0:
        return 1.0 if k == 0 else 0.0
    return math.exp(-lam + k * math.log(lam) - math.lgamma(k + 1))


def pmfs(lam, kmax):
    out = [pmf(0, lam)]
    for i in range(1, kmax + 1):
        out.append(out[-1] * lam / i if lam > 0 else 0.0)
    return out


def cdfs(lam, kmax):
    out, s = [], 0.0
    for p in pmfs(lam, kmax):
        s += p
        out.append(min(1.0, s))
    return out


def upcross(shared, new, old, k):
    """P(shared + old < k <= shared + new): the window newly reaches k."""
    if k <= 0 or k > shared + new + 12 * math.sqrt(shared + new + 1) + 12:
        return 0.0
    ps, cn, co = pmfs(shared, k - 1), cdfs(new, k), cdfs(old, k)
    return sum(ps[j] * (1 - cn[k - j - 1]) * co[k - j - 1] for j in range(k))


@functools.lru_cache(maxsize=None)
def p_hold(k, lam_milli, n, steps=3):
    """The breach at k holds for `steps` more minutes: each of the k - 1
    older events leaves with probability 1/(n - 1) a minute, arrivals are
    Poisson; the surplus of arrivals over departures must stay >= 0."""
    lam, q = lam_milli / 1000.0, 1.0 / (n - 1)
    dep = [math.comb(k - 1, d) * q**d * (1 - q) ** (k - 1 - d) for d in range(min(k - 1, 6) + 1)]
    arr = [pmf(a, lam) for a in range(7)]
    dist = {0: 1.0}
    for _ in range(steps):
        nd = {}
        for s, p in dist.items():
            for a, pa in enumerate(arr):
                for d, pd in enumerate(dep):
                    if s + a - d >= 0:
                        v = min(s + a - d, 6)
                        nd[v] = nd.get(v, 0.0) + p * pa * pd
        dist = nd
    return sum(dist.values())


def false_per_day(rule, s, first_day, step=3):
    """Expected false pages in a day of a slice with `s` cancellations a
    minute at the daily peak (minutes evaluated every `step`, weighted)."""
    n, base, warn, floor = rule
    lam = [s * r for r in RH]
    hist = lam if first_day else lam + lam
    off = 0 if first_day else 1440
    pre = [0.0]
    for x in hist:
        pre.append(pre[-1] + x)
    total = 0.0
    for t in range(off + step // 2, off + 1440, step):
        ws = t - n + 1  # the window's first minute
        mb = min(ws, base)  # baseline minutes behind it
        if ws < 0 or mb < n:
            continue  # no value until one window of history
        lb = pre[ws] - pre[ws - mb]
        shared, new = pre[t] - pre[ws], hist[t]
        old = hist[ws - 1] if ws >= 1 else 0.0
        sd = math.sqrt(lb)
        lo, hi = max(0, int(lb - 8 * sd - 3)), int(lb + 8 * sd + 5)
        by_k = {}
        p = pmf(lo, lb)
        for count in range(lo, hi + 1):
            if count > lo:
                p *= lb / count
            k = k_needed(warn * max(n * count / mb, floor))
            by_k[k] = by_k.get(k, 0.0) + p
        for k, pk in by_k.items():
            if pk > 1e-12:
                u = upcross(shared, new, old, k)
                if u > 0:
                    u *= p_hold(k, int(new * 1000), n)
                total += pk * u * step
    return total


def parse(spec):
    def minutes(x):
        return int(x[:-1]) * {"m": 1, "h": 60}[x[-1]]

    w, b, t, f = spec.split(":")
    return minutes(w), minutes(b), float(t), float(f)


if __name__ == "__main__":
    grid = [0.01 * 1.3**i for i in range(15)]
    print("| rule (window:baseline:warning:min_baseline) | worst false pages / slice-day, first day (at, per 30 min at peak) | with a day behind (at) |")
    print("| --- | --- | --- |")
    for spec in sys.argv[1:]:
        rule = parse(spec)
        cells = []
        for first_day in (True, False):
            f, s = max((false_per_day(rule, s, first_day), s) for s in grid)
            cells.append(f"{f:.4f} ({s * 30:.1f})")
        print(f"| {spec} | {cells[0]} | {cells[1]} |", flush=True)
