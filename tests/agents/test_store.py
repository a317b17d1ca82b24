"""Store processor: configuration, hop-by-hop routing, and the worker end to end
(real Kafka, real MariaDB) against the offline replay."""

from __future__ import annotations

import asyncio
import io
import itertools
import math
import random
import time
import zlib
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import MetaData, Table, select

from agents.core.contract import Outputs
from agents.core.settings import ConfigError, Settings, load_env
from agents.store import BY_STORE, CHAIN, StoreProcessor, StoreSettings
from models.store import SourceClocks, StoreConfig
from stream_app.replay import run_replay
from stream_app.runtime import db
from stream_app.runtime.topics import ensure_topics
from tests import store_data as sd

# Short windows so that a few days give verdicts and alerts (the scenario tests use the defaults).
E2E_ENV = {"SPCWATCH_STORE_WINDOW_DAYS": "7", "SPCWATCH_STORE_SEASONALITY": "none",
           "SPCWATCH_STORE_MIN_SAMPLES": "3", "SPCWATCH_STORE_INTRADAY_MIN_DAYS": "1"}
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
    assert isinstance(s, StoreConfig)  # one dataclass: the settings are the model's config
    cfg = s
    assert cfg.closed_days == (("*", "2026-01-01"), ("US00003", "2026-02-10"))
    assert cfg.peer_groups == (("US00001", "midtown"),)
    with pytest.raises(ConfigError, match="SPCWATCH_STORE_RULES"):
        load_env(StoreSettings, "SPCWATCH_STORE_", {"SPCWATCH_STORE_RULES": "WE1,N8"})
    with pytest.raises(ConfigError, match="SPCWATCH_STORE_CUSUM_METRICS"):
        load_env(StoreSettings, "SPCWATCH_STORE_", {"SPCWATCH_STORE_CUSUM_METRICS": "refund_rate"})
    with pytest.raises(ConfigError, match="SPCWATCH_STORE_IDLE_PARTITION_SECONDS"):
        load_env(StoreSettings, "SPCWATCH_STORE_", {"SPCWATCH_STORE_IDLE_PARTITION_SECONDS": "-1"})
    assert StoreSettings().detector_config("net_revenue").rules == ("WE1", "CUSUM")  # the chosen default
    assert StoreSettings().detector_config("orders").rules == ("WE1",)
    tuned = load_env(StoreSettings, "SPCWATCH_STORE_", {"SPCWATCH_STORE_RULES": "WE1,WE2,CUSUM",
                                                        "SPCWATCH_STORE_CUSUM_H": "3",
                                                        "SPCWATCH_STORE_CUSUM_METRICS": "net_revenue,orders"})
    assert tuned.detector_config("orders").rules == ("WE1", "WE2", "CUSUM")
    assert tuned.detector_config("orders").cusum_h == 3 and tuned.detector_config("orders").cusum_side == "lower"
    assert tuned.detector_config("aov").rules == ("WE1", "WE2")  # CUSUM: CUSUM_METRICS only
    assert tuned.detector_config("refund_rate").rules == ("WE1",)


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


# --------------------------------------------------------------------------- several partitions, in memory


class _PartitionStore(dict):
    """A state store that knows its partition, as the runner's stores do."""

    def __init__(self, partition: int) -> None:
        super().__init__()
        self.partition = partition


def _part(key: str, n: int) -> int:
    return zlib.crc32(key.encode()) % n


