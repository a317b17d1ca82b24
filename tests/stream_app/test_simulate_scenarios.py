"""Each scenario produces the events it claims (checked on the generated data), and nothing else changes."""

from __future__ import annotations

import collections
import itertools
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from stream_app.simdata import TZ, World, local_midnight
from stream_app.simgen import (
    BIASED_STORE,
    CENTS_STORE,
    CLOSING_STORE,
    DECLINE_STORE,
    DUPLICATE_STORE,
    MISSING_LEDGER_STORE,
    NZD_STORE,
    RDS_TARGET,
    REDIS_TARGET,
    SCENARIOS,
    SimConfig,
    closure_start,
    forecast_events,
    infra_events,
    order_events,
    silent_host_id,
)

DAY, HOUR = 86400.0, 3600.0
T0 = datetime(2026, 2, 17, 15, 0, tzinfo=UTC).timestamp()  # 10:00 in Manhattan, a Tuesday
WORLD = World()


def run(domain, scenarios=(), start=T0 - DAY, end=T0 + 6 * HOUR, t0=T0):  # type: ignore[no-untyped-def]
    cfg = SimConfig(t0=t0, start=start, end=end, scenarios=tuple(scenarios), world=WORLD,
                    domains=(domain,), infra_interval=300.0)
    generator = {"infra": infra_events, "orders": order_events, "forecast": forecast_events}[domain]
    return cfg, list(generator(cfg))


def series(events, resource_id: str, metric: str) -> list[tuple[float, float]]:  # type: ignore[no-untyped-def]
    return [(e.ts, s["value"]) for e in events if e.key == resource_id.encode()
            for s in e.value["samples"] if s["metric"] == metric]


def untouched(base, changed, touched) -> None:  # type: ignore[no-untyped-def]
    """Events of entities the scenario does not target are byte-for-byte the same."""
    def keep(events):  # type: ignore[no-untyped-def]
        return [orjson.dumps([e.ts, e.topic, e.key.decode(), e.value]) for e in events if not touched(e)]
    assert keep(base) == keep(changed)


def store_of(event) -> str:  # type: ignore[no-untyped-def]
    if "store_id" in event.value:
        return event.value["store_id"]
    return f"US{int(event.value['order_id'].lstrip('T')[8:10]):05d}" if event.value["order_id"][0] != "T" else NZD_STORE


# --------------------------------------------------------------------------- infrastructure


def test_rds_cpu_runaway() -> None:
    _, base = run("infra")
    cfg, events = run("infra", ["rds-cpu-runaway"])
    lo, hi = cfg.window("rds-cpu-runaway")
    cpu = series(events, RDS_TARGET, "CPUUtilization")
    inside = [v for ts, v in cpu if lo <= ts < hi]
    before = [v for ts, v in cpu if ts < lo]
    assert len(inside) == 24 and all(95 <= v <= 99 for v in inside)
    assert max(before) < 50
    assert all(v < 50 for ts, v in cpu if ts >= hi)  # the query was killed
    untouched(base, events, lambda e: e.key == RDS_TARGET.encode())


def test_redis_memory_leak_drifts_slowly_then_evicts() -> None:
    _, base = run("infra", end=T0 + 12 * HOUR)
    cfg, events = run("infra", ["redis-memory-leak"], end=T0 + 12 * HOUR)
    lo, _ = cfg.window("redis-memory-leak")
    memory = series(events, REDIS_TARGET, "DatabaseMemoryUsagePercentage")
    usual = [v for ts, v in memory if ts < lo]
    after = [(ts, v) for ts, v in memory if ts >= lo]
    assert max(usual) < 32
    steps = [b - a for (_, a), (_, b) in itertools.pairwise(after) if b < 100]
    assert steps and max(steps) < 2.0  # a slow drift, not a jump
    assert any(v > 2 * sum(usual) / len(usual) for ts, v in after if ts < lo + 4 * HOUR)
    assert after[-1][1] == 100.0
    evictions = series(events, REDIS_TARGET, "Evictions")
    assert all(v == 0 for ts, v in evictions if ts < lo + 7 * HOUR)
    assert evictions[-1][1] > 0
    untouched(base, events, lambda e: e.key == REDIS_TARGET.encode())


def test_host_goes_silent() -> None:
    _, base = run("infra")
    cfg, events = run("infra", ["host-silent"])
    host = silent_host_id(WORLD)
    lo, _ = cfg.window("host-silent")
    mine = [e.ts for e in events if e.key == host.encode()]
    assert mine and max(mine) < lo and any(ts > lo for ts in (e.ts for e in events))
    untouched(base, events, lambda e: e.key == host.encode())


# --------------------------------------------------------------------------- stores


