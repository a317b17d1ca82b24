"""SeriesDetector: warm-up, sigma, seasonality, protection, exclusions, freeze,
lateness -- and the vectorised path against the incremental one."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import EXCLUDED, LATE, MISSING, OK, WARMUP, Batch, DetectorConfig, SeriesDetector
from models.detector import DUPLICATE, t_upper_tail, zone_factors

from .strategies import T0, configs, streams

H = 3600.0
D = 86400.0


def run(det: SeriesDetector, ts, xs):
    out = []
    for t, x in zip(ts, xs, strict=True):
        out.extend(det.update(float(t), float(x)))
    return out


T0D = math.floor(T0 / D) * D  # day-aligned start


def hourly(n, f, start=T0D):
    ts = [start + i * H for i in range(n)]
    return ts, [f(i) for i in range(n)]


def small(**kw) -> DetectorConfig:
    base = {"window_seconds": 10 * D, "bucket_seconds": D, "min_samples": 24, "sigma": "std"}
    base.update(kw)
    return DetectorConfig(**base)


# -- warm-up ------------------------------------------------------------------------
def test_warmup_until_min_samples_in_closed_buckets():
    rng = np.random.default_rng(0)
    ts, xs = hourly(72, lambda i: float(rng.normal(10, 1)))
    det = SeriesDetector("s", small(min_samples=30))
    vs = run(det, ts, xs)
    # day 1: open bucket only -> warm-up; day 2: 24 closed < 30 -> warm-up; day 3: 48 >= 30
    day0 = math.floor(T0D / D)
    for t, v in zip(ts, vs, strict=True):
        expect = WARMUP if math.floor(t / D) - day0 < 2 else OK
        assert v.status == expect, (t, v)
    assert vs[0].warmup and math.isnan(vs[0].center) and vs[-1].center == pytest.approx(10, abs=1)


def test_limits_change_only_when_a_bucket_closes():
    rng = np.random.default_rng(1)
    ts, xs = hourly(24 * 5, lambda i: float(rng.normal(10, 1)))
    vs = [v for v in run(SeriesDetector("s", small(min_samples=5)), ts, xs) if v.status == OK]
    by_day: dict[int, set] = {}
    for v in vs:
        by_day.setdefault(math.floor(v.ts / D), set()).add((v.center, v.sigma))
    assert all(len(s) == 1 for s in by_day.values())
    assert len({next(iter(s)) for s in by_day.values()}) == len(by_day)


# -- sigma ------------------------------------------------------------------------------
def test_sigma_estimators():
    # alternating 0/2: std ~ 1, moving range 2 -> 2 / 1.128
    ts, xs = hourly(48, lambda i: float((i % 2) * 2))
    for method, expect in (("std", np.std([0, 2] * 12, ddof=1)), ("mr", 2 / 1.128)):
        det = SeriesDetector("s", small(sigma=method, min_samples=10))
        run(det, ts, xs)
        c, s, warm = det.limits(ts[-1])
        assert warm and c == pytest.approx(1.0) and s == pytest.approx(expect)


def test_flat_series_gets_the_sigma_floor_not_infinite_z():
    ts, xs = hourly(48, lambda i: 5.0)
    det = SeriesDetector("s", small(sigma_floor_abs=0.01, sigma_floor_rel=0.001))
    run(det, ts, xs)
    (v,) = det.update(ts[-1] + H, 5.001)
    assert v.sigma == pytest.approx(0.01) and v.z == pytest.approx(0.1) and math.isfinite(v.z)
    (v,) = det.update(ts[-1] + 2 * H, 5.0)
    assert v.z == 0.0 and not v.rules
    det2 = SeriesDetector("s", small(sigma_floor_abs=0.0, sigma_floor_rel=0.01))
    run(det2, ts, xs)
    assert det2.limits(ts[-1])[1] == pytest.approx(0.05)


# -- seasonality ---------------------------------------------------------------------------
def test_hour_of_day_centres_follow_the_daily_cycle():
    rng = np.random.default_rng(2)
    f = lambda i: 100 + 50 * math.sin(2 * math.pi * (i % 24) / 24) + float(rng.normal(0, 1))  # noqa: E731
    ts, xs = hourly(24 * 10, f)
    plain = run(SeriesDetector("s", small(rules=("WE1",))), ts, xs)
    seas = run(SeriesDetector("s", small(rules=("WE1",), seasonality="hour_of_day", min_slot_samples=2)), ts, xs)
    ok = [v for v in seas if v.status == OK]
    assert ok and all(abs(v.center - (100 + 50 * math.sin(2 * math.pi * ((v.ts - ts[0]) / H % 24) / 24))) < 3
                      for v in ok)
    assert max(v.sigma for v in ok) < 5  # pooled residual sigma, not the cycle's amplitude
    assert sum(v.signal for v in seas) <= 2  # noise only
    # a 10-sigma spike at the quiet hour is caught by the seasonal chart only
    det = SeriesDetector("s", small(rules=("WE1",), seasonality="hour_of_day", min_slot_samples=2))
    run(det, ts, xs)
    flat = SeriesDetector("s", small(rules=("WE1",)))
    run(flat, ts, xs)
    t = ts[-1] + 19 * H  # hour 18 of the next day: sin minimum region
    c, s, _ = det.limits(t)
    assert c < 60
    (v,) = det.update(t, c + 10 * s)
    assert v.rules == {"WE1"}
    (w,) = flat.update(t, c + 10 * s)
    assert w.status == OK and not w.rules
    assert len(plain) == len(seas)


def test_one_closed_day_warms_the_infra_preset_and_a_runaway_fires_within_one_sample():
    """Regression (#13): with hour-of-day centres, the first day's points used to leave the
    residual baseline empty, so two closed UTC days were needed before any verdict."""
    rng = np.random.default_rng(13)
    step = 300.0
    day = np.arange(0, D, step)
    cpu = lambda t: 27.5 + 12.5 * np.sin(2 * np.pi * t / D) + rng.normal(0, 1.5, t.shape)  # noqa: E731
    hist_t = T0D + day
    live_t = T0D + D + np.arange(0, 3 * H, step)
    live_x = cpu(live_t - T0D)
    runaway = (live_t >= T0D + D + 600.0) & (live_t < T0D + D + 2 * H)
    live_x[runaway] = 95.0 + 4.0 * np.abs(np.sin(live_t[runaway] / 700.0))
    ts = np.concatenate((hist_t, live_t))
    xs = np.concatenate((cpu(day), live_x))
    first = int(np.flatnonzero(ts == T0D + D + 600.0)[0])
    inc = SeriesDetector("rds/CPUUtilization", DetectorConfig.infra())
    verdicts = run(inc, ts.tolist(), xs.tolist())
    vec = SeriesDetector("rds/CPUUtilization", DetectorConfig.infra())
    batch = vec.update_many(ts, xs)
    assert_same(Batch.from_verdicts(verdicts), batch)
    assert all(v.status == WARMUP for v in verdicts[: day.shape[0]])
    assert all(v.status == OK for v in verdicts[day.shape[0]:])  # judged from the first sample of day 2
    assert not any(v.signal for v in verdicts[: first])
    fired = verdicts[first]
    assert fired.rules == {"WE1"} and fired.event is not None and fired.event.kind == "firing"
    assert batch.event_index[0] == first and batch.events[0].rule == "WE1"


def test_day_of_week_slots():
    ts = [math.floor(T0 / D) * D + i * D for i in range(7 * 6)]
    xs = [200.0 if (math.floor(t / D) + 3) % 7 >= 5 else 100.0 for t in ts]  # weekend busier
    det = SeriesDetector("s", DetectorConfig.store(seasonality="day_of_week", min_samples=5, min_slot_samples=2,
                                                   sigma_floor_abs=1.0, window_seconds=35 * D))
    vs = run(det, ts, xs)
    assert not any(v.signal for v in vs)
    assert {v.center for v in vs if v.status == OK} == {100.0, 200.0}


# -- prediction limits and CUSUM -------------------------------------------------------------
def test_zone_factors_are_student_t_quantiles_of_the_normal_zone_probabilities():
    tail3 = 1.0 - NormalDist().cdf(3.0)
    # df = 1 is the Cauchy distribution, df = 2 has a closed form: the quantiles are exact there
    assert zone_factors(1.0)[2] == pytest.approx(math.tan(math.pi * (0.5 - tail3)), rel=1e-9)
    p = 1.0 - tail3
    assert zone_factors(2.0)[2] == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)
    assert t_upper_tail(2.262157, 9.0) == pytest.approx(0.025, abs=1e-6)  # the textbook t(0.975, 9)
    assert zone_factors(1e7) == pytest.approx((1.0, 2.0, 3.0), abs=1e-5)
    q9 = zone_factors(9.0)
    assert 1.0 < q9[0] < 1.1 and 2.0 < q9[1] < 2.4 and 3.9 < q9[2] < 4.2  # wider the further out


def test_prediction_limits_widen_the_zones_by_the_sigma_estimates_degrees_of_freedom():
    rng = np.random.default_rng(3)
    ts, xs = hourly(24 * 2, lambda i: 10.0 + rng.normal())
    plain = SeriesDetector("s", small(min_samples=10))
    wide = SeriesDetector("s", small(min_samples=10, prediction_limits=True))
    run(plain, ts, xs)
    run(wide, ts, xs)
    c, s = float(np.mean(xs)), float(np.std(xs, ddof=1))  # the third day is judged on the first two's 48 points
    # a point between the textbook 3-sigma line and the prediction limit: WE1 for one, not for the other
    x = c + 3.1 * s
    p = plain.update(ts[-1] + D, x)[0]
    v = wide.update(ts[-1] + D, x)[0]
    assert p.center == pytest.approx(c) and p.sigma == pytest.approx(s) and "WE1" in p.rules
    assert v.center == p.center
    assert v.sigma == pytest.approx(s * zone_factors(47.0)[2] / 3.0)  # std: n - 1 degrees of freedom
    assert "WE1" not in v.rules and abs(v.z) < 3 and v.upper == pytest.approx(c + zone_factors(47.0)[2] * s)


def test_cusum_side_lower_only_flags_declines():
    ts = [T0D + i * D for i in range(40)]
    rng = np.random.default_rng(5)
    base = [100.0 + rng.normal(0, 5) for _ in range(20)]
    cfg = DetectorConfig.store(min_samples=10, rules=("CUSUM",), cusum_side="lower", window_seconds=20 * D)
    down = SeriesDetector("d", cfg)
    up = SeriesDetector("u", cfg)
    drift = [3.0 * i for i in range(20)]  # 0.6 sigma more a day
    vd = run(down, ts, base + [100.0 - d for d in drift])
    vu = run(up, ts, base + [100.0 + d for d in drift])
    assert any("CUSUM" in v.rules for v in vd[20:])
    assert not any(v.rules for v in vu)
    both = SeriesDetector("b", cfg.with_(cusum_side="both"))
    assert any("CUSUM" in v.rules for v in run(both, ts, base + [100.0 + d for d in drift])[20:])


# -- protection, exclusions, freeze --------------------------------------------------------
def _spike_day(**kw):
    ts, xs = hourly(24 * 3, lambda i: 10.0 + (i % 2) * 0.5)
    xs[30] = 1000.0  # a spike on day 2
    det = SeriesDetector("s", small(min_samples=10, **kw))
    run(det, ts, xs)
    return det.limits(ts[-1])


def test_protected_baseline_ignores_outliers():
    c_unprot, s_unprot, _ = _spike_day()
    c_prot, s_prot, _ = _spike_day(protect_z=3.0)
    assert c_unprot > 20 and s_unprot > 100
    # 47 points: the 1000 (at an even hour, value 10.0) is left out
    assert c_prot == pytest.approx((23 * 10.0 + 24 * 10.5) / 47) and s_prot < 1


def test_protect_max_run_learns_a_persistent_level_shift():
    ts, xs = hourly(24 * 8, lambda i: (10.0 if i < 48 else 50.0) + (i % 2) * 0.5)
    stuck = SeriesDetector("s", small(min_samples=10, protect_z=3.0))
    learns = SeriesDetector("s", small(min_samples=10, protect_z=3.0, protect_max_run=12))
    run(stuck, ts, xs)
    run(learns, ts, xs)
    assert stuck.limits(ts[-1])[0] == pytest.approx(10.25)
    # window: 2 days at 10, then 50 (less the 12 refused points) -> well above the old level
    assert learns.limits(ts[-1])[0] == pytest.approx((48 * 10.25 + (24 * 5 - 12) * 50.25) / (48 + 24 * 5 - 12))


def test_exclusion_windows_never_enter_the_baseline():
    ts, xs = hourly(24 * 3, lambda i: 10.0 + (i % 2) * 0.5)
    for i in range(30, 36):
        xs[i] = 500.0
    det = SeriesDetector("s", small(min_samples=10, exclusions=((ts[30], ts[36]),)))
    vs = run(det, ts, xs)
    assert [v.status for v in vs[30:36]] == [EXCLUDED] * 6 and vs[36].status == OK
    assert det.n_excluded == 6 and det.limits(ts[-1])[0] == pytest.approx(10.25)
    assert not any(v.signal for v in vs)


def test_runtime_exclusion_is_kept_in_state():
    det = SeriesDetector("s", small(min_samples=1))
    det.add_exclusion(T0D + 10 * H, T0D + 12 * H)
    det2 = SeriesDetector.from_state(det.to_state(), small(min_samples=1))
    (v,) = det2.update(T0D + 11 * H, 3.0)
    assert v.status == EXCLUDED


def test_freeze_at_fixes_limits_from_the_reference_period():
    ts, xs = hourly(24 * 6, lambda i: (10.0 if i < 72 else 30.0) + (i % 2))
    det = SeriesDetector("s", small(min_samples=10, freeze_at=ts[72]))
    vs = run(det, ts, xs)
    ok = [v for v in vs if v.status == OK and v.ts >= ts[72]]
    assert det.frozen and len({(v.center, v.sigma) for v in ok}) == 1
    assert ok[0].center == pytest.approx(10.5)  # includes the partial bucket before freeze_at
    assert all(v.rules for v in ok)  # the shift stays out of control: Phase II
    det.unfreeze()
    assert not det.frozen


def test_fixed_limits_judge_from_the_first_point():
    det = SeriesDetector("s", DetectorConfig(fixed_center=5.0, fixed_sigma=2.0, rules=("WE1",)))
    (v,) = det.update(T0, 11.5)
    assert v.status == OK and v.lower == -1.0 and v.upper == 11.0 and v.rules == {"WE1"}


# -- missing, lateness ------------------------------------------------------------------
def test_nan_is_missing_and_counted():
    det = SeriesDetector("s", DetectorConfig(fixed_center=0.0, fixed_sigma=1.0))
    vs = run(det, [T0, T0 + 1, T0 + 2], [math.nan, math.inf, 0.0])
    assert [v.status for v in vs] == [MISSING, MISSING, OK] and det.n_missing == 2


def test_without_lateness_older_samples_are_rejected_and_counted():
    det = SeriesDetector("s", DetectorConfig(fixed_center=0.0, fixed_sigma=1.0))
    vs = run(det, [T0 + 10, T0 + 5, T0 + 10, T0 + 11], [0.0, 9.0, 0.0, 0.0])
    assert [v.status for v in vs] == [OK, LATE, DUPLICATE, OK]  # a second sample at T0+10: ignored
    assert vs[1].late and det.n_late == 1 and not vs[1].rules
    assert det.n_duplicate == 1


@pytest.mark.parametrize("lateness", [0.0, 60.0])
def test_a_sample_at_a_timestamp_already_seen_changes_nothing(lateness: float) -> None:
    """A redelivered message (or the same sample in two messages): the first one wins, also while it
    is held for lateness and once it is released, one by one and in a batch."""
    config = DetectorConfig(fixed_center=0.0, fixed_sigma=1.0, lateness_seconds=lateness, rules=("WE1",))
    once, twice = SeriesDetector("s", config), SeriesDetector("s", config)
    ts = [T0 + 10 * i for i in range(30)]
    xs = [0.0] * 10 + [9.0] * 5 + [0.0] * 15
    expected = run(once, ts, xs) + once.flush()
    got = [v for t, x in zip(ts, xs, strict=True) for v in [*twice.update(t, x), *twice.update(t, x + 1.0)]]
    got += twice.update_many(ts[-5:], xs[-5:]).verdicts() + twice.flush()
    kept = [(v.ts, v.value, v.status, v.rules, v.event.kind if v.event else None) for v in got
            if v.status not in (DUPLICATE, LATE)]
    assert kept == [(v.ts, v.value, v.status, v.rules, v.event.kind if v.event else None) for v in expected]
    # the batch again at the end: without lateness 4 of its 5 are older than the newest (late)
    assert (twice.n_duplicate, twice.n_late) == ((31, 4) if lateness == 0 else (35, 0))


def _without_counters(state: dict) -> dict:
    return {k: v for k, v in state.items() if k not in ("c", "dn")}


@settings(max_examples=80, deadline=None)
@given(configs(), streams(max_size=120), st.data())
def test_repeats_interleaved_give_the_verdicts_of_the_stream_once(config, stream, data):
    """Any stream (late, out of order, equal timestamps) with exact repeats of earlier samples
    interleaved: the same verdicts, apart from the repeats' own refusals, and the same state."""
    ts, xs = stream
    once, twice = SeriesDetector("s", config), SeriesDetector("s", config)
    expected = run(once, ts, xs) + once.flush()
    delivered: list[tuple[float, float]] = []
    repeats = 0
    for sample in zip(ts, xs, strict=True):
        delivered.append(sample)
        for _ in range(data.draw(st.integers(0, 2))):
            delivered.append(delivered[data.draw(st.integers(max(0, len(delivered) - 8), len(delivered) - 1))])
            repeats += 1
    if data.draw(st.booleans()):
        got = twice.update_many([t for t, _ in delivered], [x for _, x in delivered]).verdicts()
    else:
        got = run(twice, [t for t, _ in delivered], [x for _, x in delivered])
    got += twice.flush()
    refused = [v for v in got if v.status in (DUPLICATE, LATE)]
    def key(v):
        return (v.ts, v.status, v.rules, v.signal, v.event.kind if v.event else None,
                None if math.isnan(v.center) else round(v.center, 9))
    assert [key(v) for v in got if v.status not in (DUPLICATE, LATE)] == [
        key(v) for v in expected if v.status not in (DUPLICATE, LATE)]
    assert len(refused) == repeats + sum(v.status in (DUPLICATE, LATE) for v in expected)
    assert _without_counters(twice.to_state()) == _without_counters(once.to_state())


def test_late_samples_within_lateness_are_put_in_order():
    det = SeriesDetector("s", DetectorConfig(fixed_center=0.0, fixed_sigma=1.0, lateness_seconds=60,
                                             rules=("N3",)))
    out = run(det, [T0 + 0, T0 + 20, T0 + 10, T0 + 30, T0 + 40, T0 + 50, T0 + 200, T0 + 100],
              [0.1, 0.3, 0.2, 0.4, 0.5, 0.6, 0.0, 9.0])
    out += det.flush()
    statuses = [(v.ts - T0, v.status) for v in out]
    # T0+100 arrives after the watermark reached T0+200: 100 < 200 - 60 -> rejected
    assert (100.0, LATE) in statuses and det.n_late == 1
    released = [v for v in out if v.status == OK]
    assert [v.ts - T0 for v in released] == [0, 10, 20, 30, 40, 50, 200]
    assert released[5].rules == {"N3"}  # 0.1 .. 0.6 rising in event time, despite arrival order


def test_lateness_holds_samples_until_the_watermark_passes():
    det = SeriesDetector("s", DetectorConfig(fixed_center=0.0, fixed_sigma=1.0, lateness_seconds=60))
    assert det.update(T0, 1.0) == []
    assert det.update(T0 + 30, 1.0) == []
    assert [v.ts for v in det.update(T0 + 61, 1.0)] == [T0]


# -- vectorised == incremental -----------------------------------------------------------
FIELDS = ("ts", "value", "center", "sigma", "z", "mask", "status", "signal")


def assert_same(a: Batch, b: Batch) -> None:
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.shape == y.shape, f
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f
    assert a.events == b.events
    assert a.event_index == b.event_index


def test_the_state_of_waiting_late_samples_does_not_depend_on_how_they_arrived() -> None:
    """Found by hypothesis: samples held for ``lateness_seconds`` sat in a heap whose layout, and so
    the stored state, differed between one-by-one and batched updates."""
    cfg = DetectorConfig(window_seconds=600.0, bucket_seconds=600.0, sigma="mr", sigma_floor_abs=1e-9,
                         sigma_floor_rel=0.0, min_samples=1, min_slot_samples=1, freeze_at=1700000000.0,
                         lateness_seconds=2000.0, rules=("WE1",), resolve_after=1, cooldown=0,
                         min_effect_abs=0.0, min_effect_rel=0.0)
    ts = np.array([1700000000.0, 1700000300.0, 1700000600.0, 1700000900.0, 1700001200.0, 1700002100.0])
    xs = np.zeros(6)
    one_by_one, batched = SeriesDetector("k", cfg), SeriesDetector("k", cfg)
    run(one_by_one, ts, xs)
    batched.update_many(ts, xs)
    assert one_by_one.to_state() == batched.to_state()


@settings(max_examples=120, deadline=None)
@given(configs(), streams(), st.lists(st.integers(0, 250), max_size=4))
def test_vectorised_equals_incremental(cfg, stream, cuts):
    ts, xs = stream
    inc = SeriesDetector("k", cfg)
    a = Batch.from_verdicts(run(inc, ts, xs))
    vec = SeriesDetector("k", cfg)
    bounds = sorted({0, len(ts), *(c for c in cuts if c <= len(ts))})
    parts = [vec.update_many(ts[i:j], xs[i:j]) for i, j in itertools.pairwise(bounds)]
    b = Batch.concat(parts)
    assert_same(a, b)
    assert inc.to_state() == vec.to_state()


@settings(max_examples=60, deadline=None)
@given(configs(), streams(max_size=400, in_order=True))
def test_vectorised_fast_path_on_in_order_streams(cfg, stream):
    ts, xs = stream
    inc = SeriesDetector("k", cfg)
    a = Batch.from_verdicts(run(inc, ts, xs) + inc.flush())
    vec = SeriesDetector("k", cfg)
    b = Batch.concat([vec.update_many(ts, xs), Batch.from_verdicts(vec.flush())])
    assert_same(a, b)


def test_vectorised_equals_incremental_on_a_long_realistic_series():
    rng = np.random.default_rng(7)
    n = 40_000
    t = T0 + np.arange(n) * 60.0
    x = 100 + 20 * np.sin(2 * np.pi * t / D) + rng.standard_t(3, n)
    x[rng.integers(0, n, 30)] = np.nan
    x[20_000:20_300] += 80
    for cfg in (DetectorConfig.naive(), DetectorConfig.infra(), DetectorConfig.infra(sigma="mr", rules=("WE1", "WE2",
                                                                                                        "N8"))):
        inc = SeriesDetector("k", cfg)
        a = Batch.from_verdicts(run(inc, t.tolist(), x.tolist()))
        b = SeriesDetector("k", cfg).update_many(t, x)
        assert_same(a, b)
        assert len(a.events) > 0


def test_update_many_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        SeriesDetector("k").update_many([1.0, 2.0], [1.0])
