"""UC-OP-02 detection quality on the seeded coffee-chain generator: ``python -m bench bench.store_detection``.

For many generator seeds (``SPCWATCH_BENCH_STORE_SEEDS``, default 80): the day a -51 % decline of US00001
is flagged when it is spread over two, three and four weeks, and the alert episodes of the nine healthy
stores over 70 days, by rule and metric. The charts are the store stage's own (``StoreConfig`` ->
``SeriesDetector`` / ``PChart``) fed each day's metrics directly (no Kafka, no chain): the chain-dip day
is left out, as the chain folds it into one chain alert. Beside the shipped charts: the textbook charts
they replaced (WE1-WE4 on every metric, 3-sigma lines of an estimated sigma), the CUSUM interval varied,
and what a CUSUM that *knows* the centre and sigma could do at the same noise (the limit of any rule).
"""

from __future__ import annotations

import math
import os
import random
import statistics
from collections import Counter
from collections.abc import Callable
from functools import cache

from models import SeriesDetector
from models.pchart import PChart
from models.store import METRICS, RATE_METRICS, STATUS_CODE, Calendar, StoreConfig, day_metrics, rate_counts
from tests import store_data as sd

SEEDS = int(os.environ.get("SPCWATCH_BENCH_STORE_SEEDS", "80"))
RAMPS = (14, 21, 28)
DIP_DAY, DECLINE_START = 36, 42
Judge = Callable[[str], object]


@cache
def series(seed: int, store_index: int, ramp: int | None) -> tuple:
    """Each day's (metrics, rate counts) of one store (ramp None: no decline)."""
    sc = sd.Scenario(days=70, decline_store="US00001" if ramp else None, decline_days=ramp or 14,
                     seed=seed, chain_dip=(DIP_DAY, 0.7))
    out = []
    for index in range(sc.days):
        orders: dict[str, list] = {}
        for e in sorted(sd.store_day(sc, store_index, index), key=lambda e: e["ts"]):
            o = sd.to_order(e)
            disc = round(sum(float(i.discount) * i.qty for i in o.items) * 100)
            orders[o.order_id] = [STATUS_CODE[o.status], o.total_minor, disc, float(sum(i.qty for i in o.items)), o.ts]
        out.append((day_metrics(orders.values()), rate_counts(orders.values())))
    return tuple(out)


def shipped(cfg: StoreConfig) -> Judge:
    return lambda metric: (PChart if metric in RATE_METRICS else SeriesDetector)("k", cfg.detector_config(metric))


def textbook(metric: str) -> SeriesDetector:
    """The charts before: WE1-WE4 on every metric, rates included, on the estimated sigma's 3-sigma lines."""
    cfg = StoreConfig().detector_config(metric).with_(prediction_limits=False, rules=("WE1", "WE2", "WE3", "WE4"))
    return SeriesDetector("k", cfg)


def episodes(make: Judge, days: tuple, metric: str) -> list[tuple[int, str]]:
    det = make(metric)
    out = []
    for index, (m, counts) in enumerate(days):
        ts = Calendar.model_ts(sd.START.fromordinal(sd.START.toordinal() + index).isoformat())
        if isinstance(det, PChart):
            v = det.update(ts, *counts[metric])[0]
        else:
            x = m[metric]
            v = det.update(ts, math.nan if x is None else x)[0]  # type: ignore[union-attr]
        if v.event is not None and v.event.kind == "firing" and not (index == DIP_DAY and metric in ("net_revenue",
                                                                                                      "orders")):
            out.append((index, v.event.rule))
    return out


