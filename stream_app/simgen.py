"""Seeded, pure event generators for ``spcwatch simulate`` (no I/O).

Each domain is an iterator of :class:`SimEvent` in event-time order;
:func:`generate` merges the chosen domains with ``heapq.merge``. Randomness is
drawn per (entity, day) from generators seeded by ``(seed, entity, day)``, so a
day's data is the same whatever the start, the other domains or the scenarios:
scenarios *modify* the normal data, they never consume its random numbers.

The timeline: ``start`` (first event) ... ``t0`` (where pacing begins: "now"
in a live run) ... ``end``. Scenario windows are relative to ``t0`` so that the
interesting part happens while someone watches (see ``SCENARIOS``).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np

from stream_app import simmenu
from stream_app.simdata import (
    CLOSE_HOUR,
    DAY,
    HOURLY_ORDERS,
    OPEN_HOUR,
    TZ,
    WEEKDAY_ORDERS,
    Resource,
    Store,
    World,
    load_factor,
    local_date,
    local_midnight,
    rfc3339_local,
    rfc3339_utc,
)

HOUR = 3600.0
MINUTE = 60.0
DOMAINS = ("infra", "orders", "forecast")
DOMAIN_TOPICS = {"infra": ("metrics.samples",), "orders": ("orders", "payments", "ledger"),
                 "forecast": ("forecasts", "demand")}


class SimEvent(NamedTuple):
    """One message: event time, contract topic (no prefix), key, JSON-able value."""

    ts: float
    topic: str
    key: bytes
    value: dict[str, Any]


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True, slots=True)
class Expectation:
    """What spcwatch promises to flag for a scenario, with its default settings: checked by
    tests/stream_app/test_scenario_promises.py (stream_app/promises.py)."""

    use_case: str
    rules: tuple[str, ...]
    """Any of these fires for the entity; empty: the use case raises no alert for it at all."""
    entity: dict[str, str]
    note: str = ""
    within: float = DAY
    """Event time from the scenario's start to the first firing alert, at the latest."""
    history_days: float = 1.0
    """The least history before t0 the promise needs (--history-days; --infra-history-days for infra)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    domain: str
    summary: str
    start: float  # seconds relative to t0
    end: float | None  # relative to t0; None: until the end of the run
    expect: tuple[Expectation, ...]

    def window(self, t0: float) -> tuple[float, float]:
        return t0 + self.start, math.inf if self.end is None else t0 + self.end


RDS_TARGET = "aws-luckyus-salesorder-rw"
REDIS_TARGET = "luckyus-session-redis-001"
SILENT_HOST_INDEX = 17  # the 18th EC2 instance (a pos-sync host)
DECLINE_STORE, CLOSING_STORE, BIASED_STORE = "US00001", "US00005", "US00003"
CENTS_STORE, NZD_STORE, MISSING_LEDGER_STORE, DUPLICATE_STORE = "US00007", "US00004", "US00006", "US00008"


def silent_host_id(world: World) -> str:
    return [r for r in world.estate if r.resource_type == "ec2"][SILENT_HOST_INDEX].resource_id


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("revenue-decline", "orders",
             f"{DECLINE_STORE} (8th Ave) loses customers: daily orders fall steadily from t0+1d until revenue "
             "is 51% below normal at t0+11d, and stay there (the finding of the batch study).",
             DAY, None,
             (Expectation("store", ("CUSUM", "WE1"),
                          {"store_id": DECLINE_STORE, "metric": "net_revenue"},
                          "CUSUM (the slow decline's summed evidence) on net_revenue within about 8 "
                          "days of the start; WE1 as the drop deepens (the store's weekday charts judge "
                          "from their 31st day: 3 of each weekday, then 10 residuals; the default 30 days of "
                          "history and a day of the live part)",
                          within=8 * DAY, history_days=30),)),
    Scenario("store-closure", "orders",
             f"{CLOSING_STORE} (Union Square) closes mid-day: no orders from 12:00 local on the first business "
             "day at or after t0+30min (or at t0+30min if the store is open then) until the next morning.",
             30 * MINUTE, None,
             (Expectation("store", ("ABSENT", "INTRADAY"), {"store_id": CLOSING_STORE},
                          "the store stops reporting during opening hours; the day heads for an out-of-control "
                          "close (INTRADAY trusts a weekday's trajectory after 3 of them: 22 days of history)",
                          within=DAY + 12 * HOUR, history_days=22),)),
    Scenario("rds-cpu-runaway", "infra",
             f"A runaway query pins {RDS_TARGET} CPU at 95-99% (usually 15-40% over the day) from t0+10min "
             "for 2 hours; read latency triples.",
             10 * MINUTE, 130 * MINUTE,
             (Expectation("infra", ("WE1",), {"resource_id": RDS_TARGET, "metric": "CPUUtilization"},
                          "fires within one sample interval, resolves after the 2 hours",
                          within=20 * MINUTE),)),
    Scenario("redis-memory-leak", "infra",
             f"{REDIS_TARGET} leaks memory: DatabaseMemoryUsagePercentage drifts up ~8 points an hour from "
             "t0+5min (usually ~25%) to 100%; evictions start above 90% and the hit rate drops.",
             5 * MINUTE, None,
             (Expectation("infra", ("EXHAUSTION",),
                          {"resource_id": REDIS_TARGET, "metric": "DatabaseMemoryUsagePercentage"},
                          "warning within 2 hours (~35 %), critical about 4 hours before it is full",
                          within=3 * HOUR),
              Expectation("infra", ("WE1",), {"resource_id": REDIS_TARGET, "metric": "DatabaseMemoryUsagePercentage"},
                          "once the usage doubles (3-4 hours of event time)", within=5 * HOUR),
              Expectation("infra", ("WE1",), {"resource_id": REDIS_TARGET, "metric": "Evictions"},
                          "evictions are normally zero", within=10 * HOUR))),
    Scenario("host-silent", "infra",
             f"EC2 host #{SILENT_HOST_INDEX + 1} of the estate (a pos-sync instance) stops reporting at t0+15min.",
             15 * MINUTE, None,
             (Expectation("infra", ("ABSENT",), {"resource_id": "<the silent host>"},
                          "after the infra use case's absence timeout", within=HOUR),)),
    Scenario("cents-dollars", "orders",
             f"At {CENTS_STORE} a quarter of card payments report the amount in cents in a major-units field "
             "(\"amount\": \"1240\" for $12.40), from t0-1d.",
             -DAY, None,
             (Expectation("recon", ("RECON_UNIT_SCALE_MISMATCH",), {"store_id": CENTS_STORE},
                          "recon category unit_scale_mismatch, at the first store-day close (local midnight + "
                          "the 6-hour ledger window)", within=DAY + 12 * HOUR, history_days=2),)),
    Scenario("nzd-test-orders", "orders",
             f"Test orders in NZD (order ids T...) at {NZD_STORE} every ~20 minutes of opening hours, with their "
             "payments and ledger entries, from t0-1d.",
             -DAY, None,
             (Expectation("recon", (), {"store_id": NZD_STORE},
                          "counted as excluded_test_data, never matched, never an exception; store revenue "
                          "unaffected", history_days=2),
              Expectation("store", (), {"store_id": NZD_STORE},
                          "test orders are not the store's business: its revenue and order counts stay as they "
                          "were", history_days=30))),
    Scenario("missing-ledger", "orders",
             f"At {MISSING_LEDGER_STORE} 10% of paid orders never get their revenue ledger entry, from t0-1d.",
             -DAY, None,
             (Expectation("recon", ("RECON_MISSING_LEDGER",), {"store_id": MISSING_LEDGER_STORE},
                          "recon category missing_ledger after the ledger deadline, at the first store-day close",
                          within=DAY + 12 * HOUR, history_days=2),)),
    Scenario("duplicate-payments", "orders",
             f"At {DUPLICATE_STORE} 6% of payments are duplicated from t0-1d: a double capture (new payment id, "
             "same amount) or a re-send of the same payment id with an amended amount (a tip added).",
             -DAY, None,
             (Expectation("recon", ("RECON_OVERPAYMENT", "RECON_DUPLICATE"), {"store_id": DUPLICATE_STORE},
                          "overpayment for double captures, duplicate for redelivered ids, at the first "
                          "store-day close", within=DAY + 12 * HOUR, history_days=2),)),
    Scenario(simmenu.COST_SCENARIO, "orders",
             f"The supplier cost of {simmenu.COST_ITEM} ({simmenu.spu_of(simmenu.COST_ITEM)}, espresso), the chain's "
             f"star, rises to {simmenu.COST_FACTOR:.0%} of its list price from the first business day at or after "
             "t0-2d (late enough that make run's 17 days of history warm its chart first); price and popularity "
             "stay.",
             -2 * DAY, None,
             (Expectation("menu", ("MARGIN_EROSION",), {"category": "espresso",
                                                        "spu": simmenu.spu_of(simmenu.COST_ITEM)},
                          "the chain's daily realised CM % of the item falls out of control at the first close "
                          "(its chart judges after 14 baseline days: --history-days 16 or more; make run's 17)",
                          within=2 * DAY, history_days=16),
              Expectation("menu", ("MENU_CLASS_CHANGE",), {"category": "espresso",
                                                           "spu": simmenu.spu_of(simmenu.COST_ITEM)},
                          "star -> plowhorse (warning) once its 28-day CM is below the category's benchmark and "
                          "has held 3 closes (about 10 days); only when the 28-day window was full before the "
                          "move (21 days of history or more: the default 30, not make run's 17)",
                          within=12 * DAY, history_days=21))),
    Scenario(simmenu.CAMPAIGN_SCENARIO, "orders",
             f"A discount campaign: {simmenu.CAMPAIGN_ITEM} ({simmenu.spu_of(simmenu.CAMPAIGN_ITEM)}, espresso, a "
             f"puzzle) at {simmenu.CAMPAIGN_DISCOUNT:.0%} off every unit for the 7 days from t0-7d, which triples "
             "its share of orders.",
             -7 * DAY, 0.0,
             (Expectation("menu", ("DISCOUNT_DEPTH", "MARGIN_EROSION"),
                          {"category": "espresso", "spu": simmenu.spu_of(simmenu.CAMPAIGN_ITEM)},
                          "the chain's daily discount depth of the item out of control from the campaign's first "
                          "close (its realised CM % too; only when its chart is judging by t0-7d: --history-days 24 or "
                          "more, not make run's 17); resolves after the campaign",
                          within=2 * DAY, history_days=24),)),
    Scenario("biased-forecast", "forecast",
             f"{BIASED_STORE}'s forecasts over-forecast every SKU by 45% for dates from t0-10d.",
             -10 * DAY, None,
             (Expectation("forecast", ("TRACKING_SIGNAL", "MAPE_WARNING", "MAPE_CRITICAL"),
                          {"store_id": BIASED_STORE},
                          "bias tracking signal beyond its limit; MAPE above threshold",
                          within=10 * DAY, history_days=10),)),
)}


def resolve_scenarios(names: list[str] | None) -> tuple[str, ...]:
    """``["all"]`` means every scenario; unknown names raise ``ValueError``."""
    if not names:
        return ()
    if "all" in names:
        return tuple(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario {unknown[0]!r} (see --list)")
    return tuple(dict.fromkeys(names))


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SimConfig:
    """What to generate. Times are epoch seconds; ``end=None`` runs for ever."""

    t0: float
    start: float
    end: float | None = None
    seed: int = 42
    domains: tuple[str, ...] = DOMAINS
    scenarios: tuple[str, ...] = ()
    infra_interval: float = 300.0
    infra_start: float | None = None  # default: start
    world: World = field(default_factory=World)

    def active(self, name: str) -> bool:
        return name in self.scenarios

    def window(self, name: str) -> tuple[float, float]:
        return SCENARIOS[name].window(self.t0)

    @property
    def stop(self) -> float:
        return math.inf if self.end is None else self.end


def _rng(*parts: Any) -> random.Random:
    return random.Random(":".join(str(p) for p in parts))


# --------------------------------------------------------------------------- infrastructure


InfraHook = Callable[[str, float, float], float | None]  # (metric, ts, value) -> value, or None: no sample


def _infra_hooks(cfg: SimConfig) -> dict[str, list[InfraHook]]:
    hooks: dict[str, list[InfraHook]] = {}
    if cfg.active("rds-cpu-runaway"):
        lo, hi = cfg.window("rds-cpu-runaway")

        def runaway(metric: str, ts: float, value: float) -> float | None:
            if not lo <= ts < hi:
                return value
            if metric == "CPUUtilization":
                return round(95.0 + 4.0 * abs(math.sin(ts / 700.0)), 2)
            if metric == "ReadLatency":
                return value * 3.0
            return value

        hooks.setdefault(RDS_TARGET, []).append(runaway)
    if cfg.active("redis-memory-leak"):
        lo, _ = cfg.window("redis-memory-leak")

        def leak(metric: str, ts: float, value: float) -> float | None:
            if ts < lo:
                return value
            if metric not in ("DatabaseMemoryUsagePercentage", "Evictions", "CacheHitRate"):
                return value
            leaked = 8.0 * (ts - lo) / HOUR
            if metric == "DatabaseMemoryUsagePercentage":
                return round(min(100.0, value + leaked), 2)
            usage = min(100.0, 25.0 + leaked)  # the target's usual level is ~25%
            if metric == "Evictions":
                return float(int((usage - 90.0) * 40)) if usage > 90.0 else 0.0
            if metric == "CacheHitRate" and usage > 90.0:
                return round(value - (usage - 90.0) * 1.5, 2)
            return value

        hooks.setdefault(REDIS_TARGET, []).append(leak)
    if cfg.active("host-silent"):
        lo, _ = cfg.window("host-silent")
        hooks.setdefault(silent_host_id(cfg.world), []).append(
            lambda metric, ts, value: None if ts >= lo else value)
    return hooks


def _local_hours(day_start: float, interval: float) -> tuple[np.ndarray, np.ndarray]:
    """Local hour and weekday of every interval of a UTC day."""
    n = int(DAY // interval)
    hours = np.empty(n, dtype=np.int64)
    weekdays = np.empty(n, dtype=np.int64)
    for i in range(n):
        local = datetime.fromtimestamp(day_start + i * interval, TZ)
        hours[i], weekdays[i] = local.hour, local.weekday()
    return hours, weekdays


def _infra_day(cfg: SimConfig, index: int, resource: Resource, day: int, load: np.ndarray) -> list[list[float]]:
    """Values of every metric of one resource for every interval of one UTC day."""
    rng = np.random.default_rng([cfg.seed, 1, index, day])
    n = load.shape[0]
    # Occasional benign bumps: a deploy, a batch job; well under a doubling.
    bump = np.ones(n)
    for _ in range(rng.poisson(0.4)):
        begin = int(rng.integers(0, n))
        length = int(rng.integers(2, 10))
        bump[begin:begin + length] *= 1.0 + rng.uniform(0.1, 0.35)
    noise = rng.standard_normal((len(resource.metrics), n))
    out = []
    for m, spec in enumerate(resource.metrics):
        if spec.level == 0.0:
            out.append([0.0] * n)
            continue
        shape = load ** spec.load if spec.load >= 0 else (1.0 / load) ** (-spec.load)
        values = spec.level * shape * (bump if spec.load > 0 else 1.0) * (1.0 + spec.noise * noise[m])
        values = np.maximum(values, 0.0)
        if spec.cap is not None:
            values = np.minimum(values, spec.cap)
        values = np.round(values) if spec.integer else np.round(values, 4)
        out.append(values.tolist())
    return out


def infra_events(cfg: SimConfig) -> Iterator[SimEvent]:
    """One ``{"samples": [...]}`` message per resource per interval, keyed by ``resource_id``."""
    interval = cfg.infra_interval
    begin = cfg.start if cfg.infra_start is None else max(cfg.start, cfg.infra_start)
    t = math.ceil(begin / interval) * interval
    hooks = _infra_hooks(cfg)
    estate = cfg.world.estate
    current_day: int | None = None
    blocks: list[list[list[float]]] = []
    while t < cfg.stop:
        day = int(t // DAY)
        if day != current_day:
            hours, weekdays = _local_hours(day * DAY, interval)
            load = np.array([load_factor(int(h), int(w)) for h, w in zip(hours, weekdays, strict=True)])
            blocks = [_infra_day(cfg, i, r, day, load) for i, r in enumerate(estate)]
            current_day = day
        i = int((t - day * DAY) // interval)
        ts = rfc3339_utc(t)
        for r_index, resource in enumerate(estate):
            rid = resource.resource_id
            resource_hooks = hooks.get(rid)
            samples = []
            for m, spec in enumerate(resource.metrics):
                value: float | None = blocks[r_index][m][i]
                if resource_hooks:
                    for hook in resource_hooks:
                        value = hook(spec.name, t, value) if value is not None else None
                if value is None:
                    continue
                samples.append({"ts": ts, "source": resource.source, "resource_type": resource.resource_type,
                                "resource_id": rid, "metric": spec.name, "value": value,
                                "labels": resource.labels})
            if samples:
                yield SimEvent(t, "metrics.samples", rid.encode(), {"samples": samples})
        t += interval


# --------------------------------------------------------------------------- orders, payments, ledger


def _money(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    minor = abs(minor)
    return f"{sign}{minor // 100}.{minor % 100:02d}"


def _closure_start(cfg: SimConfig) -> float:
    """When the closing store shuts: t0+30min if open then, else 12:00 local on the next business day."""
    at = cfg.t0 + SCENARIOS["store-closure"].start
    local = datetime.fromtimestamp(at, TZ)
    if OPEN_HOUR + 1 <= local.hour < CLOSE_HOUR - 2:
        return at
    day = local.date() if local.hour < OPEN_HOUR + 1 else local.date() + timedelta(days=1)
    return local_midnight(day) + 12 * HOUR


def _decline_factor(cfg: SimConfig, ts: float) -> float:
    lo, _ = cfg.window("revenue-decline")
    if ts < lo:
        return 1.0
    return 1.0 - 0.51 * min(1.0, (ts - lo) / (10 * DAY))


class _OrderDay:
    """All events caused by one store's orders of one local day (some land on later days)."""

    def __init__(self, cfg: SimConfig, store_index: int, store: Store, day: date) -> None:
        self.cfg, self.store, self.day = cfg, store, day
        self.rng = _rng(cfg.seed, "orders", store.store_id, day.isoformat())
        # Scenario decisions draw from their own generator: the normal data never changes.
        self.srng = _rng(cfg.seed, "scenario", store.store_id, day.isoformat())
        self.drop = False
        self.events: list[SimEvent] = []
        midnight = local_midnight(day)
        self.menu = simmenu.MenuDay.build(cfg.world.menu, cfg, midnight + 12 * HOUR)  # the day's costs, campaigns
        count = store.orders_per_day * WEEKDAY_ORDERS[day.weekday()]
        if cfg.active("revenue-decline") and store.store_id == DECLINE_STORE:
            count *= _decline_factor(cfg, midnight + 12 * HOUR)
        n = _poisson(self.rng, count)
        hours = self.rng.choices(range(24), weights=HOURLY_ORDERS, k=n)
        times = sorted(midnight + h * HOUR + self.rng.random() * HOUR for h in hours)
        closed: tuple[float, float] | None = None
        if cfg.active("store-closure") and store.store_id == CLOSING_STORE:
            shut = _closure_start(cfg)
            closed = (shut, local_midnight(local_date(shut) + timedelta(days=1)) + OPEN_HOUR * HOUR)
        for seq, ts in enumerate(times):
            self.drop = closed is not None and closed[0] <= ts < closed[1]
            self._order(f"{day:%Y%m%d}{store_index + 1:02d}{seq:04d}", ts)
        self.drop = False
        if cfg.active("nzd-test-orders") and store.store_id == NZD_STORE:
            self._nzd_tests(midnight)

    def _order(self, order_id: str, ts: float, currency: str = "USD") -> None:
        rng, store = self.rng, self.store
        n_items = rng.choices((1, 2, 3, 4), weights=(72, 22, 5, 1))[0]
        items, total = [], 0
        menu = self.menu
        for i in menu.basket(rng, n_items):  # one uniform per item, as random.choices
            product = menu.products[i]
            qty = 1 if rng.random() < 0.9 else 2
            discount = 0  # per unit (the contract)
            if rng.random() < 0.75:  # app coupons are everywhere
                discount = round(product.price_minor * rng.choice((0.3, 0.4, 0.5, 0.6)))
            if menu.forced[i] is not None:  # a campaign's discount
                discount = round(product.price_minor * menu.forced[i])
            total += (product.price_minor - discount) * qty
            items.append(simmenu.item(product, menu.costs[i], qty, discount, _money))
        channel = rng.choices(("app", "pos", "delivery"), weights=(70, 20, 10))[0]
        roll = rng.random()
        status = "cancelled" if roll < 0.02 else "paid"
        refunded = 0.02 <= roll < 0.035
        base = {"order_id": order_id, "store_id": store.store_id, "total": _money(total),
                "currency": currency, "channel": channel, "items": items}
        self._emit(ts, "orders", order_id, {"event_id": f"o-{order_id}", **base, "ts": rfc3339_local(ts),
                                            "status": status})
        if status == "cancelled":
            if rng.random() < 0.5:  # the card was declined, then the order was cancelled
                self._payment(order_id, f"pay-{order_id}", ts + rng.uniform(1, 8), total, currency, "failed",
                              "card")
            return
        pay_ts = ts + rng.uniform(1, 15)
        method = "app" if channel == "app" and rng.random() < 0.6 else "card"
        split = rng.random() < 0.05 and total > 200
        parts = [(method, total)]
        if split:  # wallet balance first, the rest on the card
            wallet = rng.randrange(100, total, 5)
            parts = [("app", wallet), ("card", total - wallet)]
        for n, (how, amount) in enumerate(parts):
            self._payment(order_id, f"pay-{order_id}-{n}", pay_ts + n * 2, amount, currency, "captured", how)
        ledger_ts = pay_ts + (rng.uniform(120, 2700) if rng.random() < 0.99 else rng.uniform(2700, 3 * HOUR))
        missing = (self.cfg.active("missing-ledger") and self.store.store_id == MISSING_LEDGER_STORE
                   and self._in("missing-ledger", ts) and self.srng.random() < 0.10)
        if not missing:
            self._emit(ledger_ts, "ledger", order_id, {
                "event_id": f"l-{order_id}", "entry_id": f"je-{order_id}", "order_id": order_id,
                "ts": rfc3339_utc(ledger_ts), "amount": _money(total), "currency": currency,
                "account": "4000-revenue", "kind": "revenue"})
        if refunded:
            refund_ts = ts + rng.uniform(600, 6 * HOUR)
            self._emit(refund_ts, "orders", order_id, {"event_id": f"o-{order_id}-r", **base,
                                                       "ts": rfc3339_local(refund_ts), "status": "refunded"})
            self._payment(order_id, f"pay-{order_id}-r", refund_ts + rng.uniform(1, 30), total, currency,
                          "refunded", parts[-1][0])
            entry_ts = refund_ts + rng.uniform(120, 2700)
            self._emit(entry_ts, "ledger", order_id, {
                "event_id": f"l-{order_id}-r", "entry_id": f"je-{order_id}-r", "order_id": order_id,
                "ts": rfc3339_utc(entry_ts), "amount": _money(total), "currency": currency,
                "account": "4010-refunds", "kind": "refund"})

    def _payment(self, order_id: str, payment_id: str, ts: float, amount: int, currency: str, status: str,
                 method: str) -> None:
        srng, sid = self.srng, self.store.store_id
        event: dict[str, Any] = {"event_id": f"p-{payment_id}", "payment_id": payment_id, "order_id": order_id,
                                 "ts": rfc3339_utc(ts), "amount_minor": amount, "currency": currency,
                                 "status": status, "method": method}
        if (self.cfg.active("cents-dollars") and sid == CENTS_STORE and method == "card" and status == "captured"
                and self._in("cents-dollars", ts) and srng.random() < 0.25):
            del event["amount_minor"]
            event["amount"] = str(amount)  # cents in a major-units field: 100x the real amount
        self._emit(ts, "payments", order_id, event)
        if (self.cfg.active("duplicate-payments") and sid == DUPLICATE_STORE and status == "captured"
                and self._in("duplicate-payments", ts) and srng.random() < 0.06):
            again = ts + srng.uniform(1, 5)
            if srng.random() < 0.6:  # double capture: a second charge
                self._emit(again, "payments", order_id, {**event, "event_id": f"p-{payment_id}-dup",
                                                         "payment_id": f"{payment_id}-dup", "ts": rfc3339_utc(again)})
            else:  # the gateway re-sends the same payment id with an amended amount (a tip added)
                amended = {**event, "event_id": f"p-{payment_id}-redelivery", "ts": rfc3339_utc(again)}
                tip = srng.choice((25, 50, 75, 100))
                if "amount_minor" in amended:
                    amended["amount_minor"] = amount + tip
                self._emit(again, "payments", order_id, amended)

    def _nzd_tests(self, midnight: float) -> None:
        self.rng = self.srng  # test orders are scenario data: never disturb the normal stream
        t = midnight + (OPEN_HOUR + 1) * HOUR + self.rng.uniform(0, 600)
        n = 0
        while t < midnight + (CLOSE_HOUR - 1) * HOUR:
            if self._in("nzd-test-orders", t):
                self._order(f"T{self.day:%Y%m%d}{n:04d}", t, currency="NZD")
                n += 1
            t += self.rng.uniform(900, 1500)

    def _in(self, scenario: str, ts: float) -> bool:
        lo, hi = self.cfg.window(scenario)
        return lo <= ts < hi

    def _emit(self, ts: float, topic: str, order_id: str, value: dict[str, Any]) -> None:
        if self.drop:
            return
        self.events.append(SimEvent(ts, topic, order_id.encode(), value))


