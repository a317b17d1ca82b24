"""A fuzzed stream: malformed messages of every kind, drawn by hypothesis, among valid ones.

Offline, every malformed message is rejected by the decoders with one of the contract's
reasons, as many times as it has bad items. On the real broker and MariaDB, a worker given
more than 10,000 of them interleaved with valid samples and orders puts every one on
``deadletter`` (with that reason, its partition and offset), processes every valid event,
and never stops.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import random
import time
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from agents.core.events import DECODERS, REASONS, bound_to_clock
from tests.faults.conftest import scaled
from tests.faults.fuzz import ORDER, SAMPLE, Fuzzed, huge, malformed, stamped

pytestmark = pytest.mark.faults


@settings(max_examples=2000, database=None)
@given(message=malformed())
def test_every_malformed_message_is_rejected_with_a_reason(message: Fuzzed) -> None:
    message, valid = stamped(message, lambda: 1_771_000_000.0)
    result = bound_to_clock(DECODERS[message.topic](message.value), time.time(), 300.0)  # as the worker does
    assert len(result.events) == valid
    assert len(result.errors) == message.bad_items, (message.kind, message.value and message.value[:200])
    assert all(error.reason in REASONS for error in result.errors)
    if message.kind != "batch":
        assert result.events == []


@pytest.mark.parametrize("topic", sorted(DECODERS))
def test_a_message_of_a_megabyte_is_rejected(topic: str) -> None:
    message = huge(topic)
    assert len(message.value or b"") < 1_000_000
    assert [e.reason for e in DECODERS[topic](message.value).errors] == ["too_long"]


def draw_stream(count: int, distinct: int) -> list[Fuzzed]:
    """``count`` malformed messages: ``distinct`` drawn by hypothesis (generation only, ~5 ms each),
    each sent ``count / distinct`` times at scattered places in the stream."""
    drawn: list[Fuzzed] = []

    @settings(max_examples=distinct, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(message=malformed())
    def collect(message: Fuzzed) -> None:
        drawn.append(message)

    while len(drawn) < distinct:  # hypothesis may stop a run early when it has seen enough
        collect()
    order = random.Random(20).sample(range(count), count)
    return [drawn[i % distinct] for i in order]


@pytest.mark.integration
def test_a_fuzzed_stream_dead_letters_every_bad_message_and_loses_no_valid_one(
        make_worker, kafka_bootstrap: str, topic_prefix: str, mysql_url: str,  # type: ignore[no-untyped-def]
        fault_report) -> None:
    from tests.stream_app.runtime.test_worker import consume

    count = scaled(10_000, 50_000)
    bad = draw_stream(count, min(count, 2_500)) + [huge(topic) for topic in sorted(DECODERS)]
    clock = iter(range(int(time.time()) - 86_400, int(time.time())))
    valid_samples = valid_orders = batch_items = 0
    stream: list[tuple[str, bytes | None, bytes | None]] = []
    bad_at: list[int] = []  # where in the stream each bad message is
    for i, message in enumerate(bad):
        message, valid = stamped(message, lambda: float(next(clock)))
        if valid:  # keyed by their series: re-routed from several partitions, their order would be lost
            message = dataclasses.replace(message, key=b"fz-batch")
        batch_items += valid
        bad_at.append(len(stream))
        stream.append((message.topic, message.key, message.value))
        if i % 4 == 0:
            sample = {**SAMPLE, "resource_id": f"fz-{i % 50}", "ts": next(clock), "value": float(i % 17)}
            stream.append(("metrics.samples", sample["resource_id"].encode(), orjson.dumps(sample)))
            valid_samples += 1
        if i % 50 == 0:
            order = {**ORDER, "event_id": f"fz-e-{i}", "order_id": f"fz-o-{i}"}
            stream.append(("orders", order["order_id"].encode(), orjson.dumps(order)))
            valid_orders += 1
    expected: Counter[str] = Counter()
    for message in bad:
        expected[message.topic] += message.bad_items

    worker = make_worker(SPCWATCH_DB_URL=mysql_url)
    worker.start()
    started = time.monotonic()
    sent = asyncio.run(produce_all(kafka_bootstrap, topic_prefix, stream))

    want = sum(expected.values())
    letters = asyncio.run(consume(kafka_bootstrap, topic_prefix + "deadletter", want, timeout=300))
    dead_lettered_in = time.monotonic() - started  # from the first message sent to the last letter read
    envelopes = [orjson.loads(r.value) for r in letters]
    assert len(envelopes) == want, f"{len(envelopes)} dead letters for {want} bad items\n{worker.log_tail()}"
    assert Counter(e["source_topic"] for e in envelopes) == expected
    assert all(e["reason"] in REASONS and e["detail"] for e in envelopes)
    # Every dead letter points at a message we sent and carries its bytes (cut past 96 KiB).
    sent_at = {(topic, p, o): value for (topic, _k, value), (p, o) in zip(stream, sent, strict=True)}
    for envelope in envelopes:
        original = sent_at[(envelope["source_topic"], envelope["partition"], envelope["offset"])] or b""
        kept = base64.b64decode(envelope["original_b64"])
        assert original.startswith(kept) and (len(kept) == len(original)) != envelope["truncated"]
    bad_messages = {(stream[i][0], *sent[i]) for i in bad_at}
    assert {(e["source_topic"], e["partition"], e["offset"]) for e in envelopes} == bad_messages

    counted = rows(mysql_url, "SELECT COALESCE(SUM(r.sample_count), 0) FROM infra_metric_rollups r "
                              "JOIN infra_series s USING (series_id) WHERE s.resource_id LIKE 'fz-%%'")
    assert counted == valid_samples + batch_items, "every valid sample, alone or in a batch, is counted once"
    for topic in sorted(DECODERS):  # and every valid event of the other topics was taken in
        taken = (worker.metric("spcwatch_events_consumed_total", {"topic": topic})
                 - worker.metric("spcwatch_events_invalid_total", {"topic": topic}))
        assert taken == {"metrics.samples": valid_samples + batch_items, "orders": valid_orders}.get(topic, 0)
    status, _ = worker.health()
    assert status == 200 and worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
    fault_report(fault=f"fuzzed stream: {len(bad):,} malformed among {len(stream) - len(bad):,} valid messages",
                 use_case="all", rows_missing=0, rows_extra=0, alerts_missing=0, alerts_duplicated=0,
                 restarts=0, dead_letters=len(envelopes),
                 dead_letters_per_second=round(len(envelopes) / dead_lettered_in))


async def produce_all(bootstrap: str, prefix: str,
                      stream: list[tuple[str, bytes | None, bytes | None]]) -> list[tuple[int, int]]:
    """Send in order (one partition's order is the stream's); the (partition, offset) of each."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=1_048_576,
                                linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(prefix + topic, value, key=key) for topic, key, value in stream]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metadata]


def rows(mysql_url: str, query: str) -> Any:
    """One value from the test database, once the worker has written it (waits up to 3 minutes)."""
    import pymysql
    from sqlalchemy.engine import make_url

    url = make_url(mysql_url)
    deadline = time.monotonic() + 180
    last: Any = None
    while time.monotonic() < deadline:
        conn = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username, password=url.password,
                               database=url.database)
        try:
            with conn.cursor() as cursor:
                cursor.execute(query)
                value = cursor.fetchone()[0]
        except pymysql.err.ProgrammingError:
            value = None
        finally:
            conn.close()
        if value is not None and value == last:
            return int(value)  # the same twice, 5 s apart: the worker has finished
        last = value
        time.sleep(5)
    return last
