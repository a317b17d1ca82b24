"""UC-FN-02 streaming reconciliation: the Processor around :mod:`models.recon`.

State: one value per ``order_id`` (the contract keys ``orders``, ``payments`` and
``ledger`` by ``order_id``, so with equal partition counts an order's three
sources land on the same partition and the generic runner's table *is* the
matching state; no repartition is needed while producers key by ``order_id``).

Clock: each partition keeps, per source, the highest event time it has seen.
The **horizon** is the lowest of the three: every source is complete up to it
(events of a partition arrive in time order per topic), so deciding "no payment
by the deadline" at the horizon never depends on how the three topics happened
to interleave. Those clocks are memory only: after a restart they rebuild from
the next events, and each order remembers the horizon it was evaluated at.

Translation only: records in, exception rows, order rows and ``RECON_*`` alerts
out; every decision is in the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import text

from models.recon import (
    CATEGORIES,
    EXCLUDED_TEST_DATA,
    LEDGER,
    ORDERS,
    PAYMENTS,
    Change,
    DailyResult,
    OrderRecon,
    ReconConfig,
    Record,
    Step,
    daily_spc,
)
from stream_app import db
from stream_app.alerts import Alert, alert_id
from stream_app.events import LedgerEntry, Order, Payment, currency_exponent
from stream_app.settings import ConfigError, Settings, check, load_env
from stream_app.sink import Sink
from stream_app.usecase import Outputs, StateStore

PREFIX = "SPCWATCH_RECON_"
SOURCE_OF_TOPIC = {"orders": ORDERS, "payments": PAYMENTS, "ledger": LEDGER}
EXCEPTIONS_TABLE = "recon_exceptions"
ORDERS_TABLE = "recon_orders"


@dataclass(frozen=True, slots=True)
class ReconSettings:
    """``SPCWATCH_RECON_<FIELD>`` variables (see docs/recon.md)."""

    payment_window_seconds: float = 900.0
    ledger_window_seconds: float = 6 * 3600.0
    order_window_seconds: float = 900.0
    tolerance_abs_minor: int = 1
    tolerance_rel: float = 0.0
    test_currencies: tuple[str, ...] = ("NZD",)
    orders_scale_exponent: int = 0
    payments_scale_exponent: int = 0
    ledger_scale_exponent: int = 0
    retention_seconds: float = 2 * 86400.0
    open_retention_seconds: float = 30 * 86400.0
    timezone: str = "America/New_York"
    store_timezones: tuple[str, ...] = ()
    alert_min_amount_minor: int = 10_000
    alert_categories: tuple[str, ...] = tuple(c for c in CATEGORIES if c != EXCLUDED_TEST_DATA)
    idle_source_seconds: float = 0.0

    def validate(self) -> None:
        check(self.idle_source_seconds >= 0, f"{PREFIX}IDLE_SOURCE_SECONDS", "must be >= 0")
        for entry in self.store_timezones:
            check("=" in entry, f"{PREFIX}STORE_TIMEZONES", f"entries are STORE=Zone, got {entry!r}")
        try:
            self.config()
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}* {exc}") from None

    def config(self) -> ReconConfig:
        return ReconConfig(
            payment_window_seconds=self.payment_window_seconds,
            ledger_window_seconds=self.ledger_window_seconds,
            order_window_seconds=self.order_window_seconds,
            tolerance_abs_minor=self.tolerance_abs_minor,
            tolerance_rel=self.tolerance_rel,
            test_currencies=tuple(c.upper() for c in self.test_currencies),
            scale_exponents=(self.orders_scale_exponent, self.payments_scale_exponent, self.ledger_scale_exponent),
            retention_seconds=self.retention_seconds,
            open_retention_seconds=self.open_retention_seconds,
            timezone=self.timezone,
            store_timezones=tuple(tuple(e.split("=", 1)) for e in self.store_timezones),  # type: ignore[misc]
            alert_min_amount_minor=self.alert_min_amount_minor,
            alert_categories=tuple(c.lower() for c in self.alert_categories),
        )


def record_of(topic: str, event: Order | Payment | LedgerEntry) -> Record:
    """A decoded contract event as the model's record (ids and money already normalised)."""
    if isinstance(event, Order):
        return Record(ORDERS, event.ts, event.event_id, event.total_minor, event.currency, event.status,
                      event.store_id, event.test)
    if isinstance(event, Payment):
        return Record(PAYMENTS, event.ts, event.payment_id, event.amount_minor, event.currency, event.status,
                      "", event.test)
    return Record(LEDGER, event.ts, event.entry_id, event.amount_minor, event.currency, event.kind, "", event.test)


