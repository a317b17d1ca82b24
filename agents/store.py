"""UC-OP-02 store performance: orders in, daily metrics, SPC, peer comparison and alerts out.

The logic is in :mod:`models.store` (three stages keyed by order, store and
chain). This module is the :class:`~agents.core.contract.Processor`: it
translates the stages' results into contract alerts and table rows, and
routes each stage's output to the next one:

* in the worker, one hop at a time (:meth:`StoreProcessor.step`), through two
  internal topics the runner creates from :attr:`StoreProcessor.internal_topics`:
  ``spcwatch.store.by-store`` (keyed by ``store_id``: the repartition) and
  ``spcwatch.store.chain`` (every message keyed ``chain``: one place sees all
  stores);
* in ``spcwatch replay`` (and tests), all hops in memory
  (:meth:`StoreProcessor.process`), calling the same :meth:`step`.

State keys are prefixed by stage (``o:`` order, ``s:`` store, ``c:`` chain) and
live in the partition of the message that carries them.

Time: each ``orders`` partition stamps what it forwards with its clock (and
sends heartbeats and store joins from its tick), and the store and chain stages
act at the low watermark of those clocks (:class:`models.clocks.SourceClocks`),
so a backlog caught up unevenly by several partitions gives the replay's
result. The clocks live in this object's memory, per state store (partition),
and are rebuilt after a restart or rebalance (docs/store.md, "Time").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, ClassVar

from agents.core.alerts import Alert
from agents.core.contract import Outputs, StageOutputs, StateStore, StoreMemory, partition_of, row_datetime, run_hops
from agents.core.events import Order
from agents.core.settings import Env, Settings, check, load_env, pairs, upper_list
from models.rules import WESTERN_ELECTRIC
from models.store import (
    METRICS,
    RATE_METRICS,
    Calendar,
    ChainOut,
    ChainState,
    SourceClocks,
    StoreConfig,
    StoreOut,
    StoreState,
    apply_order,
    order_expired,
)

USE_CASE = "store"
BY_STORE = "spcwatch.store.by-store"
CHAIN = "spcwatch.store.chain"
CHAIN_KEY = "chain"
SWEEP_SECONDS = 21600.0  # forget expired orders at most every 6 hours of event time (housekeeping only)
HEARTBEAT_SECONDS = 900.0  # an order partition re-sends its clock to a store it has been quiet for this long
CHAIN_CLOCK_SECONDS = 60.0  # ... and to the chain each time it has moved on by this much (at most once a tick)


def _closed_days(raw: str) -> tuple[tuple[str, str], ...]:
    """``[STORE:]YYYY-MM-DD,...`` as the model's (store or ``*``, day) pairs."""
    out = []
    for item in (part.strip() for part in raw.split(",") if part.strip()):
        store, _, day = item.rpartition(":")
        date.fromisoformat(day)  # ValueError: one line naming the variable
        out.append((store or "*", day))
    return tuple(out)


def _seasonality(raw: str) -> str | None:
    if raw not in ("none", "day_of_week"):
        raise ValueError(f"got {raw!r}")
    return None if raw == "none" else raw


