"""The worker process end to end on the real broker."""

from __future__ import annotations

import asyncio
import base64
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from stream_app.runtime.topics import ALL_TOPICS

pytestmark = pytest.mark.integration

SAMPLE = {"ts": "2026-02-17T10:05:00Z", "source": "cloudwatch", "resource_type": "rds",
          "resource_id": "db-1", "metric": "CPUUtilization", "value": 41.7}


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    records: list = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


def wait_for_metric(worker, name: str, labels: dict[str, str], at_least: float, timeout: float = 30) -> float:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    value = worker.metric(name, labels)
    while value < at_least and time.monotonic() < deadline:
        time.sleep(0.3)
        value = worker.metric(name, labels)
    return value


def test_worker_creates_topics_and_reports_health(make_worker, kafka_bootstrap: str, topic_prefix: str) -> None:  # type: ignore[no-untyped-def]
    worker = make_worker()
    worker.start()
    status, body = worker.health()
    assert status == 200
    assert orjson.loads(body)["consuming"] is True

    async def describe() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            names = [topic_prefix + t for t in ALL_TOPICS]
            found = await admin.describe_topics(names)
            return {t["topic"]: len(t["partitions"]) for t in found if t["error_code"] == 0}
        finally:
            await admin.close()

    partitions = asyncio.run(describe())
    assert partitions == {topic_prefix + t: 2 for t in ALL_TOPICS}
    assert worker.metric("spcwatch_worker_consuming") == 1.0
    status, body = worker.get("/metrics")  # faust's own sensor shares the endpoint
    assert status == 200 and "# TYPE faust_total_rebalances gauge" in body
    assert "faust_messages_received_total" not in body  # per-message series are left out (WorkerMonitor)


def test_valid_events_are_consumed_and_batches_count_each_sample(make_worker, kafka_bootstrap: str,
                                                                  topic_prefix: str) -> None:  # type: ignore[no-untyped-def]
    worker = make_worker()
    worker.start()
    batch = {"samples": [{**SAMPLE, "resource_id": "db-2", "value": float(v)} for v in range(3)]}
    asyncio.run(produce(kafka_bootstrap, topic_prefix + "metrics.samples",
                        [(b"db-1", orjson.dumps(SAMPLE)), (b"db-2", orjson.dumps(batch))]))
    consumed = wait_for_metric(worker, "spcwatch_events_consumed_total", {"topic": "metrics.samples"}, 4)
    assert consumed == 4
    assert worker.metric("spcwatch_events_invalid_total") == 0
    # two messages on the input topic: its partitions end at 2 in all, and the lag drains once committed
    topic = topic_prefix + "metrics.samples"
    assert worker.metric("spcwatch_partition_end_offset", {"topic": topic}) == 2
    deadline = time.monotonic() + 60
    while worker.metric("spcwatch_consumer_lag", {"topic": topic}) > 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert worker.metric("spcwatch_consumer_lag", {"topic": topic}) == 0


def test_invalid_event_goes_to_deadletter_and_the_next_valid_one_is_processed(
        make_worker, kafka_bootstrap: str, topic_prefix: str) -> None:  # type: ignore[no-untyped-def]
    worker = make_worker()
    worker.start()
    order = {"event_id": "e-1", "order_id": 1000231, "store_id": "US00001", "ts": "2026-02-17T08:12:09-05:00",
             "status": "paid", "total": "12.40", "currency": "USD", "items": []}
    bad_json = b'{"order_id": "1000231", '
    bad_value = orjson.dumps({**order, "status": "lost"})
    asyncio.run(produce(kafka_bootstrap, topic_prefix + "orders",
                        [(b"1000231", bad_json), (b"1000231", bad_value), (b"1000231", orjson.dumps(order))]))
    assert wait_for_metric(worker, "spcwatch_events_consumed_total", {"topic": "orders"}, 3) == 3
    assert worker.metric("spcwatch_events_invalid_total", {"topic": "orders", "reason": "invalid_json"}) == 1
    assert worker.metric("spcwatch_events_invalid_total", {"topic": "orders", "reason": "invalid_value"}) == 1

    records = asyncio.run(consume(kafka_bootstrap, topic_prefix + "deadletter", 2))
    envelopes = sorted((orjson.loads(r.value) for r in records), key=lambda e: e["offset"])
    assert [e["reason"] for e in envelopes] == ["invalid_json", "invalid_value"]
    first = envelopes[0]
    assert first["source_topic"] == "orders"
    assert base64.b64decode(first["original_b64"]) == bad_json
    assert base64.b64decode(first["key_b64"]) == b"1000231"
    assert isinstance(first["partition"], int) and first["offset"] == 0
    assert envelopes[1]["offset"] == 1 and "status" in envelopes[1]["detail"]
    assert all(r.key == b"1000231" for r in records)
    assert worker.proc is not None and worker.proc.poll() is None, "the worker must survive bad input"


