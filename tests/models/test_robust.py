"""RobustDetector (the infra default): the vectorised path, the incremental one and a detector
split, serialised to JSON and restored between parts all give the same verdicts and state."""

from __future__ import annotations

import itertools
import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import detection_quality as dq
from bench import synthetic
from models import OK, WARMUP, RobustBatch, RobustConfig, RobustDetector, StateError

from .strategies import T0

D = 86400.0


@st.composite
def robust_configs(draw) -> RobustConfig:
    return RobustConfig.infra(
        seasonality=draw(st.sampled_from([None, "hour_of_day", "hour_of_week"])),
        min_samples=draw(st.integers(1, 12)),
        tail_probability=draw(st.sampled_from([1e-5, 1e-4, 1e-3])),
        avg_points=draw(st.sampled_from([0, 2, 6])),
        local_points=draw(st.sampled_from([1, 3, 5])),
        shift_points=draw(st.integers(1, 12)),
        shift_seconds=draw(st.sampled_from([0.0, 1800.0, 3 * 3600.0])),
        resolve_after=draw(st.integers(1, 5)),
        cooldown=draw(st.integers(0, 10)),
        budget_seconds=draw(st.sampled_from([0.0, 3600.0, 6 * 3600.0])),
        lateness_seconds=draw(st.sampled_from([0.0, 0.0, 1800.0])),
    )


