"""Store processor: configuration, hop-by-hop routing, and the worker end to end
(real Kafka, real MariaDB) against the offline replay."""

from __future__ import annotations

import asyncio
import io
import time
from collections import deque
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import MetaData, Table, select

from agents.store import BY_STORE, CHAIN, StoreProcessor, StoreSettings
from stream_app import db
from stream_app.replay import run_replay
from stream_app.settings import ConfigError, Settings, load_env
from stream_app.topics import ensure_topics
from stream_app.usecase import Outputs
from tests import store_data as sd

# Short windows so that a few days give verdicts and alerts (the scenario tests use the defaults).
E2E_ENV = {"SPCWATCH_STORE_WINDOW_DAYS": "7", "SPCWATCH_STORE_SEASONALITY": "none",
           "SPCWATCH_STORE_MIN_SAMPLES": "3", "SPCWATCH_STORE_INTRADAY_MIN_DAYS": "2"}
E2E = sd.Scenario(days=12, stores=sd.STORES[:4], decline_store=None, chain_dip=(8, 0.5),
                  closure=("US00002", 10, 11.0), seed=3)


def test_bad_configuration_is_one_line_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="SPCWATCH_STORE_SEASONALITY"):
        load_env(StoreSettings, "SPCWATCH_STORE_", {"SPCWATCH_STORE_SEASONALITY": "hour_of_day"})
    with pytest.raises(ConfigError, match="SPCWATCH_STORE_TIMEZONE"):
        load_env(StoreSettings, "SPCWATCH_STORE_", {"SPCWATCH_STORE_TIMEZONE": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="SPCWATCH_STORE_CLOSED_DAYS"):
        load_env(StoreSettings, "SPCWATCH_STORE_", {"SPCWATCH_STORE_CLOSED_DAYS": "US00001:2026-13-01"})
    s = load_env(StoreSettings, "SPCWATCH_STORE_", {"SPCWATCH_STORE_CLOSED_DAYS": "2026-01-01,US00003:2026-02-10",
                                                    "SPCWATCH_STORE_PEER_GROUPS": "US00001=midtown"})
    cfg = s.model_config()
    assert cfg.closed_days == (("*", "2026-01-01"), ("US00003", "2026-02-10"))
    assert cfg.peer_groups == (("US00001", "midtown"),)


def test_keys_follow_the_stage() -> None:
    proc = StoreProcessor()
    order = sd.to_order(sd.events(sd.Scenario(days=1, stores=sd.STORES[:1]))[0])
    assert proc.key("orders", order) == order.order_id
    assert proc.key(BY_STORE, {"store": "US00001"}) == "US00001"
    assert proc.key(CHAIN, {"store": "US00001"}) == "chain"


def test_hops_delivered_late_and_in_batches_give_the_same_days_as_inline() -> None:
    """What the worker does: each hop's forwards arrive later, per topic, interleaved with new input."""
    sc = sd.Scenario(days=3, stores=sd.STORES[:3], decline_store=None)
    events = [sd.to_order(e) for e in sd.events(sc)]
    inline, inline_store = Outputs(), {}
    proc = StoreProcessor()
    for o in events:
        inline.merge(proc.process(inline_store, "orders", [o]))
    staged, store = Outputs(), {}
    queue: deque[tuple[str, str, dict]] = deque()
    now = 0.0
    for i, o in enumerate(events):
        now = max(now, o.ts)
        hop = proc.step(store, "orders", [o], now)
        staged.merge(hop)
        queue.extend(hop.forward)
        if i % 97 == 0 or i == len(events) - 1:  # deliver what is in flight
            while queue:
                topic, _key, value = queue.popleft()
                hop = proc.step(store, topic, [value], now)
                staged.merge(hop)
                queue.extend(hop.forward)
    key = ("store_id", "business_date")
    assert {tuple(r[k] for k in key): r for r in staged.rows["store_daily_metrics"]} == \
        {tuple(r[k] for k in key): r for r in inline.rows["store_daily_metrics"]}
    assert len(inline.rows["store_daily_metrics"]) >= 6


# --------------------------------------------------------------------------- end to end


async def _produce(bootstrap: str, prefix: str, events: list[dict[str, Any]]) -> None:
    await ensure_topics(Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, partitions=1))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(prefix + "orders", orjson.dumps(sd.to_json_obj(e)),
                                       key=e["order_id"].encode()) for e in events]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _rows(url: str, table: str, columns: tuple[str, ...]) -> list[tuple]:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            t = await conn.run_sync(lambda sync: Table(table, MetaData(), autoload_with=sync))
            rows = (await conn.execute(select(*(t.c[c] for c in columns)))).all()
    finally:
        await engine.dispose()
    return sorted(tuple(float(v) if isinstance(v, Decimal) else v for v in r) for r in rows)


