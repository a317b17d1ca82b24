"""Rules: hand-computed conventions, and property tests against tests/models/reference.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import ALL_RULES, RuleState, evaluate_rules, mask_rules
from models.rules import RULE_BITS, rules_mask, rules_vec

from .reference import reference_rules

NAN = math.nan
ALL = list(ALL_RULES)


def fired(values, rules=ALL, center=0.0, sigma=1.0):
    return evaluate_rules(values, center, sigma, rules)


def incremental(values, center=0.0, sigma=1.0, rules=ALL):
    rs = RuleState(cusum="CUSUM" in rules)
    en = rules_mask(rules)
    out = []
    for x in values:
        if not math.isfinite(x):
            out.append(set())
            continue
        out.append(set(mask_rules(rs.update(x - center, sigma, 2 * sigma, 3 * sigma) & en)))
    return out


# -- WE1 and zone lines ---------------------------------------------------------
def test_we1_point_exactly_on_3_sigma_is_not_beyond():
    assert fired([3.0, -3.0], ["WE1"]) == [set(), set()]


def test_we1_point_just_beyond_3_sigma_fires_on_either_side():
    assert fired([3.0000001, -3.5], ["WE1"]) == [{"WE1"}, {"WE1"}]


def test_we1_with_center_and_sigma():
    # centre 10, sigma 2: the 3-sigma line is 16 / 4
    assert fired([16.0, 16.5, 4.0, 3.9], ["WE1"], center=10.0, sigma=2.0) == [set(), {"WE1"}, set(), {"WE1"}]


# -- WE2 / WE3: k of n ------------------------------------------------------------
def test_we2_two_of_three_same_side():
    assert fired([2.5, 0.0, 2.5], ["WE2"]) == [set(), set(), {"WE2"}]


def test_we2_opposite_sides_do_not_combine():
    assert fired([2.5, -2.5, 0.0, 2.5], ["WE2"]) == [set()] * 4
    # ... but the same side two points apart does (2 of the last 3)
    assert fired([2.5, -2.5, 2.5], ["WE2"]) == [set(), set(), {"WE2"}]


def test_we2_fires_before_three_points_exist():
    # k-of-n: the first two evaluated points may already be 2 of (at most) 3
    assert fired([2.5, 2.5], ["WE2"]) == [set(), {"WE2"}]


def test_we2_in_control_point_is_never_blamed():
    # the window (2.5, 2.5, 0) holds 2 beyond 2 sigma, but the last point is in control
    assert fired([2.5, 2.5, 0.0], ["WE2"]) == [set(), {"WE2"}, set()]


def test_we2_exactly_on_2_sigma_line_does_not_count():
    assert fired([2.0, 2.5, 2.0], ["WE2"]) == [set(), set(), set()]


def test_we2_window_is_three_points():
    assert fired([2.5, 0.0, 0.0, 2.5], ["WE2"]) == [set()] * 4


def test_we3_four_of_five_beyond_1_sigma():
    res = fired([1.5, 1.5, 0.0, 1.5, 1.5], ["WE3"])
    # point 4 (index 3): window of 4 available points has 3 -> no; point 5: 4 of 5 -> yes
    assert res == [set(), set(), set(), set(), {"WE3"}]


def test_we3_fires_before_five_points_exist():
    assert fired([1.5, 1.5, 1.5, 1.5], ["WE3"]) == [set(), set(), set(), {"WE3"}]


# -- runs ---------------------------------------------------------------------------
def test_we4_eight_in_a_row_and_sliding_after_signal():
    res = fired([0.5] * 10, ["WE4", "N2"])
    assert res[:7] == [set()] * 7
    assert res[7] == {"WE4"}
    assert res[8] == {"WE4", "N2"} and res[9] == {"WE4", "N2"}


def test_point_on_center_line_breaks_a_run():
    vals = [0.5] * 7 + [0.0] + [0.5] * 7
    assert all("WE4" not in r for r in fired(vals, ["WE4"]))


def test_missing_values_do_not_break_runs_and_get_no_rules():
    vals = [0.5] * 4 + [NAN] + [0.5] * 4
    res = fired(vals, ["WE4"])
    assert res[4] == set()
    assert res[8] == {"WE4"}  # 8th non-missing point completes the run


def test_infinite_values_are_missing():
    assert fired([math.inf, -math.inf, 5.0], ["WE1"]) == [set(), set(), {"WE1"}]


def test_n3_six_rising_points():
    assert fired([1, 2, 3, 4, 5, 6], ["N3"])[5] == {"N3"}
    assert fired([1, 2, 3, 4, 5], ["N3"]) == [set()] * 5
    assert fired([6, 5, 4, 3, 2, 1], ["N3"])[5] == {"N3"}


def test_n3_equal_consecutive_values_break_the_trend():
    assert fired([1, 2, 3, 3, 4, 5, 6], ["N3"]) == [set()] * 7


def test_n4_fourteen_alternating():
    vals = [(-1) ** i * 0.5 for i in range(14)]
    res = fired(vals, ["N4"])
    assert res[13] == {"N4"} and res[:13] == [set()] * 13


def test_n4_equal_step_breaks_alternation():
    # ... +0.5, -0.5, -0.5 (equal step), +0.5, ... : the run restarts
    vals = [(-1) ** i * 0.5 for i in range(8)] + [(-1) ** i * 0.5 for i in range(1, 9)]
    assert vals[7] == vals[8]
    assert all("N4" not in r for r in fired(vals, ["N4"]))


def test_n7_fifteen_within_one_sigma_including_the_line():
    vals = [1.0, -1.0, 0.3] * 5
    res = fired(vals, ["N7"])
    assert res[14] == {"N7"} and res[:14] == [set()] * 14


def test_n8_needs_both_sides():
    both = [1.5, -1.5] * 4
    assert fired(both, ["N8"])[7] == {"N8"}
    one = [1.5] * 8
    assert fired(one, ["N8"]) == [set()] * 8


def test_disabled_rules_are_not_reported():
    assert fired([5.0], ["WE2"]) == [set()]


def test_unknown_rule_id_raises():
    with pytest.raises(ValueError, match="unknown rule"):
        evaluate_rules([1.0], 0.0, 1.0, ["WE9"])


def test_zero_sigma_any_deviation_is_beyond():
    assert fired([0.0, 1e-12], ["WE1"], sigma=0.0) == [set(), {"WE1"}]


def test_per_point_center_and_sigma_arrays():
    res = evaluate_rules([5.0, 5.0], [0.0, 4.0], [1.0, 1.0], ["WE1"])
    assert res == [{"WE1"}, set()]


# -- CUSUM ---------------------------------------------------------------------------
def test_cusum_sums_a_small_persistent_shift_no_zone_rule_sees():
    # -0.8 sigma a day: S- grows by 0.3 a point and passes h = 4 on the 14th point (4.2), not the 13th (3.9)
    res = fired([-0.8] * 14, ["CUSUM", "WE1", "WE2", "WE3"])
    assert res[:13] == [set()] * 13
    assert res[13] == {"CUSUM"}


def test_cusum_fires_on_the_side_the_point_lies_and_does_not_reset():
    # S- reaches 4.5 on the third point; a point above the centre then is not blamed, the next one below is
    res = fired([-2.0, -2.0, -2.0, 0.2, -1.0], ["CUSUM"])
    assert res == [set(), set(), {"CUSUM"}, set(), {"CUSUM"}]
    up = fired([2.0, 2.0, 2.0], ["CUSUM"])
    assert up[2] == {"CUSUM"}


def test_cusum_sums_are_kept_only_when_enabled():
    rs = RuleState()
    assert all(rs.update(-2.0, 1.0, 2.0, 3.0) & RULE_BITS["CUSUM"] == 0 for _ in range(10))
    assert rs.to_list()[14:] == [0.0, 0.0]
    on = RuleState(cusum=True)
    for _ in range(3):
        on.update(-2.0, 1.0, 2.0, 3.0)
    assert on.to_list()[14:] == [0.0, 4.5]


def test_rule_state_saved_before_cusum_existed_still_loads():
    old = RuleState(cusum=True)
    old.update(-2.0, 1.0, 2.0, 3.0)
    restored = RuleState.from_list(old.to_list()[:14], cusum=True)
    assert restored.cu_lo == 0.0 and restored.side_len == old.side_len


def test_cusum_reference_and_interval_are_configurable():
    cu = RULE_BITS["CUSUM"]
    default, tight = RuleState(cusum=True), RuleState(cusum=True, k=0.5, h=2.5)
    assert [default.update(-2.0, 1.0, 2.0, 3.0) & cu for _ in range(3)] == [0, 0, cu]  # S- = 1.5, 3.0, 4.5 > 4
    assert [tight.update(-2.0, 1.0, 2.0, 3.0) & cu for _ in range(3)] == [0, cu, cu]  # 3.0 > 2.5
    res, state = rules_vec(np.array([-2.0, -2.0, -2.0]), 1.0, 2.0, 3.0, RuleState(cusum=True, k=0.5, h=2.5))
    assert (res & cu).tolist() == [0, cu, cu] and state.cu_lo == 4.5

GRID = [-3.5, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
values = st.lists(
    st.one_of(st.sampled_from(GRID), st.floats(-5, 5, allow_nan=False), st.just(NAN)),
    min_size=0, max_size=80,
)
rule_sets = st.lists(st.sampled_from(ALL), unique=True, min_size=1)


@settings(max_examples=300, deadline=None)
@given(values, rule_sets)
def test_batch_matches_reference(vals, rules):
    assert evaluate_rules(vals, 0.0, 1.0, rules) == reference_rules(vals, 0.0, 1.0, rules)


@settings(max_examples=300, deadline=None)
@given(values, rule_sets)
def test_incremental_matches_reference(vals, rules):
    assert incremental(vals, rules=rules) == reference_rules(vals, 0.0, 1.0, rules)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 50), st.floats(-5, 5), st.floats(0.0, 10)), max_size=60))
def test_batch_matches_reference_with_varying_center_and_sigma(rows):
    xs = [r[0] for r in rows]
    cs = [r[1] for r in rows]
    ss = [r[2] for r in rows]
    assert evaluate_rules(xs, cs, ss, ALL) == reference_rules(xs, cs, ss, ALL)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(GRID), st.floats(-5, 5)), min_size=1, max_size=80), st.data())
def test_vectorised_rules_resume_from_incremental_state_at_any_cut(vals, data):
    d = np.array(vals)
    cut = data.draw(st.integers(0, len(vals)))
    rs = RuleState()
    inc = [rs.update(v, 1.0, 2.0, 3.0) for v in vals]
    m1, s1 = rules_vec(d[:cut], 1.0, 2.0, 3.0)
    m2, s2 = rules_vec(d[cut:], 1.0, 2.0, 3.0, RuleState.from_list(s1.to_list()))
    assert [*m1.tolist(), *m2.tolist()] == inc
    assert s2.to_list() == rs.to_list()
