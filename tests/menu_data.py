"""Synthetic orders for the menu use case: a small menu of three categories, three stores, seeded per
(store, day), with a cost increase on the star and a discount campaign on a puzzle (the scenario switches
change their own items only, never the random numbers of the rest)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from agents.core.events import Order, OrderItem

TZ = ZoneInfo("America/New_York")
START = date(2026, 1, 5)
# spu, name, category, price, cost, popularity
MENU = (("E1", "Latte", "espresso", "5.50", "1.40", 30), ("E2", "Americano", "espresso", "4.50", "0.90", 18),
        ("E3", "Flat White", "espresso", "5.75", "1.10", 5), ("E4", "Mocha", "espresso", "4.25", "1.60", 4),
        ("B1", "Croissant", "bakery", "3.50", "1.20", 14), ("B2", "Muffin", "bakery", "3.25", "1.40", 9),
        ("B3", "Brownie", "bakery", "3.95", "1.10", 3), ("B4", "Cookie", "bakery", "2.50", "1.10", 3),
        ("T1", "Chai", "tea", "4.75", "0.90", 6), ("T2", "Green Tea", "tea", "3.95", "0.50", 5),
        ("T3", "Matcha", "tea", "5.25", "1.60", 3))
WEIGHTS = [m[5] for m in MENU]
PAIRS = {"E": "B", "T": "B", "B": "E"}  # a second item tends to come from this category


@dataclass(frozen=True)
class Scenario:
    days: int = 30
    stores: tuple[str, ...] = ("S1", "S2", "S3")
    orders_per_day: int = 160
    cost_item: str | None = None  # its unit cost becomes 60 % of its price from cost_day
    cost_day: int = 18
    campaign_item: str | None = None  # 50 % off every unit, three times as popular, for campaign days
    campaign: tuple[int, int] = (20, 26)
    seed: int = 1
    start: date = START


def store_day(sc: Scenario, store: str, index: int) -> list[dict]:
    day = sc.start + timedelta(days=index)
    rng = random.Random(f"{sc.seed}|{store}|{day}")
    midnight = datetime.combine(day, time(), TZ).timestamp()
    weights = list(WEIGHTS)
    campaign = sc.campaign_item is not None and sc.campaign[0] <= index < sc.campaign[1]
    if campaign:
        weights[[m[0] for m in MENU].index(sc.campaign_item)] *= 3
    out = []
    for n in range(round(rng.gauss(sc.orders_per_day, sc.orders_per_day ** 0.5))):
        ts = midnight + 7 * 3600 + rng.random() * 12 * 3600
        first = rng.choices(MENU, weights)[0]
        chosen = [first]
        for _ in range(rng.choices((0, 1, 2), (65, 28, 7))[0]):
            if rng.random() < 0.5:
                pool = [m for m in MENU if m[0][0] == PAIRS[first[0][0]]]
                chosen.append(rng.choices(pool, [m[5] for m in pool])[0])
            else:
                chosen.append(rng.choices(MENU, weights)[0])
        items = []
        for spu, name, cat, price, cost, _ in chosen:
            qty = 1 if rng.random() < 0.9 else 2
            disc = Decimal(price) * Decimal(rng.choice(("0.3", "0.4", "0.5"))) if rng.random() < 0.6 else Decimal(0)
            if campaign and spu == sc.campaign_item:
                disc = Decimal(price) / 2
            if sc.cost_item == spu and index >= sc.cost_day:
                cost = str((Decimal(price) * Decimal("0.6")).quantize(Decimal("0.01")))
            items.append({"spu": spu, "name": name, "category": cat, "qty": qty, "unit_price": price,
                          "discount": str(disc.quantize(Decimal("0.01"))), "unit_cost": cost})
        total = sum((Decimal(i["unit_price"]) - Decimal(i["discount"])) * i["qty"] for i in items)
        oid = f"{store}-{day:%Y%m%d}-{n:04d}"
        base = {"order_id": oid, "store_id": store, "total": str(total), "currency": "USD", "channel": "app",
                "items": items}
        out.append(dict(base, event_id=oid + "-p", ts=ts, status="paid"))
        if rng.random() < 0.02:
            out.append(dict(base, event_id=oid + "-r", ts=ts + rng.uniform(600, 3 * 3600), status="refunded"))
    return out


def events(sc: Scenario) -> list[dict]:
    out = [e for i in range(sc.days) for s in sc.stores for e in store_day(sc, s, i)]
    out.sort(key=lambda e: (e["ts"], e["event_id"]))
    return out


def to_order(e: dict) -> Order:
    items = tuple(OrderItem(i["spu"], i["name"], float(i["qty"]), Decimal(i["unit_price"]), Decimal(i["discount"]),
                            Decimal(i["unit_cost"]), i["category"]) for i in e["items"])
    return Order(event_id=e["event_id"], order_id=e["order_id"], store_id=e["store_id"], ts=float(e["ts"]),
                 status=e["status"], total_minor=int(Decimal(e["total"]) * 100), currency="USD", channel=e["channel"],
                 items=items, test=False)


def to_json_obj(e: dict) -> dict:
    return dict(e, ts=datetime.fromtimestamp(e["ts"], TZ).isoformat())