def _same(a: list[tuple], b: list[tuple]) -> bool:
    """Equal rows, floats to 1e-6 (MariaDB hands DOUBLE back through a 10-digit DECIMAL)."""
    return len(a) == len(b) and all(
        len(x) == len(y) and all(u == pytest.approx(v, rel=1e-6, abs=1e-9) if isinstance(u, float) else u == v
                                 for u, v in zip(x, y, strict=True)) for x, y in zip(a, b, strict=True))


ALERT_COLUMNS = ("alert_id", "status", "rule", "entity_key")
DAY_COLUMNS = ("store_id", "business_date", "net_revenue", "orders", "aov", "refund_rate", "cancel_rate")


@pytest.mark.integration
def test_worker_matches_replay_on_kafka_and_mariadb(make_worker, kafka_bootstrap: str, topic_prefix: str,  # type: ignore[no-untyped-def]
                                                   mysql_url: str, tmp_path: Path, monkeypatch) -> None:
    events = sd.events(E2E)
    jsonl = tmp_path / "orders.jsonl"
    jsonl.write_bytes(b"".join(orjson.dumps(sd.to_json_obj(e)) + b"\n" for e in events))
    # offline replay into SQLite
    replay_url = f"sqlite+aiosqlite:///{tmp_path / 'replay.db'}"
    for k, v in E2E_ENV.items():
        monkeypatch.setenv(k, v)
    processor = StoreProcessor.from_settings(Settings())
    report = asyncio.run(run_replay(Settings(db_url=replay_url), processor, jsonl, io.StringIO()))
    assert report.events == len(events) and report.alerts > 0
    expected_days = asyncio.run(_rows(replay_url, "store_daily_metrics", DAY_COLUMNS))
    expected_alerts = asyncio.run(_rows(replay_url, "alerts", ALERT_COLUMNS))
    # the worker, same events through Kafka, into MariaDB
    # One partition: input in event-time order reaches every stage in that order, so nothing is late
    # (with several partitions catching up a backlog, see docs/store.md on amendments).
    worker = make_worker(SPCWATCH_DB_URL=mysql_url, SPCWATCH_PARTITIONS="1", **E2E_ENV)
    worker.start()
    asyncio.run(_produce(kafka_bootstrap, topic_prefix, events))
    deadline = time.monotonic() + 60
    got_days: list[tuple] = []
    got_alerts: list[tuple] = []
    while time.monotonic() < deadline:
        time.sleep(2)
        try:
            got_days = asyncio.run(_rows(mysql_url, "store_daily_metrics", DAY_COLUMNS))
            got_alerts = asyncio.run(_rows(mysql_url, "alerts", ALERT_COLUMNS))
        except Exception:  # tables not there yet (the worker migrates at start)
            continue
        if _same(got_days, expected_days) and got_alerts == expected_alerts:
            break
    assert len(got_days) == len(expected_days), worker.log_tail()
    assert _same(got_days, expected_days), (got_days, expected_days)
    assert got_alerts == expected_alerts, "\n".join(map(str, sorted(set(got_alerts) ^ set(expected_alerts))))