def _simulate_worker(events: list, settings: StoreSettings, partitions: int, seed: int,
                     wall: Callable[[], float] = time.monotonic, order_partitions: int | None = None,
                     wall_at_end: float | None = None) -> tuple[Outputs, float]:
    """The worker's hops over a backlog: ``partitions`` partitions of every topic consumed unevenly (one partition
    at a time, in batches, heavily favouring some), ticks now and then; forwards go to their key's partition.
    Orders go to the first ``order_partitions`` partitions only (default: all); ``wall`` is the processor's clock,
    or, with ``wall_at_end``, a clock standing at 0 during the backlog and at ``wall_at_end`` afterwards.

    Returns the outputs and the largest gap seen between the order partitions' clocks (how far apart they ran).
    """
    fake = [0.0]
    if wall_at_end is not None:
        wall = lambda: fake[0]  # noqa: E731
    proc = StoreProcessor(settings, partitions=partitions, wall=wall)
    stores = [_PartitionStore(p) for p in range(partitions)]
    queues: dict[tuple[str, int], deque] = {(t, p): deque() for t in ("orders", BY_STORE, CHAIN)
                                            for p in range(partitions)}
    for e in events:
        order = sd.to_order(e)
        queues[("orders", _part(order.order_id, order_partitions or partitions))].append(order)
    watermark = [0.0] * partitions
    order_clock = [-math.inf] * partitions
    rng = random.Random(seed)
    weights = [2.0 ** -p for p in range(partitions)]  # partition 0 runs far ahead of the last one
    out, gap = Outputs(), 0.0

    def route(hop: Any) -> None:
        out.merge(hop)
        for topic, key, value in hop.forward:
            queues[(topic, _part(key, partitions))].append(value)

    rounds = 0
    while any(queues.values()):
        p = rng.choices(range(partitions), weights)[0]
        topic = rng.choice(("orders", BY_STORE, CHAIN))
        queue = queues[(topic, p)]
        for _ in range(min(len(queue), rng.randint(1, 200))):
            msg = queue.popleft()
            ts = msg.ts if topic == "orders" else float(msg.get("ts") or 0.0)
            now = max(watermark[p], ts)
            route(proc.step(stores[p], topic, [msg], now))
            watermark[p] = now
            if topic == "orders":
                order_clock[p] = max(order_clock[p], ts)
        rounds += 1
        if rounds % 7 == 0:
            for q in range(partitions):
                route(proc.step_tick(stores[q], watermark[q]))
        started = [c for c in order_clock if c > -math.inf]
        if len(started) == (order_partitions or partitions):
            gap = max(gap, max(started) - min(started))
    if wall_at_end is not None:
        fake[0] = wall_at_end
    for _ in range(3):  # the end of input: ticks until nothing moves
        for q in range(partitions):
            route(proc.step_tick(stores[q], watermark[q]))
        while any(queues.values()):
            (topic, q), queue = next((k, v) for k, v in queues.items() if v)
            msg = queue.popleft()
            route(proc.step(stores[q], topic, [msg], max(watermark[q], float(msg.get("ts") or 0.0))))
    return out, gap


def _replay(events: list, settings: StoreSettings) -> Outputs:
    proc, store, out, last = StoreProcessor(settings), {}, Outputs(), 0.0
    for e in events:
        o = sd.to_order(e)
        out.merge(proc.process(store, "orders", [o]))
        if o.ts - last >= 60:
            out.merge(proc.tick(store, o.ts))
            last = o.ts
    out.merge(proc.tick(store, last))
    return out


def _final_alerts(out: Outputs) -> dict:
    return {a.alert_id: (a.status, a.rule, a.rules, tuple(sorted(a.entity.items()))) for a in out.alerts}


def _days(out: Outputs) -> dict:
    return {(r["store_id"], r["business_date"]): r for r in out.rows["store_daily_metrics"]}


def test_several_partitions_catching_up_a_backlog_give_the_replays_alerts_exactly() -> None:
    """Order partitions running days apart: the store stage closes a day only at the sources' low watermark,
    the chain decides it only once every store is known, so nothing is amended and no alert is withdrawn."""
    settings = load_env(StoreSettings, "SPCWATCH_STORE_", E2E_ENV)
    events = sd.events(E2E)
    expected = _replay(events, settings)
    got, gap = _simulate_worker(events, settings, partitions=4, seed=1)
    assert gap > 86400, "the partitions did not run apart: the test would prove nothing"
    assert any(a.rule == "INTRADAY" for a in expected.alerts) and any(a.rule != "INTRADAY" for a in expected.alerts)
    assert _final_alerts(got) == _final_alerts(expected)
    assert [a.to_event() for a in got.alerts if "withdrawn" in a.summary] == []
    assert _days(got) == _days(expected)
    assert max(r["late_amendments"] for r in got.rows["store_run_log"]) == 0


def test_without_the_low_watermark_a_lagging_partition_amends_closed_days() -> None:
    """The control: the same schedule, but a wall clock so fast that every partition looks idle between two of
    its messages, so the stages go by the newest partition: days close before the lagging orders arrive."""
    settings = load_env(StoreSettings, "SPCWATCH_STORE_", E2E_ENV)
    ticks = itertools.count()
    got, _ = _simulate_worker(sd.events(E2E), settings, partitions=4, seed=1, wall=lambda: 1000.0 * next(ticks))
    assert max(r["late_amendments"] for r in got.rows["store_run_log"]) > 0


def test_a_silent_order_partition_holds_days_open_only_for_the_idle_bound() -> None:
    """Orders on three of four partitions: the fourth is never heard from. Until it has been silent for
    IDLE_PARTITION_SECONDS of wall-clock time nothing closes; after that, the days close as in replay."""
    settings = load_env(StoreSettings, "SPCWATCH_STORE_", E2E_ENV)
    events = sd.events(E2E)
    bound = settings.idle_partition_seconds
    held, _ = _simulate_worker(events, settings, partitions=4, seed=2, order_partitions=3, wall_at_end=bound - 1)
    assert held.rows.get("store_daily_metrics", []) == []
    moved, _ = _simulate_worker(events, settings, partitions=4, seed=2, order_partitions=3, wall_at_end=bound + 1)
    expected = _replay(events, settings)
    assert _days(moved) == _days(expected)
    assert _final_alerts(moved) == _final_alerts(expected)