def test_revenue_decline_at_us00001() -> None:
    start, end = T0 - 7 * DAY, T0 + 15 * DAY
    _, base = run("orders", start=start, end=end)
    _cfg, events = run("orders", ["revenue-decline"], start=start, end=end)

    def revenue(evts, first: float, last: float) -> float:  # type: ignore[no-untyped-def]
        return sum(float(e.value["total"]) for e in evts if e.topic == "orders" and e.value["status"] == "paid"
                   and e.value["store_id"] == DECLINE_STORE and first <= e.ts < last)

    normal, late = revenue(base, T0 + 11 * DAY, end), revenue(events, T0 + 11 * DAY, end)
    assert 0.4 < late / normal < 0.6  # 51% below normal once the fall is complete
    day = T0 + 14 * HOUR  # local midnight starting the day of t0+1d: the first day with fewer orders
    assert revenue(events, start, day) == revenue(base, start, day)
    # A steady fall: each half of the decline is below the one before.
    halves = [revenue(events, T0 + (1 + 5 * h) * DAY, T0 + (6 + 5 * h) * DAY) for h in range(2)]
    assert halves[1] < halves[0] < revenue(base, T0 + DAY, T0 + 6 * DAY)
    untouched(base, events, lambda e: store_of(e) == DECLINE_STORE)


def test_store_closes_mid_day_and_reopens_next_morning() -> None:
    _, base = run("orders", end=T0 + 2 * DAY)
    cfg, events = run("orders", ["store-closure"], end=T0 + 2 * DAY)
    shut = closure_start(cfg)
    local = datetime.fromtimestamp(shut, TZ)
    assert 7 <= local.hour < 18 and shut >= T0 + 1800
    reopen = local_midnight(local.date() + timedelta(days=1)) + 6 * HOUR
    mine = [e for e in events if e.topic == "orders" and e.value["store_id"] == CLOSING_STORE
            and e.value["event_id"] == f"o-{e.value['order_id']}"]  # new orders (refunds of earlier ones go on)
    assert any(shut - 2 * HOUR < e.ts < shut for e in mine)
    assert not any(shut <= e.ts < reopen for e in mine)
    assert any(e.ts >= reopen for e in mine)
    others = [e for e in events
              if e.topic == "orders" and e.value["store_id"] != CLOSING_STORE and shut <= e.ts < shut + HOUR]
    assert len(others) > 50  # the rest of the chain keeps selling
    untouched(base, events, lambda e: store_of(e) == CLOSING_STORE)


def test_store_closure_waits_for_opening_hours() -> None:
    night = datetime(2026, 2, 17, 3, 0, tzinfo=UTC).timestamp()  # 22:00 in Manhattan
    cfg = SimConfig(t0=night, start=night, scenarios=("store-closure",), world=WORLD)
    local = datetime.fromtimestamp(closure_start(cfg), TZ)
    assert (local.date().isoformat(), local.hour) == ("2026-02-17", 12)


def payments_of(events, store_id: str):  # type: ignore[no-untyped-def]
    orders = {e.value["order_id"]: e.value for e in events if e.topic == "orders" and e.value["store_id"] == store_id}
    return orders, [e.value for e in events if e.topic == "payments" and e.value["order_id"] in orders]


def test_cents_dollars_payments() -> None:
    _, base = run("orders")
    _cfg, events = run("orders", ["cents-dollars"])
    orders, payments = payments_of(events, CENTS_STORE)
    scaled = [p for p in payments if "amount" in p]
    assert len(scaled) > 20
    for p in scaled:
        assert p["method"] == "card" and p["status"] == "captured" and p["amount"].isdigit()
        # Read as cents, the payments add up to the order; read as dollars (as sent), they are 100x.
        mine = [q for q in payments if q["order_id"] == p["order_id"] and q["status"] == "captured"]
        cents = sum(int(q["amount"]) if "amount" in q else q["amount_minor"] for q in mine)
        assert cents == round(float(orders[p["order_id"]]["total"]) * 100)
    assert all("amount" not in p for _, ps in [payments_of(events, "US00002")] for p in ps)
    untouched(base, events, lambda e: e.topic == "payments" and store_of(e) == CENTS_STORE)


def test_nzd_test_orders() -> None:
    _, base = run("orders")
    cfg, events = run("orders", ["nzd-test-orders"])
    nzd = [e for e in events if e.value.get("currency") == "NZD"]
    topics = collections.Counter(e.topic for e in nzd)
    assert topics["orders"] > 20 and topics["payments"] >= topics["orders"] * 0.9 and topics["ledger"] > 10
    assert all(e.value["order_id"].startswith("T") for e in nzd)
    assert all(e.value["store_id"] == NZD_STORE for e in nzd if e.topic == "orders")
    assert all(e.ts >= cfg.window("nzd-test-orders")[0] for e in nzd)
    untouched(base, events, lambda e: e.value.get("currency") == "NZD")


def test_missing_ledger_entries() -> None:
    _, base = run("orders")
    cfg, events = run("orders", ["missing-ledger"])
    lo, _ = cfg.window("missing-ledger")

    def unbooked(evts) -> tuple[int, int]:  # type: ignore[no-untyped-def]
        paid = {e.value["order_id"] for e in evts if e.topic == "orders" and e.value["store_id"] == MISSING_LEDGER_STORE
                and e.value["status"] == "paid" and lo <= e.ts < T0}
        booked = {e.value["order_id"] for e in evts if e.topic == "ledger" and e.value["kind"] == "revenue"}
        return len(paid - booked), len(paid)

    missing, paid = unbooked(events)
    assert 0.06 < missing / paid < 0.15
    assert unbooked(base)[0] < missing / 4  # normally only the few still in flight at t0
    untouched(base, events, lambda e: e.topic == "ledger" and store_of(e) == MISSING_LEDGER_STORE)


