"""UC-PR-01 menu engineering: the reference (batch) functions and the incremental pieces of the stream.

Reference functions, exact (rational arithmetic, so an item exactly on a line is
classified the same way every time, whatever the order of the items):

* :func:`classify_menu`: Kasavana & Smith's menu-engineering matrix of one
  category over one period;
* :func:`affinity` / :func:`affinity_counts`: support, confidence, lift,
  leverage and conviction of ``antecedent -> consequent`` over baskets.

Incremental pieces (pure, JSON-able state; the processor in ``agents/menu.py``
routes them): :func:`apply_order` (the order stage), :class:`ScopeDays` (per
scope and category, per item per business day, expiring past the longest
window), :class:`PairDays` (pair counts per scope per day, bounded), the
window totals that feed :func:`classify_menu`, :class:`ClassTracker`
(class changes that hold) and :class:`DailyChart` (a one-sided Western
Electric chart of a daily ratio). docs/menu.md has the formulas and conventions.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from itertools import combinations
from typing import Any

from .calendar import BusinessCalendar, next_day, zone
from .detector import zone_factors
from .rules import RULE_BITS, RuleState, first_rule, mask_rules

CLASSES = ("star", "plowhorse", "puzzle", "dog")
BENCHMARKS = ("weighted_mean", "simple_mean", "median")
UNCATEGORISED = "uncategorised"
Number = int | str | Decimal | Fraction


def _exact(x: Number | float, name: str) -> Fraction:
    """A number as an exact fraction: ints, decimal strings, Decimals and Fractions (floats: their binary value)."""
    if isinstance(x, bool):
        raise TypeError(f"{name} must be a number, got {x!r}")
    try:
        value = Fraction(x)
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        raise ValueError(f"{name} must be a number, got {x!r}") from exc
    return value


# =========================================================================== reference: the matrix


def classify_menu(items: Sequence[Mapping[str, Any]], popularity_factor: Number = "0.70",
                  cm_benchmark: str = "weighted_mean") -> dict[str, Any]:
    """Kasavana & Smith's menu-engineering matrix of ONE category over ONE period.

    ``items``: ``[{"name", "price", "food_cost", "units"}]`` (numbers as ints, decimal strings, Decimals or
    Fractions). Menu mix ``MM_i = units_i / Σ units``; high popularity iff ``MM_i >= popularity_factor / N``;
    ``CM_i = price_i - food_cost_i``; high profitability iff ``CM_i >=`` the benchmark (sales-weighted mean CM,
    simple mean or median); ties count as high. All returned numbers are exact :class:`~fractions.Fraction`
    (``mm_pct`` and ``popularity_threshold_mm_pct`` in percent).
    """
    if cm_benchmark not in BENCHMARKS:
        raise ValueError(f"cm_benchmark must be one of {', '.join(BENCHMARKS)}, got {cm_benchmark!r}")
    if not items:
        raise ValueError("classify_menu needs at least one item")
    factor = _exact(popularity_factor, "popularity_factor")
    if factor < 0:
        raise ValueError(f"popularity_factor must be >= 0, got {popularity_factor!r}")
    rows = []
    for i, it in enumerate(items):
        units = _exact(it["units"], f"items[{i}].units")
        if units < 0:
            raise ValueError(f"items[{i}].units must be >= 0, got {it['units']!r}")
        cm = _exact(it["price"], f"items[{i}].price") - _exact(it["food_cost"], f"items[{i}].food_cost")
        rows.append((it["name"], units, cm))
    n = len(rows)
    total = sum((u for _, u, _ in rows), Fraction(0))
    if total == 0:
        raise ValueError("classify_menu: no units sold in the period (the menu mix is undefined)")
    if cm_benchmark == "weighted_mean":
        benchmark = sum((u * cm for _, u, cm in rows), Fraction(0)) / total
    elif cm_benchmark == "simple_mean":
        benchmark = sum((cm for _, _, cm in rows), Fraction(0)) / n
    else:
        benchmark = Fraction(statistics.median(sorted(cm for _, _, cm in rows)))
    threshold = factor / n  # as a share; compare units * n >= factor * total (no division)
    out_items = []
    for name, units, cm in rows:
        popular = units * n >= factor * total
        profitable = cm >= benchmark
        out_items.append({
            "name": name, "units": units, "mm_pct": 100 * units / total, "cm": cm,
            "popularity": "high" if popular else "low", "profitability": "high" if profitable else "low",
            "class": _class(popular, profitable)})
    return {"n_items": n, "total_units": total, "popularity_factor": factor,
            "popularity_threshold_mm_pct": 100 * threshold, "cm_benchmark": cm_benchmark,
            "cm_benchmark_value": benchmark, "items": out_items}


def _class(popular: bool, profitable: bool) -> str:
    if popular:
        return "star" if profitable else "plowhorse"
    return "puzzle" if profitable else "dog"


# =========================================================================== reference: affinity


def _itemset(x: Any) -> frozenset:
    if isinstance(x, str):
        return frozenset((x,))
    return frozenset(x)


def affinity(baskets: Iterable[Iterable[Any]], antecedent: Any, consequent: Any) -> dict[str, Any]:
    """Association measures of ``antecedent -> consequent`` over ``baskets``.

    A basket is the set of distinct items of one order (quantities ignored); ``antecedent`` and
    ``consequent`` are an item or a collection of items (itemsets). Returns counts and exact fractions,
    ``None`` where a measure is undefined or infinite (see :func:`affinity_counts`).
    """
    a, c = _itemset(antecedent), _itemset(consequent)
    if not a or not c:
        raise ValueError("antecedent and consequent must not be empty")
    n = n_a = n_c = n_ac = 0
    for basket in baskets:
        b = set(basket)
        n += 1
        has_a, has_c = a <= b, c <= b
        n_a += has_a
        n_c += has_c
        n_ac += has_a and has_c
    return affinity_counts(n, n_a, n_c, n_ac)


def affinity_counts(n: int, n_a: int, n_c: int, n_ac: int) -> dict[str, Any]:
    """The measures from basket counts: ``n`` baskets, ``n_a`` with the antecedent, ``n_c`` with the consequent,
    ``n_ac`` with both.

    support = count / n; confidence = n_ac / n_a; lift = confidence / support(consequent);
    leverage = support(both) - support(a) * support(c); conviction = (1 - support(c)) / (1 - confidence).
    ``None``: no baskets (every measure), an unseen antecedent (confidence, lift, conviction), an unseen
    consequent (lift), confidence 1 (conviction is infinite).
    """
    if not (0 <= n_ac <= min(n_a, n_c) and max(n_a, n_c) <= n):
        raise ValueError(f"inconsistent counts: n={n}, n_a={n_a}, n_c={n_c}, n_ac={n_ac}")
    out: dict[str, Any] = {"n_baskets": n, "n_antecedent": n_a, "n_consequent": n_c, "n_both": n_ac,
                           "support_antecedent": None, "support_consequent": None, "support": None,
                           "confidence": None, "lift": None, "leverage": None, "conviction": None}
    if n == 0:
        return out
    sa, sc, s = Fraction(n_a, n), Fraction(n_c, n), Fraction(n_ac, n)
    out.update(support_antecedent=sa, support_consequent=sc, support=s, leverage=s - sa * sc)
    if n_a:
        conf = Fraction(n_ac, n_a)
        out["confidence"] = conf
        if sc:
            out["lift"] = conf / sc
        if conf != 1:
            out["conviction"] = (1 - sc) / (1 - conf)
    return out


# =========================================================================== configuration and calendar


@dataclass(frozen=True, slots=True)
class MenuConfig:
    """Everything the menu use case can be told (``SPCWATCH_MENU_*``, see docs/menu.md)."""

    timezone: str = "America/New_York"  # the chain's business days
    grace_seconds: float = 21600.0  # a day closes at the next local midnight + this (its refunds are in)
    windows: tuple[int, ...] = (28, 7)  # rolling windows in days; the first is the primary (alerts, report)
    popularity_factor: str = "0.70"
    cm_benchmark: str = "weighted_mean"
    hold_days: int = 3  # a new class must hold this many closes to count as a change
    class_band: float = 0.10  # ... and be clear of the line it crossed by this share of the line (hysteresis)
    class_min_days: int = 0  # days of data before class changes count (0: the primary window); followed until then
    alert_scopes: str = "chain"  # "chain": alerts on the chain only; "all": also per store
    rules: tuple[str, ...] = ("WE1",)  # of the margin and discount charts (any of WE1-WE4)
    chart_window: int = 28  # days of the charts' baseline
    chart_min_units: float = 30.0  # a day with fewer units of the item is a missing point on its charts
    chart_min_samples: int = 14  # judged days need this many baseline days
    margin_min_effect: float = 0.05  # CM % must be at least 5 points below the centre to signal
    discount_min_effect: float = 0.05  # discount depth at least 5 points above
    resolve_after: int = 3
    top_pairs: int = 30
    min_pair_support: float = 0.002  # share of the window's baskets
    min_pair_count: int = 5
    max_pairs_per_day: int = 2000  # >= C(58, 2) = 1653: exact for the simulator's menu
    test_currencies: tuple[str, ...] = ("NZD",)  # test orders (as recon's default): not analysed

    def validate(self) -> None:
        """``ValueError`` messages start with the field's name (``load_env`` names the variable)."""
        if not self.windows or any(not 1 <= w <= 366 for w in self.windows) \
                or len(set(self.windows)) != len(self.windows):
            raise ValueError(f"windows must be distinct day counts in 1-366, got {self.windows}")
        try:
            zone(self.timezone)
        except ValueError as exc:
            raise ValueError(f"timezone is not a known time zone: {self.timezone!r}") from exc
        try:
            factor = Fraction(self.popularity_factor)
        except ValueError:
            factor = Fraction(-1)
        if not 0 < factor <= 1:
            raise ValueError(f"popularity_factor must be a number in (0, 1], got {self.popularity_factor!r}")
        if self.cm_benchmark not in BENCHMARKS:
            raise ValueError(f"cm_benchmark must be one of {', '.join(BENCHMARKS)}, got {self.cm_benchmark!r}")
        if self.alert_scopes not in ("chain", "all"):
            raise ValueError(f"alert_scopes must be chain or all, got {self.alert_scopes!r}")
        unknown = [r for r in self.rules if r not in ("WE1", "WE2", "WE3", "WE4")]
        if not self.rules or unknown:
            raise ValueError(f"rules must be a comma-separated subset of WE1,WE2,WE3,WE4, "
                             f"got {','.join(self.rules)!r}")
        for name in ("grace_seconds", "class_band", "chart_min_units", "margin_min_effect", "discount_min_effect",
                     "min_pair_support"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.class_min_days < 0:
            raise ValueError(f"class_min_days must be >= 0, got {self.class_min_days!r}")
        for name in ("hold_days", "chart_window", "chart_min_samples", "resolve_after", "top_pairs",
                     "min_pair_count",
                     "max_pairs_per_day"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")

    @property
    def retention_days(self) -> int:
        """Days of per-item state kept: the longest window, and two weeks for week-over-week growth."""
        return max(*self.windows, 14)

    @property
    def primary_window(self) -> int:
        return self.windows[0]


class MenuCalendar(BusinessCalendar):
    """The chain's business days (one zone for every store, so a chain day is every store's day)
    and the config that judges them."""

    def __init__(self, cfg: MenuConfig) -> None:
        super().__init__(cfg.timezone, (), cfg.grace_seconds)
        self.cfg = cfg


def days_between(a: str, b: str) -> int:
    """``b - a`` in days."""
    return (date.fromisoformat(b) - date.fromisoformat(a)).days


# =========================================================================== stage 1: orders

PAID = 0
STATUS_CODE = {"paid": 0, "refunded": 1, "cancelled": 2}
_RANK = (0, 1, 1)  # a paid order may become refunded or cancelled, never back

# An item line of one order, as forwarded: [spu, category, name, qty, net_minor, list_minor, cost_minor | None]
# A day vector of one item: the sums below (money in minor units; "costed": lines with a unit_cost).
U, B, NET, LST, CU, CN, CL, COST = range(8)
VEC = 8


def _minor(x: Decimal) -> int:
    return int((x * 100).to_integral_value(ROUND_HALF_EVEN))


def order_lines(order: Any) -> list[list]:
    """The order's item lines (``order`` is a :class:`agents.core.events.Order`, duck-typed)."""
    lines = []
    for it in order.items:
        qty = Decimal(repr(it.qty)) if isinstance(it.qty, float) else Decimal(it.qty)
        q: int | float = int(qty) if qty == qty.to_integral_value() else float(qty)
        cost = None if it.unit_cost is None else _minor(it.unit_cost * qty)
        lines.append([it.spu, getattr(it, "category", None) or UNCATEGORISED, it.name, q,
                      _minor((it.unit_price - it.discount) * qty), _minor(it.unit_price * qty), cost])
    return lines


@dataclass(frozen=True, slots=True)
class OrderStep:
    entry: list | None  # the order's new state (None: unchanged)
    forward: dict | None  # its absolute contribution for the store stage
    outcome: str  # "new" | "update" | "duplicate" | "stale" | "too_late" | "test"


def apply_order(entry: list | None, order: Any, cal: MenuCalendar, watermark: float) -> OrderStep:
    """One order event against the order's state ``[store, day, status, event_id, first_ts, signature]``.

    The contribution forwarded is *absolute* (the order's lines if paid, none otherwise), so the store stage
    replaces, never adds: a redelivered message is harmless. An order's day is final at its close: events for
    it after that (``watermark`` past the close) are ``too_late``.
    """
    if order.test or order.currency in cal.cfg.test_currencies:
        return OrderStep(None, None, "test")
    code = STATUS_CODE[order.status]
    lines = order_lines(order) if code == PAID else []
    signature = hash_lines(code, lines)
    if entry is None:
        store, day, first_ts, outcome = order.store_id, cal.local_day(order.store_id, order.ts), order.ts, "new"
    else:
        store, day, first_ts = entry[0], entry[1], entry[4]
        if order.event_id == entry[3] or signature == entry[5]:
            return OrderStep(None, None, "duplicate")
        if _RANK[code] < _RANK[entry[2]]:
            return OrderStep(None, None, "stale")
        outcome = "update"
    if watermark > cal.close_ts(store, day):
        return OrderStep(None, None, "too_late")
    forward = {"t": "order", "store": store, "day": day, "id": order.order_id, "c": lines, "ts": order.ts}
    return OrderStep([store, day, code, order.event_id, first_ts, signature], forward, outcome)


def hash_lines(code: int, lines: list[list]) -> str:
    return hashlib.blake2b(repr((code, lines)).encode(), digest_size=8).hexdigest()


def order_expired(entry: list, cfg: MenuConfig, watermark: float) -> bool:
    """An order's state can go once its day is final (its day ends within a day of it, +1 h for DST)."""
    return watermark > entry[4] + 86400.0 + 3600.0 + cfg.grace_seconds + 86400.0


# =========================================================================== a closed day of one scope


def _pair_key(a: str, b: str) -> str:
    return f"{a}\t{b}" if a < b else f"{b}\t{a}"


def split_pair(key: str) -> tuple[str, str]:
    a, _, b = key.partition("\t")
    return a, b


@dataclass(slots=True)
class DaySummary:
    """One scope's closed business day: per category per item the day vector, the item names, the number of
    baskets (paid orders with items), per item the baskets holding it, pair counts (bounded, see
    :meth:`bound_pairs`) and the largest dropped pair count (0: the pair counts are exact)."""

    items: dict[str, dict[str, list]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    baskets: int = 0
    item_baskets: dict[str, int] = field(default_factory=dict)
    pairs: dict[str, int] = field(default_factory=dict)
    dropped: int = 0

    @classmethod
    def from_orders(cls, orders: Iterable[list[list]], max_pairs: int) -> DaySummary:
        """From the paid orders' lines (each order: a list of item lines)."""
        s = cls()
        for lines in orders:
            if not lines:
                continue
            s.baskets += 1
            distinct = sorted({ln[0] for ln in lines})
            for spu in distinct:
                s.item_baskets[spu] = s.item_baskets.get(spu, 0) + 1
            for a, b in combinations(distinct, 2):
                k = f"{a}\t{b}"
                s.pairs[k] = s.pairs.get(k, 0) + 1
            seen: set[tuple[str, str]] = set()
            for spu, cat, name, qty, net, lst, cost in lines:
                vec = s.items.setdefault(cat, {}).setdefault(spu, [0] * VEC)
                vec[U] += qty
                vec[NET] += net
                vec[LST] += lst
                if cost is not None:
                    vec[CU] += qty
                    vec[CN] += net
                    vec[CL] += lst
                    vec[COST] += cost
                if (cat, spu) not in seen:
                    seen.add((cat, spu))
                    vec[B] += 1
                if name:
                    s.names[spu] = name
        s.bound_pairs(max_pairs)
        return s

    def bound_pairs(self, max_pairs: int) -> None:
        """Keep the ``max_pairs`` most frequent pairs (ties: by key); ``dropped`` is the largest count let go,
        so every pair's window count is short by at most the sum of its days' ``dropped``."""
        if len(self.pairs) <= max_pairs:
            return
        ranked = sorted(self.pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        self.dropped = max(self.dropped, ranked[max_pairs][1])
        self.pairs = dict(ranked[:max_pairs])

    def merge(self, other: DaySummary) -> None:
        """Add another scope's day (the chain sums its stores); pair bounds add up."""
        for cat, items in other.items.items():
            mine = self.items.setdefault(cat, {})
            for spu, vec in items.items():
                cur = mine.get(spu)
                mine[spu] = list(vec) if cur is None else [x + y for x, y in zip(cur, vec, strict=True)]
        self.names.update(other.names)
        self.baskets += other.baskets
        for spu, n in other.item_baskets.items():
            self.item_baskets[spu] = self.item_baskets.get(spu, 0) + n
        for k, n in other.pairs.items():
            self.pairs[k] = self.pairs.get(k, 0) + n
        self.dropped += other.dropped

    def to_state(self) -> dict:
        return {"i": self.items, "nm": self.names, "n": self.baskets, "ib": self.item_baskets, "p": self.pairs,
                "x": self.dropped}

    @classmethod
    def from_state(cls, s: dict) -> DaySummary:
        return cls(s["i"], s["nm"], s["n"], s["ib"], s["p"], s["x"])


# =========================================================================== window state of one scope


def vec_sum(vecs: Iterable[list]) -> list:
    out = [0] * VEC
    for v in vecs:
        for i in range(VEC):
            out[i] += v[i]
    return out


def window_days(end: str, w: int) -> list[str]:
    """The ``w`` business days ending with ``end`` (inclusive), oldest first."""
    return [next_day(end, -k) for k in range(w - 1, -1, -1)]


def item_inputs(totals: Mapping[str, list], names: Mapping[str, str]) -> list[dict]:
    """:func:`classify_menu` items from window totals: price and food cost are the averages per unit over the
    lines that carry a unit cost (realised price: after discounts), units are all units sold. An item with no
    costed unit in the window has no margin and is left out of the matrix."""
    out = []
    for spu in sorted(totals):
        v = totals[spu]
        if v[CU] <= 0 or v[U] <= 0:
            continue
        cu = _exact(v[CU], "units")
        out.append({"name": spu, "label": names.get(spu, spu), "price": Fraction(v[CN]) / 100 / cu,
                    "food_cost": Fraction(v[COST]) / 100 / cu, "units": _exact(v[U], "units")})
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def vec_metrics(v: list) -> dict[str, float | None]:
    """Per item figures of a day or window vector (money in major units)."""
    return {
        "units": float(v[U]), "baskets": int(v[B]), "revenue": v[NET] / 100.0, "list_revenue": v[LST] / 100.0,
        "discount": (v[LST] - v[NET]) / 100.0, "cost": v[COST] / 100.0,
        "cm_per_unit": _ratio((v[CN] - v[COST]) / 100.0, v[CU]),
        "list_cm_per_unit": _ratio((v[CL] - v[COST]) / 100.0, v[CU]),
        "cm_pct": _ratio(v[CN] - v[COST], v[CN]) if v[CN] > 0 else None,
        "discount_depth": _ratio(v[LST] - v[NET], v[LST]) if v[LST] > 0 else None,
    }


class ScopeCategory:
    """One scope x category: per item per closed day its vector (expiring past the longest window), the item
    names, and (where alerts are on) per item a class tracker and the margin and discount charts.

    State: ``{"d": {day: {spu: vec}}, "nm": {spu: name}, "first": day, "last": day, "ct": {spu: tracker},
    "ch": {spu: {"cm": chart, "dd": chart}}}``.
    """

    def __init__(self, state: dict | None = None) -> None:
        s = state or {}
        self.days: dict[str, dict[str, list]] = s.get("d", {})
        self.names: dict[str, str] = s.get("nm", {})
        self.first: str | None = s.get("first")
        self.last: str | None = s.get("last")
        self.trackers: dict[str, list] = s.get("ct", {})
        self.charts: dict[str, dict[str, dict]] = s.get("ch", {})

    def to_state(self) -> dict:
        return {"d": self.days, "nm": self.names, "first": self.first, "last": self.last, "ct": self.trackers,
                "ch": self.charts}

    def add_day(self, day: str, items: Mapping[str, list], names: Mapping[str, str], retention: int) -> None:
        if items:
            self.days[day] = {spu: list(v) for spu, v in items.items()}
        for spu in items:
            if spu in names:
                self.names[spu] = names[spu]
        if self.first is None:
            self.first = day
        self.last = day
        horizon = next_day(day, -(retention - 1))
        for d in [d for d in self.days if d < horizon]:
            del self.days[d]

    def totals(self, end: str, w: int) -> dict[str, list]:
        out: dict[str, list] = {}
        for d in window_days(end, w):
            for spu, v in self.days.get(d, {}).items():
                cur = out.get(spu)
                out[spu] = list(v) if cur is None else [x + y for x, y in zip(cur, v, strict=True)]
        return out

    def covered(self, end: str, w: int) -> int:
        """Days of the window since this scope-category was first seen."""
        if self.first is None:
            return 0
        return max(0, min(w, days_between(self.first, end) + 1))

    def units(self, spu: str, end: str, w: int) -> float:
        return float(sum(self.days.get(d, {}).get(spu, (0,))[0] for d in window_days(end, w)))

    def growth(self, spu: str, end: str, w: int) -> tuple[float | None, float | None]:
        """Week-over-week units growth (last 7 days vs the 7 before) and, for windows of 14 days or more, the
        compound monthly growth rate between the window's first and last weeks: (last/first)^(30/(w-7)) - 1."""
        wow = cmgr = None
        if self.covered(end, 14) >= 14:
            last, before = self.units(spu, end, 7), self.units(spu, next_day(end, -7), 7)
            wow = last / before - 1.0 if before > 0 else None
        if w >= 14 and self.covered(end, w) >= w:
            last, first = self.units(spu, end, 7), self.units(spu, next_day(end, -(w - 7)), 7)
            if first > 0 and last > 0:
                cmgr = (last / first) ** (30.0 / (w - 7)) - 1.0
        return wow, cmgr


def evaluate_category(sc: ScopeCategory, end: str, w: int, cfg: MenuConfig) -> dict | None:
    """The category's matrix over the window ending ``end``: :func:`classify_menu` of the window totals, with
    each item's window figures and growth. None when nothing with a cost was sold in the window."""
    totals = sc.totals(end, w)
    inputs = item_inputs(totals, sc.names)
    if not inputs:
        return None
    m = classify_menu(inputs, cfg.popularity_factor, cfg.cm_benchmark)
    items = []
    for src, it in zip(inputs, m["items"], strict=True):
        spu = src["name"]
        wow, cmgr = sc.growth(spu, end, w)
        items.append({**vec_metrics(totals[spu]), "spu": spu, "name": src["label"], "mm_pct": it["mm_pct"],
                      "cm": it["cm"], "popularity": it["popularity"], "profitability": it["profitability"],
                      "class": it["class"], "wow_growth": wow, "cmgr": cmgr})
    return {"cm_benchmark_value": m["cm_benchmark_value"],
            "popularity_threshold_mm_pct": m["popularity_threshold_mm_pct"], "n_items": m["n_items"],
            "total_units": m["total_units"], "days_covered": sc.covered(end, w), "items": items}


class PairWindow:
    """Pair counts of one scope: per closed day (n baskets, baskets per item, pair counts, dropped bound)."""

    def __init__(self, state: dict | None = None) -> None:
        self.days: dict[str, list] = (state or {}).get("d", {})

    def to_state(self) -> dict:
        return {"d": self.days}

    def add_day(self, day: str, s: DaySummary, retention: int) -> None:
        self.days[day] = [s.baskets, dict(s.item_baskets), dict(s.pairs), s.dropped]
        horizon = next_day(day, -(retention - 1))
        for d in [d for d in self.days if d < horizon]:
            del self.days[d]

    def top(self, end: str, w: int, cfg: MenuConfig) -> list[dict]:
        """The window's top pairs by support (at least ``min_pair_count`` baskets and ``min_pair_support``),
        with the measures both ways. ``error_bound``: how many baskets a count may be short by (0: exact)."""
        n, bound = 0, 0
        items: dict[str, int] = {}
        pairs: dict[str, int] = {}
        for d in window_days(end, w):
            day = self.days.get(d)
            if day is None:
                continue
            n += day[0]
            bound += day[3]
            for spu, c in day[1].items():
                items[spu] = items.get(spu, 0) + c
            for k, c in day[2].items():
                pairs[k] = pairs.get(k, 0) + c
        if n == 0:
            return []
        floor = max(cfg.min_pair_count, math.ceil(cfg.min_pair_support * n))
        ranked = sorted(((c, k) for k, c in pairs.items() if c >= floor), key=lambda ck: (-ck[0], ck[1]))
        out = []
        for rank, (c, k) in enumerate(ranked[:cfg.top_pairs], start=1):
            a, b = split_pair(k)
            ab = affinity_counts(n, items.get(a, 0), items.get(b, 0), c)
            ba = affinity_counts(n, items.get(b, 0), items.get(a, 0), c)
            out.append({"rank": rank, "item_a": a, "item_b": b, "n_baskets": n, "n_a": items.get(a, 0),
                        "n_b": items.get(b, 0), "n_ab": c, "support": ab["support"],
                        "confidence_ab": ab["confidence"], "confidence_ba": ba["confidence"], "lift": ab["lift"],
                        "leverage": ab["leverage"], "conviction_ab": ab["conviction"],
                        "conviction_ba": ba["conviction"], "error_bound": bound})
        return out


# =========================================================================== alerts: class changes


def class_severity(old: str, new: str) -> str:
    """Leaving star is a warning (a star turning plowhorse, puzzle or dog); every other move is info."""
    return "warning" if old == "star" and new != "star" else "info"


def track_class(tracker: list | None, day: str, cls: str | None, full: bool, hold: int) -> tuple[list, list[dict]]:
    """One close of an item's class on the primary window. ``tracker``:
    ``[established, candidate, candidate_since, count, episode]`` with ``episode`` ``[from, to, start_day]`` or
    None. A class different from the established one must hold ``hold`` consecutive closes to be a change: the
    change opens an episode (the open one, if any, resolves first); moving back to the class an open episode came
    from only resolves it. While the window is not yet full (``full`` false) the established class simply follows
    the item (a short window's class is noise, not news); nothing is decided on a day the item is absent.

    Returns the new tracker and the transitions ``{"kind": "firing"|"resolved", "from", "to", "start", "day"}``.
    """
    est, cand, since, count, ep = tracker if tracker else (None, None, None, 0, None)
    events: list[dict] = []
    if cls is None:
        return [est, cand, since, count, ep], events
    if not full or est is None or cls == est:
        return [cls, None, None, 0, ep], events
    if cls == cand:
        count += 1
    else:
        cand, since, count = cls, day, 1
    if count >= hold:
        if ep is not None:
            events.append({"kind": "resolved", "from": ep[0], "to": ep[1], "start": ep[2], "day": day,
                           "now": cls})
            back = ep[0] == cls
            ep = None
        else:
            back = False
        if not back:
            ep = [est, cls, since]
            events.append({"kind": "firing", "from": est, "to": cls, "start": since, "day": day, "now": cls})
        est, cand, since, count = cls, None, None, 0
    return [est, cand, since, count, ep], events


def banded_class(item: Mapping[str, Any], matrix: Mapping[str, Any], established: str | None,
                 band: Fraction) -> str:
    """The item's class for change detection: on each axis whose line it is within ``band`` (a share of the
    line) of, it keeps the established class's side. The matrix itself stays exact; this only stops an item
    that sits on a line from flapping between two classes."""
    if established is None:
        return item["class"]
    popular = item["popularity"] == "high"
    profitable = item["profitability"] == "high"
    line = matrix["popularity_threshold_mm_pct"]
    if abs(item["mm_pct"] - line) < band * abs(line):
        popular = established in ("star", "plowhorse")
    line = matrix["cm_benchmark_value"]
    if abs(item["cm"] - line) < band * abs(line):
        profitable = established in ("star", "puzzle")
    return _class(popular, profitable)


# =========================================================================== alerts: daily ratio charts


class DailyChart:
    """A one-sided chart of a daily ratio over units (an item's realised CM %, its discount depth).

    The days of an item sell different numbers of units, so the chart has limits per day, like a u-chart: from
    the chart's last ``window`` days (missing days count as days), centre ``c = Σ n·x / Σ n`` and a per-unit
    spread ``s = sqrt(Σ n·(x - c)² / (k - 1))`` (k days), the day's sigma is ``s / sqrt(n)``. The 1σ/2σ/3σ lines
    are prediction limits (Student-t quantiles with k - 1 degrees of freedom, as
    ``DetectorConfig.prediction_limits``): a spread from a few weeks of days is itself uncertain. A judged day
    completes Western Electric rules (:class:`models.rules.RuleState`) and *signals* when an enabled rule fires on
    the watched side (``side`` -1: below the centre, +1: above) with a deviation of at least ``min_effect``. The
    first signal opens an episode; ``resolve_after`` judged days without one resolve it. A signalling day stays
    out of the baseline (one eroded day would otherwise widen the limits so much that the next ones pass),
    unless ``protect_max_run`` signalling days in a row were refused already: then the level is the new normal
    and is learned, and the episode resolves as the limits follow it. State: ``{"x": [[value, units] | None],
    "r": rule state, "e": episode | None, "p": refused in a row}``, episode ``[start_day, quiet days, peak |z|,
    rules mask]``.
    """

    def __init__(self, state: dict | None = None) -> None:
        s = state or {}
        self.values: list[list[float] | None] = s.get("x", [])
        self.rules = RuleState.from_list(s["r"]) if s.get("r") else RuleState()
        self.episode: list | None = s.get("e")
        self.refused: int = s.get("p", 0)

    def to_state(self) -> dict:
        return {"x": self.values, "r": self.rules.to_list(), "e": self.episode, "p": self.refused}

    def limits(self, min_samples: int, floor: float = 0.005) -> tuple[float, float, tuple[float, ...]] | None:
        """Centre, per-unit spread and the zone factors (in sigmas), or None while the baseline is short."""
        xs = [v for v in self.values if v is not None]
        k = len(xs)
        if k < max(3, min_samples):
            return None
        total = math.fsum(n for _, n in xs)
        centre = math.fsum(x * n for x, n in xs) / total
        spread = math.sqrt(math.fsum(n * (x - centre) ** 2 for x, n in xs) / (k - 1))
        return centre, max(spread, floor), zone_factors(float(k - 1))

    def update(self, day: str, value: float | None, units: float, *, window: int, side: int, min_effect: float,
               rules: int, min_samples: int, resolve_after: int, protect_max_run: int = 7) -> dict:
        """Judge ``day``'s value (None: missing) over ``units`` units. Returns the verdict ``{"status", "value",
        "center", "sigma", "z", "rules", "signal", "event"}``, ``event`` ``{"kind", "start", "day", "first"}`` on
        a transition (``sigma`` is the day's 3σ line / 3, so centre ± 3 sigma is the line that decided)."""
        lim = self.limits(min_samples)
        verdict: dict[str, Any] = {"status": "missing" if value is None else "warmup", "value": value,
                                   "center": None, "sigma": None, "z": None, "rules": [], "signal": False,
                                   "event": None}
        if value is not None and lim is not None:
            centre, spread, factors = lim
            day_sigma = spread / math.sqrt(units)
            d = value - centre
            mask = self.rules.update(d, *(f * day_sigma for f in factors)) & rules
            signal = bool(mask) and d * side > 0 and abs(d) >= min_effect
            sigma = factors[2] * day_sigma / 3
            z = d / sigma
            verdict.update(status="ok", center=centre, sigma=sigma, z=z, signal=signal,
                           rules=sorted(mask_rules(mask), key=lambda r: RULE_BITS[r]))
            ep = self.episode
            if signal:
                if ep is None:
                    self.episode = [day, 0, abs(z), mask]
                    verdict["event"] = {"kind": "firing", "start": day, "day": day, "first": first_rule(mask)}
                else:
                    ep[1], ep[2], ep[3] = 0, max(ep[2], abs(z)), ep[3] | mask
            elif ep is not None:
                ep[1] += 1
                if ep[1] >= resolve_after:
                    verdict["event"] = {"kind": "resolved", "start": ep[0], "day": day, "first": first_rule(ep[3])}
                    self.episode = None
        learn = value is not None and not (verdict["signal"] and self.refused < protect_max_run)
        self.refused = self.refused + 1 if value is not None and not learn else 0
        self.values.append([value, units] if learn else None)
        if len(self.values) > window:
            del self.values[:len(self.values) - window]
        return verdict


# =========================================================================== closing a day of one scope


@dataclass(slots=True)
class ScopeDayResult:
    """What closing one scope's day produced (the processor turns it into rows and alerts)."""

    day_items: list[dict] = field(default_factory=list)  # per (category, item): the day's figures
    matrix: dict[int, dict[str, dict]] = field(default_factory=dict)  # window -> category -> evaluate_category
    pairs: dict[int, list[dict]] = field(default_factory=dict)  # window -> top pairs
    events: list[dict] = field(default_factory=list)  # alert transitions


def close_scope_day(day: str, summary: DaySummary, cats: dict[str, ScopeCategory], pairs: PairWindow,
                    cfg: MenuConfig, alerts: bool) -> ScopeDayResult:
    """Fold a closed day into a scope's state (``cats`` per category, loaded by the caller and updated in
    place; new categories are added) and evaluate: every window's matrix and top pairs, and, with ``alerts``,
    the class trackers and the margin and discount charts of the primary window's items."""
    out = ScopeDayResult()
    retention = cfg.retention_days
    for cat in summary.items:
        cats.setdefault(cat, ScopeCategory())
    for cat, sc in cats.items():
        items = summary.items.get(cat, {})
        sc.add_day(day, items, summary.names, retention)
        for spu in sorted(items):
            out.day_items.append({"category": cat, "spu": spu, "name": sc.names.get(spu, spu),
                                  **vec_metrics(items[spu])})
    pairs.add_day(day, summary, retention)
    for w in cfg.windows:
        out.matrix[w] = {cat: m for cat in sorted(cats) if (m := evaluate_category(cats[cat], day, w, cfg))}
        out.pairs[w] = pairs.top(day, w, cfg)
    if alerts:
        primary = out.matrix[cfg.primary_window]
        for cat in sorted(cats):
            out.events.extend(_alerts(cat, cats[cat], primary.get(cat), day, summary.items.get(cat, {}), cfg))
    for sc in cats.values():
        _forget_gone(sc)
    return out


def _alerts(cat: str, sc: ScopeCategory, matrix: dict | None, day: str, today: Mapping[str, list],
            cfg: MenuConfig) -> list[dict]:
    events: list[dict] = []
    w = cfg.primary_window
    full = sc.covered(day, w) >= min(w, cfg.class_min_days or w)
    band = Fraction(str(cfg.class_band))
    by_spu = {it["spu"]: it for it in (matrix or {}).get("items", [])}
    rules = 0
    for r in cfg.rules:
        rules |= RULE_BITS[r]
    for spu in sorted(set(by_spu) | set(sc.trackers) | set(sc.charts) | set(today)):
        it = by_spu.get(spu)
        old = sc.trackers.get(spu)
        cls = banded_class(it, matrix, old[0] if old else None, band) if it and matrix else None
        tracker, moves = track_class(old, day, cls, full, cfg.hold_days)
        sc.trackers[spu] = tracker
        for mv in moves:
            events.append({"rule": "MENU_CLASS_CHANGE", "category": cat, "spu": spu, "name": sc.names.get(spu, spu),
                           "severity": class_severity(mv["from"], mv["to"]), "item": it,
                           "benchmark": matrix["cm_benchmark_value"] if matrix else None,
                           "threshold": matrix["popularity_threshold_mm_pct"] if matrix else None, **mv})
        v = today.get(spu)
        m = vec_metrics(v) if v is not None else {}
        charts = sc.charts.setdefault(spu, {})
        for key, rule, side, effect, value, units in (
                ("cm", "MARGIN_EROSION", -1, cfg.margin_min_effect, m.get("cm_pct"), v[CU] if v else 0),
                ("dd", "DISCOUNT_DEPTH", 1, cfg.discount_min_effect, m.get("discount_depth"), v[U] if v else 0)):
            chart = DailyChart(charts.get(key))
            if units < cfg.chart_min_units:
                value = None
            verdict = chart.update(day, value, float(units), window=cfg.chart_window, side=side, min_effect=effect,
                                   rules=rules,
                                   min_samples=cfg.chart_min_samples, resolve_after=cfg.resolve_after)
            charts[key] = chart.to_state()
            if verdict["event"]:
                events.append({"rule": rule, "category": cat, "spu": spu, "name": sc.names.get(spu, spu),
                               "severity": "warning", "item": it, "verdict": verdict, **verdict["event"]})
    return events


def _forget_gone(sc: ScopeCategory) -> None:
    """Items with no day left in the retained state and no open episode: their trackers and charts go."""
    alive = {spu for items in sc.days.values() for spu in items}
    for spu in [s for s in sc.trackers if s not in alive and not sc.trackers[s][4]]:
        del sc.trackers[spu]
    for spu in [s for s in sc.charts if s not in alive
                and not any(c.get("e") for c in sc.charts[s].values())]:
        del sc.charts[spu]
