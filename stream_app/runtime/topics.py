"""Topic names and their explicit creation.

The broker does not auto-create topics (and MSK clusters usually forbid it), so
spcwatch creates the contract's topics itself with the configured partitions
and replication before the worker starts. Existing topics are left as they are.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from agents.core.events import INPUT_TOPICS
from agents.core.settings import Settings

log = logging.getLogger(__name__)

ALERTS = "alerts"
DEADLETTER = "deadletter"
OUTPUT_TOPICS = (ALERTS, DEADLETTER)
ALL_TOPICS = (*INPUT_TOPICS, *OUTPUT_TOPICS)


@dataclass(frozen=True, slots=True)
class TopicReport:
    created: list[str]
    existing: list[str]


def kafka_client_options(settings: Settings) -> dict[str, object]:
    """aiokafka connection options (security) shared by every client we build."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return options


class PartitionReader:
    """Reads a range of offsets of one partition straight from the broker, outside any group.

    For the few records Faust fetched but never delivered (stream_app/runtime/runner.py, DeliveryGaps):
    one consumer, started on first use, shared under a lock.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def read(self, topic: str, partition: int, start: int, end: int, timeout: float = 30.0) -> list[Any]:
        """The records with ``start <= offset < end`` (none for offsets that hold no record, such as
        transaction markers); raises TimeoutError when the broker does not hand them over in time."""
        async with self._lock:
            if self._consumer is None:
                self._consumer = AIOKafkaConsumer(**kafka_client_options(self.settings), enable_auto_commit=False)
                await self._consumer.start()
            tp = TopicPartition(topic, partition)
            self._consumer.assign([tp])
            self._consumer.seek(tp, start)
            records: list[Any] = []
            deadline = time.monotonic() + timeout
            while await self._consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"offsets {start}-{end - 1} of {topic}[{partition}] not read in {timeout:.0f} s")
                batch = await self._consumer.getmany(tp, timeout_ms=500)
                records.extend(r for r in batch.get(tp, ()) if r.offset < end)
            return records

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


def ssl_context(settings: Settings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)


async def ensure_topics(settings: Settings, names: tuple[str, ...] = ALL_TOPICS) -> TopicReport:
    """Create missing topics; report which were created and which already existed."""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings), request_timeout_ms=30000)
    await admin.start()
    try:
        full_names = [settings.topic(name) for name in names]
        existing = set(await admin.list_topics())
        missing = [n for n in full_names if n not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(name, settings.partitions, settings.replication_factor) for name in missing]
            )
            for name, code, *rest in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):  # lost a race: fine
                    detail = rest[0] if rest and rest[0] else f"error code {code}"
                    raise RuntimeError(f"cannot create topic {name}: {detail}")
        for name in missing:
            log.info("created topic %s (partitions=%d, replication=%d)",
                     name, settings.partitions, settings.replication_factor)
        return TopicReport(created=missing, existing=[n for n in full_names if n in existing])
    finally:
        await admin.close()
