"""UC-PR-01 menu engineering: the exact reference functions (hand-computed cases) and the incremental
window state against them (hypothesis)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction as F

import pytest

from models.menu import affinity, affinity_counts, classify_menu


def _item(name: str, price: str, cost: str, units: int | str) -> dict:
    return {"name": name, "price": price, "food_cost": cost, "units": units}


def _classes(result: dict) -> dict[str, str]:
    return {it["name"]: it["class"] for it in result["items"]}


FOUR = [_item("A", "10.00", "4.00", 45), _item("B", "8.00", "5.00", 35), _item("C", "12.00", "4.00", 12),
        _item("D", "6.00", "4.00", 8)]


def test_the_four_classes_by_hand() -> None:
    # MM 45/35/12/8 %; threshold 70 %/4 = 17.5 %; weighted CM = (45*6 + 35*3 + 12*8 + 8*2)/100 = 4.87
    r = classify_menu(FOUR)
    assert r["n_items"] == 4 and r["total_units"] == 100
    assert r["popularity_threshold_mm_pct"] == F("17.5")
    assert r["cm_benchmark"] == "weighted_mean" and r["cm_benchmark_value"] == F("4.87")
    assert _classes(r) == {"A": "star", "B": "plowhorse", "C": "puzzle", "D": "dog"}
    a = r["items"][0]
    assert (a["mm_pct"], a["cm"], a["popularity"], a["profitability"]) == (45, 6, "high", "high")
    assert [it["mm_pct"] for it in r["items"]] == [45, 35, 12, 8]


def test_items_exactly_on_each_line_count_as_high() -> None:
    # total 200, N = 4: the popularity line is 17.5 % = 35 units; weighted CM = (100*5 + 40*2 + 35*4 + 25*3.2)/200
    # = 4.00, so C (35 units, CM 4.00) sits exactly on both lines.
    items = [_item("A", "9.00", "4.00", 100), _item("B", "6.00", "4.00", 40), _item("C", "7.50", "3.50", 35),
             _item("D", "5.20", "2.00", 25)]
    r = classify_menu(items)
    assert r["cm_benchmark_value"] == 4 and r["popularity_threshold_mm_pct"] == F("17.5")
    c = r["items"][2]
    assert (c["mm_pct"], c["cm"]) == (F("17.5"), 4)
    assert (c["popularity"], c["profitability"], c["class"]) == ("high", "high", "star")
    assert _classes(r) == {"A": "star", "B": "plowhorse", "C": "star", "D": "dog"}
    # one unit less for C and it falls below both lines (the total changes too: 34/199 < 0.175)
    items[2] = _item("C", "7.49", "3.50", 34)
    assert classify_menu(items)["items"][2]["class"] == "dog"


def test_exact_arithmetic_where_binary_floats_would_misclassify() -> None:
    # 0.3 - 0.1 is 0.19999999999999998 in floats, below a 0.2 benchmark; 7/30 vs 0.7/3 likewise
    r = classify_menu([_item("X", "0.3", "0.1", 7), _item("Y", "0.5", "0.3", 23)])
    assert r["cm_benchmark_value"] == F(1, 5)
    assert [it["profitability"] for it in r["items"]] == ["high", "high"]
    r = classify_menu([_item("P", "1", "0", 7), _item("Q", "1", "0", 11), _item("R", "1", "0", 12)])
    assert r["popularity_threshold_mm_pct"] == F(70, 3) and r["items"][0]["mm_pct"] == F(70, 3)
    assert r["items"][0]["popularity"] == "high"
    # Decimals and Fractions are taken as they are; the order of the items changes nothing
    r2 = classify_menu([{**it, "price": Decimal(it["price"])} for it in reversed(FOUR)])
    assert _classes(r2) == _classes(classify_menu(FOUR))


def test_simple_mean_and_median_benchmarks() -> None:
    # B has CM 5.30: weighted mean (45*6 + 35*5.3 + 12*8 + 8*0)/100 = 5.515 -> low; simple mean (6+5.3+8+0)/4
    # = 4.825 -> high; median (5.3+6)/2 = 5.65 -> low.
    items = [_item("A", "10", "4", 45), _item("B", "9.30", "4", 35), _item("C", "12", "4", 12),
             _item("D", "4", "4", 8)]
    w, s, m = (classify_menu(items, cm_benchmark=b) for b in ("weighted_mean", "simple_mean", "median"))
    assert (w["cm_benchmark_value"], s["cm_benchmark_value"], m["cm_benchmark_value"]) == \
        (F("5.515"), F("4.825"), F("5.65"))
    assert (_classes(w)["B"], _classes(s)["B"], _classes(m)["B"]) == ("plowhorse", "star", "plowhorse")
    # a skewed mix: the median sits far below the weighted mean
    skew = [_item("a", "1", "0", 10), _item("b", "2", "0", 10), _item("c", "3", "0", 10), _item("d", "10", "0", 70)]
    assert classify_menu(skew, cm_benchmark="median")["cm_benchmark_value"] == F("2.5")
    assert classify_menu(skew)["cm_benchmark_value"] == F("7.6")
    assert _classes(classify_menu(skew, cm_benchmark="median"))["c"] == "puzzle"
    assert _classes(classify_menu(skew))["c"] == "dog"
    assert _classes(classify_menu(skew, cm_benchmark="simple_mean"))["c"] == "dog"  # 3 < (1+2+3+10)/4 = 4
    # an odd number of items: the median is the middle CM, which is then high
    odd = classify_menu(skew[:3], cm_benchmark="median")
    assert odd["cm_benchmark_value"] == 2 and _classes(odd)["b"] in ("star", "puzzle")
    # another popularity factor: 100 % of 1/N
    assert classify_menu(FOUR, popularity_factor="1")["popularity_threshold_mm_pct"] == 25


def test_classify_menu_rejects_what_has_no_answer() -> None:
    with pytest.raises(ValueError, match="at least one item"):
        classify_menu([])
    with pytest.raises(ValueError, match="no units"):
        classify_menu([_item("A", "1", "0", 0)])
    with pytest.raises(ValueError, match="cm_benchmark"):
        classify_menu(FOUR, cm_benchmark="mode")
    with pytest.raises(ValueError, match=r"items\[0\].units"):
        classify_menu([_item("A", "1", "0", -1)])
    with pytest.raises(ValueError, match=r"items\[0\].price"):
        classify_menu([_item("A", "one", "0", 1)])


BASKETS = [["latte", "croissant"], ["latte", "croissant", "muffin"], ["latte", "latte"], ["tea", "croissant"],
           ["latte", "muffin"]]


def test_affinity_by_hand() -> None:
    r = affinity(BASKETS, "latte", "croissant")
    assert (r["n_baskets"], r["n_antecedent"], r["n_consequent"], r["n_both"]) == (5, 4, 3, 2)
    assert r["support_antecedent"] == F(4, 5) and r["support_consequent"] == F(3, 5) and r["support"] == F(2, 5)
    assert r["confidence"] == F(1, 2)
    assert r["lift"] == F(5, 6)
    assert r["leverage"] == F(-2, 25)
    assert r["conviction"] == F(4, 5)
    # the other direction: same support, lift and leverage; its own confidence and conviction
    back = affinity(BASKETS, "croissant", "latte")
    assert (back["support"], back["lift"], back["leverage"]) == (r["support"], r["lift"], r["leverage"])
    assert back["confidence"] == F(2, 3) and back["conviction"] == (1 - F(4, 5)) / (1 - F(2, 3))


def test_affinity_undefined_and_infinite_measures_are_none() -> None:
    sure = affinity(BASKETS, "muffin", "latte")  # every muffin basket has a latte
    assert sure["confidence"] == 1 and sure["lift"] == F(5, 4) and sure["conviction"] is None
    unseen = affinity(BASKETS, "espresso", "latte")
    assert unseen["support_antecedent"] == 0 and unseen["support"] == 0 and unseen["leverage"] == 0
    assert (unseen["confidence"], unseen["lift"], unseen["conviction"]) == (None, None, None)
    never = affinity(BASKETS, "latte", "espresso")
    assert never["confidence"] == 0 and never["lift"] is None and never["conviction"] == 1
    empty = affinity([], "latte", "croissant")
    assert empty["n_baskets"] == 0
    assert all(empty[k] is None for k in ("support", "support_antecedent", "confidence", "lift", "leverage",
                                          "conviction"))
    both = affinity(BASKETS, {"latte", "croissant"}, "muffin")  # an itemset antecedent
    assert (both["n_antecedent"], both["n_both"], both["confidence"]) == (2, 1, F(1, 2))
    with pytest.raises(ValueError, match="inconsistent"):
        affinity_counts(3, 1, 1, 2)


# --------------------------------------------------------------------------- the stream against the reference

import json  # noqa: E402
from collections import Counter  # noqa: E402
from datetime import date, timedelta  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from models.menu import (  # noqa: E402
    DailyChart,
    DaySummary,
    MenuConfig,
    PairWindow,
    ScopeCategory,
    banded_class,
    close_scope_day,
    track_class,
)

SPUS = {"a": "hot", "b": "hot", "c": "hot", "d": "food", "e": "food"}
LINE = st.tuples(st.sampled_from(sorted(SPUS)), st.integers(1, 3), st.integers(100, 600), st.integers(0, 100),
                 st.integers(10, 90), st.booleans())
ORDER = st.tuples(st.integers(0, 11), st.lists(LINE, min_size=1, max_size=4))


def _lines(order_lines: list) -> list[list]:
    """Item lines as the order stage forwards them: [spu, category, name, qty, net, list, cost | None]."""
    out = []
    for spu, qty, price, disc_pct, cost_pct, costed in order_lines:
        disc = price * disc_pct // 200
        out.append([spu, SPUS[spu], spu.upper(), qty, (price - disc) * qty, price * qty,
                    price * cost_pct // 100 * qty if costed else None])
    return out


def _day(i: int) -> str:
    return (date(2026, 3, 1) + timedelta(days=i)).isoformat()


def _batch(orders: list, end: int, w: int, cat: str) -> dict | None:
    """classify_menu straight from the raw lines of the window's orders (independent of the stream's sums)."""
    units: Counter = Counter()
    cu: Counter = Counter()
    net: Counter = Counter()
    cost: Counter = Counter()
    for day, lines in orders:
        if not end - w < day <= end:
            continue
        for spu, c, _name, qty, n, _lst, k in _lines(lines):
            if c != cat:
                continue
            units[spu] += qty
            if k is not None:
                cu[spu] += qty
                net[spu] += n
                cost[spu] += k
    items = [{"name": s, "price": F(net[s], 100 * cu[s]), "food_cost": F(cost[s], 100 * cu[s]), "units": units[s]}
             for s in sorted(units) if cu[s]]
    return classify_menu(items) if items else None


@settings(max_examples=60, deadline=None)
@given(st.lists(ORDER, min_size=1, max_size=60), st.sampled_from([(3, 2), (5, 1), (7, 3)]))
def test_streaming_matrix_and_pairs_equal_the_reference_over_each_window(orders: list, windows: tuple) -> None:
    cfg = MenuConfig(windows=windows, top_pairs=50, min_pair_count=1, min_pair_support=0.0)
    cats: dict[str, ScopeCategory] = {}
    pairs = PairWindow()
    for day in range(12):
        summary = DaySummary.from_orders([_lines(ls) for d, ls in orders if d == day], cfg.max_pairs_per_day)
        result = close_scope_day(_day(day), summary, cats, pairs, cfg, alerts=False)
        # the state survives JSON between days (what the table holds)
        cats = {c: ScopeCategory(json.loads(json.dumps(sc.to_state()))) for c, sc in cats.items()}
        pairs = PairWindow(json.loads(json.dumps(pairs.to_state())))
        for w in windows:
            for cat in ("hot", "food"):
                ref, got = _batch(orders, day, w, cat), result.matrix[w].get(cat)
                assert (ref is None) == (got is None)
                if ref is None:
                    continue
                assert got["cm_benchmark_value"] == ref["cm_benchmark_value"]
                assert got["popularity_threshold_mm_pct"] == ref["popularity_threshold_mm_pct"]
                assert [(it["spu"], it["class"], it["mm_pct"], it["cm"]) for it in got["items"]] == \
                    [(it["name"], it["class"], it["mm_pct"], it["cm"]) for it in ref["items"]]
            baskets = [{ln[0] for ln in ls} for d, ls in orders if day - w < d <= day]
            counts = Counter(p for b in baskets for p in ((x, y) for x in b for y in b if x < y))
            top = result.pairs[w]
            assert [(p["item_a"], p["item_b"]) for p in top] == \
                [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], f"{kv[0][0]}\t{kv[0][1]}"))]
            for p in top:
                ref = affinity(baskets, p["item_a"], p["item_b"])
                assert (p["n_ab"], p["support"], p["confidence_ab"], p["lift"], p["leverage"], p["conviction_ab"]) \
                    == (ref["n_both"], ref["support"], ref["confidence"], ref["lift"], ref["leverage"],
                        ref["conviction"])
                assert p["confidence_ba"] == affinity(baskets, p["item_b"], p["item_a"])["confidence"]
                assert p["error_bound"] == 0
    assert all(d >= _day(12 - max(*windows, 14)) for sc in cats.values() for d in sc.days)  # expired past it


def test_the_daily_pair_bound_says_how_far_counts_can_be_short() -> None:
    day = [[["a", "x", "", 1, 1, 1, 1], ["b", "x", "", 1, 1, 1, 1]]] * 3 + \
          [[["a", "x", "", 1, 1, 1, 1], ["c", "x", "", 1, 1, 1, 1]]] * 2 + [[["b", "x", "", 1, 1, 1, 1], ["c", "x",
                                                                                                   "", 1, 1, 1, 1]]]
    s = DaySummary.from_orders(day, max_pairs=2)
    assert s.pairs == {"a\tb": 3, "a\tc": 2} and s.dropped == 1  # b,c (1 basket) let go
    pw = PairWindow()
    pw.add_day("2026-03-01", s, 28)
    pw.add_day("2026-03-02", s, 28)
    top = pw.top("2026-03-02", 7, MenuConfig(min_pair_count=1, min_pair_support=0.0))
    assert [(p["item_a"], p["item_b"], p["n_ab"], p["error_bound"]) for p in top] == \
        [("a", "b", 6, 2), ("a", "c", 4, 2)]


def test_a_class_change_must_hold_and_moving_back_only_resolves() -> None:
    t, hold = None, 3
    t, ev = track_class(t, "d0", "dog", False, hold)
    t, ev = track_class(t, "d1", "star", False, hold)
    assert ev == [] and t[0] == "star"  # warm-up: the class is followed, no change is news
    t, ev = track_class(t, "d2", "star", True, hold)
    assert ev == [] and t[0] == "star"
    for d in ("d3", "d4"):
        t, ev = track_class(t, d, "plowhorse", True, hold)
        assert ev == []
    t, ev = track_class(t, "d5", "star", True, hold)  # back before it held: the count starts again
    assert ev == [] and t[1] is None
    for d in ("d6", "d7"):
        t, ev = track_class(t, d, "plowhorse", True, hold)
    t, ev = track_class(t, "d8", "plowhorse", True, hold)
    assert ev == [{"kind": "firing", "from": "star", "to": "plowhorse", "start": "d6", "day": "d8",
                   "now": "plowhorse"}]
    for d in ("d9", "d10", "d11"):
        t, ev = track_class(t, d, "dog", True, hold)
    assert [e["kind"] for e in ev] == ["resolved", "firing"] and ev[1]["from"] == "plowhorse"
    for d in ("d12", "d13", "d14"):
        t, ev = track_class(t, d, "plowhorse", True, hold)
    assert [e["kind"] for e in ev] == ["resolved"] and t[4] is None  # back where the open episode came from


def test_an_item_on_a_line_keeps_its_class_inside_the_band() -> None:
    m = {"popularity_threshold_mm_pct": F(10), "cm_benchmark_value": F(2)}
    item = {"class": "plowhorse", "popularity": "high", "profitability": "low", "mm_pct": F(12), "cm": F("1.9")}
    assert banded_class(item, m, "star", F("0.1")) == "star"  # 1.9 is within 10 % of 2.00
    assert banded_class({**item, "cm": F("1.7")}, m, "star", F("0.1")) == "plowhorse"
    assert banded_class({**item, "cm": F("1.7")}, m, None, F("0.1")) == "plowhorse"


def test_margin_chart_fires_on_its_side_only_and_resolves() -> None:
    chart = DailyChart()
    kw = {"window": 28, "min_effect": 0.05, "rules": 1, "min_samples": 10, "resolve_after": 3}
    base = [0.55, 0.56, 0.54, 0.55, 0.57, 0.53, 0.55, 0.56, 0.54, 0.55, 0.56, 0.54]
    for i, x in enumerate(base):
        v = chart.update(f"d{i:02d}", x, 100.0, side=-1, **kw)
        assert v["event"] is None and v["status"] == ("warmup" if i < 10 else "ok")
    up = DailyChart(json.loads(json.dumps(chart.to_state())))
    assert up.update("d20", 0.75, 100.0, side=-1, **kw)["event"] is None  # far above: the wrong side
    assert chart.update("d20", None, 0.0, side=-1, **kw)["status"] == "missing"
    v = chart.update("d21", 0.30, 100.0, side=-1, **kw)
    assert v["event"] == {"kind": "firing", "start": "d21", "day": "d21", "first": "WE1"} and v["z"] < -3
    assert v["center"] == pytest.approx(sum(base) / len(base))
    v = chart.update("d22", 0.31, 100.0, side=-1, **kw)  # the eroded day stayed out of the baseline: still low
    assert v["signal"] and v["event"] is None  # same episode
    events = [chart.update(f"d{23 + k}", 0.55, 100.0, side=-1, **kw)["event"] for k in range(3)]
    assert events[:2] == [None, None] and events[2]["kind"] == "resolved" and events[2]["start"] == "d21"
    # the same deviation over few units is not significant: the day's sigma is s / sqrt(units)
    few = DailyChart(json.loads(json.dumps(up.to_state())))
    assert few.update("d30", 0.50, 1.0, side=-1, **kw)["signal"] is False
