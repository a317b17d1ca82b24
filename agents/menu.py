"""UC-PR-01 menu engineering: orders in; per scope (each store, the chain) and category a live menu-engineering
matrix, affinity pairs and alerts out.

The logic is in :mod:`models.menu`. This module is the :class:`~agents.core.contract.Processor`, staged like the
store use case (agents/store.py): three hops keyed by order, store and chain.

* ``orders`` (key ``order_id``): :func:`models.menu.apply_order` remembers the order's store, business day and
  status and forwards its absolute contribution (its item lines if paid, none otherwise) keyed by ``store_id``
  on ``spcwatch.menu.by-store``; the store's first order also sends a *join* straight to the chain.
* ``spcwatch.menu.by-store`` (key ``store_id``): the store's open days (order -> lines, replaced, never added,
  so redelivery is harmless). A day closes at the low watermark of the order partitions' clocks (the same
  :class:`models.clocks.SourceClocks` as the store use case) once it passes local midnight + grace in the chain's
  time zone: the day is folded into the store scope's state, its matrices and pairs are evaluated, and its
  summary goes to the chain on ``spcwatch.menu.chain``.
* ``spcwatch.menu.chain`` (one key, ``chain``): sums the stores' summaries of a day once every store that has
  joined by then has sent it and the chain's low watermark has passed its close; then the same for the chain
  scope. Alerts are raised for the scopes in ``SPCWATCH_MENU_ALERT_SCOPES`` (``chain`` by default).

State keys (each in the partition of the message that writes it): ``o:<order>``, ``ms:<store>`` (open days),
``mi:<scope>|<category>`` (per item per day, trackers, charts), ``mp:<scope>|<day>`` (that day's pair counts),
``mc`` (the chain's joins and next day) and ``md:<day>`` (the chain's partial sum of a day). ``scope`` is the
store id or ``chain``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from typing import Any

from agents.core.alerts import Alert, alert_id
from agents.core.contract import Outputs, StageOutputs, StateStore, StoreMemory, partition_of, row_datetime, run_hops
from agents.core.events import Order
from agents.core.settings import Settings, check, load_env
from models.clocks import SourceClocks
from models.menu import (
    DaySummary,
    MenuCalendar,
    MenuConfig,
    PairWindow,
    ScopeCategory,
    ScopeDayResult,
    apply_order,
    close_scope_day,
    next_day,
    order_expired,
)

USE_CASE = "menu"
BY_STORE = "spcwatch.menu.by-store"
CHAIN = "spcwatch.menu.chain"
CHAIN_KEY = "chain"
CHAIN_SCOPE = "chain"
SWEEP_SECONDS = 21600.0  # forget final orders at most every 6 hours of event time
HEARTBEAT_SECONDS = 900.0  # an order partition re-sends its clock to a store it has been quiet to for this long
CHAIN_CLOCK_SECONDS = 60.0  # ... and to the chain each time it has moved on by this much
NAME_CHARS = 255


@dataclass(frozen=True, slots=True)
class MenuSettings(MenuConfig):
    """``SPCWATCH_MENU_*``: the model's config and the processor's own fields."""

    idle_partition_seconds: float = 120.0
    runbook_url: str = ""

    def validate(self) -> None:
        MenuConfig.validate(self)  # (no zero-argument super() in a slotted dataclass)
        check(self.idle_partition_seconds >= 0, "SPCWATCH_MENU_IDLE_PARTITION_SECONDS",
              "must be >= 0 (0: wait for every partition, however long)")


@dataclass(slots=True)
class _Clocks:
    """Memory of one state store (partition): its order clock and its sources' clocks (as agents/store.py)."""

    src: int
    n: int
    stores: SourceClocks
    chain: SourceClocks
    wm: float = -math.inf
    swept: float = 0.0
    known: set[str] | None = None  # store heads of this partition (None: scan first)
    sent: dict[str, float] = field(default_factory=dict)
    chain_sent: float = -math.inf
    joined: set[str] = field(default_factory=set)

    def stamp(self) -> dict[str, Any]:
        return {"src": self.src, "n": self.n, "wm": self.wm}


