"""UC-OP-02 store performance: orders in, daily metrics, SPC, peer comparison and alerts out.

The logic is in :mod:`models.store` (three stages keyed by order, store and
chain). This module is the :class:`~stream_app.usecase.Processor`: it
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
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from models.rules import WESTERN_ELECTRIC
from models.store import (
    METRICS,
    Calendar,
    ChainOut,
    ChainState,
    StoreConfig,
    StoreOut,
    StoreState,
    apply_order,
    order_expired,
)
from stream_app.alerts import Alert
from stream_app.events import Order
from stream_app.settings import Settings, check, load_env
from stream_app.usecase import Outputs, StateStore

USE_CASE = "store"
BY_STORE = "spcwatch.store.by-store"
CHAIN = "spcwatch.store.chain"
CHAIN_KEY = "chain"
SWEEP_SECONDS = 21600.0  # forget expired orders at most every 6 hours of event time (housekeeping only)


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """``SPCWATCH_STORE_*`` (documented in docs/store.md)."""

    timezone: str = "America/New_York"
    timezones: tuple[str, ...] = ()  # STORE=Area/City,...
    grace_seconds: float = 3600.0
    max_lateness_seconds: float = 86400.0
    window_days: int = 28
    seasonality: str = "day_of_week"
    rules: tuple[str, ...] = WESTERN_ELECTRIC
    min_samples: int = 10
    resolve_after: int = 3
    cooldown: int = 0
    protect_z: float = 3.0
    closed_days: tuple[str, ...] = ()  # [STORE:]YYYY-MM-DD,...
    peer_groups: tuple[str, ...] = ()  # STORE=group,...
    peer_z: float = 3.5
    chain_fraction: float = 0.5
    chain_min_stores: int = 3
    chain_wait_days: int = 7
    intraday_slot_minutes: int = 15
    intraday_window_minutes: int = 60
    intraday_min_days: int = 3
    runbook_url: str = ""

    def validate(self) -> None:
        p = "SPCWATCH_STORE_"
        try:
            Calendar(self.model_config())
        except Exception as exc:  # unknown time zone, bad date: one line naming the variable
            check(False, p + ("TIMEZONE" if "zone" in str(exc).lower() or "key" in str(exc).lower()
                              else "CLOSED_DAYS"), f"is invalid: {exc}")
        check(all("=" in t for t in self.timezones), p + "TIMEZONES", "must be STORE=Area/City,...")
        check(all("=" in g for g in self.peer_groups), p + "PEER_GROUPS", "must be STORE=group,...")
        check(self.grace_seconds >= 0, p + "GRACE_SECONDS", "must be >= 0")
        check(self.max_lateness_seconds >= 0, p + "MAX_LATENESS_SECONDS", "must be >= 0")
        check(7 <= self.window_days <= 366, p + "WINDOW_DAYS", f"must be 7-366, got {self.window_days}")
        check(self.seasonality in ("none", "day_of_week"), p + "SEASONALITY",
              f"must be none or day_of_week, got {self.seasonality!r}")
        unknown = [r for r in self.rules if r not in WESTERN_ELECTRIC]
        check(bool(self.rules) and not unknown, p + "RULES",
              f"must be a comma-separated subset of WE1,WE2,WE3,WE4, got {','.join(self.rules)!r}")
        check(self.min_samples >= 2, p + "MIN_SAMPLES", "must be >= 2")
        check(self.resolve_after >= 1 and self.cooldown >= 0, p + "RESOLVE_AFTER", "must be >= 1 (COOLDOWN >= 0)")
        check(self.peer_z > 0, p + "PEER_Z", "must be > 0")
        check(0 < self.chain_fraction <= 1, p + "CHAIN_FRACTION", "must be in (0, 1]")
        check(self.chain_min_stores >= 2, p + "CHAIN_MIN_STORES", "must be >= 2")
        check(self.chain_wait_days >= 1, p + "CHAIN_WAIT_DAYS", "must be >= 1")
        check(1 <= self.intraday_slot_minutes <= 240 and 1440 % self.intraday_slot_minutes == 0,
              p + "INTRADAY_SLOT_MINUTES", "must divide a day (e.g. 15)")
        check(self.intraday_window_minutes >= self.intraday_slot_minutes, p + "INTRADAY_WINDOW_MINUTES",
              "must be >= INTRADAY_SLOT_MINUTES")
        check(self.intraday_min_days >= 1, p + "INTRADAY_MIN_DAYS", "must be >= 1")

    def model_config(self) -> StoreConfig:
        closed = []
        for item in self.closed_days:
            store, _, day = item.rpartition(":")
            date.fromisoformat(day)
            closed.append((store or "*", day))
        return StoreConfig(
            timezone=self.timezone,
            store_timezones=tuple(tuple(t.split("=", 1)) for t in self.timezones if "=" in t),  # type: ignore[misc]
            grace_seconds=self.grace_seconds, max_lateness_seconds=self.max_lateness_seconds,
            window_days=self.window_days, seasonality=None if self.seasonality == "none" else self.seasonality,
            rules=self.rules, min_samples=self.min_samples, resolve_after=self.resolve_after, cooldown=self.cooldown,
            protect_z=self.protect_z, closed_days=tuple(closed),
            peer_groups=tuple(tuple(g.split("=", 1)) for g in self.peer_groups if "=" in g),  # type: ignore[misc]
            peer_z=self.peer_z, chain_fraction=self.chain_fraction, chain_min_stores=self.chain_min_stores,
            chain_wait_days=self.chain_wait_days,
            intraday_slot_minutes=self.intraday_slot_minutes, intraday_window_minutes=self.intraday_window_minutes,
            intraday_min_days=self.intraday_min_days,
        )


@dataclass(slots=True)
class StageOutputs(Outputs):
    """A hop's outputs: besides alerts and rows, messages for the next stage
    (``(topic, key, value)``) and input events to dead-letter (``(event, detail)``)."""

    forward: list[tuple[str, str, dict]] = field(default_factory=list)
    dead: list[tuple[Any, str]] = field(default_factory=list)


def _dated(row: dict) -> dict:
    return dict(row, business_date=date.fromisoformat(row["business_date"]))


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class StoreProcessor:
    use_case = USE_CASE
    topics = ("orders",)
    internal_topics = (BY_STORE, CHAIN)
    tick_seconds = 1.0

    def __init__(self, settings: StoreSettings | None = None) -> None:
        self.settings = settings or StoreSettings()
        self.cal = Calendar(self.settings.model_config())
        # Caches per state store (never change outputs): last sweep of expired orders, store keys.
        self._swept: dict[int, float] = {}
        self._stores: dict[int, set[str]] = {}

    @classmethod
    def from_settings(cls, _settings: Settings) -> StoreProcessor:
        return cls(load_env(StoreSettings, "SPCWATCH_STORE_"))

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
        out = Outputs(alerts=list(first.alerts), rows=dict(first.rows))
        queue = deque(first.forward)
        while queue:
            topic, _key, value = queue.popleft()
            hop = self.step(store, topic, [value], now)
            out.merge(hop)
            queue.extend(hop.forward)
        return out

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
            for msg in events:
                self._chain_out(chain.apply(msg), out)
            store[key] = chain.to_state()
        return out

    def step_tick(self, store: StateStore, now: float) -> StageOutputs:
        out = StageOutputs()
        sweep = now - self._swept.get(id(store), 0.0) >= SWEEP_SECONDS
        known = self._stores.get(id(store))
        if sweep or known is None:
            self._swept[id(store)] = now
            keys = list(store.keys())
            known = self._stores[id(store)] = {k for k in keys if k.startswith("s:")}
        else:
            keys = list(known)
        # The store stage's clock is the newest order time its own input has reached (in the worker the
        # order partitions run ahead of the repartition topic): a silent store's day closes once the
        # stores sharing its state partition have moved past the close.
        states = {k: store.get(k) for k in keys if k.startswith("s:")}
        clock = min(now, max((raw["wm"] for raw in states.values() if raw), default=0.0))
        for key in keys:
            if key.startswith("s:"):
                raw = states.get(key)
                if raw is None or raw["due"] is None or raw["due"] > clock:
                    continue  # nothing due for this store yet
                st = StoreState.from_state(raw, self.cal)
                self._store_out(st, st.advance(clock), out)
                store[key] = st.to_state()
            elif sweep and key.startswith("o:"):
                entry = store.get(key)
                if entry is not None and order_expired(entry, self.cal, now):
                    del store[key]
        return out

    # -- stage 1: orders ----------------------------------------------------------------
    def _order(self, store: StateStore, order: Order, now: float, out: StageOutputs) -> None:
        key = "o:" + order.order_id
        step = apply_order(store.get(key), order, self.cal, now)
        if step.entry is not None:
            store[key] = step.entry
        if step.forward is not None:
            out.forward.append((BY_STORE, step.forward["store"], step.forward))
        elif step.outcome == "too_late":
            entry = store.get(key)
            s, day = (entry[0], entry[1]) if entry else (order.store_id, self.cal.local_day(order.store_id, order.ts))
            out.dead.append((order, f"order {order.order_id} of {s} {day} arrived after the day was final "
                                    f"(close + SPCWATCH_STORE_MAX_LATENESS_SECONDS)"))
            out.forward.append((BY_STORE, s, {"t": "late", "store": s, "day": day, "ts": order.ts}))

    # -- stage 2: stores ------------------------------------------------------------------
    def _store_msg(self, store: StateStore, msg: dict, out: StageOutputs) -> None:
        key = "s:" + msg["store"]
        raw = store.get(key)
        st = StoreState.from_state(raw, self.cal) if raw else StoreState(msg["store"], self.cal)
        if raw is None:
            if id(store) in self._stores:
                self._stores[id(store)].add(key)
            if msg["t"] == "order":  # the chain waits for this store from its first day on
                out.forward.append((CHAIN, CHAIN_KEY, {"t": "join", "store": msg["store"], "day": msg["day"],
                                                       "ts": msg["ts"]}))
        if msg["t"] == "late":
            st.counts["rejected"] += 1
            st.wm = max(st.wm, msg["ts"])
            result = st.advance(st.wm)
            result.rejected += 1
        else:
            result = st.apply(msg)
        self._store_out(st, result, out)
        store[key] = st.to_state()

    def _store_out(self, st: StoreState, result: StoreOut, out: StageOutputs) -> None:
        for s in result.summaries:
            out.forward.append((CHAIN, CHAIN_KEY, s))
            closed_at = _dt(s["ts"])
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
                    "window_days": self.settings.window_days, "seasonality": self.settings.seasonality})
            out.add_row("store_run_log", {
                "store_id": s["store"], "business_date": date.fromisoformat(s["day"]), "closed_at": closed_at,
                "orders_seen": len(st.days.get(s["day"], {})) if s["day"] in st.days else None,
                "late_amendments": st.counts["amended"], "rejected_late": st.counts["rejected"],
                "retired": s["retired"]})
        for c in result.intraday:
            out.forward.append((CHAIN, CHAIN_KEY, c))

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
