"""UC-FN-02 reconciliation end to end on the local broker and MariaDB: ``python -m bench.bench_recon``.

A real ``spcwatch worker`` subprocess consumes pre-filled ``orders``, ``payments``
and ``ledger`` topics (the seeded generator of the tests: ~30 % of orders carry an
injected problem). Two rates, both from its first consumed event, so start-up is out:
*consumed* (the last event counted on ``/metrics``) and *end to end* (every order's
row committed in MariaDB). Beside them, in the same run, the Faust count-only
ceiling; and, in process, the processor alone and state bytes per open order.
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
ORDERS = int(os.environ.get("SPCWATCH_BENCH_RECON_ORDERS", "8000"))
CEILING_EVENTS = int(os.environ.get("SPCWATCH_BENCH_RECON_CEILING", "40000"))
PARTITIONS = 4
RUNS = 3


async def _produce(prefix: str, events: list[dict]) -> None:
    for topic in ("orders", "payments", "ledger"):
        await create_topic(BOOTSTRAP, prefix + topic, PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=20, acks=1)
    await producer.start()
    try:
        futures = [await producer.send(prefix + e["topic"], orjson.dumps({k: v for k, v in e.items() if k != "topic"}),
                                       key=str(e["order_id"]).strip().encode()) for e in events]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def worker_rates(prefix: str, n_events: int, n_orders: int, database: str) -> tuple[float, float]:
    """(consumed events/s, end-to-end events/s) of one worker over pre-filled topics."""
    marks = run_worker(prefix, database, ("orders", "payments", "ledger"), n_events,
                       rows_table="recon_orders", n_rows=n_orders, partitions=PARTITIONS)
    return marks.rate(n_events, end_to_end=False), marks.rate(n_events)


def in_process(events: list[dict]) -> tuple[float, float, float, int]:
    """Processor alone (decode included) events/s; mean state bytes of pending and of all open orders."""
    from agents.core.events import DECODERS
    from agents.recon import ORDER_KEY, ReconProcessor

    decoded = [(e["topic"], DECODERS[e["topic"]](orjson.dumps({k: v for k, v in e.items() if k != "topic"})).events)
               for e in events]
    proc, store = ReconProcessor(), {}
    started = time.perf_counter()
    half = len(decoded) // 2
    for i, (topic, evs) in enumerate(decoded):
        proc.process(store, topic, evs)
        if i % 2000 == 0:
            proc.tick(store, evs[0].ts)
        if i == half:
            orders = {k: v for k, v in store.items() if k.startswith(ORDER_KEY)}  # not the daily stages
            sizes = {k: len(orjson.dumps({"p": 0, "s": v})) for k, v in orders.items()}
            pending = [sizes[k] for k, v in orders.items() if not v["s"]]  # no order row published yet
    rate = len(decoded) / (time.perf_counter() - started)
    return rate, statistics.mean(pending), statistics.mean(sizes.values()), len(sizes)


def one_run(events: list[dict], n_events: int, n_orders: int) -> tuple[float, float]:
    """A worker over freshly produced topics and a fresh database: (consumed, end-to-end) events/s."""
    prefix = f"bench.recon.{uuid.uuid4().hex[:8]}."
    with scratch_database() as database:
        try:
            asyncio.run(_produce(prefix, events))
            return worker_rates(prefix, n_events, n_orders, database)
        finally:
            asyncio.run(delete_prefixed(BOOTSTRAP, prefix))


def run() -> str:
    sys.path.insert(0, str(ROOT))
    from tests.agents.recon_data import generate

    sc = generate(n_orders=ORDERS, seed=1)
    n_events, n_orders = len(sc.events), len(sc.kinds)
    ceiling_topic = f"bench.recon.ceiling.{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topic(BOOTSTRAP, ceiling_topic, PARTITIONS))
    try:
        asyncio.run(fill_topic(BOOTSTRAP, ceiling_topic, CEILING_EVENTS))
        ceiling = faust_count_rate(ceiling_topic, CEILING_EVENTS)
    finally:
        asyncio.run(delete_topics(BOOTSTRAP, [ceiling_topic]))
    runs = [one_run(sc.events, n_events, n_orders) for _ in range(RUNS)]  # one run varies by 2x
    consumed = statistics.median(r[0] for r in runs)
    e2e_runs = sorted(r[1] for r in runs)
    e2e = statistics.median(e2e_runs)
    alone, pending_bytes, open_bytes, open_orders = in_process(sc.events)
    return f"""## Reconciliation (UC-FN-02), one worker, local Kafka + MariaDB

{n_orders:,} orders as {n_events:,} events on `orders`/`payments`/`ledger` ({PARTITIONS} partitions), ~30 % with
an injected problem; rows upserted to MariaDB at each checkpoint. Rates from the worker's first event;
worker rates are medians of {RUNS} runs, each on fresh topics and a fresh database.

| what | events/s | ratio to faust count-only |
| --- | ---: | ---: |
| faust agent that only counts (same run) | {ceiling:,.0f} | 1.00 |
| recon worker, events consumed | {consumed:,.0f} | {consumed / ceiling:.2f} |
| recon worker, end to end (every order's row committed in MariaDB) | {e2e:,.0f} | {e2e / ceiling:.2f} \
(runs: {", ".join(f"{r:,.0f}" for r in e2e_runs)}) |
| processor alone, in process (decode + match, no Kafka, no DB) | {alone:,.0f} | {alone / ceiling:.2f} |

| state per open order (JSON as stored in the table, mid-stream, {open_orders:,} orders in state) | bytes |
| --- | ---: |
| pending (no outcome yet) | {pending_bytes:,.0f} |
| all orders in state (pending, matched awaiting retention, exceptions) | {open_bytes:,.0f} |
"""


if __name__ == "__main__":
    print(run())
