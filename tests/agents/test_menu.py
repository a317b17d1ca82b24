"""Menu processor: configuration, the seeded scenario's alerts (healthy items quiet), hop-by-hop and
several-partition routing against the inline replay, and the worker end to end (real Kafka, real MariaDB,
a SIGKILL mid-stream) against ``spcwatch replay menu``."""

from __future__ import annotations

import asyncio
import io
import math
import random
import signal
import time
import zlib
from collections import deque
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import MetaData, Table, select

from agents.core.contract import Outputs
from agents.core.settings import ConfigError, Settings, load_env
from agents.menu import BY_STORE, CHAIN, MenuProcessor, MenuSettings
from stream_app.replay import run_replay
from stream_app.runtime import db
from stream_app.runtime.topics import ensure_topics
from tests import menu_data as md

SCENARIO = md.Scenario(days=30, cost_item="E1", cost_day=14, campaign_item="E3", campaign=(20, 26))
CFG = MenuSettings(windows=(14, 7))


def _run(events: list[dict], proc: MenuProcessor) -> Outputs:
    store: dict[str, Any] = {}
    out, last = Outputs(), 0.0
    for e in events:
        o = md.to_order(e)
        out.merge(proc.process(store, "orders", [o]))
        if o.ts - last >= 600:
            out.merge(proc.tick(store, o.ts))
            last = o.ts
    out.merge(proc.tick(store, last))
    return out


def test_bad_configuration_is_one_line_naming_the_variable() -> None:
    for var, value in (("WINDOWS", "0,7"), ("WINDOWS", "28,28"), ("ALERT_SCOPES", "stores"),
                       ("TIMEZONE", "Mars/Olympus"), ("RULES", "WE1,N8"), ("CM_BENCHMARK", "mode"),
                       ("POPULARITY_FACTOR", "1.5"), ("HOLD_DAYS", "0"), ("WINDOWS", "x")):
        with pytest.raises(ConfigError, match=f"SPCWATCH_MENU_{var}"):
            load_env(MenuSettings, "SPCWATCH_MENU_", {f"SPCWATCH_MENU_{var}": value})
    cfg = load_env(MenuSettings, "SPCWATCH_MENU_",
                   {"SPCWATCH_MENU_WINDOWS": "28,7,91", "SPCWATCH_MENU_RULES": "WE1,WE4"})
    assert cfg.windows == (28, 7, 91) and cfg.rules == ("WE1", "WE4") and cfg.retention_days == 91


def test_keys_follow_the_stage() -> None:
    proc = MenuProcessor()
    order = md.to_order(md.events(md.Scenario(days=1, stores=("S1",)))[0])
    assert proc.key("orders", order) == order.order_id
    assert proc.key(BY_STORE, {"store": "S1"}) == "S1"
    assert proc.key(CHAIN, {"store": "S1"}) == "chain"


def test_the_scenario_alerts_and_healthy_items_stay_quiet() -> None:
    out = _run(md.events(SCENARIO), MenuProcessor(CFG))
    firing = [a for a in out.alerts if a.status == "firing"]
    got = {(a.rule, a.entity["spu"]) for a in firing}
    assert {("MARGIN_EROSION", "E1"), ("MENU_CLASS_CHANGE", "E1"), ("DISCOUNT_DEPTH", "E3")} <= got
    star = next(a for a in firing if a.rule == "MENU_CLASS_CHANGE" and a.entity["spu"] == "E1")
    assert star.severity == "warning" and "star -> plowhorse" in star.summary
    assert star.entity == {"category": "espresso", "spu": "E1"}  # the chain: no store_id
    erosion = next(a for a in firing if a.rule == "MARGIN_EROSION" and a.entity["spu"] == "E1")
    assert erosion.value < erosion.lower and erosion.rules == ("WE1",)
    # nothing else, except the class moves the Latte's fall causes in its own category (its benchmark fell)
    others = [a for a in firing if a.entity["spu"] not in ("E1", "E3")]
    assert all(a.rule == "MENU_CLASS_CHANGE" and a.entity["category"] == "espresso" and a.severity == "info"
               for a in others), [a.summary for a in others]
    transitions = [(a.alert_id, a.status) for a in out.alerts]
    assert len(transitions) == len(set(transitions))  # an episode fires once and resolves once, under one id
    assert {i for i, s in transitions if s == "resolved"} <= {i for i, s in transitions if s == "firing"}
    # the healthy stream: not one alert, while the matrix and the pairs are written every day
    healthy = _run(md.events(md.Scenario(days=30)), MenuProcessor(CFG))
    assert healthy.alerts == []
    days = {r["business_date"] for r in healthy.rows["menu_matrix"] if r["scope"] == "chain"}
    assert len(days) == 29  # the last day is still open
    chain_pairs = [r for r in healthy.rows["menu_pairs"] if r["scope"] == "chain" and r["window_days"] == 14]
    assert chain_pairs and max(r["lift"] for r in chain_pairs) > 1.2  # the bakery-with-espresso habit


