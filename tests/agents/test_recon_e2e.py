"""Reconciliation end to end: real worker, real Kafka, real MariaDB, thousands of orders.

The generated stream carries a known mix of injected problems (tests/agents/recon_data.py);
the worker must find each with the right category and status and report nothing else, give
the same rows as the offline replay, and give the same rows again after a SIGKILL mid-stream.
Over 20 business days, the worker's daily SPC (through its internal topics, two partitions)
must publish on the ``alerts`` topic exactly the daily SPC alerts of the offline replay.
"""

from __future__ import annotations

import asyncio
import io
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import MetaData, Table, func, select

from agents.core.settings import Settings
from agents.recon import ReconProcessor
from stream_app.replay import run_replay
from stream_app.runtime import db
from stream_app.runtime.topics import ensure_topics
from tests.agents.recon_data import generate, generate_days, key_of

pytestmark = pytest.mark.integration

N_ORDERS = 1500


async def _produce(bootstrap: str, prefix: str, events: list[dict[str, Any]]) -> None:
    """In event-time order, keyed by order id (per partition and topic, Kafka keeps that order)."""
    await ensure_topics(Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, partitions=2))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for e in events:
            body = {k: v for k, v in e.items() if k != "topic"}
            futures.append(await producer.send(prefix + e["topic"], orjson.dumps(body), key=key_of(e)))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _rows(url: str, table: str) -> list[tuple]:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            t = await conn.run_sync(lambda sync: Table(table, MetaData(), autoload_with=sync))
            rows = (await conn.execute(select(t))).all()
    finally:
        await engine.dispose()
    return sorted(tuple(r) for r in rows)


async def _count(url: str, table: str) -> int:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            t = await conn.run_sync(lambda sync: Table(table, MetaData(), autoload_with=sync))
            return int((await conn.execute(select(func.count()).select_from(t))).scalar_one())
    finally:
        await engine.dispose()


def _wait_for_rows(url: str, table: str, count: int, worker: Any, timeout: float = 240.0) -> None:
    """Until ``table`` holds at least ``count`` rows (the worker is under way)."""
    deadline = time.monotonic() + timeout
    n = -1
    while time.monotonic() < deadline:
        try:
            n = asyncio.run(_count(url, table))
        except Exception:  # not migrated yet
            n = -1
        if n >= count:
            return
        time.sleep(0.5)
    pytest.fail(f"{table}: {n} rows after {timeout}s, expected {count}\n{worker.log_tail()}", pytrace=False)


def _exceptions(url: str) -> dict[tuple[str, str], str]:
    return {(r[0], r[1]): r[2] for r in asyncio.run(_rows(url, "recon_exceptions"))}


def _settle(read: Any, want: Any, worker: Any, timeout: float = 240.0) -> Any:
    """Poll ``read()`` until it equals ``want`` and still does 3 s later; the last value otherwise.

    Rows change after they first appear (an exception resolves when the slowest source's clock
    passes the late arrival), so neither a row count nor a quiet period says the worker is done.
    """
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        try:
            got = read()
        except Exception:  # tables not migrated yet
            got = None
        if got == want:
            time.sleep(3)
            got = read()
            if got == want:
                return got
        time.sleep(1)
    print(worker.log_tail())
    return got


def _diff(found: dict, expected: dict) -> str:
    missing = {k: v for k, v in expected.items() if found.get(k) != v}
    extra = {k: v for k, v in found.items() if k not in expected}
    return (f"missing/wrong {len(missing)}: {[(k, v, found.get(k)) for k, v in list(missing.items())[:5]]}; "
            f"extra {len(extra)}: {list(extra.items())[:5]}")


def test_worker_finds_every_injected_problem_and_matches_the_replay(
        make_worker, kafka_bootstrap: str, topic_prefix: str, mysql_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sc = generate(n_orders=N_ORDERS, seed=11)
    # the offline replay over the same events, for comparison
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sc.events))
    replay_url = f"sqlite+aiosqlite:///{tmp_path / 'replay.db'}"
    asyncio.run(run_replay(Settings(db_url=replay_url), ReconProcessor(), path, io.StringIO()))
    replayed = {t: asyncio.run(_rows(replay_url, t)) for t in ("recon_exceptions", "recon_orders")}
    assert {(r[0], r[1]): r[2] for r in replayed["recon_exceptions"]} == sc.expected

    asyncio.run(_produce(kafka_bootstrap, topic_prefix, sc.events))
    worker = make_worker(SPCWATCH_DB_URL=mysql_url, SPCWATCH_RECON_ALERT_MIN_AMOUNT_MINOR="2000")
    worker.start()
    found = _settle(lambda: _exceptions(mysql_url), sc.expected, worker)
    assert found == sc.expected, _diff(found or {}, sc.expected)
    assert worker.metric("spcwatch_events_consumed_total", {"topic": "payments"}) == len(sc.by_topic("payments"))

    # the stream writes the very same rows as the replay, column for column
    for table in ("recon_exceptions", "recon_orders"):
        streamed = _settle(lambda t=table: asyncio.run(_rows(mysql_url, t)), replayed[table], worker, timeout=60)
        assert streamed is not None and len(streamed) == len(replayed[table])
        diff = [(a, b) for a, b in zip(streamed, replayed[table], strict=True) if a != b]
        assert not diff, f"{table}: {len(diff)} rows differ, e.g. {diff[:2]}"

    # RECON_* alerts only for injected problems of at least the threshold
    alerts = asyncio.run(_rows(mysql_url, "alerts"))
    recon = [a for a in alerts if a[3] == "recon"]
    assert recon, "some injected problems are above the alert threshold"
    for a in recon:
        entity = orjson.loads(a[6])
        category = a[4].removeprefix("RECON_").lower()
        if "order_id" in entity:  # per-order paging (opt-in above)
            assert (entity["order_id"], category) in sc.expected
        elif "category" in entity:  # store-day count/rate alert: only for categories that were injected
            assert entity["category"] == category and category in {c for _, c in sc.expected}
    worker.stop(signal.SIGKILL)  # a graceful stop takes long and proves nothing here


