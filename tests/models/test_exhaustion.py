"""Predictive exhaustion: a leak is projected hours ahead, a stable high level is not."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.exhaustion import ExhaustionConfig, ExhaustionModel, default_limit

H = 3600.0
T0 = 1_793_491_200.0  # 2026-11-01T00:00Z
STEP = 300.0


def run(model: ExhaustionModel, xs) -> list:
    out = []
    for i, x in enumerate(xs):
        out.extend(model.update(T0 + i * STEP, float(x)))
    return out


def test_percent_metrics_are_bounded_by_100():
    assert default_limit("DatabaseMemoryUsagePercentage") == (True, 100.0)
    assert default_limit("CPUUtilization") == (True, 100.0)
    assert default_limit("disk_used_pct") == (True, 100.0)
    assert default_limit("NetworkIn") is None


def test_a_leak_fires_warning_then_critical_before_it_reaches_the_limit():
    rng = np.random.default_rng(4)
    n = int(40 * H / STEP)
    t = np.arange(n) * STEP
    xs = np.minimum(100.0, 25.0 + rng.normal(0, 1, n) + np.where(t > 24 * H, 8.0 * (t - 24 * H) / H, 0.0))
    events = run(ExhaustionModel(ExhaustionConfig()), xs)
    full = T0 + t[int(np.argmax(xs >= 100.0))]
    warn, crit = events[0], events[1]
    assert (warn.kind, warn.severity, crit.kind, crit.severity) == ("firing", "warning", "firing", "critical")
    assert warn.ts < T0 + 24 * H + 2 * H  # within 2 hours of the leak's start (25 % -> ~40 %)
    assert full - crit.ts > 3 * H and abs(crit.exhausted_at - full) < H
    assert len(events) == 2  # stays firing while it is full


def test_falling_to_a_limit_is_projected_too():
    n = int(36 * H / STEP)
    t = np.arange(n) * STEP
    free = np.where(t > 24 * H, 500.0 - 40.0 * (t - 24 * H) / H, 500.0)  # GB free, -40 GB/h
    events = run(ExhaustionModel(ExhaustionConfig(limit=0.0, rising=False)), free)
    assert events and events[0].kind == "firing" and events[0].exhausted_at is not None
    assert events[0].exhausted_at > events[0].ts and events[0].slope_per_hour < 0


def test_a_stable_high_level_does_not_fire():
    rng = np.random.default_rng(5)
    n = int(4 * 24 * H / STEP)
    t = np.arange(n) * STEP
    noisy = 85.0 + rng.uniform(-5, 5, n)
    daily = 85.0 + 5.0 * np.sin(2 * math.pi * t / (24 * H)) + rng.normal(0, 1, n)
    for xs in (noisy, daily):
        model = ExhaustionModel(ExhaustionConfig())
        assert run(model, xs) == []
        assert model.proj is not None  # it was judged, and said no


def test_a_step_to_a_new_level_is_not_a_trend():
    rng = np.random.default_rng(6)
    n = int(3 * 24 * H / STEP)
    t = np.arange(n) * STEP
    xs = np.where(t >= 36 * H, 75.0, 30.0) + rng.normal(0, 1, n)  # a level shift: the 3-sigma chart's job
    model = ExhaustionModel(ExhaustionConfig())
    assert run(model, xs) == []


def test_it_resolves_when_the_trend_turns():
    n = int(36 * H / STEP)
    t = np.arange(n) * STEP
    up = np.where(t > 24 * H, 25.0 + 8.0 * (np.minimum(t, 28 * H) - 24 * H) / H, 25.0)
    xs = np.where(t > 28 * H, 25.0, up)  # fixed after 4 hours: back to normal
    events = run(ExhaustionModel(ExhaustionConfig()), xs)
    assert events[0].kind == "firing" and events[-1].kind == "resolved"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=0, max_size=400),
       st.sampled_from([0.0, 0.05, 0.3]), st.integers(0, 400))
def test_split_serialised_restored_gives_the_same_projection(noise, drift, cut):
    xs = [min(100.0, 20.0 + drift * i + 0.1 * v) for i, v in enumerate(noise)]
    cfg = ExhaustionConfig(trend_bins=12, min_trend_bins=10, season_bins=12)
    whole = ExhaustionModel(cfg)
    a = run(whole, xs)
    first = ExhaustionModel(cfg)
    b = run(first, xs[:cut])
    restored = ExhaustionModel.from_state(first.to_state(), cfg)
    assert restored.proj == first.proj
    for i in range(min(cut, len(xs)), len(xs)):
        b.extend(restored.update(T0 + i * STEP, xs[i]))
    assert a == b
    assert restored.proj == whole.proj and restored.to_state() == whole.to_state()
