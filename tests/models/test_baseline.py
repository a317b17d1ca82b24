"""Baselines: bucketed statistics against numpy over the same window."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import Moments, RollingBaseline, SlotProfile, slot_of
from models.baseline import slots_of


def test_moments_merge_equals_single_pass():
    rng = np.random.default_rng(1)
    a, b = rng.normal(5, 2, 100), rng.normal(-3, 1, 37)
    m1 = Moments()
    for x in a:
        m1.update(x)
    m2 = Moments()
    for x in b:
        m2.update(x)
    m1.merge(m2.n, m2.mean, m2.m2)
    allv = np.concatenate([a, b])
    assert m1.n == 137
    assert m1.mean == pytest.approx(allv.mean(), rel=1e-12)
    assert m1.std() == pytest.approx(allv.std(ddof=1), rel=1e-12)


def feed(bl: RollingBaseline, rows, bucket=10.0):
    for t, y in rows:
        b = int(t // bucket)
        if b != bl.cur:
            bl.roll(b)
        bl.add(y)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 30), st.floats(-1e4, 1e4)), min_size=1, max_size=200),
    st.integers(1, 6),
    st.floats(0, 80),
)
def test_window_stats_match_numpy(rows, window_buckets, now):
    # time-ordered samples; bucket = 10 s; window = window_buckets closed buckets before `now`'s bucket
    rows = sorted(((t * 2.0, y) for t, y in rows), key=lambda r: r[0])
    bl = RollingBaseline(window_buckets)
    feed(bl, rows)
    nb = int(max(now, rows[-1][0]) // 10.0)
    if nb != bl.cur:
        bl.roll(nb)
    cur = bl.cur
    assert cur is not None
    inwin = [y for t, y in rows if cur - window_buckets <= int(t // 10.0) < cur]
    assert bl.n == len(inwin)
    if inwin:
        assert bl.mean == pytest.approx(float(np.mean(inwin)), rel=1e-9, abs=1e-7)
    if len(inwin) > 1:
        assert bl.std == pytest.approx(float(np.std(inwin, ddof=1)), rel=1e-6, abs=1e-6)
    # moving ranges: consecutive samples of the whole stream, counted in the bucket of the later one
    ys = [y for _, y in rows]
    bks = [int(t // 10.0) for t, _ in rows]
    mrs = [abs(ys[i] - ys[i - 1]) for i in range(1, len(ys)) if cur - window_buckets <= bks[i] < cur]
    assert bl.mr_n == len(mrs)
    if mrs:
        assert bl.mr_sigma == pytest.approx(float(np.mean(mrs)) / 1.128, rel=1e-9, abs=1e-9)


def test_mr_sigma_is_mrbar_over_d2():
    bl = RollingBaseline(5)
    bl.roll(0)
    for y in [1.0, 3.0, 2.0, 6.0]:
        bl.add(y)
    bl.roll(1)
    assert bl.mr_n == 3
    assert bl.mr_sigma == pytest.approx((2 + 1 + 4) / 3 / 1.128)
    assert bl.mean == pytest.approx(3.0)


def test_old_buckets_expire_and_gaps_skip_buckets():
    bl = RollingBaseline(2)
    for b, y in [(0, 100.0), (1, 1.0), (2, 2.0)]:
        bl.roll(b)
        bl.add(y)
    bl.roll(3)
    assert bl.n == 2 and bl.mean == pytest.approx(1.5)  # bucket 0 left the window
    bl.roll(10)  # a long gap empties the window
    assert bl.n == 0


def test_large_offset_values_keep_precision():
    # sums of squares of 1e9-sized values would cancel catastrophically without the shift
    bl = RollingBaseline(3)
    bl.roll(0)
    vals = 1e9 + np.array([0.1, 0.2, 0.3, 0.4])
    for v in vals:
        bl.add(float(v))
    bl.roll(1)
    assert bl.std == pytest.approx(float(np.std(vals, ddof=1)), rel=1e-6)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=0, max_size=50), st.integers(0, 50))
def test_add_many_is_bit_identical_to_add(ys, cut):
    a = RollingBaseline(3)
    b = RollingBaseline(3)
    a.roll(0)
    b.roll(0)
    for y in ys:
        a.add(y)
    arr = np.array(ys, dtype=float)
    b.add_many(arr[:cut])
    b.add_many(arr[cut:])
    a.roll(1)
    b.roll(1)
    assert a.to_state() == b.to_state()
    assert (a.n, a.mean, a.std, a.mr_sigma) == (b.n, b.mean, b.std, b.mr_sigma)


def test_baseline_state_round_trip():
    bl = RollingBaseline(4)
    rng = np.random.default_rng(3)
    for b in range(6):
        bl.roll(b)
        for y in rng.normal(size=5):
            bl.add(float(y))
    r = RollingBaseline.from_state(bl.to_state(), 4)
    assert r.to_state() == bl.to_state()
    assert (r.n, r.mean, r.std, r.mr_sigma) == (bl.n, bl.mean, bl.std, bl.mr_sigma)


def test_slot_profile_centres_per_slot():
    p = SlotProfile(3, 5)
    p.roll(0)
    for s, x in [(0, 1.0), (1, 10.0), (0, 3.0), (2, 7.0)]:
        p.add(s, x)
    p.roll(1)
    assert p.counts == [2, 1, 1]
    assert p.centers == pytest.approx([2.0, 10.0, 7.0])


@pytest.mark.parametrize("ts", [0.0, 1_700_000_000.0, 1_718_236_800.0 + 3 * 3600 + 59, 1_234_567_890.5])
def test_slot_functions_match_calendar(ts):
    d = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
    assert slot_of(ts, "hour_of_day") == d.hour
    assert slot_of(ts, "day_of_week") == d.weekday()
    assert slot_of(ts, "hour_of_week") == d.weekday() * 24 + d.hour
    # local time: +5:30
    loc = dt.datetime.fromtimestamp(ts + 19800, tz=dt.UTC)
    assert slot_of(ts, "hour_of_day", 19800.0) == loc.hour


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 4e9), min_size=1, max_size=30),
       st.sampled_from(["hour_of_day", "hour_of_week", "day_of_week"]))
def test_vectorised_slots_match_scalar(ts, season):
    arr = np.array(ts)
    assert slots_of(arr, season).tolist() == [slot_of(t, season) for t in ts]


def test_empty_bucket_std_is_zero_not_nan():
    bl = RollingBaseline(2)
    bl.roll(0)
    bl.roll(1)
    assert bl.n == 0 and bl.std == 0.0 and not math.isnan(bl.mr_sigma)
