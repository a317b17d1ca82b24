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
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
import pymysql
from aiokafka import AIOKafkaProducer

from bench.common import BOOTSTRAP, create_topic, delete_topics, fill_topic
from bench.framework import faust_count_rate

ROOT = Path(__file__).resolve().parent.parent
ORDERS = int(os.environ.get("SPCWATCH_BENCH_RECON_ORDERS", "8000"))
CEILING_EVENTS = int(os.environ.get("SPCWATCH_BENCH_RECON_CEILING", "40000"))
PARTITIONS = 4
MYSQL = dict(host="127.0.0.1", port=3306, user="spcwatch", password="spcwatch")


def _metric(port: int, name: str) -> float:
    total = 0.0
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                ours = any(f'topic="{t}"' in line for t in ("orders", "payments", "ledger"))
                if line.startswith(name + "{") and ours:
                    total += float(line.rsplit(" ", 1)[1])
    except OSError:
        pass
    return total


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


async def _delete_prefixed(prefix: str, *extra: str) -> None:
    """Every topic of the run: inputs, and what the worker created (changelogs, ticks, alerts)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
    finally:
        await admin.close()
    await delete_topics(BOOTSTRAP, names + list(extra))


def _rows(database: str) -> int:
    try:
        conn = pymysql.connect(**MYSQL, database=database, autocommit=True)
    except pymysql.MySQLError:
        return 0
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM recon_orders")
            return int(cur.fetchone()[0])
    except pymysql.MySQLError:
        return 0
    finally:
        conn.close()


def worker_rates(prefix: str, n_events: int, n_orders: int, database: str) -> tuple[float, float]:
    """(consumed events/s, end-to-end events/s) of one worker over pre-filled topics."""
    from tests.conftest import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPCWATCH_")}
    env.update(SPCWATCH_KAFKA_BOOTSTRAP=BOOTSTRAP, SPCWATCH_TOPIC_PREFIX=prefix, SPCWATCH_WEB_PORT=str(port),
               SPCWATCH_DB_URL=f"mysql+aiomysql://spcwatch:spcwatch@127.0.0.1:3306/{database}",
               SPCWATCH_WEB_HOST="127.0.0.1", SPCWATCH_LOG_LEVEL="WARNING", SPCWATCH_PARTITIONS=str(PARTITIONS),
               SPCWATCH_DATA_DIR=f"/tmp/{prefix}data")
    proc = subprocess.Popen([sys.executable, "-m", "stream_app.cli", "worker"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        first = consumed_at = 0.0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            seen = _metric(port, "spcwatch_events_consumed_total")
            now = time.perf_counter()
            if seen and not first:
                first = now
            if seen >= n_events and not consumed_at:
                consumed_at = now
            if consumed_at and _rows(database) >= n_orders:
                return n_events / (consumed_at - first), n_events / (now - first)
            time.sleep(0.05)
        raise RuntimeError("the recon worker did not finish within 600 s")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def in_process(events: list[dict]) -> tuple[float, float, float, int]:
    """Processor alone (decode included) events/s; mean state bytes of pending and of all open orders."""
    from agents.recon import ReconProcessor
    from stream_app.events import DECODERS

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
            sizes = {k: len(orjson.dumps({"p": 0, "s": v})) for k, v in store.items()}
            pending = [sizes[k] for k, v in store.items() if not v["s"]]  # no order row published yet
    rate = len(decoded) / (time.perf_counter() - started)
    return rate, statistics.mean(pending), statistics.mean(sizes.values()), len(sizes)


def run() -> str:
    sys.path.insert(0, str(ROOT))
    from tests.agents.recon_data import generate

    sc = generate(n_orders=ORDERS, seed=1)
    n_events, n_orders = len(sc.events), len(sc.kinds)
    prefix = f"bench.recon.{uuid.uuid4().hex[:8]}."
    database = f"spcwatch_bench_{uuid.uuid4().hex[:8]}"
    ceiling_topic = f"bench.recon.ceiling.{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(**MYSQL, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
    try:
        asyncio.run(_produce(prefix, sc.events))
        asyncio.run(create_topic(BOOTSTRAP, ceiling_topic, PARTITIONS))
        asyncio.run(fill_topic(BOOTSTRAP, ceiling_topic, CEILING_EVENTS))
        ceiling = faust_count_rate(ceiling_topic, CEILING_EVENTS)
        consumed, e2e = worker_rates(prefix, n_events, n_orders, database)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        conn.close()
        asyncio.run(_delete_prefixed(prefix, ceiling_topic))
    alone, pending_bytes, open_bytes, open_orders = in_process(sc.events)
    return f"""## Reconciliation (UC-FN-02), one worker, local Kafka + MariaDB

{n_orders:,} orders as {n_events:,} events on `orders`/`payments`/`ledger` ({PARTITIONS} partitions), ~30 % with
an injected problem; rows upserted to MariaDB at each checkpoint. Rates from the worker's first event.

| what | events/s | ratio to faust count-only |
| --- | ---: | ---: |
| faust agent that only counts (same run) | {ceiling:,.0f} | 1.00 |
| recon worker, events consumed | {consumed:,.0f} | {consumed / ceiling:.2f} |
| recon worker, end to end (every order's row committed in MariaDB) | {e2e:,.0f} | {e2e / ceiling:.2f} |
| processor alone, in process (decode + match, no Kafka, no DB) | {alone:,.0f} | {alone / ceiling:.2f} |

| state per open order (JSON as stored in the table, mid-stream, {open_orders:,} orders in state) | bytes |
| --- | ---: |
| pending (no outcome yet) | {pending_bytes:,.0f} |
| all orders in state (pending, matched awaiting retention, exceptions) | {open_bytes:,.0f} |
"""


if __name__ == "__main__":
    print(run())