def test_duplicate_payments() -> None:
    _, base = run("orders")
    _cfg, events = run("orders", ["duplicate-payments"])
    _orders, payments = payments_of(events, DUPLICATE_STORE)
    double = [p for p in payments if p["payment_id"].endswith("-dup")]
    redelivered = collections.Counter(p["payment_id"] for p in payments)
    again = [pid for pid, n in redelivered.items() if n > 1]
    assert len(double) > 5 and len(again) > 3
    for p in double:  # a second capture of the same amount: the customer paid twice
        first = next(q for q in payments if q["payment_id"] == p["payment_id"][:-4])
        assert p["amount_minor"] == first["amount_minor"] and p["status"] == "captured" and p["ts"] > first["ts"]
    untouched(base, events, lambda e: e.topic == "payments" and store_of(e) == DUPLICATE_STORE)


def test_biased_forecast() -> None:
    start = T0 - 20 * DAY
    _, base = run("forecast", start=start, end=T0)
    cfg, events = run("forecast", ["biased-forecast"], start=start, end=T0)
    lo, _ = cfg.window("biased-forecast")

    def bias(evts, store: str, after: bool) -> float:  # type: ignore[no-untyped-def]
        f = {(v["sku"], v["date"]): v["forecast_qty"] for e in evts if e.topic == "forecasts"
             for v in [e.value] if v["store_id"] == store}
        a = {(v["sku"], v["date"]): v["actual_qty"] for e in evts if e.topic == "demand"
             for v in [e.value] if v["store_id"] == store}
        keys = [k for k in a if k in f and (local_midnight(datetime.fromisoformat(k[1]).date()) >= lo) == after]
        return sum(f[k] for k in keys) / sum(a[k] for k in keys)

    assert 1.3 < bias(events, BIASED_STORE, True) < 1.6
    assert 0.85 < bias(events, BIASED_STORE, False) < 1.15
    assert 0.85 < bias(events, "US00002", True) < 1.15
    untouched(base, events, lambda e: e.topic == "forecasts" and e.value["store_id"] == BIASED_STORE)


# --------------------------------------------------------------------------- menu (UC-PR-01)


def _items(events, spu: str):  # type: ignore[no-untyped-def]
    return [(e.ts, it) for e in events if e.topic == "orders" for it in e.value["items"] if it["spu"] == spu]


def test_menu_cost_increase_on_the_star() -> None:
    from stream_app import simmenu

    spu = simmenu.spu_of(simmenu.COST_ITEM)
    span = {"start": T0 - 3.2 * DAY, "end": T0 - 0.8 * DAY}
    _, base = run("orders", **span)
    cfg, events = run("orders", [simmenu.COST_SCENARIO], **span)
    lo, _ = cfg.window(simmenu.COST_SCENARIO)
    latte = next(p for p in WORLD.menu if p.spu == spu)
    before = {it["unit_cost"] for ts, it in _items(events, spu) if ts < lo - DAY}
    after = {it["unit_cost"] for ts, it in _items(events, spu) if ts >= lo + DAY}
    assert before == {f"{latte.cost_minor / 100:.2f}"}
    assert after == {f"{round(latte.price_minor * simmenu.COST_FACTOR) / 100:.2f}"}
    assert all(it["category"] == "espresso" for _, it in _items(events, spu))
    untouched(base, events, lambda e: e.topic == "orders" and any(it["spu"] == spu for it in e.value["items"]))


def test_menu_discount_campaign_on_a_puzzle() -> None:
    from stream_app import simmenu

    spu = simmenu.spu_of(simmenu.CAMPAIGN_ITEM)
    span = {"start": T0 - 8.2 * DAY, "end": T0 - 5.5 * DAY}
    _, base = run("orders", **span)
    cfg, events = run("orders", [simmenu.CAMPAIGN_SCENARIO], **span)
    lo, _ = cfg.window(simmenu.CAMPAIGN_SCENARIO)
    during = [it for ts, it in _items(events, spu) if ts >= lo + DAY]
    usual = [it for ts, it in _items(base, spu) if ts >= lo + DAY]
    price = next(p for p in WORLD.menu if p.spu == spu).price_minor
    assert {it["discount"] for it in during} == {f"{round(price * simmenu.CAMPAIGN_DISCOUNT) / 100:.2f}"}
    assert 2.0 < len(during) / len(usual) < 4.0  # three times the share of first picks
    untouched(base, events, lambda e: e.ts >= lo - DAY)  # the days before the campaign are the same


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_has_a_test_here(name: str) -> None:
    tests = {"revenue-decline", "store-closure", "rds-cpu-runaway", "redis-memory-leak", "host-silent",
             "cents-dollars", "nzd-test-orders", "missing-ledger", "duplicate-payments", "biased-forecast",
             "menu-cost-increase", "menu-discount-campaign"}
    assert name in tests