# --------------------------------------------------------------------------- several partitions, in memory

SMALL = md.Scenario(days=12, cost_item="E1", cost_day=6, seed=4)
SMALL_CFG = MenuSettings(windows=(7, 3), class_min_days=3, hold_days=2, chart_min_samples=4)


class _PartitionStore(dict):
    def __init__(self, partition: int) -> None:
        super().__init__()
        self.partition = partition


def _part(key: str, n: int) -> int:
    return zlib.crc32(key.encode()) % n


def _simulate_worker(events: list[dict], partitions: int, seed: int) -> Outputs:
    """The worker's hops over a backlog: every topic's partitions consumed unevenly and in batches, ticks now and
    then, forwards to their key's partition (as tests/agents/test_store.py)."""
    proc = MenuProcessor(SMALL_CFG, partitions=partitions, wall=lambda: 0.0)
    stores = [_PartitionStore(p) for p in range(partitions)]
    queues: dict[tuple[str, int], deque] = {(t, p): deque() for t in ("orders", BY_STORE, CHAIN)
                                            for p in range(partitions)}
    for e in events:
        o = md.to_order(e)
        queues[("orders", _part(o.order_id, partitions))].append(o)
    watermark = [0.0] * partitions
    rng = random.Random(seed)
    weights = [2.0 ** -p for p in range(partitions)]
    out = Outputs()

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
            watermark[p] = max(watermark[p], ts)
            route(proc.step(stores[p], topic, [msg], watermark[p]))
        rounds += 1
        if rounds % 7 == 0:
            for q in range(partitions):
                route(proc.step_tick(stores[q], watermark[q]))
    for _ in range(3):
        for q in range(partitions):
            route(proc.step_tick(stores[q], watermark[q]))
        while any(queues.values()):
            (topic, q), queue = next((k, v) for k, v in queues.items() if v)
            route(proc.step(stores[q], topic, [queue.popleft()], watermark[q]))
    return out


def _keyed(out: Outputs, table: str, key: tuple[str, ...]) -> dict:
    return {tuple(r[k] for k in key): r for r in out.rows.get(table, [])}


def test_several_partitions_catching_up_a_backlog_give_the_replays_results() -> None:
    events = md.events(SMALL)
    expected = _run(events, MenuProcessor(SMALL_CFG))
    got = _simulate_worker(events, partitions=3, seed=1)
    assert expected.alerts and {a.rule for a in expected.alerts} >= {"MARGIN_EROSION"}
    assert {(a.alert_id, a.status) for a in got.alerts} == {(a.alert_id, a.status) for a in expected.alerts}
    key = ("scope", "window_days", "business_date", "category", "spu")
    assert _keyed(got, "menu_matrix", key) == _keyed(expected, "menu_matrix", key)
    pkey = ("scope", "window_days", "business_date", "item_a", "item_b")
    assert _keyed(got, "menu_pairs", pkey) == _keyed(expected, "menu_pairs", pkey)
    assert max(r["late_ignored"] for r in got.rows["menu_run_log"]) == 0


# --------------------------------------------------------------------------- end to end

E2E = md.Scenario(days=10, stores=("S1", "S2", "S3"), orders_per_day=80, cost_item="E1", cost_day=6, seed=9)
E2E_ENV = {"SPCWATCH_MENU_WINDOWS": "5,3", "SPCWATCH_MENU_CLASS_MIN_DAYS": "3", "SPCWATCH_MENU_HOLD_DAYS": "2",
           "SPCWATCH_MENU_CHART_MIN_SAMPLES": "3", "SPCWATCH_MENU_CHART_MIN_UNITS": "20"}
MATRIX = ("scope", "window_days", "business_date", "category", "spu", "units", "mm_pct", "cm", "menu_class")
PAIRS = ("scope", "window_days", "business_date", "item_a", "item_b", "n_ab", "lift")
ALERTS = ("alert_id", "status", "rule", "entity_key")


