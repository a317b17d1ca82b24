"""Stage 1 (key ``order_id``): which store and business day an order belongs to, its latest status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import DAY
from .config import _RANK, STATUS_CODE, Calendar


@dataclass(frozen=True, slots=True)
class OrderStep:
    entry: list | None  # the order's new state (None: unchanged)
    forward: dict | None  # contribution for the store stage
    outcome: str  # "new" | "update" | "duplicate" | "stale" | "too_late" | "test"


def apply_order(entry: list | None, order: Any, cal: Calendar, watermark: float) -> OrderStep:
    """One order event against the order's state ``[store, day, status, total, discount, qty, ts, event_id]``.

    ``order`` is a :class:`agents.core.events.Order` (duck-typed: no import).
    ``watermark`` is the highest event time seen (lateness is judged against it).
    """
    if order.test or order.currency in cal.cfg.test_currencies:
        return OrderStep(None, None, "test")
    code = STATUS_CODE[order.status]
    discount = round(sum(float(i.discount) * i.qty for i in order.items) * 100)
    qty = float(sum(i.qty for i in order.items))
    if entry is None:
        store, day, first_ts, outcome = order.store_id, cal.local_day(order.store_id, order.ts), order.ts, "new"
    else:
        store, day, first_ts = entry[0], entry[1], entry[6]
        if order.event_id == entry[7] or [code, order.total_minor, discount, qty] == entry[2:6]:
            return OrderStep(None, None, "duplicate")
        if _RANK[code] < _RANK[entry[2]]:
            return OrderStep(None, None, "stale")
        outcome = "update"
    if watermark > cal.final_ts(store, day):
        return OrderStep(None, None, "too_late")
    new = [store, day, code, order.total_minor, discount, qty, first_ts, order.event_id]
    # c: [status, total, discount, qty, time of the order's first event, time of this status]
    forward = {"t": "order", "store": store, "day": day, "id": order.order_id,
               "c": [code, order.total_minor, discount, qty, first_ts, order.ts], "ts": order.ts}
    return OrderStep(new, forward, outcome)


def order_expired(entry: list, cal: Calendar, watermark: float) -> bool:
    """Forget an order once its day is final plus a retention (late refunds are still recognised).

    Bounded from the order's own time (its day ends within a day of it, +1 h for DST), so no calendar work.
    """
    cfg = cal.cfg
    return watermark > entry[6] + DAY + 3600.0 + cfg.grace_seconds + cfg.max_lateness_seconds \
        + cfg.order_retention_days * DAY