def _partition_of(store: StateStore) -> Any:
    """The partition a store belongs to (a runner's store, or its cache's backing store);
    ``None`` for the replay's single dict, which holds every key."""
    for candidate in (store, getattr(store, "backing", None)):
        partition = getattr(candidate, "partition", None)
        if partition is not None:
            return partition
    return None


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class ReconProcessor:
    """Streaming three-way matching; see the module docstring and :mod:`models.recon`."""

    use_case = "recon"
    topics = ("orders", "payments", "ledger")

    def __init__(self, settings: ReconSettings | None = None) -> None:
        self.settings = settings or ReconSettings()
        self.cfg = self.settings.config()
        self._clocks: dict[Any, list[float]] = {}  # partition -> highest event time per source

    def key(self, topic: str, event: Any) -> str:
        return event.order_id

    def horizon(self, store: StateStore) -> float:
        """Event time up to which every source of this partition is complete."""
        clocks = self._clocks.get(_partition_of(store))
        if clocks is None:
            return -math.inf
        low = min(clocks)
        if self.settings.idle_source_seconds > 0:  # opt-in: a silent source must not stall deadlines
            low = max(low, max(clocks) - self.settings.idle_source_seconds)
        return low

    def process(self, store: StateStore, topic: str, events: Sequence[Any]) -> Outputs:
        clocks = self._clocks.setdefault(_partition_of(store), [-math.inf] * 3)
        source = SOURCE_OF_TOPIC[topic]
        clocks[source] = max(clocks[source], *(e.ts for e in events))
        horizon = self.horizon(store)
        out = Outputs()
        for event in events:
            key = event.order_id
            state = store.get(key)
            order = OrderRecon.from_state(key, state) if state else OrderRecon(key)
            added = order.add(record_of(topic, event), self.cfg)
            if not added and order.horizon >= horizon:
                continue  # an exact repeat (a redelivery after a restart, a producer retry)
            step = order.update(horizon, self.cfg, arrival_ts=event.ts)
            self._emit(order, step, out)
            if added or step.state_changed:
                store[key] = order.to_state(self.cfg)
        return out

    def tick(self, store: StateStore, now: float) -> Outputs:
        """Deadlines and expiry at the partition's horizon (``now`` is the newest event time,
        which a lagging source may not have reached: it is not used to decide anything)."""
        horizon = self.horizon(store)
        out = Outputs()
        if horizon == -math.inf:
            return out
        for key in list(store.keys()):
            state = store.get(key)
            if not state:
                continue
            due = state.get("n")
            if due is not None and due >= horizon:
                continue
            order = OrderRecon.from_state(key, state)
            step = order.update(horizon, self.cfg)
            self._emit(order, step, out)
            if horizon >= order.expires_at(self.cfg):
                del store[key]
            elif step.state_changed:
                store[key] = order.to_state(self.cfg)
        return out

    # -- translation ----------------------------------------------------------------------
    def _emit(self, order: OrderRecon, step: Step, out: Outputs) -> None:
        if not step.changes and step.order_row is None:
            return
        store, day = order.location(self.cfg)
        for change in step.changes:
            out.add_row(EXCEPTIONS_TABLE, self._exception_row(order.order_id, store, day, change))
            out.alerts.extend(self._alerts(order.order_id, store, change))
        if step.order_row is not None:
            row = dict(step.order_row)
            row["first_seen"] = _dt(row["first_seen"])
            row["last_event"] = _dt(row["last_event"])
            out.add_row(ORDERS_TABLE, row)

    @staticmethod
    def _exception_row(order_id: str, store: str, day: date, change: Change) -> dict[str, Any]:
        rec, f = change.record, change.record.finding
        return {
            "order_id": order_id,
            "category": rec.category,
            "status": "open" if rec.open else "resolved",
            "store_id": store,
            "business_day": day,
            "currency": f.currency,
            "amount_minor": f.amount,
            "order_minor": f.order,
            "payments_minor": f.payments,
            "payments_refund_minor": f.payments_refund,
            "ledger_minor": f.ledger,
            "ledger_refund_minor": f.ledger_refund,
            "variance_minor": f.variance,
            "detail": f.detail[:255] or None,
            "first_seen": _dt(rec.first_seen),
            "last_seen": _dt(rec.last_seen),
            "resolved_at": _dt(rec.resolved_at),
            "age_seconds": None if rec.resolved_at is None else rec.resolved_at - rec.first_seen,
        }

    @staticmethod
    def _alerts(order_id: str, store_id: str, change: Change) -> list[Alert]:
        if not (change.fire or change.resolve):
            return []
        rec, f = change.record, change.record.finding
        currency = f.currency.split(",")[0] or "USD"
        major = rec.peak / 10 ** currency_exponent(currency)
        firing = Alert(
            alert_id=alert_id("recon", order_id, rec.category, rec.first_seen),
            status="firing",
            severity="warning",
            use_case="recon",
            rule=f"RECON_{rec.category.upper()}",
            entity={"store_id": store_id, "order_id": order_id},
            starts_at=rec.first_seen,
            summary=f"order {order_id} at {store_id}: {rec.category} {major:.2f} {currency} ({f.detail})",
            value=major,
            event_ts=rec.first_seen,
        )
        alerts = [firing] if change.fire else []
        if change.resolve and rec.resolved_at is not None:
            alerts.append(firing.resolved(rec.resolved_at, event_ts=rec.resolved_at))
        return alerts


