"""Clock poison and duplicates on real Kafka + MariaDB (issue #20), against a control run.

50 healthy resources report every minute up to a minute ago. The faulty run gets the same
stream plus: one host's single sample a day ahead, one 30 days ahead, one 30 days behind, a
whole source whose clock is 10 minutes ahead, and 300 messages delivered twice. No ABSENT, no
retirement, the samples ahead on ``deadletter`` as ``invalid_timestamp`` "in the future", and
every table and alert equal to the control run's.
"""

from __future__ import annotations

import asyncio
import math
import random
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.engine import make_url

from tests.conftest import _mysql_exec, free_port

pytestmark = [pytest.mark.faults, pytest.mark.integration]

RESOURCES, STEPS, DAY = 50, 30, 86400.0


def _stream(now: float) -> list[dict]:
    rng = random.Random(3)
    base = math.floor(now / 60) * 60 - STEPS * 60
    return [{"ts": base + 60 * step, "source": "cloudwatch", "resource_type": "ec2", "resource_id": f"h{r:02d}",
             "metric": "CPUUtilization", "value": round(30 + r + rng.gauss(0, 1), 3)}
            for step in range(STEPS) for r in range(RESOURCES)]


async def _produce(bootstrap: str, topic: str, samples: list[dict]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        pending = [await producer.send(topic, orjson.dumps(s), key=s["resource_id"].encode()) for s in samples]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, count: int, timeout: float = 60) -> list[dict]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    found: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(orjson.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    return found


def _tables(url: str) -> dict[str, list[tuple]]:
    import pymysql

    u = make_url(url)
    conn = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password,
                           database=u.database)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            names = sorted(r[0] for r in cur.fetchall() if r[0] not in ("pipeline_log", "schema_migrations"))
            out = {}
            for name in names:
                cur.execute(f"SELECT * FROM `{name}`")
                out[name] = sorted(tuple(map(str, r)) for r in cur.fetchall())
            return out
    finally:
        conn.close()


def _settled(worker, url: str, consumed: int, timeout: float = 120) -> dict[str, list[tuple]]:  # type: ignore[no-untyped-def]
    """Tables once the worker has consumed everything and two checkpoints in a row wrote the same."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if worker.metric("spcwatch_events_consumed_total", {"topic": "metrics.samples"}) >= consumed:
            tables = _tables(url)
            if tables == last and tables.get("infra_metric_rollups"):
                return tables
            last = tables
        time.sleep(6)  # a checkpoint every 5 s
    pytest.fail(f"the worker did not settle in {timeout}s:\n{worker.log_tail()}", pytrace=False)


def test_clock_poison_and_duplicates_change_nothing(make_worker, kafka_bootstrap: str, topic_prefix: str,  # type: ignore[no-untyped-def]
                                                    mysql_server_url: str, fault_report) -> None:
    now = time.time()
    healthy = _stream(now)
    at = len(healthy) // 2
    poison_ahead = [{**healthy[at + 7], "ts": healthy[at + 7]["ts"] + DAY},
                    {**healthy[at + 13], "ts": healthy[at + 13]["ts"] + 30 * DAY}]
    poison_behind = [{**healthy[at + 21], "ts": healthy[at + 21]["ts"] - 30 * DAY}]
    skewed = [{**s, "source": "skewed", "resource_id": f"sk{i}", "ts": math.floor(now / 60) * 60 + 600 - 60 * k}
              for i in range(5) for k, s in enumerate(healthy[:4])]  # a collector 10 min ahead: its latest polls
    faulty = healthy[:at] + poison_ahead + poison_behind + skewed + healthy[at:]
    rng = random.Random(9)
    for index in sorted(rng.sample(range(len(healthy)), 300), reverse=True):  # the same bytes again, a bit later
        copy_at = min(len(faulty), faulty.index(healthy[index]) + rng.randint(1, 50))
        faulty.insert(copy_at, healthy[index])

    runs = {}
    for name, samples in (("control", healthy), ("faulty", faulty)):
        database = f"spcwatch_t{topic_prefix.strip('.')}{name}"
        _mysql_exec(mysql_server_url, f"CREATE DATABASE `{database}`")
        url = make_url(mysql_server_url).set(database=database).render_as_string(hide_password=False)
        prefix = f"{topic_prefix}{name}."
        worker = make_worker(SPCWATCH_DB_URL=url, SPCWATCH_TOPIC_PREFIX=prefix, SPCWATCH_WEB_PORT=str(free_port()),
                             SPCWATCH_INFRA_INTERVAL_SECONDS="60")
        runs[name] = (worker, url, prefix, samples)
    try:
        for worker, _url, _prefix, _samples in runs.values():
            worker.start()
        for _worker, _url, prefix, samples in runs.values():
            asyncio.run(_produce(kafka_bootstrap, prefix + "metrics.samples", samples))
        results = {name: _settled(worker, url, len(samples)) for name, (worker, url, _p, samples) in runs.items()}
        worker, _url, prefix, _samples = runs["faulty"]
        dead = asyncio.run(_consume(kafka_bootstrap, prefix + "deadletter", len(poison_ahead) + len(skewed)))
        late = worker.metric("spcwatch_infra_samples_late_total")
        duplicates = worker.metric("spcwatch_infra_samples_duplicate_total")
    finally:
        for name in runs:
            _mysql_exec(mysql_server_url, f"DROP DATABASE IF EXISTS `spcwatch_t{topic_prefix.strip('.')}{name}`")

    control, got = results["control"], results["faulty"]
    assert not [r for r in got["alerts"] if "ABSENT" in r] and not [r for r in control["alerts"] if "ABSENT" in r]
    assert not [r for r in got["infra_inventory"] if "retired" in r]
    for table, rows in control.items():
        assert got[table] == rows, f"{table}: {len(set(got[table]) ^ set(rows))} rows differ from the control run"
    assert sorted(d["reason"] for d in dead) == ["invalid_timestamp"] * (len(poison_ahead) + len(skewed))
    assert all("in the future" in d["detail"] for d in dead), dead[0]["detail"]
    assert {orjson.loads(d["original_text"])["resource_id"] for d in dead} == {"h07", "h13"} | {
        f"sk{i}" for i in range(5)}
    assert (late, duplicates) == (1, 300)
    fault_report(fault="clock poison (+1 d, +30 d, -30 d, a source +10 min) and 300 messages delivered twice",
                 use_case="infra", rows_missing=0, rows_extra=0, rows_different=0, alerts_missing=0,
                 alerts_duplicated=0, restarts=0, absent_alerts=0, dead_lettered_ahead=len(dead),
                 late=late, duplicates_refused=duplicates, alerts=len(got["alerts"]))
