"""UC-OP-02 store performance end to end on the local broker and MariaDB: ``python -m bench.bench_store``.

A real ``spcwatch worker`` subprocess consumes a pre-filled ``orders`` topic (the
seeded coffee-chain generator of the tests: ten stores, ~150 orders per store-day
plus refunds and cancellations). Two rates from its first consumed event:
*consumed* (the last order counted on ``/metrics``: the order stage ran and
forwarded it) and *end to end* (every closed store-day's metrics row committed in
MariaDB: the order, store and chain stages all ran). Beside them, in the same run,
the Faust count-only ceiling, and in process the processor alone (all three
stages inline, as in ``spcwatch replay``).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
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
DAYS = int(os.environ.get("SPCWATCH_BENCH_STORE_DAYS", "8"))
RUNS = 3
CEILING_EVENTS = int(os.environ.get("SPCWATCH_BENCH_STORE_CEILING", "40000"))
PARTITIONS = 4


async def _produce(prefix: str, events: list[dict]) -> None:
    from tests import store_data as sd

    await create_topic(BOOTSTRAP, prefix + "orders", PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=20, acks=1)
    await producer.start()
    try:
        futures = [await producer.send(prefix + "orders", orjson.dumps(sd.to_json_obj(e)), key=e["order_id"].encode())
                   for e in events]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def worker_rates(prefix: str, n_events: int, n_days: int, database: str) -> tuple[float, float]:
    """(consumed orders/s, end-to-end orders/s) of one worker over a pre-filled topic."""
    marks = run_worker(prefix, database, ("orders",), n_events, rows_table="store_daily_metrics", n_rows=n_days,
                       partitions=PARTITIONS)
    return marks.rate(n_events, end_to_end=False), marks.rate(n_events)


def one_run(events: list[dict], n_days: int) -> tuple[float, float]:
    """A worker over freshly produced topics and a fresh database: (consumed, end-to-end) orders/s."""
    prefix = f"bench.store.{uuid.uuid4().hex[:8]}."
    with scratch_database() as database:
        try:
            asyncio.run(_produce(prefix, events))
            return worker_rates(prefix, len(events), n_days, database)
        finally:
            asyncio.run(delete_prefixed(BOOTSTRAP, prefix))


def in_process(events: list[dict]) -> tuple[float, int]:
    """Processor alone (all stages inline, ticks every minute of event time): orders/s; state bytes."""
    from agents.core.events import DECODERS
    from agents.store import StoreProcessor
    from tests import store_data as sd

    decoded = [DECODERS["orders"](orjson.dumps(sd.to_json_obj(e))).events[0] for e in events]
    proc, store = StoreProcessor(), {}
    started = time.perf_counter()
    last = 0.0
    for o in decoded:
        proc.process(store, "orders", [o])
        if o.ts - last >= 60:
            proc.tick(store, o.ts)
            last = o.ts
    rate = len(decoded) / (time.perf_counter() - started)
    return rate, len(orjson.dumps(store))


def run() -> str:
    sys.path.insert(0, str(ROOT))
    from tests import store_data as sd

    sc = sd.Scenario(days=DAYS, decline_store=None)
    events = sd.events(sc)
    n_days = len(sc.stores) * (DAYS - 1)  # the last day does not close (no later event time)
    ceiling_topic = f"bench.store.ceiling.{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(create_topic(BOOTSTRAP, ceiling_topic, PARTITIONS))
        asyncio.run(fill_topic(BOOTSTRAP, ceiling_topic, CEILING_EVENTS))
        ceiling = faust_count_rate(ceiling_topic, CEILING_EVENTS)
    finally:
        asyncio.run(delete_topics(BOOTSTRAP, [ceiling_topic]))
    runs = [one_run(events, n_days) for _ in range(RUNS)]
    consumed = statistics.median(r[0] for r in runs)
    e2e_runs = sorted(r[1] for r in runs)
    e2e = statistics.median(e2e_runs)
    alone, state_bytes = in_process(events)
    return "\n".join([
        "## Store performance (UC-OP-02): orders end to end",
        "",
        f"{len(events):,} order events ({len(sc.stores)} stores x {DAYS} days, paid + refund/cancel updates), "
        f"{PARTITIONS} partitions, one worker, MariaDB sink. End to end: every closed store-day's row committed "
        "(order stage -> repartition by store -> store stage -> chain stage). Worker rates are medians of "
        f"{RUNS} runs, each on fresh topics and a fresh database. The end-to-end time includes the last "
        "day's close crossing three stages (ticks every second, checkpoints every 5 s: several seconds), a "
        "large part of a run this short (`SPCWATCH_BENCH_STORE_DAYS` makes it longer).",
        "",
        "| what | orders/s | ratio to faust count-only |",
        "| --- | ---: | ---: |",
        f"| faust count-only ceiling (same run) | {ceiling:,.0f} | 1.00 |",
        f"| worker, consumed (order stage) | {consumed:,.0f} | {consumed / ceiling:.2f} |",
        f"| worker, end to end (all stages, rows in MariaDB) | {e2e:,.0f} | {e2e / ceiling:.2f} "
        f"(runs: {', '.join(f'{r:,.0f}' for r in e2e_runs)}) |",
        f"| processor alone, in process (replay path) | {alone:,.0f} | {alone / ceiling:.2f} |",
        "",
        f"State after {DAYS} days: {state_bytes / 1024:,.0f} KiB of JSON for {len(sc.stores)} stores "
        "(mostly the order stage's per-order entries, kept for the retention period).",
    ])


if __name__ == "__main__":
    print(run())
