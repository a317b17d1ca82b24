"""Failover and rebalance: workers of one app on 8 partitions, one mid-stream fault each (issue #20, point 4).

Every variant reads the same input and is held to the same control (the offline replay): one of
two or of three workers SIGKILLed, a worker added mid-stream (partitions and their table state move
to the newcomer), and a rolling restart of every worker (SIGTERM each in turn while the stream runs).
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.structs import TopicPartition

from stream_app.runtime import db
from tests.agents.test_infra import INFRA_ENV, _alerts, _produce, episodes, rows_when
from tests.conftest import free_port
from tests.faults.conftest import CHAOS, scaled
from tests.infra_data import FAULT, replay, samples

pytestmark = [pytest.mark.faults, pytest.mark.integration]
PARTITIONS = 8


@dataclass(frozen=True)
class Failover:
    """``workers`` start; at a quarter of the input one of them is SIGKILLed (``kill``), a new one
    joins (``join``), or each in turn is stopped with SIGTERM and started again (``rolling``)."""

    fault: str
    workers: int
    title: str


# The suite's budget: kill-1-of-2 ~40 s; join ~30 s, kill-1-of-3 and rolling ~50 s each run in ``make chaos`` only.
CHAOS_ONLY = pytest.mark.skipif(not CHAOS, reason="make chaos only: the suite's time budget")
VARIANTS = [
    pytest.param(Failover("kill", 2, "2 workers, one SIGKILLed a quarter in (session timeout 10 s)"), id="kill-1-of-2"),
    pytest.param(Failover("join", 1, "1 worker, a second added a quarter in (rebalance to a newcomer)"), id="join",
                 marks=CHAOS_ONLY),
    pytest.param(Failover("kill", 3, "3 workers, one SIGKILLed a quarter in (session timeout 10 s)"), id="kill-1-of-3",
                 marks=CHAOS_ONLY),
    pytest.param(Failover("rolling", 2, "rolling restart of 2 workers (SIGTERM each in turn mid-stream)"),
                 id="rolling", marks=CHAOS_ONLY),
]


@dataclass(frozen=True)
class Control:
    batches: list[list[dict]]
    expected: set[tuple]
    n_points: int


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Control:
    """The input and its offline replay, shared by every variant."""
    tmp = tmp_path_factory.mktemp("failover")
    batches = list(samples(resources=16, days=scaled(1.5, 3.0), faults=(FAULT,)))
    path = tmp / "samples.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"samples": b}) + b"\n" for b in batches))
    expected = episodes(replay(tmp, f"sqlite+aiosqlite:///{tmp / 'replay.db'}", path))
    return Control(batches, expected, sum(map(len, batches)))


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


async def _owners(bootstrap: str, group: str, topic: str) -> tuple[str, int, set[int]]:
    """The group's state, its number of members and the partitions of ``topic`` they are assigned."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = (await admin.describe_consumer_groups([group]))[0]
    finally:
        await admin.close()
    _error, _group, state, _protocol_type, _protocol, members, *_ = response.groups[0]
    owned: set[int] = set()
    for member in members:
        if member[-1]:
            for name, partitions in ConsumerProtocolMemberAssignment.decode(member[-1]).assignment:
                owned |= set(partitions) if name == topic else set()
    return state, len(members), owned


def _rollup_samples(url: str) -> int:
    async def query() -> int:
        engine = db.create_engine(url)
        try:
            async with engine.connect() as conn:
                sql = "SELECT SUM(sample_count) FROM infra_metric_rollups"
                return int((await conn.exec_driver_sql(sql)).scalar())
        finally:
            await engine.dispose()

    return asyncio.run(query())


def _wait_consumed(workers: list, share: float, n_points: int) -> list[float]:  # type: ignore[type-arg]
    """Until every worker has consumed something and together ``share`` of the input."""
    deadline = time.monotonic() + 120
    consumed = {"topic": "metrics.samples"}
    while True:
        counts = [w.metric("spcwatch_events_consumed_total", consumed) for w in workers]
        if (min(counts) > 0 and sum(counts) >= share * n_points) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


