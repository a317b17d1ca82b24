"""UC-FN-02 streaming reconciliation: the Processor around :mod:`models.recon`.

State: one value per order (key ``o:<order_id>``). The contract keys ``orders``,
``payments`` and ``ledger`` by ``order_id``, so with equal partition counts an
order's three sources land on the same partition and the generic runner's table
*is* the matching state; no repartition is needed for the matching.

Clock: each partition keeps, per source, the highest event time it has seen.
The **horizon** is the lowest of the three: every source is complete up to it
(events of a partition arrive in time order per topic), so deciding "no payment
by the deadline" at the horizon never depends on how the three topics happened
to interleave. Those clocks are memory only: after a restart they rebuild from
the next events, and each order remembers the horizon it was evaluated at.

Daily SPC (match rate, unmatched amount) needs every partition's orders of a
store's day, so it runs in two more stages behind internal topics, like the store
use case (the runner creates them from :attr:`ReconProcessor.internal_topics`):

* ``spcwatch.recon.close`` (every message keyed ``ALL``, state ``c:ALL``): when a
  partition's horizon passes a day's close, its tick sends one summary of its
  orders of that day, each order's share taken as of the close
  (:meth:`models.recon.OrderRecon.contribution`); :class:`models.recon.CloseBook`
  closes the day once every partition has reported past it, and judges the chain;
* ``spcwatch.recon.by-store`` (keyed ``store_id``, state ``s:<store>``): each
  store's closed day, judged by its :class:`models.recon.DailySeries`.

In ``spcwatch replay`` the hops run in memory (:meth:`ReconProcessor.process`),
through the same :meth:`ReconProcessor.step`. Translation only: records in,
exception rows, order rows and alerts out; every decision is in the model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar

from agents.core.alerts import Alert, alert_id
from agents.core.contract import Outputs, StageOutputs, StateStore, StoreMemory, partition_of, row_datetime, run_hops
from agents.core.events import LedgerEntry, Order, Payment, currency_exponent
from agents.core.settings import Env, Settings, check, load_env, lower_list, pairs, upper_list
from models.episodes import EpisodeEvent
from models.recon import (
    CHAIN,
    LEDGER,
    ORDERS,
    PAYMENTS,
    CategoryAlerts,
    CategoryEvent,
    Change,
    CloseBook,
    CloseOut,
    DailySeries,
    DaySums,
    OrderRecon,
    ReconConfig,
    Record,
    Step,
)

log = logging.getLogger(__name__)

PREFIX = "SPCWATCH_RECON_"
SOURCE_OF_TOPIC = {"orders": ORDERS, "payments": PAYMENTS, "ledger": LEDGER}
EXCEPTIONS_TABLE = "recon_exceptions"
ORDERS_TABLE = "recon_orders"
CLOSE = "spcwatch.recon.close"
BY_STORE = "spcwatch.recon.by-store"
ORDER_KEY, CLOSE_KEY, STORE_KEY = "o:", "c:", "s:"  # state keys by stage
CATEGORY_STATE_KEY = "k:"  # store stage: the store-day category episodes


@dataclass(frozen=True, slots=True)
class ReconSettings(ReconConfig):
    """``SPCWATCH_RECON_<FIELD>`` (docs/recon.md): the matching model's config and the processor's own."""

    ENV: ClassVar[Mapping[str, Env]] = {
        "scale_exponents": Env(names=("ORDERS_SCALE_EXPONENT", "PAYMENTS_SCALE_EXPONENT", "LEDGER_SCALE_EXPONENT")),
        "store_timezones": Env(pairs, form="STORE=Zone,..."),
        "test_currencies": Env(upper_list),
        "alert_categories": Env(lower_list),
    }

    idle_source_seconds: float = 0.0
    close_wait_seconds: float = 0.0

    def validate(self) -> None:
        check(self.idle_source_seconds >= 0, f"{PREFIX}IDLE_SOURCE_SECONDS", "must be >= 0")
        check(math.isfinite(self.close_wait_seconds) and self.close_wait_seconds >= 0,
              f"{PREFIX}CLOSE_WAIT_SECONDS", "must be >= 0")


def record_of(topic: str, event: Order | Payment | LedgerEntry) -> Record:
    """A decoded contract event as the model's record (ids and money already normalised)."""
    if isinstance(event, Order):
        return Record(ORDERS, event.ts, event.event_id, event.total_minor, event.currency, event.status,
                      event.store_id, event.test)
    if isinstance(event, Payment):
        return Record(PAYMENTS, event.ts, event.payment_id, event.amount_minor, event.currency, event.status,
                      "", event.test)
    return Record(LEDGER, event.ts, event.entry_id, event.amount_minor, event.currency, event.kind, "", event.test)