def _poisson(rng: random.Random, mean: float) -> int:
    """Normal approximation (means here are in the hundreds)."""
    return max(0, round(rng.gauss(mean, math.sqrt(mean))))


def _by_local_day(cfg: SimConfig, make: Callable[[date], list[SimEvent]]) -> Iterator[SimEvent]:
    """Events of consecutive local days in time order. ``make(day)`` returns events at or after
    that day's midnight (they may spill into later days, e.g. a late ledger entry)."""
    day = local_date(cfg.start) - timedelta(days=1)  # yesterday's late events may land after start
    heap: list[tuple[float, int, SimEvent]] = []
    seq = 0
    while local_midnight(day) < cfg.stop:
        for event in make(day):
            heapq.heappush(heap, (event.ts, seq, event))
            seq += 1
        next_midnight = local_midnight(day + timedelta(days=1))
        while heap and heap[0][0] < next_midnight:
            ts, _, event = heapq.heappop(heap)
            if ts >= cfg.stop:
                return
            if ts >= cfg.start:
                yield event
        day += timedelta(days=1)
    while heap:
        ts, _, event = heapq.heappop(heap)
        if ts >= cfg.stop:
            return
        if ts >= cfg.start:
            yield event


def order_events(cfg: SimConfig) -> Iterator[SimEvent]:
    """Orders, payments and ledger entries of the 10 stores, keyed by ``order_id``."""
    stores = cfg.world.stores

    def day_events(day: date) -> list[SimEvent]:
        out: list[SimEvent] = []
        for i, store in enumerate(stores):
            out.extend(_OrderDay(cfg, i, store, day).events)
        return out

    return _by_local_day(cfg, day_events)


