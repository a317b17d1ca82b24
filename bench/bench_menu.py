"""UC-PR-01 menu engineering: ``python -m bench.bench_menu``.

* End to end on the local broker and MariaDB: a real ``spcwatch worker`` over a pre-filled ``orders`` topic
  (tests/menu_data.py: ten stores, ~160 orders per store-day, 11 items in 3 categories), until every closed
  day's ``menu_run_log`` row (each store and the chain) is committed; beside it the Faust count-only ceiling of
  the same run. The worker runs every use case on ``orders`` (store, recon, menu), as deployed.
* In process: the processor alone (the replay path) over 30 days of the simulator's 58-item menu, and the
  state it keeps, per (scope, category, item) once the 28-day window is full.
* Pair counting per basket (``DaySummary.from_orders``) as the basket grows.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from bench.common import (
    BOOTSTRAP,
    create_topic,
    delete_prefixed,
    delete_topics,
    fill_topic,
    run_worker,
    scratch_database,
)
from bench.framework import faust_count_rate

ROOT = Path(__file__).resolve().parent.parent
DAYS = int(os.environ.get("SPCWATCH_BENCH_MENU_DAYS", "8"))
SIM_DAYS = int(os.environ.get("SPCWATCH_BENCH_MENU_SIM_DAYS", "30"))
RUNS = 3
CEILING_EVENTS = 40000
PARTITIONS = 4


async def _produce(prefix: str, events: list[dict]) -> None:
    from tests import menu_data as md

    await create_topic(BOOTSTRAP, prefix + "orders", PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=20, acks=1)
    await producer.start()
    try:
        futures = [await producer.send(prefix + "orders", orjson.dumps(md.to_json_obj(e)), key=e["order_id"].encode())
                   for e in events]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def one_run(events: list[dict], n_rows: int) -> tuple[float, float]:
    prefix = f"bench.menu.{uuid.uuid4().hex[:8]}."
    with scratch_database() as database:
        try:
            asyncio.run(_produce(prefix, events))
            marks = run_worker(prefix, database, ("orders",), len(events), rows_table="menu_run_log", n_rows=n_rows,
                               partitions=PARTITIONS)
            return marks.rate(len(events), end_to_end=False), marks.rate(len(events))
        finally:
            asyncio.run(delete_prefixed(BOOTSTRAP, prefix))


def in_process() -> tuple[int, float, dict[str, float]]:
    """30 days of the simulator's orders through the processor: (orders, orders/s, state figures)."""
    from agents.core.events import order_from_obj
    from agents.menu import MenuProcessor
    from stream_app.simgen import SimConfig, generate

    t0 = datetime(2026, 3, 2, 5, tzinfo=UTC).timestamp()
    cfg = SimConfig(t0=t0, start=t0 - SIM_DAYS * 86400.0, end=t0, domains=("orders",))
    orders = [order_from_obj(e.value) for e in generate(cfg) if e.topic == "orders"]
    proc, store, last = MenuProcessor(), {}, 0.0
    started = time.perf_counter()
    for o in orders:
        proc.process(store, "orders", [o])
        if o.ts - last >= 60:
            proc.tick(store, o.ts)
            last = o.ts
    rate = len(orders) / (time.perf_counter() - started)
    items = {k: v for k, v in store.items() if k.startswith("mi:")}
    n_items = sum(len({spu for day in v["d"].values() for spu in day}) for v in items.values())
    per_item = sum(len(orjson.dumps(v)) for v in items.values()) / max(n_items, 1)
    chain_items = [v for k, v in items.items() if k.startswith("mi:chain|")]
    n_chain = sum(len({spu for day in v["d"].values() for spu in day}) for v in chain_items)
    chain_per_item = sum(len(orjson.dumps(v)) for v in chain_items) / max(n_chain, 1)
    pairs = [v for k, v in store.items() if k.startswith("mp:")]
    chain_pairs = [v for k, v in store.items() if k.startswith("mp:chain|")]
    return len(orders), rate, {
        "keys_items": len(items), "n_items": n_items, "per_item": per_item, "chain_per_item": chain_per_item,
        "pair_day": statistics.median(len(orjson.dumps(v)) for v in pairs),
        "chain_pair_day": statistics.median(len(orjson.dumps(v)) for v in chain_pairs),
        "orders_state": sum(len(orjson.dumps(v)) for k, v in store.items() if k.startswith("o:")),
        "total": len(orjson.dumps(store))}