class ReconProcessor:
    """Streaming three-way matching and daily SPC; see the module docstring and :mod:`models.recon`."""

    use_case = "recon"
    topics = ("orders", "payments", "ledger")
    internal_topics = (CLOSE, BY_STORE)

    def __init__(self, settings: ReconSettings | None = None, partitions: int = 1) -> None:
        self.cfg = settings or ReconSettings()
        self.partitions = partitions  # order partitions the daily close waits for (the worker's)
        # highest event time per source, per partition's store (fresh after a restart or a rebalance)
        self._clocks: StoreMemory[list[float]] = StoreMemory(lambda _store: [-math.inf] * 3)
        # zone -> newest day this partition reported closed, per partition's store (like the clocks)
        self._beats: StoreMemory[dict[str, date]] = StoreMemory(lambda _store: {})

    def key(self, topic: str, event: Any) -> str:
        return event.order_id

    def horizon(self, store: StateStore) -> float:
        """Event time up to which every source of this partition is complete."""
        clocks = self._clocks(store)
        low = min(clocks)
        if self.cfg.idle_source_seconds > 0:  # opt-in: a silent source must not stall deadlines
            low = max(low, max(clocks) - self.cfg.idle_source_seconds)
        return low

    # -- replay: every hop in memory ---------------------------------------------------------
    def process(self, store: StateStore, topic: str, events: Sequence[Any]) -> Outputs:
        return self._inline(store, self._orders(store, topic, events))

    def tick(self, store: StateStore, now: float) -> Outputs:
        return self._inline(store, self.step_tick(store, now))

    def _inline(self, store: StateStore, first: StageOutputs) -> Outputs:
        """Every hop in memory (one partition: the close waits for no other)."""
        return run_hops(first, lambda topic, value: self._hop(store, topic, [value], sources=1))

    # -- one hop (the worker calls these per topic) ------------------------------------------
    def step(self, store: StateStore, topic: str, events: Sequence[Any], now: float) -> StageOutputs:
        """One message of one topic; ``now`` is not used: the stages run on their own event-time clocks."""
        if topic in SOURCE_OF_TOPIC:
            return self._orders(store, topic, events)
        return self._hop(store, topic, events, sources=self.partitions)

    def _hop(self, store: StateStore, topic: str, events: Sequence[Any], sources: int) -> StageOutputs:
        out = StageOutputs()
        if topic == CLOSE:
            key = CLOSE_KEY + CHAIN
            raw = store.get(key)
            book = CloseBook.from_state(raw) if raw else CloseBook()
            for msg in events:
                self._close_out(book.apply(msg, self.cfg, sources, self.cfg.close_wait_seconds), out)
            store[key] = book.to_state()
        elif topic == BY_STORE:
            for msg in events:
                key = STORE_KEY + msg["store"]
                raw = store.get(key)
                series = DailySeries.from_state(raw) if raw else DailySeries(msg["store"])
                found, repeated = series.judge(msg["day"], msg["c"])
                if repeated:
                    log.info("recon daily SPC: %s %s judged already, ignored", msg["store"], msg["day"])
                out.alerts.extend(_spc_alert(msg["store"], cur, metric, e, msg["ts"]) for cur, metric, e in found)
                store[key] = series.to_state()
                ckey = CATEGORY_STATE_KEY + msg["store"]
                raw = store.get(ckey)
                cats = CategoryAlerts.from_state(raw) if raw else CategoryAlerts()
                events = cats.judge(msg["day"], msg["c"], msg["ts"], self.cfg)
                out.alerts.extend(_category_alert(msg["store"], e, msg["ts"]) for e in events)
                store[ckey] = cats.to_state()
        else:
            raise ValueError(f"recon has no topic {topic!r}")
        return out

    # -- stage 1: orders (key order_id) ------------------------------------------------------
    def _orders(self, store: StateStore, topic: str, events: Sequence[Any]) -> StageOutputs:
        clocks = self._clocks(store)
        source = SOURCE_OF_TOPIC[topic]
        clocks[source] = max(clocks[source], *(e.ts for e in events))
        horizon = self.horizon(store)
        out = StageOutputs()
        for event in events:
            key = ORDER_KEY + event.order_id
            state = store.get(key)
            order = OrderRecon.from_state(event.order_id, state) if state else OrderRecon(event.order_id)
            added = order.add(record_of(topic, event), self.cfg)
            if not added and order.horizon >= horizon:
                continue  # an exact repeat (a redelivery after a restart, a producer retry)
            step = order.update(horizon, self.cfg, arrival_ts=event.ts)
            self._emit(order, step, out)
            if added or step.state_changed:
                store[key] = order.to_state(self.cfg)
        return out

    def step_tick(self, store: StateStore, now: float) -> StageOutputs:
        """Deadlines, expiry and the daily close at the partition's horizon (``now`` is the newest
        event time, which a lagging source may not have reached: it is not used to decide anything).

        Every order whose day closed before the horizon adds its share (as of the close) to this
        partition's summary of that day; a summary goes out per day with shares, and one per zone
        whenever the newest closed day moves (possibly empty: it tells the close this partition is
        past that day). Only ticks send shares, so a partition's summary of a day holds all of them.
        """
        horizon = self.horizon(store)
        out = StageOutputs()
        if horizon == -math.inf:
            return out
        shares: dict[tuple[str, str], dict[str, DaySums]] = {}
        for key in list(store.keys()):
            if not key.startswith(ORDER_KEY):
                continue
            state = store.get(key)
            if not state:
                continue
            due = state.get("n")
            if due is not None and due >= horizon:
                continue
            order = OrderRecon.from_state(key[len(ORDER_KEY):], state)
            step = order.update(horizon, self.cfg)
            self._emit(order, step, out)
            changed = step.state_changed
            close = order.close_due(self.cfg)
            if close < horizon:
                self._share(order, close, shares)
                changed = True
            if horizon >= order.expires_at(self.cfg):
                del store[key]
            elif changed:
                store[key] = order.to_state(self.cfg)
        partition = partition_of(store)
        beats = self._beats(store)
        for zone in self.cfg.zones():
            day = self.cfg.closed_through(zone, horizon)
            if day is not None and beats.get(zone) != day:
                beats[zone] = day
                shares.setdefault((zone, day.isoformat()), {})
        src = 0 if partition is None else partition
        for (zone, day), by_store in sorted(shares.items()):
            out.forward.append((CLOSE, CHAIN, {"t": "sum", "src": src, "zone": zone, "day": day, "h": horizon,
                                               "ts": horizon, "s": by_store}))
        return out

    def _share(self, order: OrderRecon, close: float, shares: dict[tuple[str, str], dict[str, DaySums]]) -> None:
        order.contributed = True
        share = order.contribution(close, self.cfg)
        if share is None:  # only test records by the close: not part of any store's day
            return
        store_id, day = order.location(self.cfg)
        by_store = shares.setdefault((self.cfg.zone_of(store_id), day.isoformat()), {})
        share.add_to(by_store.setdefault(store_id, {}))

    # -- stage 2: the chain's daily close (key ALL) --------------------------------------------
    def _close_out(self, result: CloseOut, out: StageOutputs) -> None:
        for store_id, day, sums, close in result.days:
            out.forward.append((BY_STORE, store_id, {"t": "day", "store": store_id, "day": day, "c": sums,
                                                     "ts": close}))
        out.alerts.extend(_spc_alert(CHAIN, cur, metric, e, close) for cur, metric, e, close in result.chain)
        for zone, day, src in result.ignored:
            log.warning("recon daily close: partition %s summarised %s (%s) again or after the day closed (a "
                        "repeat after a restart, or orders later than their partition's clocks): ignored, the "
                        "day stands as judged at its close", src, day, zone)

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
            row["first_seen"] = row_datetime(row["first_seen"])
            row["last_event"] = row_datetime(row["last_event"])
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
            "first_seen": row_datetime(rec.first_seen),
            "last_seen": row_datetime(rec.last_seen),
            "resolved_at": row_datetime(rec.resolved_at),
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
    """The registry factory: ``SPCWATCH_RECON_*`` from the environment; the daily close waits for
    each of the worker's partitions."""
    return ReconProcessor(load_env(ReconSettings, PREFIX), settings.partitions if settings else 1)