def measure(make: Judge, seeds: range | None = None) -> dict:
    seeds = range(1, SEEDS + 1) if seeds is None else seeds
    flag: dict[int, list[int]] = {}
    first_rules: Counter = Counter()
    for ramp in RAMPS:
        flag[ramp] = []
        for seed in seeds:
            hits = [(i, r) for m in ("net_revenue", "orders") for i, r in episodes(make, series(seed, 0, ramp), m)
                    if i >= DECLINE_START]
            first = min(hits) if hits else None
            flag[ramp].append(first[0] - DECLINE_START + 1 if first else 99)
            if ramp == 21 and first:
                first_rules[first[1]] += 1
    healthy: Counter = Counter()
    by_metric: Counter = Counter()
    for seed in seeds:
        for store in range(1, 10):
            for metric in METRICS:
                for _, rule in episodes(make, series(seed, store, None), metric):
                    healthy[rule] += 1
                    by_metric[metric] += 1
    return {"flag": flag, "first": first_rules, "healthy": healthy, "by_metric": by_metric, "seeds": len(seeds)}


BUDGET = 1.0  # false episodes per healthy store per quarter, over all its charts (issue #14)
BOTH = ("net_revenue", "orders")
CANDIDATES = {
    "WE1-WE4 + CUSUM h 3 (revenue, orders: the default before)": StoreConfig(
        rules=("WE1", "WE2", "WE3", "WE4", "CUSUM"), cusum_h=3.0, cusum_metrics=BOTH),
    **{f"WE1 + CUSUM h {h:g} (revenue, orders)": StoreConfig(rules=("WE1", "CUSUM"), cusum_h=h, cusum_metrics=BOTH)
       for h in (3.0, 3.5, 4.0, 4.5)},
    **{f"WE1 + CUSUM h {h:g} (revenue)": StoreConfig(rules=("WE1", "CUSUM"), cusum_h=h, cusum_metrics=("net_revenue",))
       for h in (2.5, 3.0)},
}


def per_quarter(r: dict) -> float:
    """Healthy episodes per store per quarter (nine healthy stores, 70-day runs)."""
    return sum(r["healthy"].values()) / r["seeds"] / 9 * 91 / 70


def within(r: dict, ramp: int, days: int = 8) -> float:
    return sum(d <= days for d in r["flag"][ramp]) / r["seeds"]


def choose() -> tuple[str, str]:
    """The store default chosen on the odd seeds by a rule fixed before the run, reported on the even ones.

    Rule: among the candidates with at most ``BUDGET`` false episodes per healthy store per quarter on
    the odd seeds, the one that flags the most 3-week ramps within 8 days (ties: the earlier median day,
    then fewer false episodes)."""
    odd, even = range(1, SEEDS + 1, 2), range(2, SEEDS + 1, 2)
    scored = {name: (measure(shipped(cfg), odd), measure(shipped(cfg), even)) for name, cfg in CANDIDATES.items()}
    ok = [n for n, (o, _) in scored.items() if per_quarter(o) <= BUDGET]
    best = max(ok, key=lambda n: (within(scored[n][0], 21), -statistics.median(scored[n][0]["flag"][21]),
                                  -per_quarter(scored[n][0]))) if ok else ""
    rows = []
    for name, (o, e) in scored.items():
        mark = " **chosen**" if name == best else ""
        rows.append(f"| {name}{mark} | {per_quarter(o):.2f} | {within(o, 21):.0%} | {per_quarter(e):.2f} | "
                    + " | ".join(f"{within(e, ramp):.0%} (median day {statistics.median(e['flag'][ramp]):.0f})"
                                 for ramp in RAMPS) + " |")
    table = "\n".join([
        f"Chosen on the odd seeds (budget: at most {BUDGET:g} false episode per healthy store per quarter over all its "
        "charts; then the most 3-week ramps flagged within 8 days), reported on the even seeds:",
        "",
        "| charts | choosing half: false / store / quarter | 3-week ramp within 8 days | held-out half: false / "
        "store / quarter | 2-week ramp within 8 days | 3 weeks | 4 weeks |",
        "| --- | ---: | ---: | ---: | --- | --- | --- |",
        *rows,
    ])
    return best, table


