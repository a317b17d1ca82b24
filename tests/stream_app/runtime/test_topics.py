"""Reading offsets of a partition straight from the broker (real Kafka)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from agents.core.settings import Settings
from stream_app.runtime.topics import PartitionReader, ensure_topics

pytestmark = pytest.mark.integration


def test_partition_reader_returns_the_records_of_a_range_and_nothing_for_a_transaction_marker(
        kafka_bootstrap: str, topic_prefix: str) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=1)
    topic = settings.topic("ledger")

    async def scenario() -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]], list[int], int]:
        await ensure_topics(settings, ("ledger",))
        plain = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await plain.start()
        try:
            for i in range(4):  # offsets 0-3
                await plain.send_and_wait(topic, f"m{i}".encode(), partition=0)
        finally:
            await plain.stop()
        tx = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic_prefix}tx")
        await tx.start()
        try:
            async with tx.transaction():  # offset 4 (data); its commit marker follows
                await tx.send_and_wait(topic, b"m4", partition=0)
        finally:
            await tx.stop()
        plain = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await plain.start()
        try:
            # The coordinator writes the commit marker after the commit returns, so m6
            # may land before it: offsets 5 and 6 hold the marker and m6 in either order.
            last = (await plain.send_and_wait(topic, b"m6", partition=0)).offset
        finally:
            await plain.stop()
        marker = 6 if last == 5 else 5
        reader = PartitionReader(settings)
        try:
            middle = await reader.read(topic, 0, 1, 4)
            around_marker = await reader.read(topic, 0, 4, 7)
            marker_only = await reader.read(topic, 0, marker, marker + 1)
        finally:
            await reader.close()
        return ([(r.offset, r.value) for r in middle], [(r.offset, r.value) for r in around_marker],
                [r.offset for r in marker_only], last)

    middle, around_marker, marker_only, last = asyncio.run(scenario())
    assert last in (5, 6)
    assert middle == [(1, b"m1"), (2, b"m2"), (3, b"m3")]
    assert around_marker == [(4, b"m4"), (last, b"m6")]
    assert marker_only == []