def _category_alert(store_id: str, e: CategoryEvent, close: float) -> Alert:
    """A store-day category episode (count and rate of one exception category) as a contract alert."""
    firing = Alert(
        alert_id=alert_id("recon", "store-day", store_id, e.category, e.start_day), status="firing",
        severity="warning", use_case="recon", rule=f"RECON_{e.category.upper()}",
        entity={"store_id": store_id, "category": e.category}, starts_at=e.start_ts, event_ts=e.start_ts,
        value=float(e.count),
        summary=(f"{store_id}: {e.count} orders with {e.category.replace('_', ' ')} on {e.start_day} "
                 f"({e.rate:.1%} of the day's decided orders, {e.amount_minor / 100:.2f} in total)"),
    )
    if e.kind == "firing":
        return firing
    return firing.resolved(close, event_ts=close, value=float(e.count),
                           summary=f"{store_id}: {e.category.replace('_', ' ')} back under its thresholds on {e.day} "
                                   f"({e.count} orders)")


def _spc_alert(store_id: str, currency: str, metric: str, e: EpisodeEvent, close: float) -> Alert:
    """A daily SPC episode event as a contract alert (entity: store or ``ALL``, metric, currency)."""
    return Alert(
        alert_id=e.episode_id, status=e.kind, severity="warning", use_case="recon", rule=e.rule,
        rules=e.rules, entity={"store_id": store_id, "metric": metric, "currency": currency},
        starts_at=e.starts_at, ends_at=e.ends_at, value=e.value, center=e.center, lower=e.lower,
        upper=e.upper, zscore=e.z, event_ts=close,
        summary=(f"{'chain' if store_id == CHAIN else store_id} daily {metric.replace('_', ' ')} {e.value:.4g} "
                 f"({currency}) outside its control limits ({e.lower:.4g} .. {e.upper:.4g}), {e.rule}"),
    )
