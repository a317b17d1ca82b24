"""UC-SC-01 forecast accuracy end to end on the local broker and MariaDB: ``python -m bench.bench_forecast``.

10 stores x 88 SKUs x ``SPCWATCH_BENCH_FORECAST_DAYS`` days: one forecast and one
actual per (store, SKU, day), keyed by store, on pre-filled ``forecasts`` and
``demand`` topics. A real ``spcwatch worker`` subprocess consumes them; *pairs/s
end to end* runs from its first consumed event until every pair's accuracy row
is committed in MariaDB (day closes, rolling summaries and alerts included).
Beside it, in the same run, the Faust count-only ceiling (in events/s, and /2 as
the pairs/s a worker doing nothing could reach), and the processor alone in process.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta
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
STORES, SKUS = 10, 88
DAYS = int(os.environ.get("SPCWATCH_BENCH_FORECAST_DAYS", "30"))
CEILING_EVENTS = int(os.environ.get("SPCWATCH_BENCH_FORECAST_CEILING", "40000"))
RUNS = int(os.environ.get("SPCWATCH_BENCH_RUNS", "3"))
PARTITIONS = 4
TOPICS = ("forecasts", "demand")


def generate(days: int = DAYS, seed: int = 1) -> list[dict]:
    """Events with ``topic``, in event-time order (forecasts 06:00Z the day before, actuals at end of day)."""
    rng = random.Random(seed)
    level = {(f"US{s:05d}", f"GS{k:04d}"): rng.uniform(5, 300) for s in range(1, STORES + 1) for k in range(SKUS)}
    start = date(2026, 1, 5)
    out: list[tuple[float, int, dict]] = []
    for i in range(days):
        day = start + timedelta(days=i)
        gen = datetime.combine(day - timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=6)
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
        for (store, sku), mu in level.items():
            out.append((gen.timestamp(), len(out), {"topic": "forecasts", "store_id": store, "sku": sku,
                                                    "date": day.isoformat(), "forecast_qty": round(mu, 1),
                                                    "generated_at": gen.isoformat()}))
            out.append((end.timestamp(), len(out), {"topic": "demand", "store_id": store, "sku": sku,
                                                    "date": day.isoformat(),
                                                    "actual_qty": round(max(0.0, mu * (1 + rng.gauss(0, 0.3))), 1)}))
    out.sort(key=lambda e: (e[0], e[1]))
    return [e[2] for e in out]


def _message(event: dict) -> bytes:
    return orjson.dumps({k: v for k, v in event.items() if k != "topic"})


async def _produce(prefix: str, events: list[dict]) -> None:
    for topic in TOPICS:
        await create_topic(BOOTSTRAP, prefix + topic, PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=20, acks=1)
    await producer.start()
    try:
        futures = [await producer.send(prefix + e["topic"], _message(e), key=e["store_id"].encode()) for e in events]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def worker_rates(prefix: str, n_events: int, n_pairs: int, database: str,
                 extra_env: dict[str, str] | None = None) -> tuple[float, float]:
    """(consumed events/s, end-to-end pairs/s) of one worker over pre-filled topics."""
    marks = run_worker(prefix, database, TOPICS, n_events, rows_table="forecast_accuracy_daily", n_rows=n_pairs,
                       env=extra_env, partitions=PARTITIONS)
    return marks.rate(n_events, end_to_end=False), marks.rate(n_pairs)


def in_process(events: list[dict]) -> tuple[float, float]:
    """Processor alone (decode included): pairs/s; mean JSON state bytes per store at the end."""
    from agents.core.events import DECODERS
    from agents.forecast import ForecastProcessor

    decoded = [(e["topic"], DECODERS[e["topic"]](_message(e)).events) for e in events]
    proc, store = ForecastProcessor(), {}
    started = time.perf_counter()
    for i, (topic, evs) in enumerate(decoded):
        proc.process(store, topic, evs)
        if i % 5000 == 0:
            proc.tick(store, evs[0].ts)
    rate = len(decoded) / 2 / (time.perf_counter() - started)
    sizes = [len(orjson.dumps({"p": 0, "s": proc.dump(v)})) for v in store.values()]
    return rate, statistics.mean(sizes)


def _one_run(events: list[dict], ceiling_topic: str, extra_env: dict[str, str]) -> tuple[float, float, float]:
    n_events, n_pairs = len(events), len(events) // 2
    prefix = f"bench.forecast.{uuid.uuid4().hex[:8]}."
    with scratch_database() as database:
        try:
            asyncio.run(_produce(prefix, events))
            ceiling = faust_count_rate(ceiling_topic, CEILING_EVENTS)
            consumed, pairs = worker_rates(prefix, n_events, n_pairs, database, extra_env)
            return ceiling, consumed, pairs
        finally:
            asyncio.run(delete_prefixed(BOOTSTRAP, prefix))


CONFIGS = {
    "default (per-SKU summary rows on)": {},
    "`SPCWATCH_FORECAST_SKU_SUMMARY_ROWS=false`": {"SPCWATCH_FORECAST_SKU_SUMMARY_ROWS": "false"},
}


def run() -> str:
    events = generate()
    n_events, n_pairs = len(events), len(events) // 2
    ceiling_topic = f"bench.forecast.ceiling.{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topic(BOOTSTRAP, ceiling_topic, PARTITIONS))
    asyncio.run(fill_topic(BOOTSTRAP, ceiling_topic, CEILING_EVENTS,
                           make=lambda i: _message(events[i % n_events]),
                           key=lambda i: events[i % n_events]["store_id"].encode()))
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in CONFIGS}
    try:
        for _ in range(RUNS):
            for name, env in CONFIGS.items():
                results[name].append(_one_run(events, ceiling_topic, env))
    finally:
        asyncio.run(delete_topics(BOOTSTRAP, [ceiling_topic]))
    everything = [r for rs in results.values() for r in rs]
    ceiling = statistics.median(r[0] for r in everything)
    lines = []
    for name, rs in results.items():
        consumed = statistics.median(r[1] for r in rs)
        pairs = statistics.median(r[2] for r in rs)
        ratio = statistics.median(r[2] / (r[0] / 2) for r in rs)  # each run against its own ceiling
        runs = ", ".join(f"{r[2] / (r[0] / 2):.2f}" for r in rs)
        lines.append(f"| {name}: events consumed (events/s) | {consumed:,.0f} | {consumed / ceiling:.2f} |")
        lines.append(f"| {name}: **pairs/s end to end** (rows in MariaDB) | **{pairs:,.0f}** | **{ratio:.2f}** "
                     f"(runs: {runs}) |")
    alone, state_bytes = in_process(events)
    alone_x = alone / (ceiling / 2)
    table = "\n".join(lines)
    return f"""## Forecast accuracy (UC-SC-01), one worker, local Kafka + MariaDB

{STORES} stores x {SKUS} SKUs x {DAYS} days = {n_pairs:,} (forecast, actual) pairs as {n_events:,} events on
`forecasts`/`demand` ({PARTITIONS} partitions, keyed by store). End to end = from the worker's first event until
every pair's row is committed in MariaDB, with day closes, rolling summaries (7/28 days) and alerts. A pair is two
events, so a worker that only counted would reach half the count-only event rate in pairs/s: the pairs/s ratio
is pairs/s / (count-only events/s / 2). Medians of {RUNS} runs per configuration, each run against the count-only
ceiling measured just before it.

| what | rate | ratio to faust count-only |
| --- | ---: | ---: |
| faust agent that only counts (events/s) | {ceiling:,.0f} | 1.00 |
| ... as pairs/s (events/s / 2) | {ceiling / 2:,.0f} | 1.00 |
{table}
| processor alone, in process (decode + pairing + closes, no Kafka, no DB), pairs/s | {alone:,.0f} | {alone_x:.2f} |

State per store (JSON as stored in the table, {SKUS} SKUs, 28-day history, after {DAYS} days): {state_bytes:,.0f} bytes.
"""


if __name__ == "__main__":
    print(run())
