"""Episodes: firing, extension, resolution, cooldown, effect size, ids."""

from __future__ import annotations

import math

import pytest

from models import DetectorConfig, EpisodeTracker, SeriesDetector, episode_id
from models.rules import RULE_BITS

WE1 = RULE_BITS["WE1"]
WE2 = RULE_BITS["WE2"]


def step(tr, i, sig, mask=WE1, z=4.0):
    return tr.step(float(i), sig, mask if sig else 0, 10.0 + z, 10.0, 1.0, z)


def test_fire_extend_resolve():
    tr = EpisodeTracker("k", resolve_after=2)
    e = step(tr, 0, True)
    assert e is not None and e.kind == "firing" and e.rule == "WE1" and e.starts_at == 0.0
    assert e.lower == 7.0 and e.upper == 13.0 and e.z == 4.0 and e.ends_at is None
    assert step(tr, 1, True, mask=WE2, z=-6.0) is None  # extends
    assert step(tr, 2, False) is None  # 1 of 2 quiet points
    assert step(tr, 3, True) is None  # a signal resets the count
    assert step(tr, 4, False) is None
    r = step(tr, 5, False)
    assert r is not None and r.kind == "resolved" and r.ends_at == 5.0
    assert r.episode_id == e.episode_id
    assert r.rules == ("WE1", "WE2") and r.peak_z == 6.0 and r.n_signals == 3


def test_cooldown_suppresses_new_episodes():
    tr = EpisodeTracker("k", resolve_after=1, cooldown=3)
    assert step(tr, 0, True).kind == "firing"
    assert step(tr, 1, False).kind == "resolved"
    assert step(tr, 2, True) is None  # cooldown 3 -> 2
    assert step(tr, 3, False) is None  # 2 -> 1
    assert step(tr, 4, True) is None  # 1 -> 0
    e = step(tr, 5, True)
    assert e is not None and e.kind == "firing" and e.starts_at == 5.0
    assert tr.n_suppressed == 2 and tr.n_episodes == 2


def test_first_rule_in_contract_order():
    tr = EpisodeTracker("k")
    e = tr.step(0.0, True, RULE_BITS["N2"] | RULE_BITS["WE4"], 1.0, 0.0, 1.0, 1.0)
    assert e.rule == "WE4" and e.rules == ("WE4", "N2")


def test_episode_ids_are_deterministic_and_distinct():
    assert episode_id("a", 1.0) == episode_id("a", 1.0)
    assert episode_id("a", 1.0) != episode_id("a", 2.0)
    assert episode_id("a", 1.0) != episode_id("b", 1.0)
    assert episode_id("a", 1) == episode_id("a", 1.0)  # int and float timestamps agree


def test_resolve_after_must_be_positive():
    with pytest.raises(ValueError):
        EpisodeTracker("k", resolve_after=0)


def _fixed(**kw):
    return DetectorConfig(fixed_center=0.0, fixed_sigma=1.0, rules=("WE1",), **kw)


def _events(cfg, xs):
    det = SeriesDetector("s", cfg)
    out = []
    for i, x in enumerate(xs):
        for v in det.update(float(i), x):
            if v.event is not None:
                out.append((i, v.event.kind))
    return out


def test_min_effect_abs_blocks_small_violations():
    xs = [0.0, 3.5, 0.0, 10.0, 0.0]
    assert _events(_fixed(min_effect_abs=5.0), xs) == [(3, "firing"), (4, "resolved")]
    assert _events(_fixed(), xs) == [(1, "firing"), (2, "resolved"), (3, "firing"), (4, "resolved")]


def test_min_effect_rel_is_relative_to_center():
    cfg = DetectorConfig(fixed_center=100.0, fixed_sigma=1.0, rules=("WE1",), min_effect_rel=0.1)
    xs = [100.0, 105.0, 100.0, 111.0, 100.0]
    assert _events(cfg, xs) == [(3, "firing"), (4, "resolved")]


def test_missing_points_neither_resolve_nor_extend():
    xs = [5.0, math.nan, math.nan, 0.0, 0.0]
    assert _events(_fixed(resolve_after=2), xs) == [(0, "firing"), (4, "resolved")]


def test_verdict_carries_signal_and_event():
    det = SeriesDetector("s", _fixed())
    (v,) = det.update(0.0, 4.0)
    assert v.signal and v.rules == {"WE1"} and v.event.kind == "firing"
    assert det.firing and det.n_episodes == 1
