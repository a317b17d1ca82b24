"""Generic Faust wiring for a :class:`~agents.core.contract.Processor`, with checkpoints.

Per use case: one Faust table of per-key state, one agent per input topic, and
a tick topic (one message per partition per interval) so timer work runs
*inside* stream iteration for the right partition — Faust only lets a table be
written from an event, and the changelog partition must be the key's.

Writing the table and the database per event would cap a worker at a few
thousand events/s, so each partition works between **checkpoints**: state
lives in a write-back cache, rows accumulate, and events are not acknowledged.
A checkpoint (every ``checkpoint_events`` events or ``checkpoint_seconds``, 5 s)
moves the dirty state into the table's memory and hands the rows to a background
writer, which upserts them and only then sends that state to the changelog and
acknowledges the events (processing goes on meanwhile; at most two checkpoints
are in flight). Faust commits offsets only up to acknowledged events and flushes
the producer first. So after a crash the restored state never runs ahead of the
rows (an event the state already reflects is skipped as a repeat: its rows are in),
and the committed offsets never run ahead of the state. Events after the last
commit are processed again: processors are idempotent (deterministic alert ids,
upserts, and per-key event-time guards against applying an event twice). On a
rebalance, the checkpoints in flight are finished before partitions are handed over.
The protocol, step by step, is the docstring of :meth:`ProcessorRunner.checkpoint`.
Alerts are published at once, not at checkpoints, to keep alert latency low.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from agents.core.contract import MetricsUser, Outputs, Processor, StagedProcessor, StageOutputs
from agents.core.events import InvalidEvent
from stream_app.runtime import validate
from stream_app.runtime.app import REROUTED_HEADER, Origin
from stream_app.runtime.codecs import encode_events
from stream_app.runtime.store import CachedStore, PartitionStore

if TYPE_CHECKING:
    from collections.abc import Callable as Factory

    from agents.core.settings import Settings
    from stream_app.runtime.app import Runtime

log = logging.getLogger(__name__)


class DeliveryGaps:
    """Finds the messages Faust fetched but never delivered, so an agent takes them after all.

    At start-up or a rebalance faust-streaming (0.15.3) can drop a fetched message before
    it reaches the agent and then count its offset as a gap in the partition (its
    ``_add_gap``, meant for compacted topics and transaction markers), so the commit passes
    it: seen as one ledger entry lost across a restart in tests/agents/test_recon_e2e.py.
    Our topics are not compacted, so when an agent receives offset ``n + k`` right after
    ``n``, the ``k - 1`` offsets between are read straight from the broker and processed
    first. Offsets that hold no record (transaction markers) read back as nothing.
    """

    def __init__(self, read: Callable[[str, int, int, int], Awaitable[list[Any]]],
                 on_gap: Callable[[str, int], None] = lambda _topic, _n: None) -> None:
        self._read = read
        self._on_gap = on_gap
        self._next: dict[tuple[str, Any], int] = {}  # (reader, topic partition) -> offset it expects next

    def skipped(self, reader: str, tp: Any, offset: int) -> tuple[int, int] | None:
        """The offsets ``[start, end)`` of ``tp`` that ``reader`` should have received before
        ``offset``; None when it is in sequence (the hot path: no I/O, no coroutine)."""
        key = (reader, tp)
        expected = self._next.get(key)
        if expected is None or offset >= expected:
            self._next[key] = offset + 1
        if expected is None or offset <= expected:
            return None  # in sequence, or an older message again (after a rebalance): nothing missed
        return expected, offset

    async def read_back(self, reader: str, tp: Any, start: int, end: int) -> list[Any]:
        """The records of a :meth:`skipped` range, in order (none for transaction markers)."""
        records = await self._read(tp.topic, tp.partition, start, end)
        if records:
            log.warning("%s: %d message(s) at offsets %d-%d of %s[%d] were fetched but never delivered; "
                        "read again from the broker", reader, len(records), start, end - 1,
                        tp.topic, tp.partition)
            self._on_gap(tp.topic, len(records))
        return records

    def forget(self, tps: Iterable[Any]) -> None:
        """Revoked partitions: their next owner starts from the committed offset."""
        gone = set(tps)
        for key in [k for k in self._next if k[1] in gone]:
            del self._next[key]


@dataclass
class _Partition:
    number: int
    store: CachedStore
    watermark: float = 0.0
    rows: Outputs = field(default_factory=Outputs)
    unacked: list[Any] = field(default_factory=list)
    last_checkpoint: float = field(default_factory=time.monotonic)
    last_log: float = field(default_factory=time.monotonic)
    log_events: int = 0
    log_checkpoints: int = 0


def _log_row(use_case: str, p: _Partition) -> dict[str, Any]:
    wall = time.time()
    return {
        "use_case": use_case, "topic_partition": p.number, "logged_at": datetime.fromtimestamp(wall, UTC),
        "events": p.log_events, "checkpoints": p.log_checkpoints,
        "watermark": datetime.fromtimestamp(p.watermark, UTC) if p.watermark else None,
        "lag_seconds": wall - p.watermark if p.watermark else None,
    }


class ProcessorRunner:
    """One processor in the worker: its table, agents, tick timer and checkpoints.

    Per partition it keeps a :class:`_Partition` (cache, watermark, rows and events since
    the last checkpoint). Input topics, internal topics (a :class:`StagedProcessor`'s) and
    ticks each feed the processor through one consume loop, which reads delivery gaps back.
    """

    def __init__(self, runtime: Runtime, processor: Processor, *, tick_seconds: float = 1.0,
                 checkpoint_events: int = 20000, checkpoint_seconds: float = 5.0,
                 log_seconds: float = 60.0) -> None:
        self.runtime, self.processor = runtime, processor
        self.name = processor.use_case
        self.tick_seconds = tick_seconds
        self.checkpoint_events, self.checkpoint_seconds, self.log_seconds = (
            checkpoint_events, checkpoint_seconds, log_seconds)
        app, settings = runtime.app, runtime.settings
        if isinstance(processor, MetricsUser):
            processor.bind_metrics(runtime.metrics)
        self.staged = processor if isinstance(processor, StagedProcessor) else None
        self.table = app.Table(f"{self.name}-state", default=None, partitions=settings.partitions, key_type=str)
        self.tick_topic = app.topic(settings.topic(f"spcwatch.{self.name}.ticks"), key_serializer="raw",
                                    value_serializer="orjson", partitions=settings.partitions, internal=True)
        self.partitions: dict[int, _Partition] = {}
        self.gaps = DeliveryGaps(
            runtime.partition_reader.read,
            lambda topic, n: runtime.metrics.delivery_gaps.labels(topic.removeprefix(settings.topic_prefix)).inc(n))
        # A staged processor's ``internal_topics`` are consumed like input topics (same
        # partitions, same table); what a hop forwards goes to the next stage's topic.
        self.internal = {t: app.topic(settings.topic(t), key_serializer="raw", value_serializer="orjson",
                                      partitions=settings.partitions, internal=True)
                         for t in (self.staged.internal_topics if self.staged else ())}

    # -- wiring ---------------------------------------------------------------------------
    def register(self) -> None:
        """Register the agents, the tick timer and the rebalance hook with the Faust app."""
        runtime, name = self.runtime, self.name
        for topic_name in self.processor.topics:
            owner = runtime.claim(topic_name, name)
            reader = f"spcwatch.{name}.{topic_name}"
            self._agent(runtime.input_topics[topic_name], reader, topic_name,
                        self._input_taker(topic_name, owner))
        for topic_name in self.internal:
            self._agent(self.internal[topic_name], topic_name, topic_name, self._internal_taker(topic_name))

        async def ticks(stream: Any) -> None:
            async for event in stream.noack().events():
                await self._tick(event)

        ticks.__name__ = ticks.__qualname__ = f"{name}_ticks"
        runtime.agent(self.tick_topic, name=f"spcwatch.{name}.ticks")(ticks)

        @runtime.app.timer(self.tick_seconds, name=f"spcwatch.{name}.tick_timer")
        async def send_ticks() -> None:
            await self._send_ticks()

        @runtime.app.on_partitions_revoked.connect
        async def forget(app_: Any, revoked: Any, **_: Any) -> None:
            await self._revoked(revoked)

    def _agent(self, channel: Any, reader: str, topic_name: str,
               take: Callable[[_Partition, Any, Any], Awaitable[None]]) -> None:
        """One agent over ``channel``: each message (after the records of a delivery gap before it,
        read back from the broker, with no event to acknowledge) goes to ``take(p, message, event)``."""
        gaps = self.gaps

        async def consume(stream: Any) -> None:
            async for event in stream.noack().events():
                message = event.message
                p = self.part(message.partition)
                gap = gaps.skipped(reader, message.tp, message.offset)
                if gap is not None:
                    for record in await gaps.read_back(reader, message.tp, *gap):
                        await take(p, record, None)
                await take(p, message, event)

        consume.__name__ = consume.__qualname__ = f"{self.name}_{topic_name.replace('.', '_')}"
        self.runtime.agent(channel, name=reader)(consume)

    def _input_taker(self, topic_name: str, owner: bool) -> Callable[[_Partition, Any, Any], Awaitable[None]]:
        async def take(p: _Partition, message: Any, event: Any) -> None:
            events = await self.runtime.decode_message(topic_name, message, owner)
            if events:
                events = await self._reroute(topic_name, message.key, events, owner)
            outputs = await self._guarded_step(p, topic_name, events, message) if events else None
            if outputs is not None:
                p.watermark = max(p.watermark, max(getattr(e, "ts", 0.0) for e in events))
            await self._handle(p, event, outputs or Outputs())

        return take

    def _internal_taker(self, topic_name: str) -> Callable[[_Partition, Any, Any], Awaitable[None]]:
        async def take(p: _Partition, message: Any, event: Any) -> None:
            value = orjson.loads(message.value) if event is None else event.value
            outputs = await self._guarded_step(p, topic_name, [value], message)
            if outputs is not None:
                p.watermark = max(p.watermark, float(value.get("ts") or 0.0))
            await self._handle(p, event, outputs or Outputs())

        return take

    def part(self, number: int) -> _Partition:
        state = self.partitions.get(number)
        if state is None:
            store = CachedStore(PartitionStore(self.table, number), self.processor,
                                self.runtime.settings.state_cache_keys)
            state = self.partitions[number] = _Partition(number, store)
            log.info("%s: partition %d: working from the table's state", self.name, number)
        return state

    # -- one message ----------------------------------------------------------------------
    async def _guarded_step(self, p: _Partition, topic_name: str, events: list[Any], message: Any) -> Outputs | None:
        """:meth:`_step`, counting a processor's exception against the message's offset (it stops the
        worker); a message that already stopped it ``SPCWATCH_POISON_MAX_RESTARTS`` times is
        dead-lettered and skipped instead (None). Sink and broker failures are not counted: they are
        not the message's fault, and the message is processed again once they pass."""
        ledger = self.runtime.poison
        entry = ledger.exhausted(message)
        if entry is not None:
            log.critical("%s: %s[%d] offset %d stopped the worker %d times (%s); dead-lettered and skipped "
                         "(SPCWATCH_POISON_MAX_RESTARTS)", self.name, message.topic, message.partition,
                         message.offset, entry["crashes"], entry["error"])
            await self.runtime.dead_letter(topic_name, message, InvalidEvent(
                "poison_message", f"processing it stopped the worker {entry['crashes']} times: {entry['error']}"))
            self.runtime.metrics.poison_messages.labels(topic_name).inc()
            return None
        try:
            return await self._step(p, topic_name, events, message)
        except Exception as exc:
            crashes = ledger.record(message, exc)
            log.critical("%s: processing %s[%d] offset %d failed (crash %d of %d before it is skipped)",
                         self.name, message.topic, message.partition, message.offset, crashes,
                         ledger.max_restarts)
            raise

    async def _step(self, p: _Partition, topic_name: str, events: list[Any], message: Any) -> Outputs:
        if not self.internal or self.staged is None:
            return self.processor.process(p.store, topic_name, events)
        now = max(p.watermark, *(getattr(e, "ts", None) or 0.0 for e in events))
        outputs = self.staged.step(p.store, topic_name, events, now)
        await self._forward(outputs)
        for _event, detail in outputs.dead:
            await self.runtime.dead_letter(topic_name, message, InvalidEvent("invalid_timestamp", detail))
        return outputs

    async def _forward(self, outputs: StageOutputs) -> None:
        for target, key, value in outputs.forward:
            await self.internal[target].send(key=key.encode(), value=value)

    async def _reroute(self, topic_name: str, key: bytes | None, events: list[Any], owner: bool) -> list[Any]:
        """Events keyed to another key go to that key's partition; the rest stay.

        The contract has producers key by the state key, but a batch may hold
        other resources' samples: their state lives elsewhere. Only the topic's
        owner re-sends them; other readers skip them and get the re-sent copy.
        """
        own = key.decode("utf-8", "replace").strip() if key is not None else None
        local: list[Any] = []
        foreign: dict[str, list[Any]] = {}
        for event in events:
            event_key = self.processor.key(topic_name, event)
            if event_key == own:
                local.append(event)
            else:
                foreign.setdefault(event_key, []).append(event)
        if not owner:
            return local
        for event_key, group in foreign.items():
            await self.runtime.input_topics[topic_name].send(
                key=event_key.encode(), value=encode_events(topic_name, group),
                headers={REROUTED_HEADER: b"1"})
        if foreign:
            self.runtime.metrics.events_rerouted.labels(topic_name).inc(sum(len(g) for g in foreign.values()))
        return local

    async def _handle(self, p: _Partition, event: Any, outputs: Outputs) -> None:
        """``event`` None: a record read back by DeliveryGaps (Faust already counts it as done)."""
        if outputs.alerts:
            await self.runtime.emit(Outputs(alerts=outputs.alerts))
        p.rows.merge(Outputs(rows=outputs.rows))
        if event is not None:
            p.unacked.append(event)
        if (len(p.unacked) >= self.checkpoint_events
                or time.monotonic() - p.last_checkpoint >= self.checkpoint_seconds):
            await self.checkpoint(p)

    # -- timers ---------------------------------------------------------------------------
    async def _tick(self, event: Any) -> None:
        p = self.part(event.message.partition)
        # The partition's own watermark, never the tick's "now": a tick read back after a restart or a
        # rebalance was sent by the previous owner, whose watermark ran past the checkpointed state this
        # owner restored (its uncheckpointed work is redone from the input). Judged against it, every
        # resource of the partition was absent for a moment (false ABSENT episodes after a SIGKILL).
        now = p.watermark
        if self.runtime.settings.max_clock_skew_seconds > 0:
            # Live data: no timer runs ahead of the wall clock. Events up to the allowed skew ahead
            # are applied, but judged by a clock they moved, a healthy resource whose deadline is
            # shorter than the skew (5 intervals of a 15-s scrape) would be absent (README).
            now = min(now, time.time())
        if now <= 0:
            outputs = Outputs()
        elif self.internal and self.staged is not None:
            staged_outputs = self.staged.step_tick(p.store, now)
            await self._forward(staged_outputs)
            outputs = staged_outputs
        else:
            outputs = self.processor.tick(p.store, now)
        if outputs.alerts:
            await self.runtime.emit(Outputs(alerts=outputs.alerts))
        p.rows.merge(Outputs(rows=outputs.rows))
        # A tick carries no data: acknowledging it at once is safe (a lost tick's
        # effect is redone, with the same ids, by the next one).
        event.ack()
        if time.monotonic() - p.last_checkpoint >= self.checkpoint_seconds:
            await self.checkpoint(p)  # ticks keep coming, so idle partitions flush too

    async def _send_ticks(self) -> None:
        tick_topic = self.tick_topic
        owned = {tp.partition for tp in self.runtime.app.consumer.assignment()
                 if tp.topic == tick_topic.get_topic_name()}
        for number in sorted(owned):
            await tick_topic.send(key=b"tick", value={"now": self.part(number).watermark}, partition=number)

    async def _revoked(self, revoked: Any) -> None:
        # Finish the checkpoints in flight first, so the next owner restores their state.
        # Unacknowledged events of a revoked partition are redelivered to its next
        # owner, so dropping the cache and buffers here loses nothing.
        await self.runtime.drain_writes()
        self.gaps.forget(revoked)
        ours = {self.runtime.input_topics[t].get_topic_name() for t in self.processor.topics}
        for tp in revoked:
            if tp.topic in ours:
                dropped = self.partitions.pop(tp.partition, None)
                if dropped is not None:
                    log.info("%s: partition %d revoked: %d unacknowledged events will be delivered again",
                             self.name, tp.partition, len(dropped.unacked))

    # -- checkpoints ----------------------------------------------------------------------
    async def checkpoint(self, p: _Partition) -> None:
        """The checkpoint protocol, in this order (the only place it is written down):

        1. state: the cache's dirty keys move into the table's memory and their changelog
           records are snapshotted (:meth:`CachedStore.write_back`), together with the events
           and the rows since the last checkpoint, before any ``await``: agents of a use case's
           topics share the partition and run concurrently, so only events whose state and rows
           this checkpoint writes get acknowledged;
        2. rows committed: the rows are upserted in the background (:meth:`Runtime.write_behind`,
           one write after another, at most ``MAX_PENDING_WRITES`` in flight);
        3. changelog: once they are in, the snapshot is sent to the changelog
           (:meth:`PartitionStore.publish`), so restored state never runs ahead of the rows;
        4. acknowledgements: then the events are acknowledged, and Faust commits offsets only up
           to acknowledged events, after flushing the producer (the changelog of step 3).
        """
        acks, p.unacked = p.unacked, []  # 1. state, events and rows, taken together
        records = p.store.write_back()
        rows, p.rows = p.rows, Outputs()
        now = time.monotonic()
        p.last_checkpoint = now
        p.log_events += len(acks)
        p.log_checkpoints += 1
        if now - p.last_log >= self.log_seconds:
            rows.add_row("pipeline_log", _log_row(self.name, p))
            p.log_events = p.log_checkpoints = 0
            p.last_log = now

        def publish_and_acknowledge() -> None:
            p.store.backing.publish(records)  # 3. changelog (the rows are in)
            for event in acks:  # 4. acknowledgements
                event.ack()

        # 2. rows committed, in the background while this partition goes on; then 3 and 4.
        origin = None
        if acks:
            first = acks[0].message
            offsets = [e.message.offset for e in acks if e.message.topic == first.topic]
            origin = Origin(first.topic.removeprefix(self.runtime.settings.topic_prefix), p.number,
                            min(offsets), max(offsets))
        await self.runtime.write_behind(rows.rows, publish_and_acknowledge, origin)


def register_processor(runtime: Runtime, processor: Processor, **options: Any) -> ProcessorRunner:
    """Wire ``processor`` into the worker (options: see :class:`ProcessorRunner`)."""
    runner = ProcessorRunner(runtime, processor, **options)
    runner.register()
    return runner


def register_all(runtime: Runtime, processors: Iterable[Factory[[Settings], Processor]]) -> None:
    """Wire every use case (``agents.registry.PROCESSORS``), then validate-and-count agents for the
    input topics none of them consumes, so nothing on a contract topic goes unnoticed."""
    for factory in processors:
        register_processor(runtime, factory(runtime.settings))
    validate.register(runtime)
