"""Synthetic coffee-chain orders for the store use case: ten Manhattan stores,
daily and weekly patterns, noise, refunds and cancellations, and injected scenarios
(gradual decline, abrupt mid-day closure, chain-wide dip). Seeded per (store, day):
a scenario changes its own store-days only, never the random numbers of the others."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from agents.core.events import Order, OrderItem

TZ = ZoneInfo("America/New_York")
STORES = tuple(f"US{n:05d}" for n in range(1, 11))
START = date(2026, 1, 5)  # a Monday
MENU = (("SPU0001", "Americano", "3.45"), ("SPU0002", "Latte", "4.95"), ("SPU0003", "Iced Latte", "5.25"),
        ("SPU0004", "Cappuccino", "4.75"), ("SPU0005", "Cold Brew", "4.45"), ("SPU0006", "Mocha", "5.45"),
        ("SPU0007", "Croissant", "3.25"), ("SPU0008", "Muffin", "2.95"), ("SPU0009", "Bagel", "3.75"),
        ("SPU0010", "Tea", "2.95"))
# Share of the day's orders per local hour (06:00-21:00): morning peak, lunch, afternoon.
HOURS = {6: 3, 7: 9, 8: 13, 9: 11, 10: 7, 11: 6, 12: 8, 13: 8, 14: 6, 15: 6, 16: 6, 17: 6, 18: 5, 19: 3, 20: 3}
WEEKDAY_FACTOR = (1.0, 1.02, 1.03, 1.02, 0.98, 0.82, 0.78)  # Manhattan office stores: quieter weekends


@dataclass(frozen=True)
class Scenario:
    days: int = 70
    stores: tuple[str, ...] = STORES
    decline_store: str | None = "US00001"
    decline_start: int = 42  # day index where the decline starts
    decline_days: int = 14  # reaches the full decline after this many days (two weeks)
    decline: float = 0.51
    closure: tuple[str, int, float] | None = None  # (store, day index, local hour it stops trading)
    chain_dip: tuple[int, float] | None = None  # (day index, factor, e.g. 0.7)
    refund_rate: float = 0.01
    cancel_rate: float = 0.02
    seed: int = 7
    start: date = START

    def day(self, index: int) -> date:
        return self.start + timedelta(days=index)

    def decline_factor(self, store: str, index: int) -> float:
        if store != self.decline_store:
            return 1.0
        progress = min(1.0, max(0.0, (index - self.decline_start + 1) / self.decline_days))
        return 1.0 - self.decline * progress


def _base(store_index: int) -> float:
    return 142.0 + 4.0 * store_index  # ~140-180 orders a day


def store_day(sc: Scenario, store_index: int, index: int) -> list[dict]:
    """All order events (paid, then cancellations/refunds) of one store-day, as contract dicts."""
    store = sc.stores[store_index]
    day = sc.day(index)
    rng = random.Random(f"{sc.seed}|{store}|{day}")
    factor = WEEKDAY_FACTOR[day.weekday()] * rng.lognormvariate(0.0, 0.04) * sc.decline_factor(store, index)
    if sc.chain_dip and sc.chain_dip[0] == index:
        factor *= sc.chain_dip[1]
    n = _poisson(rng, _base(store_index) * factor)
    midnight = datetime.combine(day, time(), TZ)
    hours, weights = list(HOURS), list(HOURS.values())
    stop = None
    if sc.closure and sc.closure[0] == store and sc.closure[1] == index:
        stop = (midnight + timedelta(hours=sc.closure[2])).timestamp()
    events = []
    for i in range(n):
        hour = rng.choices(hours, weights)[0]
        ts = (midnight + timedelta(hours=hour, seconds=rng.uniform(0, 3600))).timestamp()
        items = []
        for _ in range(1 + _poisson(rng, 0.6)):
            spu, name, price = rng.choice(MENU)
            discount = "0.50" if rng.random() < 0.15 else "0"
            items.append({"spu": spu, "name": name, "qty": 1 if rng.random() < 0.9 else 2,
                          "unit_price": price, "discount": discount, "unit_cost": "1.10"})
        total = sum((Decimal(it["unit_price"]) - Decimal(it["discount"])) * it["qty"] for it in items)
        order_id = f"{store}-{day:%Y%m%d}-{i:04d}"
        if stop is not None and ts >= stop:
            continue
        base = {"order_id": order_id, "store_id": store, "total": str(total), "currency": "USD",
                "channel": "app" if rng.random() < 0.4 else "pos", "items": items}
        events.append(dict(base, event_id=f"{order_id}-p", ts=ts, status="paid"))
        r = rng.random()
        if r < sc.cancel_rate:
            events.append(dict(base, event_id=f"{order_id}-c", ts=ts + 120.0, status="cancelled"))
        elif r < sc.cancel_rate + sc.refund_rate:
            events.append(dict(base, event_id=f"{order_id}-r", ts=ts + rng.uniform(1800, 7200), status="refunded"))
    return events


def events(sc: Scenario) -> list[dict]:
    """Every event of the scenario, in event-time order."""
    out = []
    for index in range(sc.days):
        for s in range(len(sc.stores)):
            out.extend(store_day(sc, s, index))
    out.sort(key=lambda e: (e["ts"], e["event_id"]))
    return out


def to_order(e: dict) -> Order:
    """The decoded form (what ``agents.core.events.order_from_obj`` gives), built directly for speed."""
    items = tuple(OrderItem(i["spu"], i["name"], float(i["qty"]), Decimal(i["unit_price"]),
                            Decimal(i["discount"]), Decimal(i["unit_cost"])) for i in e["items"])
    return Order(event_id=e["event_id"], order_id=e["order_id"], store_id=e["store_id"], ts=float(e["ts"]),
                 status=e["status"], total_minor=int(Decimal(e["total"]) * 100), currency="USD",
                 channel=e["channel"], items=items, test=False)


def to_json_obj(e: dict) -> dict:
    """The contract's wire form: RFC 3339 local time with offset."""
    return dict(e, ts=datetime.fromtimestamp(e["ts"], TZ).isoformat())


def _poisson(rng: random.Random, mean: float) -> int:
    # Normal approximation above 30 (fast, adequate for order counts); Knuth below.
    if mean > 30:
        return max(0, round(rng.gauss(mean, mean ** 0.5)))
    limit, k, p = pow(2.718281828459045, -mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