def from_settings(settings: Settings | None = None) -> ReconProcessor:
    """The registry factory: ``SPCWATCH_RECON_*`` from the environment."""
    return ReconProcessor(load_env(ReconSettings, PREFIX))


# --------------------------------------------------------------------------- daily SPC (spcwatch recon-spc)


def daily_alerts(days: list[DailyResult]) -> list[Alert]:
    """``models.recon.daily_spc`` episodes as contract alerts (entity: store, metric, currency)."""
    alerts = []
    for store, currency, metric, e in daily_spc(days):
        alerts.append(Alert(
            alert_id=e.episode_id, status=e.kind, severity="warning", use_case="recon", rule=e.rule,
            rules=e.rules, entity={"store_id": store, "metric": metric, "currency": currency},
            starts_at=e.starts_at, ends_at=e.ends_at, value=e.value, center=e.center, lower=e.lower,
            upper=e.upper, zscore=e.z, event_ts=e.ts,
            summary=(f"{'chain' if store == 'ALL' else store} daily {metric.replace('_', ' ')} {e.value:.4g} "
                     f"outside its control limits ({e.lower:.4g} .. {e.upper:.4g}), {e.rule}"),
        ))
    return alerts


def closed(row_day: date, store_id: str, cfg: ReconConfig, newest_event: float) -> bool:
    """A business day is closed once the data has passed its local midnight plus the ledger window."""
    zone = ZoneInfo(dict(cfg.store_timezones).get(store_id, cfg.timezone))
    midnight = datetime.combine(row_day + timedelta(days=1), time(0), zone).timestamp()
    return newest_event >= midnight + cfg.ledger_window_seconds


async def run_daily_spc(settings: Settings, recon: ReconSettings, output: Any) -> tuple[int, int]:
    """Read ``recon_daily``, judge the closed days, upsert the episodes to ``alerts``.

    Stateless and idempotent: every run recomputes from the daily rows, so the same rows give the
    same alert ids and a run after a new day only adds or resolves what that day changed.
    Returns (closed days judged, alert rows written).
    """
    cfg = recon.config()
    engine = db.create_engine(settings.db_url)
    try:
        await db.upgrade(engine)
        async with engine.connect() as conn:
            newest = (await conn.execute(text("SELECT MAX(last_event) FROM recon_orders"))).scalar()
            rows = (await conn.execute(text(
                "SELECT store_id, business_day, currency, matched, exceptions, unmatched_minor FROM recon_daily"
                " WHERE store_id <> 'UNKNOWN'"))).all()
        if newest is None:
            return 0, 0
        if isinstance(newest, str):  # SQLite returns text for aggregates
            newest = datetime.fromisoformat(newest)
        newest_ts = newest.replace(tzinfo=UTC).timestamp()
        days = []
        for store, day, currency, matched, exceptions, unmatched in rows:
            day = date.fromisoformat(day) if isinstance(day, str) else day
            if closed(day, store, cfg, newest_ts):
                days.append(DailyResult(store, currency, day, int(matched), int(matched) + int(exceptions),
                                        int(unmatched)))
        alerts = daily_alerts(days)
        written = await Sink(engine).upsert("alerts", [a.to_row() for a in alerts]) if alerts else 0
        for alert in alerts:
            output.write(orjson.dumps(alert.to_event()).decode() + "\n")
        return len(days), written
    finally:
        await engine.dispose()