async def _produce(bootstrap: str, prefix: str, events: list[dict], partitions: int) -> None:
    await ensure_topics(Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, partitions=partitions))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(prefix + "orders", orjson.dumps(md.to_json_obj(e)),
                                       key=e["order_id"].encode()) for e in events]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _rows(url: str, table: str, columns: tuple[str, ...], where: tuple[str, str] | None = None) -> list[tuple]:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            t = await conn.run_sync(lambda sync: Table(table, MetaData(), autoload_with=sync))
            q = select(*(t.c[c] for c in columns))
            if where:
                q = q.where(t.c[where[0]] == where[1])
            rows = (await conn.execute(q)).all()
    finally:
        await engine.dispose()
    return sorted(tuple(float(v) if isinstance(v, Decimal) else v for v in r) for r in rows)


def _same(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(
        all(math.isclose(u, v, rel_tol=1e-6, abs_tol=1e-9) if isinstance(u, float) else u == v
            for u, v in zip(x, y, strict=True)) for x, y in zip(a, b, strict=True))


@pytest.mark.integration
def test_worker_matches_replay_across_a_sigkill(make_worker, kafka_bootstrap: str, topic_prefix: str,  # type: ignore[no-untyped-def]
                                                mysql_url: str, tmp_path: Path, monkeypatch) -> None:
    events = md.events(E2E)
    jsonl = tmp_path / "orders.jsonl"
    jsonl.write_bytes(b"".join(orjson.dumps(md.to_json_obj(e)) + b"\n" for e in events))
    replay_url = f"sqlite+aiosqlite:///{tmp_path / 'replay.db'}"
    for k, v in E2E_ENV.items():
        monkeypatch.setenv(k, v)
    report = asyncio.run(run_replay(Settings(db_url=replay_url), MenuProcessor.from_settings(Settings()), jsonl,
                                    io.StringIO()))
    assert report.events == len(events)
    want_matrix = asyncio.run(_rows(replay_url, "menu_matrix", MATRIX))
    want_pairs = asyncio.run(_rows(replay_url, "menu_pairs", PAIRS))
    want_alerts = asyncio.run(_rows(replay_url, "alerts", ALERTS, ("use_case", "menu")))
    assert want_alerts and want_matrix and want_pairs
    assert {r[2] for r in want_alerts} >= {"MARGIN_EROSION", "MENU_CLASS_CHANGE"}
    # the worker: half the input, a SIGKILL once some days are written, the rest, a new worker
    half = len(events) // 2
    asyncio.run(_produce(kafka_bootstrap, topic_prefix, events[:half], 2))
    worker = make_worker(SPCWATCH_DB_URL=mysql_url, **E2E_ENV)
    worker.start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        time.sleep(1)
        try:
            if asyncio.run(_rows(mysql_url, "menu_run_log", ("scope",))):
                break
        except Exception:  # tables not there yet (the worker migrates at start)
            continue
    else:
        pytest.fail(f"no menu day closed within 90 s:\n{worker.log_tail()}")
    worker.stop(signal.SIGKILL)
    asyncio.run(_produce(kafka_bootstrap, topic_prefix, events[half:], 2))
    again = make_worker(SPCWATCH_DB_URL=mysql_url, **E2E_ENV)
    again.start(timeout=150)
    deadline = time.monotonic() + 120
    got_matrix: list[tuple] = []
    got_pairs: list[tuple] = []
    got_alerts: list[tuple] = []
    while time.monotonic() < deadline:
        time.sleep(2)
        got_matrix = asyncio.run(_rows(mysql_url, "menu_matrix", MATRIX))
        got_pairs = asyncio.run(_rows(mysql_url, "menu_pairs", PAIRS))
        got_alerts = asyncio.run(_rows(mysql_url, "alerts", ALERTS, ("use_case", "menu")))
        if _same(got_matrix, want_matrix) and _same(got_pairs, want_pairs) and got_alerts == want_alerts:
            break
    assert len(got_matrix) == len(want_matrix), again.log_tail()
    assert _same(got_matrix, want_matrix)
    assert _same(got_pairs, want_pairs)
    assert got_alerts == want_alerts, sorted(set(got_alerts) ^ set(want_alerts))
    # (menu_run_log.late_ignored counts the contributions redelivered after the SIGKILL: already in, not added)
    again.stop(signal.SIGKILL)