@dataclass(frozen=True, slots=True)
class StoreSettings(StoreConfig):
    """``SPCWATCH_STORE_*`` (docs/store.md): the model's config and the processor's own fields."""

    ENV: ClassVar[Mapping[str, Env]] = {
        "store_timezones": Env(pairs, names=("TIMEZONES",), form="STORE=Area/City,..."),
        "closed_days": Env(_closed_days, form="[STORE:]YYYY-MM-DD,..."),
        "peer_groups": Env(pairs, form="STORE=group,..."),
        "seasonality": Env(_seasonality, form="none or day_of_week"),
        "test_currencies": Env(upper_list),
    }

    idle_partition_seconds: float = 120.0
    runbook_url: str = ""

    def validate(self) -> None:
        p = "SPCWATCH_STORE_"
        try:
            Calendar(self)
        except Exception as exc:  # unknown time zone: one line naming the variable
            check(False, p + "TIMEZONE", f"is invalid: {exc}")
        check(self.grace_seconds >= 0, p + "GRACE_SECONDS", "must be >= 0")
        check(self.max_lateness_seconds >= 0, p + "MAX_LATENESS_SECONDS", "must be >= 0")
        check(7 <= self.window_days <= 366, p + "WINDOW_DAYS", f"must be 7-366, got {self.window_days}")
        unknown = [r for r in self.rules if r not in (*WESTERN_ELECTRIC, "CUSUM")]
        check(bool(self.rules) and not unknown, p + "RULES",
              f"must be a comma-separated subset of WE1,WE2,WE3,WE4,CUSUM, got {','.join(self.rules)!r}")
        check(self.cusum_h > 0, p + "CUSUM_H", "must be > 0")
        bad = [m for m in self.cusum_metrics if m not in METRICS or m in RATE_METRICS]
        check(not bad, p + "CUSUM_METRICS", f"must be daily metrics of {', '.join(METRICS[:5])}, got {','.join(bad)!r}")
        check(self.min_samples >= 2, p + "MIN_SAMPLES", "must be >= 2")
        check(self.resolve_after >= 1 and self.cooldown >= 0, p + "RESOLVE_AFTER", "must be >= 1 (COOLDOWN >= 0)")
        check(self.peer_z > 0, p + "PEER_Z", "must be > 0")
        check(0 < self.chain_fraction <= 1, p + "CHAIN_FRACTION", "must be in (0, 1]")
        check(self.chain_min_stores >= 2, p + "CHAIN_MIN_STORES", "must be >= 2")
        check(1 <= self.intraday_slot_minutes <= 240 and 1440 % self.intraday_slot_minutes == 0,
              p + "INTRADAY_SLOT_MINUTES", "must divide a day (e.g. 15)")
        check(self.intraday_window_minutes >= self.intraday_slot_minutes, p + "INTRADAY_WINDOW_MINUTES",
              "must be >= INTRADAY_SLOT_MINUTES")
        check(self.intraday_min_days >= 1, p + "INTRADAY_MIN_DAYS", "must be >= 1")
        check(0 <= self.intraday_min_remaining < 1, p + "INTRADAY_MIN_REMAINING", "must be in [0, 1)")
        check(self.idle_partition_seconds >= 0, p + "IDLE_PARTITION_SECONDS",
              "must be >= 0 (0: wait for every partition, however long)")


def _dated(row: dict) -> dict:
    return dict(row, business_date=date.fromisoformat(row["business_date"]))



@dataclass(slots=True)
class _Clocks:
    """Memory of one state store (one partition): its order-stage clock and what it knows of the sources.

    Never persisted: after a restart or a rebalance it is rebuilt from the next messages, and until every
    source has been heard from again the store and chain stages simply wait (nothing is decided early)."""

    src: int  # this partition as an order source (0 in replay)
    n: int  # number of order sources (partitions of ``orders``; 1 in replay)
    stores: SourceClocks  # as seen by this partition's store stage
    chain: SourceClocks  # as seen by the chain stage (if it is here)
    wm: float = -math.inf  # newest order time processed by this partition's order stage
    swept: float = 0.0  # event time of the last full key scan
    known: set[str] | None = None  # store-stage keys of this partition (None: scan first)
    sent: dict[str, float] = field(default_factory=dict)  # store -> clock last forwarded to it
    chain_sent: float = -math.inf  # clock last sent to the chain
    joined: set[str] = field(default_factory=set)  # stores announced to the chain

    def stamp(self) -> dict[str, Any]:
        return {"src": self.src, "n": self.n, "wm": self.wm}