def test_bad_config_stops_the_worker_with_one_line(make_worker) -> None:  # type: ignore[no-untyped-def]
    worker = make_worker(SPCWATCH_PARTITIONS="many")
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "stream_app.cli", "worker"], env=worker.env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "spcwatch: error: SPCWATCH_PARTITIONS must be an integer, got 'many'"


def test_unreachable_broker_is_one_clear_line(make_worker) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from tests.conftest import free_port

    worker = make_worker(SPCWATCH_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}")
    result = subprocess.run([sys.executable, "-m", "stream_app.cli", "topics", "create"], env=worker.env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 69
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spcwatch: error: cannot reach Kafka at 127.0.0.1:")


def wait_until(condition, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_a_failed_database_write_stops_the_worker_and_a_restart_writes_the_rows(
        make_worker, kafka_bootstrap: str, topic_prefix: str, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    path = sqlite_url.split(":///", 1)[1]

    def minutes() -> list[str]:
        with sqlite3.connect(path) as conn:
            return [m for (m,) in conn.execute("SELECT minute FROM infra_metric_rollups ORDER BY minute")]

    topic = topic_prefix + "metrics.samples"
    worker = make_worker()
    worker.start()
    asyncio.run(produce(kafka_bootstrap, topic, [(b"db-1", orjson.dumps(SAMPLE))]))
    wait_until(lambda: len(minutes()) == 1, "the first checkpoint's rollup row")

    with sqlite3.connect(path) as conn:  # a write that no retry can fix
        conn.execute("ALTER TABLE infra_metric_rollups RENAME TO rollups_away")
    asyncio.run(produce(kafka_bootstrap, topic, [(b"db-1", orjson.dumps({**SAMPLE, "ts": "2026-02-17T10:06:00Z"}))]))
    wait_until(lambda: worker.proc.poll() is not None, "the worker to stop", timeout=180)  # loaded: two test workers
    assert worker.proc.returncode != 0
    # Other agents waiting on the same failed write crash after it, so the line is not last.
    assert "a checkpoint's rows could not be written" in worker.log_text()

    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE rollups_away RENAME TO infra_metric_rollups")
    worker.start()  # resumes from the last commit: the unwritten checkpoint is processed again
    wait_until(lambda: len(minutes()) == 2, "the second sample's rollup row after the restart")
    assert minutes() == ["2026-02-17 10:05:00.000000", "2026-02-17 10:06:00.000000"]


def test_an_agent_that_fails_mid_message_stops_the_worker_and_a_restart_loses_nothing(
        make_worker, kafka_bootstrap: str, topic_prefix: str, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    """An alert the database refuses fails the agent after the message changed its state. Faust
    would restart the agent in-process with that state and go on; the worker must stop instead
    and, restarted, write the alert and the rows of that message."""
    import sqlite3

    path = sqlite_url.split(":///", 1)[1]

    def table(sql: str) -> list[tuple]:  # type: ignore[type-arg]
        with sqlite3.connect(path) as conn:
            return list(conn.execute(sql))

    topic = topic_prefix + "orders"
    worker = make_worker(SPCWATCH_RECON_ALERT_CATEGORIES="excluded_test_data",
                         SPCWATCH_RECON_ALERT_MIN_AMOUNT_MINOR="0")
    worker.start()
    wait_until(lambda: table("SELECT name FROM sqlite_master WHERE name = 'alerts'") != [], "the migrations")
    with sqlite3.connect(path) as conn:  # the alert's write fails, and no retry can fix it
        conn.execute("ALTER TABLE alerts RENAME TO alerts_away")
    asyncio.run(produce(kafka_bootstrap, topic, [(b"7101", orjson.dumps({
        "event_id": "o-7101", "order_id": "7101", "store_id": "US00001", "ts": "2026-02-17T08:12:09-05:00",
        "status": "paid", "total": "12.40", "currency": "NZD", "items": []}))]))
    wait_until(lambda: worker.proc.poll() is not None, "the worker to stop", timeout=180)  # loaded: two test workers
    assert worker.proc.returncode != 0
    assert "spcwatch.recon.orders failed" in worker.log_text()
    assert table("SELECT order_id FROM recon_exceptions") == []  # the message's rows never went in

    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE alerts_away RENAME TO alerts")
    worker.start()  # from the committed offsets: the order is processed again, in full
    wait_until(lambda: table("SELECT order_id FROM recon_exceptions") == [("7101",)], "the order's row")
    assert table("SELECT rule FROM alerts") == [("RECON_EXCLUDED_TEST_DATA",)]


def test_state_is_replicated_only_after_its_rows_so_a_restart_writes_the_lost_ones(
        make_worker, kafka_bootstrap: str, topic_prefix: str, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    """Recon skips an event its restored state already reflects (a redelivery after a crash): had
    the state of a checkpoint reached the changelog before its rows were committed, a restart
    would skip the very events whose rows were lost."""
    import sqlite3

    path = sqlite_url.split(":///", 1)[1]

    def excluded() -> list[str]:
        with sqlite3.connect(path) as conn:
            return sorted(o for (o,) in conn.execute("SELECT order_id FROM recon_exceptions"))

    def test_order(order_id: str) -> tuple[bytes, bytes]:  # test currency: an exception row at once
        return order_id.encode(), orjson.dumps({
            "event_id": f"o-{order_id}", "order_id": order_id, "store_id": "US00001",
            "ts": "2026-02-17T08:12:09-05:00", "status": "paid", "total": "12.40", "currency": "NZD", "items": []})

    topic = topic_prefix + "orders"
    worker = make_worker()
    worker.start()
    asyncio.run(produce(kafka_bootstrap, topic, [test_order("7001")]))
    wait_until(lambda: excluded() == ["7001"], "the first order's row")

    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE recon_exceptions RENAME TO exceptions_away")
    asyncio.run(produce(kafka_bootstrap, topic, [test_order("7002")]))
    wait_until(lambda: worker.proc.poll() is not None, "the worker to stop", timeout=180)  # loaded: two test workers
    assert worker.proc.returncode != 0

    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE exceptions_away RENAME TO recon_exceptions")
    worker.start()
    wait_until(lambda: excluded() == ["7001", "7002"], "the second order's row after the restart")


def test_transaction_markers_read_back_as_nothing_and_every_sample_lands_once(
        make_worker, kafka_bootstrap: str, topic_prefix: str, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    """A transactional producer leaves a one-offset gap (its commit marker) after each transaction.
    The worker reads every gap back from the broker (stream_app/runtime/runner.py, DeliveryGaps: it cannot
    tell a marker from a message Faust failed to deliver): markers read back as nothing."""
    import sqlite3

    path = sqlite_url.split(":///", 1)[1]
    topic = topic_prefix + "metrics.samples"

    def minutes() -> list[str]:
        with sqlite3.connect(path) as conn:
            return [m for (m,) in conn.execute("SELECT minute FROM infra_metric_rollups ORDER BY minute")]

    async def produce_in_transactions() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic_prefix}tx")
        await producer.start()
        try:
            for minute in range(3):
                async with producer.transaction():
                    await producer.send_and_wait(
                        topic, orjson.dumps({**SAMPLE, "ts": f"2026-02-17T10:0{5 + minute}:00Z"}), key=b"db-1")
        finally:
            await producer.stop()

    worker = make_worker()
    worker.start()
    asyncio.run(produce_in_transactions())
    wait_until(lambda: len(minutes()) == 3, "a rollup row for each of the three samples")
    assert minutes() == ["2026-02-17 10:05:00.000000", "2026-02-17 10:06:00.000000", "2026-02-17 10:07:00.000000"]
    assert worker.metric("spcwatch_events_consumed_total", {"topic": "metrics.samples"}) == 3
    assert "never delivered" not in worker.log_text()
    assert worker.metric("spcwatch_delivery_gaps_total", {"topic": "metrics.samples"}) == 0


def test_an_invalid_message_too_big_to_dead_letter_whole_goes_truncated_and_the_worker_goes_on(
        make_worker, kafka_bootstrap: str, topic_prefix: str) -> None:  # type: ignore[no-untyped-def]
    """1.5 MB (gzip keeps it under the broker's limit): its whole envelope could never be published."""
    from stream_app.runtime.app import DEADLETTER_MAX_ORIGINAL_BYTES

    worker = make_worker()
    worker.start()
    huge = b'{"resource_id": "' + b"a" * 1_500_000  # unterminated: invalid_json
    topic = topic_prefix + "metrics.samples"

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", compression_type="gzip",
                                    max_request_size=4_000_000)
        await producer.start()
        try:
            await producer.send_and_wait(topic, huge, key=b"db-1")
            for v in range(3):
                await producer.send_and_wait(topic, orjson.dumps({**SAMPLE, "value": float(v)}), key=b"db-1")
        finally:
            await producer.stop()

    asyncio.run(send())
    assert wait_for_metric(worker, "spcwatch_events_consumed_total", {"topic": "metrics.samples"}, 4) == 4
    [record] = asyncio.run(consume(kafka_bootstrap, topic_prefix + "deadletter", 1))
    envelope = orjson.loads(record.value)
    assert envelope["reason"] == "invalid_json"
    assert envelope["truncated"] is True and envelope["original_length"] == len(huge)
    assert base64.b64decode(envelope["original_b64"]) == huge[:DEADLETTER_MAX_ORIGINAL_BYTES]
    assert len(record.value) < 1_000_000
    assert worker.metric("spcwatch_events_invalid_total") == 1
    assert worker.proc is not None and worker.proc.poll() is None, "the worker must survive a huge message"


def test_poison_samples_go_to_deadletter_and_every_valid_row_reaches_mariadb(
        make_worker, kafka_bootstrap: str, topic_prefix: str, mysql_url: str) -> None:  # type: ignore[no-untyped-def]
    """Fields over their column and sums that overflow used to fail at the sink and stop the worker."""
    import pymysql
    from sqlalchemy.engine import make_url

    bad = [({**SAMPLE, "resource_type": "t" * 65}, "too_long"), ({**SAMPLE, "source": "s" * 65}, "too_long"),
           ({**SAMPLE, "metric": "m" * 256}, "too_long"), ({**SAMPLE, "resource_id": "r" * 256}, "too_long"),
           ({**SAMPLE, "labels": {"big": "x" * 9000}}, "too_long"),
           ({**SAMPLE, "value": 1.7e308}, "out_of_range"), ({**SAMPLE, "value": 1.7e308}, "out_of_range")]
    valid = [{**SAMPLE, "resource_id": f"db-{i}", "value": float(i)} for i in range(20)]
    messages = []
    for i, sample in enumerate(valid):
        messages.append((sample["resource_id"].encode(), orjson.dumps(sample)))
        if i < len(bad):
            messages.append((b"db-x", orjson.dumps(bad[i][0])))
    worker = make_worker(SPCWATCH_DB_URL=mysql_url)
    worker.start()
    asyncio.run(produce(kafka_bootstrap, topic_prefix + "metrics.samples", messages))

    url = make_url(mysql_url)

    def resources() -> set[str]:
        conn = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username, password=url.password,
                               database=url.database)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT DISTINCT resource_id FROM infra_rollups")
                return {row[0] for row in cursor.fetchall()}
        except pymysql.err.ProgrammingError:  # table not yet migrated
            return set()
        finally:
            conn.close()

    wait_until(lambda: resources() >= {s["resource_id"] for s in valid}, "every valid sample's rollup row")
    assert resources() == {s["resource_id"] for s in valid}
    records = asyncio.run(consume(kafka_bootstrap, topic_prefix + "deadletter", len(bad)))
    reasons = sorted(orjson.loads(r.value)["reason"] for r in records)
    assert reasons == sorted(reason for _, reason in bad)
    assert worker.proc is not None and worker.proc.poll() is None, "the worker must survive poison samples"