def oracle(ramp: int, noise: float, n: int = 20000, k: float = 0.5, h: float = 4.0) -> float:
    """Share of draws in which a lower CUSUM that knows centre and sigma flags the ramp within 8 days."""
    rng = random.Random(ramp)
    beta = 0.51 / ramp / noise
    hit = 0
    for _ in range(n):
        s = 0.0
        for day in range(1, 9):
            s = max(0.0, s + beta * day - rng.gauss(0.0, 1.0) - k)
            if s > h:
                hit += 1
                break
    return hit / n


def _row(name: str, r: dict) -> str:
    flag = r["flag"]
    cells = []
    for ramp in RAMPS:
        within = sum(d <= 8 for d in flag[ramp])
        cells.append(f"{within / SEEDS:.0%} (median day {statistics.median(flag[ramp]):.0f})")
    per = {k: v / SEEDS for k, v in r["healthy"].items()}
    order = ("WE1", "WE2", "WE3", "WE4", "CUSUM")
    return (f"| {name} | {' | '.join(cells)} | {sum(per.values()):.1f} | "
            + ", ".join(f"{k} {per[k]:.1f}" for k in order if k in per) + " |")


def run() -> str:
    best, choice = choose()
    shipped_result = measure(shipped(StoreConfig()))
    cfg = StoreConfig()
    rows = [_row(f"shipped ({'+'.join(cfg.rules)}, CUSUM h = {cfg.cusum_h:g} on {', '.join(cfg.cusum_metrics)}, "
                 "prediction limits, p-charts)", shipped_result),
            _row("textbook charts (WE1-WE4 on 3-sigma lines, the first version)", measure(textbook))]
    for h in (2.0, 3.0, 3.5):
        rows.append(_row(f"shipped, CUSUM h = {h:g}", measure(shipped(StoreConfig(cusum_h=h)))))
    rows.append(_row("WE1-WE4 without CUSUM", measure(shipped(StoreConfig(rules=("WE1", "WE2", "WE3", "WE4"))))))
    per_metric = shipped_result["by_metric"]
    lines = [
        "## Store performance (UC-OP-02): detection on the seeded generator",
        "",
        choice,
        "",
        f"The default (`StoreConfig`) is the chosen one: {best or 'none met the budget'}. All seeds, below.",
        "",
        f"{SEEDS} generator seeds, 70 days, ten stores (~140-180 orders a day, ~10 % daily noise on revenue). "
        "Decline: US00001 -51 % from day 42, reached after the ramp; a flag is the first revenue/orders episode "
        "starting in the decline (day 1 = its first day). Healthy: the other nine stores, alert episodes per "
        "70-day run, chain-dip day excluded. Charts fed the daily metrics directly (bench/store_detection.py).",
        "",
        "| charts | 2-week ramp flagged within 8 days | 3 weeks | 4 weeks | healthy episodes / run | by rule |",
        "| --- | --- | --- | --- | ---: | --- |",
        *rows,
        "",
        "Shipped charts, healthy episodes per run by metric: "
        + ", ".join(f"{m} {per_metric[m] / SEEDS:.1f}" for m in METRICS) + ".",
        "First rule on the 3-week ramp (shipped): "
        + ", ".join(f"{k} {v}" for k, v in shipped_result["first"].most_common()) + ".",
        "",
        "The limit at this noise: a lower CUSUM that *knows* the centre and sigma flags the ramp within 8 days "
        f"in {oracle(14, 0.102, h=3.0):.0%} / {oracle(21, 0.102, h=3.0):.0%} / {oracle(28, 0.102, h=3.0):.0%} of "
        f"draws at revenue's noise (10.2 %) with h = 3 (in-control ARL ~118 days), "
        f"{oracle(14, 0.102):.0%} / {oracle(21, 0.102):.0%} / {oracle(28, 0.102):.0%} with h = 4 (ARL ~340); "
        f"at orders' noise (9.1 %), {oracle(21, 0.091, h=3.0):.0%} on the 3-week ramp with h = 3. The shipped "
        "charts estimate centre and sigma from at most 28 days, which costs them the rest.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