@st.composite
def robust_streams(draw, max_size: int = 400) -> tuple[list[float], list[float]]:
    """A few days at a 10- to 60-minute step with jitter, gaps, repeats, late samples, NaN,
    a daily cycle, spikes, dips to zero and a level shift."""
    n = draw(st.integers(0, max_size))
    step = draw(st.sampled_from([600.0, 1200.0, 3600.0]))
    jumps = draw(st.lists(st.sampled_from([1.0, 1.0, 1.0, 1.0, 0.0, 3.0, 30.0, -2.0]), min_size=n, max_size=n))
    kinds = draw(st.lists(st.sampled_from(["n"] * 12 + ["spike", "zero", "nan"]), min_size=n, max_size=n))
    shift_at = draw(st.integers(0, max(n, 1)))
    level = draw(st.sampled_from([0.0, 5.0, 100.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    t = T0
    ts, xs = [], []
    for i, (j, k) in enumerate(zip(jumps, kinds, strict=True)):
        t += j * step
        x = level * (1 + 0.3 * math.sin(2 * math.pi * t / D)) + float(rng.normal(0, 1 + 0.05 * level))
        if i >= shift_at:
            x *= 1.8
        x = {"spike": x * 4 + 20, "zero": 0.0, "nan": math.nan}.get(k, x)
        ts.append(t)
        xs.append(x)
    return ts, xs


def incremental(det: RobustDetector, ts, xs) -> RobustBatch:
    vs = []
    for t, x in zip(ts, xs, strict=True):
        vs.extend(det.update(float(t), float(x)))
    return RobustBatch.from_verdicts(vs)


def assert_same(a: RobustBatch, b: RobustBatch) -> None:
    np.testing.assert_array_equal(a.ts, b.ts)
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.signal, b.signal)
    for col in ("center", "sigma", "z", "lo", "hi"):
        np.testing.assert_allclose(getattr(a, col), getattr(b, col), rtol=1e-9, atol=1e-9, equal_nan=True)
    assert [(e.kind, e.ts, e.episode_id) for e in a.events] == [(e.kind, e.ts, e.episode_id) for e in b.events]
    assert a.event_index == b.event_index


def restored(det: RobustDetector, cfg: RobustConfig) -> RobustDetector:
    return RobustDetector.from_state(orjson.loads(orjson.dumps(det.to_state())), cfg)


@settings(max_examples=80, deadline=None)
@given(robust_configs(), robust_streams(), st.lists(st.integers(0, 400), max_size=4))
def test_incremental_equals_vectorised_equals_split_serialised_restored(cfg, stream, cuts):
    ts, xs = stream
    inc = RobustDetector("k", cfg)
    a = RobustBatch.concat([incremental(inc, ts, xs), RobustBatch.from_verdicts(inc.flush())])
    vec = RobustDetector("k", cfg)
    b = RobustBatch.concat([vec.update_many(ts, xs), RobustBatch.from_verdicts(vec.flush())])
    assert_same(a, b)
    bounds = sorted({0, len(ts), *(c for c in cuts if c <= len(ts))})
    det = RobustDetector("k", cfg)
    parts = []
    for i, j in itertools.pairwise(bounds):
        parts.append(det.update_many(ts[i:j], xs[i:j]))
        det = restored(det, cfg)
    parts.append(RobustBatch.from_verdicts(det.flush()))
    assert_same(a, RobustBatch.concat(parts))
    assert orjson.dumps(inc.to_state()) == orjson.dumps(det.to_state())


def test_one_closed_day_warms_up_and_a_spike_fires_once():
    rng = np.random.default_rng(3)
    t = T0 - T0 % D + np.arange(0, 3 * D, 300.0)
    x = 50 + 10 * np.sin(2 * np.pi * t / D) + rng.normal(0, 1, t.shape[0])
    spike = int(np.searchsorted(t, t[0] + 2.5 * D))
    x[spike:spike + 3] += 60
    b = RobustDetector("k", RobustConfig.infra()).update_many(t, x)
    assert (b.status[t < t[0] + D] == WARMUP).all() and (b.status[t >= t[0] + D] == OK).all()
    firing = [b.ts[i] for i, e in zip(b.event_index, b.events, strict=True) if e.kind == "firing"]
    assert firing == [t[spike]]


def test_a_state_of_another_geometry_or_kind_is_refused():
    det = RobustDetector("k", RobustConfig.infra())
    det.update_many(T0 + np.arange(0, D * 1.5, 600.0), np.ones(216))
    with pytest.raises(StateError):
        RobustDetector.from_state(det.to_state(), RobustConfig.infra(seasonality="hour_of_week"))
    with pytest.raises(StateError):
        RobustDetector.from_state({"v": 1, "d": {}}, RobustConfig.infra())


NOT_MET = {  # the targets bench/README.md says are not met (strict: a fix makes these fail, remove them then)
    "heavy tails": "healthy twins 0.42 false alarms / 1,000 points (target 0.2)",
    "spiky counts": "recall 67 % (target 80 %)",
    "daily + weekly": "healthy twins 0.69 false alarms / 1,000 points (target 0.2)",
}


@pytest.mark.parametrize("family", [
    pytest.param(f, marks=pytest.mark.xfail(strict=True, reason=NOT_MET[f])) if f in NOT_MET else f
    for f in synthetic.FAMILIES])
def test_each_synthetic_family_is_caught_and_its_healthy_twin_stays_quiet(family: str) -> None:
    """Seed 0 of each shape in bench/synthetic.py: the robust detector catches at least 3 in 4 of
    the injected anomalies and opens no episode on the healthy twin."""
    anomalous, healthy = synthetic.generate(family, 0)
    cfg = RobustConfig.infra()
    segs = dq.segments(anomalous.labels)
    run = dq.detect(dq.Series(anomalous.name, anomalous.ts, anomalous.values, anomalous.labels, 60.0),
                    dq.robust(cfg))
    sc = dq.score(dq.Series(anomalous.name, anomalous.ts, anomalous.values, anomalous.labels, 60.0), run)
    assert sc.caught >= math.ceil(0.75 * len(segs)), (sc.caught, len(segs))
    quiet = dq.detect(dq.Series(healthy.name, healthy.ts, healthy.values, healthy.labels, 60.0), dq.robust(cfg))
    assert quiet.starts == []


@settings(max_examples=60, deadline=None)
@given(robust_configs(), robust_streams(max_size=200), st.data())
def test_repeats_interleaved_give_the_verdicts_of_the_stream_once(config, stream, data) -> None:
    """Exact repeats of earlier samples interleaved (redeliveries): the same verdicts, apart from the
    repeats' own refusals (duplicate or late), and the same state."""
    from models.detector import DUPLICATE, LATE

    ts, xs = stream
    once, twice = RobustDetector("s", config), RobustDetector("s", config)
    expected = RobustBatch.concat([incremental(once, ts, xs), RobustBatch.from_verdicts(once.flush())])
    delivered: list[tuple[float, float]] = []
    repeats = 0
    for sample in zip(ts, xs, strict=True):
        delivered.append(sample)
        for _ in range(data.draw(st.integers(0, 2))):
            delivered.append(delivered[data.draw(st.integers(max(0, len(delivered) - 8), len(delivered) - 1))])
            repeats += 1
    dts, dxs = [t for t, _ in delivered], [x for _, x in delivered]
    got = twice.update_many(dts, dxs) if data.draw(st.booleans()) else incremental(twice, dts, dxs)
    got = RobustBatch.concat([got, RobustBatch.from_verdicts(twice.flush())])

    def kept(b: RobustBatch) -> RobustBatch:
        return RobustBatch.from_verdicts([v for v in b.verdicts() if v.status not in (DUPLICATE, LATE)])

    assert_same(kept(got), kept(expected))
    refused = int(np.isin(got.status, (DUPLICATE, LATE)).sum())
    assert refused == repeats + int(np.isin(expected.status, (DUPLICATE, LATE)).sum())
    strip = lambda state: {k: v for k, v in state.items() if k not in ("c", "dn")}  # noqa: E731
    assert strip(twice.to_state()) == strip(once.to_state())
