"""Generic Faust wiring for a :class:`~stream_app.usecase.Processor`.

Per use case: one Faust table of per-key state, one agent per input topic, and
a tick topic (one message per partition per interval) so timer work runs
*inside* stream iteration for the right partition — Faust only lets a table be
written from an event, and the changelog partition must be the key's.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from stream_app.usecase import PartitionStore, Processor

if TYPE_CHECKING:
    from stream_app.app import Runtime

log = logging.getLogger(__name__)


def register_processor(runtime: Runtime, processor: Processor, *, tick_seconds: float = 5.0) -> None:
    app, settings = runtime.app, runtime.settings
    name = processor.use_case
    table = app.Table(f"{name}-state", default=None, partitions=settings.partitions,
                      key_type=str, value_serializer="orjson")
    tick_topic = app.topic(settings.topic(f"spcwatch.{name}.ticks"), key_serializer="raw",
                           value_serializer="orjson", partitions=settings.partitions, internal=True)
    watermarks: dict[int, float] = {}  # partition -> highest event time seen (event-time clock)

    for topic_name in processor.topics:
        runtime.claimed_topics.add(topic_name)
        _register_topic_agent(runtime, processor, table, topic_name, watermarks)

    async def ticks(stream: Any) -> None:
        async for event in stream.events():
            partition = event.message.partition
            now = max(float(event.value.get("now", 0.0)), watermarks.get(partition, 0.0))
            if now <= 0:
                continue
            outputs = processor.tick(PartitionStore(table, partition), now)
            if outputs:
                await runtime.emit(outputs)

    ticks.__name__ = ticks.__qualname__ = f"{name}_ticks"
    app.agent(tick_topic, name=f"spcwatch.{name}.ticks")(ticks)

    @app.timer(tick_seconds, name=f"spcwatch.{name}.tick_timer")
    async def send_ticks() -> None:
        if not app.consumer:
            return
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == tick_topic.get_topic_name()}
        for partition in sorted(owned):
            await tick_topic.send(key=b"tick", value={"now": watermarks.get(partition, 0.0), "sent": time.time()},
                                  partition=partition)


def _register_topic_agent(runtime: Runtime, processor: Processor, table: Any, topic_name: str,
                          watermarks: dict[int, float]) -> None:
    async def consume(stream: Any) -> None:
        async for message, events in runtime.decoded(topic_name, stream):
            store = PartitionStore(table, message.partition)
            outputs = processor.process(store, topic_name, events)
            newest = max(getattr(e, "ts", 0.0) for e in events)
            if newest > watermarks.get(message.partition, 0.0):
                watermarks[message.partition] = newest
            if outputs:
                await runtime.emit(outputs)

    consume.__name__ = consume.__qualname__ = f"{processor.use_case}_{topic_name.replace('.', '_')}"
    runtime.app.agent(runtime.input_topics[topic_name], name=f"spcwatch.{processor.use_case}.{topic_name}")(consume)