def _f(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


class MenuProcessor:
    use_case = USE_CASE
    topics = ("orders",)
    internal_topics = (BY_STORE, CHAIN)
    tick_seconds = 1.0

    def __init__(self, settings: MenuSettings | None = None, partitions: int = 1,
                 wall: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings or MenuSettings()
        self.cfg: MenuConfig = self.settings  # what the model reads
        self.cal = MenuCalendar(self.cfg)
        self.partitions = partitions
        self._wall = wall
        self._mem: StoreMemory[_Clocks] = StoreMemory(self._new_clocks)

    @classmethod
    def from_settings(cls, settings: Settings) -> MenuProcessor:
        return cls(load_env(MenuSettings, "SPCWATCH_MENU_"), partitions=settings.partitions)

    def _new_clocks(self, store: StateStore) -> _Clocks:
        partition = partition_of(store)
        src, n = (0, 1) if partition is None else (partition, self.partitions)
        now = self._wall()
        return _Clocks(src, n, SourceClocks(now), SourceClocks(now))

    def key(self, topic: str, event: Any) -> str:
        if topic == "orders":
            return event.order_id
        return event["store"] if topic == BY_STORE else CHAIN_KEY

    # -- replay: every hop in memory -------------------------------------------------
    def process(self, store: StateStore, topic: str, events: Sequence[Any]) -> Outputs:
        now = max([store.get("wm") or 0.0, *(e.ts for e in events)])
        store["wm"] = now
        return run_hops(self.step(store, topic, events, now), lambda t, v: self.step(store, t, [v], now))

    def tick(self, store: StateStore, now: float) -> Outputs:
        return run_hops(self.step_tick(store, now), lambda t, v: self.step(store, t, [v], now))

    # -- one hop ------------------------------------------------------------------------
    def step(self, store: StateStore, topic: str, events: Sequence[Any], now: float) -> StageOutputs:
        out = StageOutputs()
        if topic == "orders":
            for order in events:
                self._order(store, order, out)
        elif topic == BY_STORE:
            for msg in events:
                self._store_msg(store, msg, out)
        elif topic == CHAIN:
            for msg in events:
                self._chain_msg(store, msg, out)
        return out

    def step_tick(self, store: StateStore, now: float) -> StageOutputs:
        out = StageOutputs()
        mem = self._mem(store)
        sweep = now - mem.swept >= SWEEP_SECONDS
        if sweep or mem.known is None:
            mem.swept = now
            keys = list(store.keys())
            mem.known = {k for k in keys if k.startswith("ms:")}
            if sweep and math.isfinite(mem.wm):
                for k in keys:
                    if k.startswith("o:"):
                        entry = store.get(k)
                        if entry is not None and order_expired(entry, self.cfg, mem.wm):
                            del store[k]
        self._heartbeats(mem, out)
        clock = mem.stores.low(self.settings.idle_partition_seconds, self._wall())
        if math.isfinite(clock):
            for key in list(mem.known):
                head = store.get(key)
                if head is not None and head["due"] is not None and head["due"] <= clock:
                    self._close_store_days(store, key[3:], head, clock, out)
        return out

    def _heartbeats(self, mem: _Clocks, out: StageOutputs) -> None:
        if not math.isfinite(mem.wm):
            return
        stamp = mem.stamp()
        for s, last in mem.sent.items():
            if mem.wm - last >= HEARTBEAT_SECONDS:
                out.forward.append((BY_STORE, s, {"t": "clock", "store": s, "ts": mem.wm, **stamp}))
                mem.sent[s] = mem.wm
        if mem.wm - mem.chain_sent >= CHAIN_CLOCK_SECONDS:
            out.forward.append((CHAIN, CHAIN_KEY, {"t": "clock", "ts": mem.wm, **stamp}))
            mem.chain_sent = mem.wm

    # -- stage 1: orders ----------------------------------------------------------------
    def _order(self, store: StateStore, order: Order, out: StageOutputs) -> None:
        key = "o:" + order.order_id
        mem = self._mem(store)
        mem.wm = max(mem.wm, order.ts)
        step = apply_order(store.get(key), order, self.cal, mem.wm)
        if step.entry is not None:
            store[key] = step.entry
        if step.outcome == "too_late":
            entry = store.get(key)
            day = entry[1] if entry else self.cal.local_day(order.store_id, order.ts)
            out.dead.append((order, f"order {order.order_id} of {order.store_id} {day} arrived after the menu "
                                    f"day closed (local midnight + SPCWATCH_MENU_GRACE_SECONDS)"))
            return
        if step.forward is None:
            return
        s = step.forward["store"]
        if s not in mem.joined:
            mem.joined.add(s)
            out.forward.append((CHAIN, CHAIN_KEY, {"t": "join", "store": s, "day": step.forward["day"],
                                                   "ts": order.ts, **mem.stamp()}))
        mem.sent[s] = mem.wm
        out.forward.append((BY_STORE, s, dict(step.forward, **mem.stamp())))

    # -- stage 2: stores ------------------------------------------------------------------
    def _store_msg(self, store: StateStore, msg: dict, out: StageOutputs) -> None:
        mem, wall = self._mem(store), self._wall()
        if "src" in msg:
            mem.stores.see(msg["src"], msg["n"], msg["wm"], wall)
        clock = mem.stores.low(self.settings.idle_partition_seconds, wall)
        key = "ms:" + msg["store"]
        head = store.get(key)
        if head is None:
            if msg["t"] == "clock":
                return
            head = {"next": msg["day"], "due": self.cal.close_ts(msg["store"], msg["day"]), "open": {}, "late": 0,
                    "cats": []}
            if mem.known is not None:
                mem.known.add(key)
        if msg["t"] == "order":
            if msg["day"] < head["next"]:
                head["late"] += 1  # its day is closed (only possible when a partition was idle)
            else:
                head["open"].setdefault(msg["day"], {})[msg["id"]] = msg["c"]
        elif head["due"] is None or head["due"] > clock:
            return  # a clock with nothing due: no state to rewrite
        self._close_store_days(store, msg["store"], head, clock, out)

    def _close_store_days(self, store: StateStore, sid: str, head: dict, clock: float, out: StageOutputs) -> None:
        while head["due"] is not None and head["due"] <= clock:
            day = head["next"]
            orders = head["open"].pop(day, {})
            summary = DaySummary.from_orders(orders.values(), self.cfg.max_pairs_per_day)
            result = self._close_scope(store, sid, day, summary, head, self.cfg.alert_scopes == "all", out)
            self._rows(sid, day, head["due"], summary, result, head["late"], len(orders), out)
            out.forward.append((CHAIN, CHAIN_KEY, {"t": "day", "store": sid, "day": day, "s": summary.to_state(),
                                                   "ts": head["due"]}))
            head["next"] = next_day(day)
            head["due"] = self.cal.close_ts(sid, head["next"])
            head["late"] = 0
        store["ms:" + sid] = head

    def _close_scope(self, store: StateStore, scope: str, day: str, summary: DaySummary, head: dict,
                     alerts: bool, out: StageOutputs) -> ScopeDayResult:
        """Fold ``day`` into ``scope``'s state keys and evaluate it; alerts (if on for the scope) into ``out``."""
        cats = {c: ScopeCategory(store.get(f"mi:{scope}|{c}")) for c in head["cats"]}
        retention = self.cfg.retention_days
        days = {}
        for k in range(1, retention):
            d = next_day(day, -k)
            v = store.get(f"mp:{scope}|{d}")
            if v is not None:
                days[d] = v
        pairs = PairWindow({"d": days})
        result = close_scope_day(day, summary, cats, pairs, self.cfg, alerts)
        head["cats"] = sorted(cats)
        for c, sc in cats.items():
            store[f"mi:{scope}|{c}"] = sc.to_state()
        store[f"mp:{scope}|{day}"] = pairs.days[day]
        old = f"mp:{scope}|{next_day(day, -retention)}"
        if old in store:
            del store[old]
        for ev in result.events:
            out.alerts.append(self._alert(scope, ev))
        return result

    # -- stage 3: chain -----------------------------------------------------------------
    def _chain_msg(self, store: StateStore, msg: dict, out: StageOutputs) -> None:
        mem, wall = self._mem(store), self._wall()
        if "src" in msg:
            mem.chain.see(msg["src"], msg["n"], msg["wm"], wall)
        clock = mem.chain.low(self.settings.idle_partition_seconds, wall)
        head = store.get("mc") or {"joined": {}, "next": None, "late": 0, "cats": []}
        t = msg["t"]
        if t == "join":
            s, day = msg["store"], msg["day"]
            if head["next"] is not None and day < head["next"]:
                day = head["next"]  # the chain has decided the days before: the store counts from here
            if s not in head["joined"] or day < head["joined"][s]:
                head["joined"][s] = day
            if head["next"] is None or day < head["next"]:
                head["next"] = day
        elif t == "day":
            day = msg["day"]
            if head["next"] is None or day < head["next"]:
                head["late"] += 1
            else:
                key = f"md:{day}"
                part = store.get(key) or {"stores": [], "s": DaySummary().to_state()}
                if msg["store"] not in part["stores"]:  # a redelivered summary is the same summary
                    merged = DaySummary.from_state(part["s"])
                    merged.merge(DaySummary.from_state(msg["s"]))
                    part = {"stores": sorted([*part["stores"], msg["store"]]), "s": merged.to_state()}
                    store[key] = part
        while head["next"] is not None and self.cal.close_ts(CHAIN_SCOPE, head["next"]) <= clock:
            day = head["next"]
            part = store.get(f"md:{day}") or {"stores": [], "s": DaySummary().to_state()}
            expected = {s for s, first in head["joined"].items() if first <= day}
            if not expected <= set(part["stores"]):
                break  # a store's summary of the day is still on its way
            summary = DaySummary.from_state(part["s"])
            result = self._close_scope(store, CHAIN_SCOPE, day, summary, head, True, out)
            self._rows(CHAIN_SCOPE, day, self.cal.close_ts(CHAIN_SCOPE, day), summary, result, head["late"],
                       summary.baskets, out)
            head["late"] = 0
            if f"md:{day}" in store:
                del store[f"md:{day}"]
            head["next"] = next_day(day)
        store["mc"] = head

    # -- outputs --------------------------------------------------------------------------
    def _rows(self, scope: str, day: str, closed: float, s: DaySummary, r: ScopeDayResult, late: int, orders: int,
              out: StageOutputs) -> None:
        bday, closed_at = date.fromisoformat(day), row_datetime(closed)
        for it in r.day_items:
            out.add_row("menu_item_daily", {
                "scope": scope, "business_date": bday, "spu": it["spu"], "category": it["category"],
                "name": it["name"][:NAME_CHARS], "units": it["units"], "baskets": it["baskets"],
                "revenue": it["revenue"], "list_revenue": it["list_revenue"], "discount": it["discount"],
                "cost": it["cost"], "cm_per_unit": it["cm_per_unit"], "list_cm_per_unit": it["list_cm_per_unit"],
                "cm_pct": it["cm_pct"], "discount_depth": it["discount_depth"]})
        for w, cats in r.matrix.items():
            for cat, m in cats.items():
                for it in m["items"]:
                    out.add_row("menu_matrix", {
                        "scope": scope, "window_days": w, "business_date": bday, "category": cat, "spu": it["spu"],
                        "name": it["name"][:NAME_CHARS], "units": it["units"], "revenue": it["revenue"],
                        "mm_pct": _f(it["mm_pct"]), "cm": _f(it["cm"]), "list_cm": it["list_cm_per_unit"],
                        "cm_pct": it["cm_pct"], "discount_depth": it["discount_depth"],
                        "popularity": it["popularity"], "profitability": it["profitability"],
                        "menu_class": it["class"],
                        "wow_growth": it["wow_growth"], "cmgr": it["cmgr"],
                        "cm_benchmark_value": _f(m["cm_benchmark_value"]),
                        "popularity_threshold_mm_pct": _f(m["popularity_threshold_mm_pct"]),
                        "n_items": m["n_items"], "days_covered": m["days_covered"]})
        for w, pairs in r.pairs.items():
            for p in pairs:
                out.add_row("menu_pairs", {
                    "scope": scope, "window_days": w, "business_date": bday, "pair_rank": p["rank"], **{
                        k: (_f(v) if isinstance(v, Fraction) else v) for k, v in p.items() if k != "rank"}})
        out.add_row("menu_run_log", {
            "scope": scope, "business_date": bday, "closed_at": closed_at, "orders": orders, "baskets": s.baskets,
            "units": float(sum(v[0] for items in s.items.values() for v in items.values())),
            "late_ignored": late, "pairs_counted": len(s.pairs), "pairs_dropped_max": s.dropped})

    def _alert(self, scope: str, ev: dict) -> Alert:
        entity = {"category": ev["category"], "spu": ev["spu"]}
        if scope != CHAIN_SCOPE:
            entity["store_id"] = scope
        where = "chain" if scope == CHAIN_SCOPE else f"store {scope}"
        label = f"{ev['name']} ({ev['spu']}, {ev['category']}, {where})"
        starts = self.cal.day_start(scope, ev["start"])
        now = self.cal.close_ts(scope, ev["day"])
        aid = alert_id(USE_CASE, ev["rule"], scope, ev["category"], ev["spu"], ev["start"])
        it = ev.get("item") or {}
        w = self.cfg.primary_window
        if ev["rule"] == "MENU_CLASS_CHANGE":
            if ev["kind"] == "firing":
                summary = (f"{label} moved {ev['from']} -> {ev['to']} on its {w}-day window and held it "
                           f"{self.cfg.hold_days} days: CM {_money(it.get('cm'))} a unit against the category "
                           f"benchmark {_money(ev['benchmark'])}; menu mix {_pct1(it.get('mm_pct'))} against the "
                           f"popularity line {_pct1(ev['threshold'])}")
            else:
                summary = f"{label} is now {ev['now']} (was {ev['to']} since {ev['start']}, {ev['from']} before)"
            severity = ev["severity"]
            value, center = _f(it.get("cm")), _f(ev["benchmark"])
            lower = upper = z = None
            rules: tuple[str, ...] = ()
        else:
            v = ev["verdict"]
            what = "realised CM %" if ev["rule"] == "MARGIN_EROSION" else "discount depth"
            sign = -1 if ev["rule"] == "MARGIN_EROSION" else 1
            value, center, sigma, z = v["value"], v["center"], v["sigma"], v["z"]
            lower = center - 3 * sigma if center is not None else None
            upper = center + 3 * sigma if center is not None else None
            if ev["kind"] == "firing":
                move = "fell" if sign < 0 else "rose"
                summary = (f"{label}: daily {what} {move} to {_pct1(value, 100)} against its "
                           f"{self.cfg.chart_window}-day centre {_pct1(center, 100)} ({', '.join(v['rules'])}; "
                           f"z {z:+.1f})")
            else:
                summary = (f"{label}: daily {what} no longer signals ({_pct1(value, 100)}, centre "
                           f"{_pct1(center, 100)}): back in control, or a lasting change has become the baseline")
            severity = ev["severity"]
            rules = tuple(v["rules"]) if ev["kind"] == "firing" else ()
        return Alert(
            alert_id=aid, status=ev["kind"], severity=severity, use_case=USE_CASE, rule=ev["rule"], entity=entity,
            starts_at=starts, summary=summary, rules=rules, value=_f(value), center=_f(center), lower=_f(lower),
            upper=_f(upper), zscore=_f(z), ends_at=now if ev["kind"] == "resolved" else None,
            runbook_url=self.settings.runbook_url or None, event_ts=now)


def _money(x: Any) -> str:
    return "n/a" if x is None else f"${float(x):.2f}"


def _pct1(x: Any, scale: float = 1.0) -> str:
    return "n/a" if x is None else f"{float(x) * scale:.1f}%"