def test_source_clocks_low_watermark() -> None:
    c = SourceClocks(wall=0.0)
    c.see(0, 3, 100.0, wall=1.0)
    c.see(1, 3, 50.0, wall=1.0)
    assert c.low(60.0, wall=2.0) == -math.inf  # source 2 not heard from, not yet idle
    c.see(0, 3, 110.0, wall=59.0)
    c.see(1, 3, 40.0, wall=59.0)  # an older clock never moves a source back
    assert c.clocks[1] == 50.0
    assert c.low(60.0, wall=61.0) == 50.0  # source 2 silent since the start for 60 s: idle
    c.see(2, 3, 70.0, wall=62.0)  # heard again: it counts again
    assert c.low(60.0, wall=63.0) == 50.0
    assert c.low(60.0, wall=120.0) == 70.0  # 0 and 1 silent for 60 s now
    assert c.low(60.0, wall=200.0) == 110.0  # all idle: each has delivered everything it had
    assert c.low(0.0, wall=1e9) == 50.0  # idle bound off: the slowest source, however long ago


# --------------------------------------------------------------------------- end to end


async def _produce(bootstrap: str, prefix: str, events: list[dict[str, Any]], partitions: int) -> None:
    await ensure_topics(Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, partitions=partitions))
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
PARTITIONS = 4
DAY_COLUMNS = ("store_id", "business_date", "net_revenue", "orders", "aov", "refund_rate", "cancel_rate")


def _replayed(events: list[dict[str, Any]], tmp_path: Path, monkeypatch) -> tuple[list[tuple], list[tuple]]:  # type: ignore[no-untyped-def]
    """The control: the offline replay of ``events`` into SQLite, its daily rows and its alerts."""
    jsonl = tmp_path / "orders.jsonl"
    jsonl.write_bytes(b"".join(orjson.dumps(sd.to_json_obj(e)) + b"\n" for e in events))
    replay_url = f"sqlite+aiosqlite:///{tmp_path / 'replay.db'}"
    for k, v in E2E_ENV.items():
        monkeypatch.setenv(k, v)
    processor = StoreProcessor.from_settings(Settings())
    report = asyncio.run(run_replay(Settings(db_url=replay_url), processor, jsonl, io.StringIO()))
    assert report.events == len(events) and report.alerts > 0
    return (asyncio.run(_rows(replay_url, "store_daily_metrics", DAY_COLUMNS)),
            asyncio.run(_rows(replay_url, "alerts", ALERT_COLUMNS)))


def _streamed(url: str, expected_days: list[tuple], expected_alerts: list[tuple],
              timeout: float = 90) -> tuple[list[tuple], list[tuple]]:
    """The worker's daily rows and alerts once they equal the control's (the last seen otherwise)."""
    deadline = time.monotonic() + timeout
    got_days: list[tuple] = []
    got_alerts: list[tuple] = []
    while time.monotonic() < deadline:
        time.sleep(2)
        try:
            got_days = asyncio.run(_rows(url, "store_daily_metrics", DAY_COLUMNS))
            got_alerts = asyncio.run(_rows(url, "alerts", ALERT_COLUMNS))
        except Exception:  # tables not there yet (the worker migrates at start)
            continue
        if _same(got_days, expected_days) and got_alerts == expected_alerts:
            break
    return got_days, got_alerts


@pytest.mark.integration
def test_worker_matches_replay_on_kafka_and_mariadb(make_worker, kafka_bootstrap: str, topic_prefix: str,  # type: ignore[no-untyped-def]
                                                   mysql_url: str, tmp_path: Path, monkeypatch) -> None:
    events = sd.events(E2E)
    expected_days, expected_alerts = _replayed(events, tmp_path, monkeypatch)
    # the worker, same events through Kafka, into MariaDB: four partitions, and the whole input is a backlog
    # when the worker starts, so the order partitions are consumed unevenly and run apart in event time (the
    # stages wait for their low watermark; docs/store.md "Time")
    asyncio.run(_produce(kafka_bootstrap, topic_prefix, events, PARTITIONS))
    worker = make_worker(SPCWATCH_DB_URL=mysql_url, SPCWATCH_PARTITIONS=str(PARTITIONS), **E2E_ENV)
    worker.start()
    got_days, got_alerts = _streamed(mysql_url, expected_days, expected_alerts)
    assert len(got_days) == len(expected_days), worker.log_tail()
    assert _same(got_days, expected_days), (got_days, expected_days)
    assert got_alerts == expected_alerts, "\n".join(map(str, sorted(set(got_alerts) ^ set(expected_alerts))))
    log = asyncio.run(_rows(mysql_url, "store_run_log", ("late_amendments", "rejected_late")))
    assert max(log) == (0, 0)  # nothing arrived after its day closed

