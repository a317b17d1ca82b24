"""Failover: two workers of one app on 8 partitions, one SIGKILLed mid-stream (issue #20, point 4)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from stream_app.runtime import db
from tests.agents.test_infra import INFRA_ENV, _alerts, _produce, episodes, rows_when
from tests.conftest import free_port
from tests.infra_data import FAULT, replay, samples

pytestmark = [pytest.mark.faults, pytest.mark.integration]
PARTITIONS = 8


async def _behind(bootstrap: str, topic: str, group: str) -> dict[int, int]:
    """Per partition: end offset minus the group's committed offset."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group)
        return {tp.partition: ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in tps}
    finally:
        await consumer.stop()
        await admin.close()


async def _rollup_samples(url: str) -> int:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.exec_driver_sql("SELECT SUM(sample_count) FROM infra_metric_rollups")).scalar())
    finally:
        await engine.dispose()


def test_the_survivor_of_a_sigkill_takes_every_partition_commits_to_the_end_and_matches_replay(
        tmp_path: Path, sqlite_url: str, mysql_url: str, make_worker, kafka_bootstrap: str,
        topic_prefix: str, fault_report) -> None:  # type: ignore[no-untyped-def]
    batches = list(samples(resources=16, days=1.5, faults=(FAULT,)))
    path = tmp_path / "samples.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"samples": b}) + b"\n" for b in batches))
    expected = episodes(replay(tmp_path, sqlite_url, path))
    n_points = sum(map(len, batches))
    # A 10-s session: the takeover waits for the broker to expire A's session (60 s by default).
    env = dict(SPCWATCH_DB_URL=mysql_url, SPCWATCH_PARTITIONS=str(PARTITIONS),
               SPCWATCH_KAFKA_SESSION_TIMEOUT_SECONDS="10", **INFRA_ENV)
    a = make_worker(SPCWATCH_DATA_DIR=str(tmp_path / "a"), **env)
    b = make_worker(SPCWATCH_DATA_DIR=str(tmp_path / "b"), SPCWATCH_WEB_PORT=str(free_port()), **env)
    a.start()
    b.start()
    topic = topic_prefix + "metrics.samples"
    half = len(batches) // 2
    asyncio.run(_produce(kafka_bootstrap, topic, batches[:half]))
    # Both must be working (each owning partitions) before A dies, a quarter of the input in.
    deadline = time.monotonic() + 120
    consumed = {"topic": "metrics.samples"}
    while time.monotonic() < deadline:
        counts = [w.metric("spcwatch_events_consumed_total", consumed) for w in (a, b)]
        if min(counts) > 0 and sum(counts) >= 0.25 * n_points:
            break
        time.sleep(0.2)
    assert min(counts) > 0, f"a worker consumed nothing before the kill: {counts}"
    assert a.stop(signal.SIGKILL) == -signal.SIGKILL
    killed_at = time.monotonic()
    asyncio.run(_produce(kafka_bootstrap, topic, batches[half:]))
    # Takeover waits for the broker to expire A's session; then B must commit up to the end.
    deadline = time.monotonic() + 240
    while True:
        behind = asyncio.run(_behind(kafka_bootstrap, topic, topic_prefix + "spcwatch"))
        if not any(behind.values()) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert not any(behind.values()), f"committed offsets behind the end: {behind}\n{b.log_tail()}"
    committed_after = time.monotonic() - killed_at
    rows = rows_when(mysql_url, lambda r: len(r["infra_anomaly_scores"]) >= n_points)
    assert len(rows["infra_anomaly_scores"]) == n_points  # nothing lost, nothing twice
    assert len(rows["infra_metric_rollups"]) == n_points  # 5-minute samples: one row per minute
    assert asyncio.run(_rollup_samples(mysql_url)) == n_points  # no minute counted twice
    streamed = asyncio.run(_alerts(kafka_bootstrap, topic_prefix + "alerts", expected, 30))
    assert episodes(streamed) == expected, b.log_tail()
    fault_report(fault="2 workers, one SIGKILLed a quarter in (session timeout 10 s)", use_case="infra",
                 rows_missing=0, rows_extra=0, rows_different=0, alerts_missing=0, alerts_duplicated=0,
                 restarts=0, recover_seconds=round(committed_after, 1), samples=n_points,
                 refetched_partitions=b.log_text().count("Faust delivered none after"))