@pytest.mark.parametrize("variant", VARIANTS)
def test_after_a_failover_or_rebalance_every_partition_is_committed_to_the_end_and_matches_replay(
        variant: Failover, control: Control, tmp_path: Path, mysql_url: str, make_worker,
        kafka_bootstrap: str, topic_prefix: str, fault_report) -> None:  # type: ignore[no-untyped-def]
    batches, n_points = control.batches, control.n_points
    # A 10-s session: a takeover waits for the broker to expire a killed member's session (60 s by default).
    env = dict(SPCWATCH_DB_URL=mysql_url, SPCWATCH_PARTITIONS=str(PARTITIONS),
               SPCWATCH_KAFKA_SESSION_TIMEOUT_SECONDS="10", **INFRA_ENV)

    def worker():  # type: ignore[no-untyped-def]
        i = len(workers)
        return make_worker(SPCWATCH_DATA_DIR=str(tmp_path / f"w{i}"), SPCWATCH_WEB_PORT=str(free_port()), **env)

    workers: list = []  # type: ignore[type-arg]
    for _ in range(variant.workers):
        workers.append(worker())
    for w in workers:
        w.start()
    topic, group = topic_prefix + "metrics.samples", topic_prefix + "spcwatch"
    half = len(batches) // 2
    asyncio.run(_produce(kafka_bootstrap, topic, batches[:half]))
    counts = _wait_consumed(workers, 0.25, n_points)  # all working (each owning partitions) before the fault
    assert min(counts) > 0, f"a worker consumed nothing before the fault: {counts}"
    faulted_at = time.monotonic()
    takeover = None
    restarts = 0
    if variant.fault == "kill":
        assert workers[0].stop(signal.SIGKILL) == -signal.SIGKILL
        survivors = workers[1:]
        asyncio.run(_produce(kafka_bootstrap, topic, batches[half:]))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the survivors own every partition, the group settled
            state, members, owned = asyncio.run(_owners(kafka_bootstrap, group, topic))
            if state == "Stable" and members == len(survivors) and owned == set(range(PARTITIONS)):
                takeover = time.monotonic() - faulted_at
                break
            time.sleep(0.5)
        assert takeover is not None, f"no takeover: {state}, {members} members, partitions {owned}"
    elif variant.fault == "join":
        newcomer = worker()
        workers.append(newcomer)
        newcomer.start()
        survivors = workers
        asyncio.run(_produce(kafka_bootstrap, topic, batches[half:]))
    else:  # rolling: each worker in turn stopped and started while the rest of the input arrives
        survivors = workers
        rest = batches[half:]
        chunk = -(-len(rest) // len(workers))
        for i, w in enumerate(workers):
            assert w.stop(signal.SIGTERM) == 0, w.log_tail()
            asyncio.run(_produce(kafka_bootstrap, topic, rest[i * chunk:(i + 1) * chunk]))
            w.start()
            restarts += 1
    # Then the workers left must commit up to the end.
    deadline = time.monotonic() + 240
    while True:
        behind = asyncio.run(_behind(kafka_bootstrap, topic, group))
        if not any(behind.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not any(behind.values()), f"committed offsets behind the end: {behind}\n{survivors[-1].log_tail()}"
    committed_after = time.monotonic() - faulted_at
    if variant.fault == "join":
        assert workers[-1].metric("spcwatch_events_consumed_total", {"topic": "metrics.samples"}) > 0, \
            "the newcomer was given no partition"
    rows = rows_when(mysql_url, lambda r: len(r["infra_anomaly_scores"]) >= n_points)
    scores, rollups = len(rows["infra_anomaly_scores"]), len(rows["infra_metric_rollups"])
    counted = _rollup_samples(mysql_url)
    streamed = asyncio.run(_alerts(kafka_bootstrap, topic_prefix + "alerts", control.expected, 30))
    got = episodes(streamed)
    infra_alerts = [a for a in streamed if a["use_case"] == "infra"]
    # The figures first, so that ``make chaos``'s table shows what a failing variant measured.
    fault_report(fault=variant.title, use_case="infra", rows_missing=max(0, n_points - scores),
                 rows_extra=max(0, scores - n_points), rows_different=abs(counted - n_points),
                 alerts_missing=len(control.expected - got), alerts_duplicated=len(infra_alerts) - len(got),
                 restarts=restarts, recover_seconds=round(committed_after, 1),
                 takeover_seconds=None if takeover is None else round(takeover, 1), samples=n_points,
                 refetched_partitions=sum(w.log_text().count("Faust delivered none after") for w in survivors),
                 chaos="yes" if CHAOS else "no")
    assert scores == n_points  # nothing lost, nothing twice
    assert rollups == n_points  # 5-minute samples: one row per minute
    assert counted == n_points  # no minute counted twice
    assert got == control.expected, survivors[-1].log_tail()
    assert len(infra_alerts) == len(got), f"alerts published more than once: {len(infra_alerts)} for {len(got)}"
