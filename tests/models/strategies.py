"""Hypothesis strategies shared by the detector and state tests."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from models import ALL_RULES, DetectorConfig

T0 = 1_700_000_000.0


@st.composite
def configs(draw) -> DetectorConfig:
    bucket = draw(st.sampled_from([600.0, 3600.0]))
    season = draw(st.sampled_from([None, None, "hour_of_day", "day_of_week"]))
    kw: dict = {
        "bucket_seconds": bucket,
        "window_seconds": bucket * draw(st.integers(1, 5)),
        "sigma": draw(st.sampled_from(["mr", "std"])),
        "sigma_floor_rel": draw(st.sampled_from([0.0, 0.05])),
        "seasonality": season,
        "min_samples": draw(st.integers(1, 12)),
        "min_slot_samples": draw(st.integers(1, 3)),
        "protect_z": draw(st.sampled_from([None, 2.0, 3.0])),
        "protect_max_run": draw(st.sampled_from([None, 0, 3])),
        "rules": tuple(draw(st.lists(st.sampled_from(ALL_RULES), unique=True, min_size=1))),
        "resolve_after": draw(st.integers(1, 3)),
        "cooldown": draw(st.integers(0, 4)),
        "min_effect_abs": draw(st.sampled_from([0.0, 0.5])),
        "lateness_seconds": draw(st.sampled_from([0.0, 0.0, 300.0, 2000.0])),
        "prediction_limits": draw(st.booleans()),
        "cusum_side": draw(st.sampled_from(["both", "lower", "upper"])),
        "cusum_h": draw(st.sampled_from([4.0, 1.5])),
    }
    if draw(st.booleans()):
        s = T0 + draw(st.integers(0, 40)) * 300.0
        kw["exclusions"] = ((s, s + draw(st.integers(1, 20)) * 300.0),)
    if draw(st.integers(0, 4)) == 0:
        kw["freeze_at"] = T0 + draw(st.integers(0, 200)) * 300.0
    if season is None and draw(st.integers(0, 5)) == 0:
        kw["fixed_center"] = 0.0
        kw["fixed_sigma"] = draw(st.sampled_from([0.5, 1.0]))
    return DetectorConfig(**kw)


@st.composite
def streams(draw, max_size: int = 250, in_order: bool = False) -> tuple[list[float], list[float]]:
    n = draw(st.integers(0, max_size))
    steps = draw(st.lists(st.sampled_from([0.0, 60.0, 300.0, 300.0, 300.0, 900.0, 7200.0, -600.0, -2400.0]),
                          min_size=n, max_size=n))
    if in_order:
        steps = [abs(s) for s in steps]
    vals = draw(st.lists(
        st.one_of(st.sampled_from([0.0, 0.5, 1.0, 3.0, -3.0, 10.0, math.nan]),
                  st.floats(-3, 3, allow_nan=False)), min_size=n, max_size=n))
    level = draw(st.sampled_from([0.0, 100.0]))
    t = T0
    ts, xs = [], []
    for s, v in zip(steps, vals, strict=True):
        t += s
        ts.append(t)
        xs.append(v + level)
    return ts, xs
