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
