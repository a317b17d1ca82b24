"""Shared pieces of the benchmarks: timing, the sample payload, topic filling."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

BOOTSTRAP = "127.0.0.1:9092"


def sample_message(i: int) -> bytes:
    """A ~150-byte single-sample message, like a CloudWatch metric sample."""
    return orjson.dumps({
        "ts": 1771322700 + i, "source": "cloudwatch", "resource_type": "rds",
        "resource_id": f"aws-db-{i % 1000:04d}", "metric": "CPUUtilization", "value": 40.0 + (i % 17),
    })


def median_of(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    values = [measure() for _ in range(runs)]
    return statistics.median(values), values


def unique(name: str) -> str:
    return f"bench.{name}.{uuid.uuid4().hex[:8]}"


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


async def fill_topic(bootstrap: str, topic: str, count: int, make: Callable[[int], bytes] = sample_message,
                     key: Callable[[int], bytes] | None = None) -> float:
    """Produce ``count`` messages as fast as the producer allows; returns messages/s."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024,
                                acks=1, compression_type=None)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for i in range(count):
            pending.append(await producer.send(topic, make(i), key=key(i) if key else None))
            if len(pending) >= 20000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count / (time.perf_counter() - started)