def test_sigkill_mid_stream_restores_state_and_gives_the_same_exceptions(
        make_worker, kafka_bootstrap: str, topic_prefix: str, mysql_url: str) -> None:  # type: ignore[no-untyped-def]
    sc = generate(n_orders=N_ORDERS, seed=12)
    half = len(sc.events) // 2
    asyncio.run(_produce(kafka_bootstrap, topic_prefix, sc.events[:half]))
    worker = make_worker(SPCWATCH_DB_URL=mysql_url)
    worker.start()
    _wait_for_rows(mysql_url, "recon_orders", 100, worker)
    worker.stop(signal.SIGKILL)
    asyncio.run(_produce(kafka_bootstrap, topic_prefix, sc.events[half:]))
    again = make_worker(SPCWATCH_DB_URL=mysql_url)
    again.start(timeout=150)
    found = _settle(lambda: _exceptions(mysql_url), sc.expected, again)
    assert found == sc.expected, _diff(found or {}, sc.expected)
    again.stop(signal.SIGKILL)


def _spc(alerts: list[dict[str, Any]]) -> set[tuple]:
    """Daily SPC transitions (recon, entity with a metric): (alert id, status, rule, store, metric, start, end)."""
    return {(a["alert_id"], a["status"], a["rule"], a["entity"]["store_id"], a["entity"]["metric"],
             a["starts_at"], a["ends_at"]) for a in alerts if a["use_case"] == "recon" and "metric" in a["entity"]}


async def _consume_spc(bootstrap: str, topic: str, want: set[tuple], timeout: float) -> set[tuple]:
    """Daily SPC transitions on the ``alerts`` topic, until ``want`` is there and 3 s more (extras)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    found: set[tuple] = set()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                found |= _spc([orjson.loads(r.value) for r in records])
            if found >= want:
                deadline = min(deadline, time.monotonic() + 3)
    finally:
        await consumer.stop()
    return found


def test_worker_publishes_the_daily_spc_alerts_of_the_replay(
        make_worker, kafka_bootstrap: str, topic_prefix: str, mysql_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sc = generate_days()  # 20 days, 3 stores, a match-rate drop at US00001 on day 16
    path = tmp_path / "days.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sc.events))
    replay_url = f"sqlite+aiosqlite:///{tmp_path / 'replay.db'}"
    out = io.StringIO()
    asyncio.run(run_replay(Settings(db_url=replay_url), ReconProcessor(), path, out))
    expected = _spc([orjson.loads(line) for line in out.getvalue().splitlines()])
    assert {(a[3], a[4]) for a in expected if a[1] == "firing"} == {
        (s, m) for s in ("ALL", "US00001") for m in ("match_rate", "unmatched_minor")}

    asyncio.run(_produce(kafka_bootstrap, topic_prefix, sc.events))
    worker = make_worker(SPCWATCH_DB_URL=mysql_url)  # two partitions: the close waits for both
    worker.start()
    streamed = asyncio.run(_consume_spc(kafka_bootstrap, topic_prefix + "alerts", expected, 90))
    assert streamed == expected, (f"missing {sorted(expected - streamed)[:4]}, extra {sorted(streamed - expected)[:4]}"
                                  f"\n{worker.log_tail()}")
    # the alerts table holds each episode once, in its last state, as the replay's
    def spc_rows(url: str) -> list[tuple]:
        return [r[:2] for r in asyncio.run(_rows(url, "alerts")) if r[3] == "recon" and "metric=" in r[7]]

    want = spc_rows(replay_url)
    assert _settle(lambda: spc_rows(mysql_url), want, worker, timeout=30) == want
    worker.stop(signal.SIGKILL)