# --------------------------------------------------------------------------- forecasts and demand

def _forecast_day(cfg: SimConfig, store: Store, day: date, bias_from: float) -> tuple[list[float], list[float]]:
    """Forecast and actual usage of every SKU of one store for one date (seeded by store and date)."""
    skus = cfg.world.skus
    mean_orders = sum(s.orders_per_day for s in cfg.world.stores) / len(cfg.world.stores)
    rng = np.random.default_rng([cfg.seed, 3, int(store.store_id[2:]), day.toordinal()])
    scale = store.orders_per_day / mean_orders * WEEKDAY_ORDERS[day.weekday()]
    true = np.array([s.daily_mean for s in skus]) * scale * np.exp(rng.normal(0, 0.12, len(skus)))
    actual = rng.poisson(true * np.exp(rng.normal(0, 0.12, len(skus)))).astype(float)
    forecast = np.round(true * np.exp(rng.normal(-0.04, 0.34, len(skus))), 1)
    if store.store_id == BIASED_STORE and local_midnight(day) >= bias_from:
        forecast = np.round(forecast * 1.45, 1)
    return forecast.tolist(), actual.tolist()


def forecast_events(cfg: SimConfig) -> Iterator[SimEvent]:
    """Per store and local date: every SKU's forecast (generated at 06:00 UTC the day before) and its
    actual usage (recorded at 03:00 local the next day), keyed by ``store_id``.

    Actual usage is Poisson-like noise around a true mean that the forecast misses by a
    multiplicative log-normal error, which gives MAPE ~38% and WMAPE ~31% like the real system.
    """
    stores, skus = cfg.world.stores, cfg.world.skus
    bias_from = cfg.window("biased-forecast")[0] if cfg.active("biased-forecast") else math.inf

    def day_events(day: date) -> list[SimEvent]:
        """What happens on local day ``day``: tomorrow's forecasts, then yesterday's actuals."""
        out: list[SimEvent] = []
        generated = datetime.combine(day, datetime.min.time(), UTC).timestamp() + 6 * HOUR
        recorded = local_midnight(day) + 3 * HOUR
        target, closed = (day + timedelta(days=1)).isoformat(), (day - timedelta(days=1)).isoformat()
        for store in stores:
            key = store.store_id.encode()
            forecast, _ = _forecast_day(cfg, store, day + timedelta(days=1), bias_from)
            _, actual = _forecast_day(cfg, store, day - timedelta(days=1), bias_from)
            for sku, qty in zip(skus, actual, strict=True):
                out.append(SimEvent(recorded, "demand", key, {
                    "store_id": store.store_id, "sku": sku.sku, "date": closed, "actual_qty": qty,
                    "ts": rfc3339_utc(recorded)}))
            for sku, qty in zip(skus, forecast, strict=True):
                out.append(SimEvent(generated, "forecasts", key, {
                    "store_id": store.store_id, "sku": sku.sku, "date": target, "forecast_qty": qty,
                    "generated_at": rfc3339_utc(generated)}))
        out.sort(key=lambda e: e.ts)
        return out

    return _by_local_day(cfg, day_events)


# --------------------------------------------------------------------------- all together

_GENERATORS: dict[str, Callable[[SimConfig], Iterator[SimEvent]]] = {
    "infra": infra_events, "orders": order_events, "forecast": forecast_events}


def generate(cfg: SimConfig) -> Iterator[SimEvent]:
    """Every chosen domain, merged in event-time order (ties: infra, orders, forecast)."""
    streams = [_GENERATORS[d](cfg) for d in DOMAINS if d in cfg.domains]
    return heapq.merge(*streams, key=lambda e: e.ts)


def closure_start(cfg: SimConfig) -> float:
    """When the store-closure scenario shuts the store (tests and docs)."""
    return _closure_start(cfg)