class StoreProcessor:
    use_case = USE_CASE
    topics = ("orders",)
    internal_topics = (BY_STORE, CHAIN)
    tick_seconds = 1.0

    def __init__(self, settings: StoreSettings | None = None, partitions: int = 1,
                 wall: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings or StoreSettings()
        self.cal = Calendar(self.settings)
        self.partitions = partitions  # of the orders topic: the order sources the later stages wait for
        self._wall = wall  # wall clock, only to tell an idle order partition (see SourceClocks)
        # Caches per state store (never change outputs): last sweep of expired orders, store keys.
        self._mem: StoreMemory[_Clocks] = StoreMemory(self._new_clocks)

    @classmethod
    def from_settings(cls, settings: Settings) -> StoreProcessor:
        return cls(load_env(StoreSettings, "SPCWATCH_STORE_"), partitions=settings.partitions)

    def _new_clocks(self, store: StateStore) -> _Clocks:
        """The clocks of ``store``'s partition (memory; a new store object starts afresh, as after a restart)."""
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
        return self._inline(store, self.step(store, topic, events, now), now)

    def tick(self, store: StateStore, now: float) -> Outputs:
        return self._inline(store, self.step_tick(store, now), now)

    def _inline(self, store: StateStore, first: StageOutputs, now: float) -> Outputs:
        return run_hops(first, lambda topic, value: self.step(store, topic, [value], now))

    # -- one hop (the worker calls these per topic) ---------------------------------------
    def step(self, store: StateStore, topic: str, events: Sequence[Any], now: float) -> StageOutputs:
        out = StageOutputs()
        if topic == "orders":
            for order in events:
                self._order(store, order, now, out)
        elif topic == BY_STORE:
            for msg in events:
                self._store_msg(store, msg, out)
        elif topic == CHAIN:
            key = "c:" + CHAIN_KEY
            raw = store.get(key)
            chain = ChainState.from_state(raw, self.cal) if raw else ChainState(self.cal)
            clocks = self._mem(store).chain
            idle, wall = self.settings.idle_partition_seconds, self._wall()
            for msg in events:
                if "src" in msg:
                    clocks.see(msg["src"], msg["n"], msg["wm"], wall)
                self._chain_out(chain.apply(msg, clocks.low(idle, wall)), out)
            store[key] = chain.to_state()
        return out

    def step_tick(self, store: StateStore, now: float) -> StageOutputs:
        out = StageOutputs()
        mem = self._mem(store)
        sweep = now - mem.swept >= SWEEP_SECONDS
        known = mem.known
        if sweep or known is None:
            mem.swept = now
            keys = list(store.keys())
            known = mem.known = {k for k in keys if k.startswith("s:")}
        else:
            keys = list(known)
        self._heartbeats(mem, out)
        # The store stage's clock is the low watermark of the order sources as seen on this partition:
        # every order up to it has arrived, so a day (also a silent store's) closes complete.
        clock = mem.stores.low(self.settings.idle_partition_seconds, self._wall())
        states = {k: store.get(k) for k in keys if k.startswith("s:")} if math.isfinite(clock) else {}
        for key in keys:
            if key.startswith("s:"):
                raw = states.get(key)
                if raw is None or raw["due"] is None or raw["due"] > clock:
                    continue  # nothing due for this store yet
                st = StoreState.from_state(raw, self.cal)
                self._store_out(st, st.advance(clock), out)
                store[key] = st.to_state()
            elif sweep and key.startswith("o:") and math.isfinite(mem.wm):
                entry = store.get(key)
                if entry is not None and order_expired(entry, self.cal, mem.wm):
                    del store[key]
        return out

    def _heartbeats(self, mem: _Clocks, out: StageOutputs) -> None:
        """This order partition's clock to the chain, and to the stores it has been quiet to for a while.

        Contributions carry the clock already; a heartbeat is what lets a store stage that gets nothing from
        this partition (no orders of its stores here lately) move on."""
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
    def _order(self, store: StateStore, order: Order, now: float, out: StageOutputs) -> None:
        key = "o:" + order.order_id
        mem = self._mem(store)
        mem.wm = max(mem.wm, order.ts)
        # Lateness is judged against this partition's own order clock: the runner's ``now`` also moves with the
        # internal topics, which carry other (faster) order partitions' times when a backlog is caught up.
        step = apply_order(store.get(key), order, self.cal, mem.wm)
        if step.entry is not None:
            store[key] = step.entry
        if step.forward is not None:
            s, day = step.forward["store"], step.forward["day"]
            msg = dict(step.forward, **mem.stamp())
        elif step.outcome == "too_late":
            entry = store.get(key)
            s, day = (entry[0], entry[1]) if entry else (order.store_id, self.cal.local_day(order.store_id, order.ts))
            out.dead.append((order, f"order {order.order_id} of {s} {day} arrived after the day was final "
                                    f"(close + SPCWATCH_STORE_MAX_LATENESS_SECONDS)"))
            msg = {"t": "late", "store": s, "day": day, "ts": order.ts, **mem.stamp()}
        else:
            return
        if msg["t"] == "order" and s not in mem.joined:
            mem.joined.add(s)
            # The chain must know every store before it decides a day: the join goes straight to it, with this
            # partition's clock, so once the chain's low watermark passes a day no unknown store can appear in it.
            out.forward.append((CHAIN, CHAIN_KEY, {"t": "join", "store": s, "day": day, "ts": order.ts,
                                                   **mem.stamp()}))
        mem.sent[s] = mem.wm
        out.forward.append((BY_STORE, s, msg))

    # -- stage 2: stores ------------------------------------------------------------------
    def _store_msg(self, store: StateStore, msg: dict, out: StageOutputs) -> None:
        clocks, wall = self._mem(store).stores, self._wall()
        if "src" in msg:
            clocks.see(msg["src"], msg["n"], msg["wm"], wall)
        clock = clocks.low(self.settings.idle_partition_seconds, wall)
        key = "s:" + msg["store"]
        raw = store.get(key)
        if raw is None:
            if msg["t"] == "clock":
                return  # a heartbeat for a store this partition does not hold (yet): the clock is what counts
            known_keys = self._mem(store).known
            if known_keys is not None:
                known_keys.add(key)
        st = StoreState.from_state(raw, self.cal) if raw else StoreState(msg["store"], self.cal)
        if msg["t"] == "late":
            st.counts["rejected"] += 1
            st.wm = max(st.wm, msg["ts"])
            result = st.advance(clock)
            result.rejected += 1
        elif msg["t"] == "clock":
            if raw["due"] is None or raw["due"] > clock:
                return  # nothing due: no state to rewrite
            result = st.advance(clock)
        else:
            result = st.apply(msg, clock)
        self._store_out(st, result, out)
        store[key] = st.to_state()

    def _store_out(self, st: StoreState, result: StoreOut, out: StageOutputs) -> None:
        for msg in result.chain:  # in order: a day's checks before its summary
            out.forward.append((CHAIN, CHAIN_KEY, msg))
        for s in result.summaries:
            closed_at = row_datetime(s["ts"])
            m = s["m"]
            out.add_row("store_daily_metrics", {
                "store_id": s["store"], "business_date": date.fromisoformat(s["day"]), **{k: m[k] for k in METRICS},
                "closed_day": s["closed"], "closed_at": closed_at})
            for metric, v in s["v"].items():
                out.add_row("store_control_limits", {
                    "store_id": s["store"], "business_date": date.fromisoformat(s["day"]), "metric": metric,
                    "status": v["st"],
                    "center": v["c"], "sigma": v["s"],
                    "lower": None if v["c"] is None else v["c"] - 3 * v["s"],
                    "upper": None if v["c"] is None else v["c"] + 3 * v["s"],
                    "window_days": self.settings.window_days, "seasonality": self.settings.seasonality or "none"})
            out.add_row("store_run_log", {
                "store_id": s["store"], "business_date": date.fromisoformat(s["day"]), "closed_at": closed_at,
                "orders_seen": len(st.days.get(s["day"], {})) if s["day"] in st.days else None,
                "late_amendments": st.counts["amended"], "rejected_late": st.counts["rejected"],
                "retired": s["retired"]})


    # -- stage 3: chain -----------------------------------------------------------------
    def _chain_out(self, result: ChainOut, out: StageOutputs) -> None:
        out.add_rows("store_peer_comparison", [_dated(r) for r in result.peer_rows])
        out.add_rows("store_anomaly_flags", [_dated(r) for r in result.flag_rows])
        for a in result.alerts:
            out.alerts.append(Alert(
                alert_id=a["id"], status=a["status"], severity=a["severity"], use_case=USE_CASE, rule=a["rule"],
                entity=a["entity"], starts_at=a["starts_at"], summary=a["summary"], rules=tuple(a["rules"]),
                value=a["value"], center=a["center"], lower=a["lower"], upper=a["upper"], zscore=a["z"],
                ends_at=a["ends_at"] if a["status"] == "resolved" else None,
                runbook_url=self.settings.runbook_url or None, event_ts=a["event_ts"]))
