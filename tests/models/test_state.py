"""State: versioned, JSON-serialisable, and a restored detector continues exactly."""

from __future__ import annotations

import itertools
import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import Batch, DetectorConfig, SeriesDetector, StateError

from .strategies import T0, configs, streams
from .test_detector import assert_same, run


def roundtrip(det: SeriesDetector, cfg: DetectorConfig) -> SeriesDetector:
    blob = orjson.dumps(det.to_state())  # NaN would become null here: state must not hold any
    return SeriesDetector.from_state(orjson.loads(blob), cfg)


@settings(max_examples=120, deadline=None)
@given(configs(), streams(), st.lists(st.integers(0, 250), min_size=1, max_size=5))
def test_split_serialise_restore_equals_uninterrupted(cfg, stream, cuts):
    ts, xs = stream
    whole = SeriesDetector("res-1/cpu", cfg)
    expect = run(whole, ts, xs) + whole.flush()
    det = SeriesDetector("res-1/cpu", cfg)
    got = []
    bounds = sorted({0, len(ts), *(c for c in cuts if c <= len(ts))})
    for i, j in itertools.pairwise(bounds):
        got += run(det, ts[i:j], xs[i:j])
        det = roundtrip(det, cfg)
    got += det.flush()
    assert_same(Batch.from_verdicts(expect), Batch.from_verdicts(got))
    assert orjson.dumps(det.to_state()) == orjson.dumps(whole.to_state())


@settings(max_examples=40, deadline=None)
@given(configs(), streams(in_order=True), st.integers(0, 250))
def test_restore_then_vectorised_equals_uninterrupted(cfg, stream, cut):
    ts, xs = stream
    whole = SeriesDetector("k", cfg)
    expect = Batch.from_verdicts(run(whole, ts, xs))
    det = SeriesDetector("k", cfg)
    a = det.update_many(ts[:cut], xs[:cut])
    det = roundtrip(det, cfg)
    b = det.update_many(ts[cut:], xs[cut:])
    assert_same(expect, Batch.concat([a, b]))


def test_state_is_plain_json_with_a_version():
    cfg = DetectorConfig.infra()
    det = SeriesDetector("k", cfg)
    rng = np.random.default_rng(0)
    det.update_many(T0 + np.arange(5000) * 60.0, rng.normal(50, 5, 5000))
    s = det.to_state()
    assert s["v"] == 1 and s["key"] == "k"
    assert json.loads(json.dumps(s, allow_nan=False)) == s


def _filled(cfg: DetectorConfig, days: int = 31) -> SeriesDetector:
    rng = np.random.default_rng(1)
    n = days * 1440
    det = SeriesDetector("aws-luckyus-dbatest-rw/CPUUtilization", cfg)
    det.update_many(T0 + np.arange(n) * 60.0, rng.normal(41.7, 3.0, n))
    return det


def test_state_of_a_30_day_minute_baseline_fits_in_2kb():
    for cfg in (DetectorConfig(), DetectorConfig.naive(), DetectorConfig.infra(seasonality=None)):
        det = _filled(cfg)
        assert det._bl.n > 40_000  # the window really holds 30 days of minutes
        assert len(orjson.dumps(det.to_state())) <= 2048


def test_wrong_version_or_geometry_is_refused():
    cfg = DetectorConfig()
    s = SeriesDetector("k", cfg).to_state()
    with pytest.raises(StateError):
        SeriesDetector.from_state({**s, "v": 99}, cfg)
    with pytest.raises(StateError):
        SeriesDetector.from_state(s, cfg.with_(bucket_seconds=3600.0))
    with pytest.raises(StateError):
        SeriesDetector.from_state(s, cfg.with_(seasonality="hour_of_day"))
    # changing rules or thresholds keeps the state usable
    assert SeriesDetector.from_state(s, cfg.with_(rules=("WE1",))).key == "k"


def test_restored_firing_episode_resolves_with_the_same_id():
    cfg = DetectorConfig(fixed_center=0.0, fixed_sigma=1.0, resolve_after=2)
    det = SeriesDetector("k", cfg)
    (v,) = det.update(T0, 5.0)
    det = roundtrip(det, cfg)
    det.update(T0 + 1, 0.0)
    (r,) = det.update(T0 + 2, 0.0)
    assert r.event.kind == "resolved" and r.event.episode_id == v.event.episode_id