def pair_cost() -> list[tuple[int, float]]:
    """µs per basket of counting a day's baskets (all pairs, per-item vectors) by basket size."""
    from models.menu import DaySummary

    out = []
    for k in (1, 2, 3, 4, 6, 8, 12):
        baskets = [[[f"S{(i * 7 + j) % 58:02d}", "c", "", 1, 300, 400, 100] for j in range(k)] for i in range(4000)]
        best = min(_time(lambda b=baskets: DaySummary.from_orders(b, 2000)) for _ in range(3))
        out.append((k, best / len(baskets) * 1e6))
    return out


def _time(f) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    f()
    return time.perf_counter() - started


def run() -> str:
    sys.path.insert(0, str(ROOT))
    from tests import menu_data as md

    sc = md.Scenario(days=DAYS, stores=tuple(f"S{i:02d}" for i in range(1, 11)))
    events = md.events(sc)
    n_rows = (len(sc.stores) + 1) * (DAYS - 1)  # each store and the chain; the last day does not close
    ceiling_topic = f"bench.menu.ceiling.{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(create_topic(BOOTSTRAP, ceiling_topic, PARTITIONS))
        asyncio.run(fill_topic(BOOTSTRAP, ceiling_topic, CEILING_EVENTS))
        ceiling = faust_count_rate(ceiling_topic, CEILING_EVENTS)
    finally:
        asyncio.run(delete_topics(BOOTSTRAP, [ceiling_topic]))
    runs = [one_run(events, n_rows) for _ in range(RUNS)]
    consumed = statistics.median(r[0] for r in runs)
    e2e_runs = sorted(r[1] for r in runs)
    e2e = statistics.median(e2e_runs)
    n_sim, alone, st = in_process()
    costs = pair_cost()
    return "\n".join([
        "## Menu engineering (UC-PR-01): orders end to end, state, pair counting",
        "",
        f"{len(events):,} order events ({len(sc.stores)} stores x {DAYS} days, tests/menu_data.py), {PARTITIONS} "
        "partitions, one worker running every use case on `orders` (store, recon, menu), MariaDB sink. End to "
        "end: every closed day's `menu_run_log` row committed, each store and the chain (order stage -> "
        f"repartition by store -> store stage -> chain stage). Medians of {RUNS} runs on fresh topics and "
        "databases; the last day's close crossing three stages is part of a run this short.",
        "",
        "| what | orders/s | ratio to faust count-only |",
        "| --- | ---: | ---: |",
        f"| faust count-only ceiling (same run) | {ceiling:,.0f} | 1.00 |",
        f"| worker, consumed | {consumed:,.0f} | {consumed / ceiling:.2f} |",
        f"| worker, end to end (menu rows in MariaDB) | {e2e:,.0f} | {e2e / ceiling:.2f} "
        f"(runs: {', '.join(f'{r:,.0f}' for r in e2e_runs)}) |",
        f"| menu processor alone, in process, simulator's 58-item menu | {alone:,.0f} | {alone / ceiling:.2f} |",
        "",
        f"State after {SIM_DAYS} days of the simulator ({n_sim:,} orders, 10 stores + the chain, 28-day window "
        f"full): {st['keys_items']} (scope, category) keys holding {st['n_items']} (scope, category, item) "
        f"entries, **{st['per_item']:,.0f} bytes of JSON per (scope, category, item)** on average "
        f"({st['chain_per_item']:,.0f} at the chain, which also holds the margin and discount charts); pair "
        f"counts {st['pair_day'] / 1024:,.1f} KiB per scope-day (median; chain {st['chain_pair_day'] / 1024:,.1f} "
        f"KiB), kept for 28 days; the order stage's per-order entries {st['orders_state'] / 2**20:,.1f} MiB "
        f"(about two days of orders); everything {st['total'] / 2**20:,.1f} MiB.",
        "",
        "Pair counting, per basket (a day's baskets counted at its close: every pair of the basket's distinct "
        "items, plus the item vectors), best of 3:",
        "",
        "| distinct items in the basket | pairs | µs per basket |",
        "| ---: | ---: | ---: |",
        *(f"| {k} | {k * (k - 1) // 2} | {us:.1f} |" for k, us in costs),
    ])


if __name__ == "__main__":
    print(run())
