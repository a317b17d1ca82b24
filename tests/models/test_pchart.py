"""PChart: the beta-binomial tails by hand, WE1 on the exact tail, protection, episodes, state, and the
false alarm rate on in-control binomial data."""

from __future__ import annotations

import math
import random

import orjson
import pytest

from models import DetectorConfig, StateError
from models.pchart import TAIL, PChart, beta_binomial_pmf, tails

D = 86400.0


def cfg(**kw) -> DetectorConfig:  # type: ignore[no-untyped-def]
    base = {"window_seconds": 28 * D, "min_samples": 10, "rules": ("WE1",), "protect_z": 3.0,
            "protect_max_run": 7, "resolve_after": 3, "min_effect_abs": 0.03}
    base.update(kw)
    return DetectorConfig.store(**base)


def baseline(pc: PChart, days: int = 28, x: int = 2, n: int = 150) -> float:
    """``days`` ordinary days (``x`` events of ``n``); returns the next day's timestamp."""
    for i in range(days):
        pc.update(i * D, x, n)
    return days * D


def test_beta_binomial_pmf_sums_to_one_and_tends_to_the_binomial():
    assert sum(beta_binomial_pmf(20, 2.0, 3.0)) == pytest.approx(1.0)
    n, p = 150, 0.01
    pmf = beta_binomial_pmf(n, 1e7 * p, 1e7 * (1 - p))  # a rate known almost exactly
    assert max(abs(pmf[k] - math.comb(n, k) * p ** k * (1 - p) ** (n - k)) for k in range(n + 1)) < 1e-5
    # uniform prior, no data: every count equally likely
    assert beta_binomial_pmf(4, 1.0, 1.0) == pytest.approx([0.2] * 5)


def test_tails_and_the_first_signalling_count():
    upper, lower, ucl = tails(7, 150, 42.0, 4200.0)  # 1 % refunds over 28 days of 150 orders
    pmf = beta_binomial_pmf(150, 42.5, 4158.5)
    assert upper == pytest.approx(sum(pmf[7:])) and lower == pytest.approx(sum(pmf[:8]))
    assert tails(ucl, 150, 42.0, 4200.0)[0] < TAIL <= tails(ucl - 1, 150, 42.0, 4200.0)[0]
    assert ucl == 7


def test_we1_on_the_exact_tail_with_z_as_its_normal_score():
    pc = PChart("s|refund_rate", cfg())
    t = baseline(pc)  # 2 of 150 a day: 1.33 %
    quiet = pc.update(t, 6, 150)[0]
    loud = pc.update(t + D, 9, 150)[0]
    assert quiet.status_name == "ok" and not quiet.rules and 0 < quiet.z < 3
    assert loud.rules == {"WE1"} and loud.signal and loud.z > 3
    assert loud.event is not None and loud.event.kind == "firing" and loud.event.rule == "WE1"
    assert quiet.center == pytest.approx(56 / 4200) and loud.value == pytest.approx(9 / 150)
    # the reported limit sits between the largest quiet count and the first signalling one
    upper = loud.center + 3 * loud.sigma
    ucl = tails(0, 150, 56.0, 4200.0)[2]
    assert (ucl - 1) / 150 < upper < ucl / 150


def test_a_signal_needs_the_minimum_effect():
    pc = PChart("s|cancel_rate", cfg(min_effect_abs=0.05))
    t = baseline(pc)
    v = pc.update(t, 9, 150)[0]  # 6 % against 1.3 %: beyond the line, but not 5 points above
    assert v.rules == {"WE1"} and not v.signal and v.event is None


def test_signalling_days_are_not_learned_unless_they_persist():
    pc = PChart("s|refund_rate", cfg())
    t = baseline(pc)
    centre = pc.update(t, 12, 150)[0].center
    v = pc.update(t + D, 2, 150)[0]
    assert v.center == pytest.approx(centre)  # the 12-refund day stayed out of the baseline
    held = PChart("h|refund_rate", cfg())
    t = baseline(held)
    vs = [held.update(t + i * D, 12, 150)[0] for i in range(10)]
    assert vs[7].center == pytest.approx(vs[0].center)  # 7 refused in a row ...
    assert vs[9].center > vs[8].center  # ... then the new level is learned


def test_days_without_orders_are_missing_and_warm_up_counts_days():
    pc = PChart("s|refund_rate", cfg(min_samples=3))
    assert [pc.update(i * D, 1, 100)[0].status_name for i in range(4)] == ["warmup"] * 3 + ["ok"]
    assert pc.update(4 * D, 0, 0)[0].status_name == "missing"
    assert pc.update(3.5 * D, 1, 100)[0].status_name == "late"


def test_episode_resolves_and_state_round_trip_continues_exactly():
    def feed(pc: PChart, days: list[tuple[int, int]], start: float) -> list:
        return [pc.update(start + i * D, x, n)[0] for i, (x, n) in enumerate(days)]

    days = [(2, 150)] * 20 + [(12, 150), (13, 150), (2, 150), (1, 150), (2, 150), (2, 150)]
    whole = PChart("s|refund_rate", cfg())
    a = feed(whole, days, 0.0)
    first = PChart("s|refund_rate", cfg())
    b = feed(first, days[:21], 0.0)
    restored = PChart.from_state(orjson.loads(orjson.dumps(first.to_state())), cfg())
    b += feed(restored, days[21:], 21 * D)
    assert [(v.status, v.mask, v.signal, v.z, v.event) for v in a] == [(v.status, v.mask, v.signal, v.z, v.event)
                                                                       for v in b]
    kinds = [v.event.kind for v in a if v.event]
    assert kinds == ["firing", "resolved"]
    with pytest.raises(StateError):
        PChart.from_state(first.to_state(), cfg(window_seconds=14 * D))
    with pytest.raises(StateError):
        PChart.from_state({"v": 1, "kind": "x"}, cfg())


def test_false_alarm_rate_on_in_control_binomial_days():
    """Refunds at 1 % of ~150 orders a day: the day-level WE1 rate stays near its nominal 0.135 % (the
    moving-range chart's normal line on the same counts is crossed several times as often)."""
    rng = random.Random(11)
    signals = judged = 0
    for series in range(40):
        pc = PChart(f"s{series}", cfg(min_effect_abs=0.0))
        for day in range(200):
            n = 120 + rng.randrange(60)
            x = sum(rng.random() < 0.01 for _ in range(n))
            v = pc.update(day * D, x, n)[0]
            if v.status_name == "ok":
                judged += 1
                signals += bool(v.rules)
    assert judged > 7000
    assert signals / judged < 2 * TAIL
