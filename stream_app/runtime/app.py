"""The Faust application: topics, dead-letter handling, HTTP endpoints.

``build_runtime`` builds one :class:`Runtime` from :class:`Settings`; agents
receive it and keep no globals, so tests can run several isolated apps (each
with its own topic prefix and metrics registry) against one broker.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import orjson
from faust import web
from faust.types import Message, StreamT
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agents.core.contract import Outputs
from agents.core.events import DECODERS, InvalidEvent, bound_to_clock
from agents.core.settings import Settings
from stream_app.runtime import codecs, topics
from stream_app.runtime.db import create_engine
from stream_app.runtime.metrics import SpcMetrics
from stream_app.runtime.monitor import StallWatch, WorkerMonitor
from stream_app.runtime.poison import CrashLedger
from stream_app.runtime.sink import Sink, is_row_error

log = logging.getLogger(__name__)

MAX_PENDING_WRITES = 2
"""Checkpoints whose rows may be in flight to the database while processing goes on."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a checkpoint's rows came from: a contract topic, a partition, the offsets it acknowledges."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int


@dataclass
class Runtime:
    """What agents need: settings, app, topics, metrics, sink."""

    settings: Settings
    app: faust.App
    metrics: SpcMetrics
    registry: CollectorRegistry
    sink: Sink
    input_topics: dict[str, faust.TopicT] = field(default_factory=dict)
    alerts_topic: faust.TopicT | None = None
    deadletter_topic: faust.TopicT | None = None
    topic_owners: dict[str, str] = field(default_factory=dict)
    """Input topic -> the use case that counts and dead-letters it (the first to claim it);
    other use cases reading the same topic only process it, so nothing is counted twice."""
    partition_reader: topics.PartitionReader = field(init=False, repr=False)
    """Reads back records Faust fetched but never delivered (stream_app/runtime/runner.py, DeliveryGaps)."""
    _writes: deque[asyncio.Future[None]] = field(default_factory=deque, init=False, repr=False)
    """Checkpoint writes in flight, oldest first (see :meth:`write_behind`)."""

    exit_watchdog: bool = False
    """Exit the process when a crash's shutdown hangs: only a worker process (:func:`run_worker`)
    sets it, never an app running inside another program (tests, tools)."""
    poison: CrashLedger = field(init=False, repr=False)
    """Crashes per input offset, across restarts (stream_app/runtime/poison.py)."""

    def __post_init__(self) -> None:
        self.partition_reader = topics.PartitionReader(self.settings)
        self.poison = CrashLedger(Path(self.settings.data_dir) / f"{self.settings.group_id}-poison-offsets.json",
                                  self.settings.poison_max_restarts)

    def claim(self, topic: str, use_case: str) -> bool:
        """Register ``use_case`` as a reader of ``topic``; True if it is the owner."""
        return self.topic_owners.setdefault(topic, use_case) == use_case

    def agent(self, channel: Any, name: str) -> Callable[[Callable[[Any], Awaitable[None]]], Any]:
        """``app.agent`` for spcwatch's agents: an exception that escapes one stops the worker.

        Faust would restart the agent inside this process and go on with the next message,
        but the message that raised may be half-applied: its state changed, its rows or
        alerts unwritten (an alert the database refused, say). Stopped, the worker is
        restarted by its supervisor from the committed offsets, with the state that matches
        them, as after any crash.
        """
        def register(consume: Callable[[Any], Awaitable[None]]) -> Any:
            async def stop_on_error(stream: Any) -> None:
                try:
                    await consume(stream)
                except Exception as exc:
                    log.critical("agent %s failed (%s: %s); stopping the worker",
                                 name, exc.__class__.__name__, exc)
                    await self.crash(exc)
                    raise

            stop_on_error.__name__ = stop_on_error.__qualname__ = consume.__name__
            stop_on_error.__doc__ = consume.__doc__
            return self.app.agent(channel, name=name)(stop_on_error)

        return register

    async def crash(self, exc: BaseException) -> None:
        """Stop the worker because of ``exc``; the process exits within ``crash_exit_seconds`` whatever happens.

        A supervisor restarts a process that exits, not one that hangs half-stopped
        (alive, ``/health`` 503): shutdown waits on agents, the broker and the database,
        and any of them can hang. The watchdog is a thread, so it fires even when the
        event loop itself is blocked.
        """
        if self.exit_watchdog:
            start_exit_watchdog(self.settings.crash_exit_seconds, f"{exc.__class__.__name__}: {exc}")
        await self.app.crash(exc)

    async def dead_letter(self, topic: str, message: Message, error: InvalidEvent) -> None:
        """Publish the original bytes with where they came from and why they failed."""
        envelope = deadletter_envelope(topic, message.partition, message.offset,
                                       message.key, message.value, error)
        assert self.deadletter_topic is not None
        await self.deadletter_topic.send(key=message.key, value=envelope)
        self.metrics.events_invalid.labels(topic, error.reason).inc()
        self.metrics.deadletter_published.labels(topic).inc()

    async def write_behind(self, rows: dict[str, list[dict[str, Any]]], then: Callable[[], None],
                           origin: Origin | None = None) -> None:
        """Commit a checkpoint's rows in the background, then call ``then`` (its acknowledgements).

        Processing goes on while the database commits. Writes run one after
        another in the order asked, so the last write of a key wins and
        acknowledgements stay in offset order. With more than ``MAX_PENDING_WRITES``
        in flight the caller waits (back-pressure). A failed write fails every
        later one, raises here, in the agent, and stops the worker.

        Agents of one partition (its input and its ticks) checkpoint concurrently:
        the write is queued before the first ``await``, so writes, changelog
        records and acknowledgements keep the order of the checkpoints' snapshots
        (an older snapshot published after a newer one would restore stale state).
        """
        writes = self._writes
        self._forget_finished_writes()
        if not rows:
            if not writes:
                then()
                return
            # Nothing to write (a tick's checkpoint, mostly): its acknowledgements follow the
            # last write's, without taking a place in the queue or waiting for one.
            writes[-1].add_done_callback(
                lambda done: then() if not done.cancelled() and done.exception() is None else None)
            return
        previous = writes[-1] if writes else None
        writes.append(asyncio.ensure_future(self._write_after(previous, rows, then, origin)))
        while len(writes) > MAX_PENDING_WRITES:
            await writes[0]
            self._forget_finished_writes()

    def _forget_finished_writes(self) -> None:
        """Drop the finished writes at the head of the queue; a failed one raises here."""
        writes = self._writes
        while writes and writes[0].done():
            writes.popleft().result()

    async def drain_writes(self) -> None:
        """Wait until the checkpoint writes in flight are committed (and their ``then`` has run)."""
        if self._writes:
            await asyncio.gather(*self._writes)

    async def _write_after(self, previous: asyncio.Future[None] | None,
                           rows: dict[str, list[dict[str, Any]]], then: Callable[[], None],
                           origin: Origin | None) -> None:
        if previous is not None:
            await previous
        try:
            for table, table_rows in rows.items():
                try:
                    await self.sink.upsert(table, table_rows)
                except Exception as exc:
                    if not is_row_error(exc):
                        raise
                    for row, why in await self.sink.isolate(table, table_rows):
                        await self.quarantine(table, row, why, origin)
        except Exception as exc:
            # Nothing after this checkpoint may be acknowledged (offsets would pass rows that
            # were never written): stop the worker; after a restart it resumes from the last
            # commit and writes these rows again.
            log.critical("sink: a checkpoint's rows could not be written (%s: %s); stopping the worker",
                         exc.__class__.__name__, exc)
            await self.crash(exc)
            raise
        then()

    async def quarantine(self, table: str, row: dict[str, Any], why: str, origin: Origin | None) -> None:
        """A row the database refused for its values goes to ``deadletter``, and the checkpoint goes on.

        Stopping would not help: after the restart the same input makes the same row and
        the worker stops again, for good. Rows are built from many events, so the dead letter
        carries the row itself (``original_text``, JSON), its ``table``, and the partition and
        offsets of the checkpoint that made it (``offset`` the first, ``last_offset`` the last).
        """
        topic = origin.topic if origin else table
        envelope = deadletter_envelope(
            topic, origin.partition if origin else -1, origin.first_offset if origin else -1, None,
            orjson.dumps(row, default=str, option=orjson.OPT_NON_STR_KEYS),
            InvalidEvent("db_rejected", f"table {table}: {why}"))
        envelope["table"] = table
        envelope["last_offset"] = origin.last_offset if origin else -1
        log.error("sink: the database refused a row of %s (%s); the row goes to deadletter, the rest is written",
                  table, why)
        assert self.deadletter_topic is not None
        await self.deadletter_topic.send(key=None, value=envelope)
        self.metrics.rows_quarantined.labels(table).inc()
        self.metrics.deadletter_published.labels(topic).inc()

    async def emit(self, outputs: Outputs) -> None:
        """Rows first (sink, idempotent), then alerts on the topic; both before the offset commits."""
        for table, rows in outputs.rows.items():
            await self.sink.upsert(table, rows)
        alerts = [alert.with_defaults(self.settings.runbook_base) for alert in outputs.alerts]
        if alerts:
            await self.sink.upsert("alerts", [alert.to_row() for alert in alerts])
        assert self.alerts_topic is not None
        now = time.time()
        for alert in alerts:
            await self.alerts_topic.send(key=alert.alert_id.encode(), value=alert.to_event())
            self.metrics.alerts.labels(alert.use_case, alert.rule, alert.severity).inc()
            if alert.status == "firing" and alert.event_ts is not None:
                self.metrics.event_to_alert_seconds.observe(max(0.0, now - alert.event_ts))

    async def decode_message(self, topic: str, message: Message, owner: bool = True) -> list[Any]:
        """Valid events of one message, after counting it and dead-lettering what is invalid.

        The events of one message come together so use cases can process a
        ``{"samples": [...]}`` batch at once (numpy pays there). Messages the
        worker re-routed to their own partition were counted when first seen. Events too far
        ahead of the wall clock are invalid (:func:`~agents.core.events.bound_to_clock`).
        """
        result = bound_to_clock(DECODERS[topic](message.value), time.time(),
                                self.settings.max_clock_skew_seconds)
        if owner:
            if not _is_rerouted(message):
                self.metrics.events_consumed.labels(topic).inc(len(result.events) + len(result.errors))
            for error in result.errors:
                await self.dead_letter(topic, message, error)
        return result.events

    async def decoded(self, topic: str, stream: StreamT) -> AsyncIterator[tuple[Message, list[Any]]]:
        """Messages of a stream with their valid events (auto-acknowledged)."""
        async for event in stream.events():
            events = await self.decode_message(topic, event.message)
            if events:
                yield event.message, events


_watchdog_started = threading.Event()


def start_exit_watchdog(seconds: float, why: str) -> None:
    """Exit the process with code 1 after ``seconds`` unless it has exited by then (idempotent)."""
    if _watchdog_started.is_set():
        return
    _watchdog_started.set()

    def expire() -> None:
        time.sleep(seconds)
        log.critical("worker still running %.0fs after it was asked to stop (%s); exiting with code 1 "
                     "(SPCWATCH_CRASH_EXIT_SECONDS)", seconds, why)
        for handler in logging.getLogger().handlers:
            try:
                handler.flush()
            except Exception:  # exiting anyway
                pass
        os._exit(1)

    threading.Thread(target=expire, name="spcwatch-exit-watchdog", daemon=True).start()


REROUTED_HEADER = "spcwatch-rerouted"
# Worst case a byte becomes 4/3 in base64 plus 6 as a JSON escape (\u0000): 96 KiB
# of original stay under 720 KB of envelope, well inside the broker's 1 MB default.
DEADLETTER_MAX_ORIGINAL_BYTES = 96 * 1024


def _is_rerouted(message: Message) -> bool:
    headers = message.headers
    if not headers:
        return False
    items = headers.items() if isinstance(headers, dict) else headers
    return any(key == REROUTED_HEADER for key, _ in items)


def deadletter_envelope(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, error: InvalidEvent
) -> dict[str, Any]:
    """The dead-letter record: original bytes (base64, lossless) and context.

    An original over :data:`DEADLETTER_MAX_ORIGINAL_BYTES` is cut to that many
    bytes (``truncated`` true, ``original_length`` its full size; offset and
    partition still find it): base64 and JSON escaping of the whole would exceed
    the broker's 1 MB message limit and the dead letter could not be published.
    """
    value = value or b""
    original_length = len(value)
    truncated = original_length > DEADLETTER_MAX_ORIGINAL_BYTES
    if truncated:
        value = value[:DEADLETTER_MAX_ORIGINAL_BYTES]
    envelope: dict[str, Any] = {
        "source_topic": topic,
        "partition": partition,
        "offset": offset,
        "reason": error.reason,
        "detail": error.detail,
        "item_index": error.item_index,
        "key_b64": base64.b64encode(key).decode() if key is not None else None,
        "original_b64": base64.b64encode(value).decode(),
        "truncated": truncated,
        "original_length": original_length,
        "rejected_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    try:
        envelope["original_text"] = value.decode("utf-8")
    except UnicodeDecodeError:
        envelope["original_text"] = None
    return envelope


def _broker_credentials(settings: Settings) -> Any:
    if settings.kafka_security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=topics.ssl_context(settings) if settings.kafka_security_protocol == "SASL_SSL" else None,
        )
    if settings.kafka_security_protocol == "SSL":
        return faust.SSLCredentials(topics.ssl_context(settings))
    return None


def build_runtime(settings: Settings, registry: CollectorRegistry | None = None) -> Runtime:
    """Build the Faust app with every topic and the runtime's HTTP views (``/metrics``, ``/health``).

    No agents yet: :func:`stream_app.worker.create_runtime` adds the notifier and the use cases.
    """
    codecs.register()
    registry = registry or CollectorRegistry()
    app = faust.App(
        settings.group_id,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
        broker_credentials=_broker_credentials(settings),
        processing_guarantee="at_least_once",
        store="memory://",
        datadir=settings.data_dir,
        value_serializer="orjson",
        key_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_seconds / 3),
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_enabled=True,
        web_in_thread=False,
        autodiscover=False,
        producer_linger_ms=5,
        # Events between checkpoints are unacknowledged on purpose (stream_app/runtime/runner.py);
        # waiting for them at shutdown would hang. Uncommitted events are simply
        # consumed again after the restart (at-least-once, idempotent outputs).
        stream_wait_empty=False,
    )
    metrics = SpcMetrics(registry)
    sink = Sink(create_engine(settings.db_url), metrics,
                batch_size=settings.sink_batch_size, retry_max_seconds=settings.sink_retry_max_seconds,
                timeout_seconds=settings.db_timeout_seconds)
    runtime = Runtime(settings=settings, app=app, metrics=metrics, registry=registry, sink=sink)
    runtime.input_topics = {
        name: app.topic(settings.topic(name), key_serializer="raw", value_serializer="raw",
                        partitions=settings.partitions)
        for name in DECODERS
    }
    runtime.alerts_topic = app.topic(settings.topic(topics.ALERTS), key_serializer="raw",
                                     value_serializer="orjson", partitions=settings.partitions)
    runtime.deadletter_topic = app.topic(settings.topic(topics.DEADLETTER), key_serializer="raw",
                                         value_serializer="orjson", partitions=settings.partitions)
    WorkerMonitor.install(app, registry)
    _install_fetch_watchdog(runtime)
    _register_metrics_page(app, registry)
    _register_health(runtime)
    return runtime


def run_worker(runtime: Runtime, loop: asyncio.AbstractEventLoop, loglevel: str, logging_config: Any) -> None:
    """Run the Faust worker of ``runtime`` until it stops; exits the process then."""
    runtime.exit_watchdog = True
    worker = faust.Worker(runtime.app, loop=loop, loglevel=loglevel, logging_config=logging_config,
                          override_logging=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        # A missing ACL that only Faust meets (its changelog topics, say) is a configuration error
        # like the ones checked before it starts: raise it as one (the CLI exits 78 with one line).
        why = stop.__context__ or getattr(runtime.app, "_crash_reason", None)
        denied = topics.access_denied(runtime.settings, why) if why is not None and stop.code else None
        if denied is not None:
            raise denied from None
        raise


GC_THRESHOLDS = (50_000, 20, 100)
"""Young-generation collections every 50,000 net allocations instead of 700, full ones rarer."""


def tune_gc() -> None:
    """Collect garbage far less often than CPython's defaults, and never the start-up heap.

    A worker's state (detectors, open orders, cached rows) is a large, long-lived heap,
    and the hot path allocates many short-lived objects: with the default thresholds,
    collections that traverse that heap took 15-20 % of a single-sample infra worker's
    time (bench/README.md). Reference cycles are still collected, in bigger, rarer passes.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def is_consuming(app: faust.App) -> bool:
    """Started, not stopping, not mid-rebalance, and holding partitions."""
    if app.should_stop or not app.started or app.rebalancing:
        return False
    try:
        return bool(app.consumer.assignment())
    except Exception:
        return False


def _register_metrics_page(app: faust.App, registry: CollectorRegistry) -> None:
    @app.page("/metrics")
    async def metrics(self: web.View, request: web.Request) -> web.Response:
        return self.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _register_health(runtime: Runtime) -> None:
    """``/health`` (readiness: 503 with the reasons while the worker cannot do its work) and
    ``/health/live`` (liveness: 503 only when stalled, which a restart may cure)."""
    app = runtime.app
    started = time.time()
    watch = StallWatch(app.monitor, runtime.settings.health_stall_seconds)
    inputs = {topic.get_topic_name() for topic in runtime.input_topics.values()}

    @app.timer(min(5.0, runtime.settings.health_stall_seconds / 4), name="spcwatch.stall_watch")
    async def observe_progress() -> None:
        try:
            assigned = app.consumer.assignment()
        except Exception:
            return
        watch.observe(tp for tp in assigned if tp.topic in inputs)

    def reasons() -> tuple[bool, list[str]]:
        consuming = is_consuming(app)
        why = [] if consuming else ["not consuming (starting, stopping, rebalancing or no partitions)"]
        database = runtime.sink.unavailable()
        if database:
            why.append(database)
        return consuming, why + watch.stalled()

    @app.page("/health")
    async def health(self: web.View, request: web.Request) -> web.Response:
        consuming, why = reasons()
        runtime.metrics.worker_up.set(1 if consuming else 0)
        body = {
            "status": "unavailable" if why else "ok",
            "consuming": consuming,
            "reasons": why,
            "uptime_seconds": round(time.time() - started, 1),
        }
        return self.json(body, status=503 if why else 200)

    @app.page("/health/live")
    async def live(self: web.View, request: web.Request) -> web.Response:
        # A database outage stalls every partition too, but a restart cannot cure it (and the
        # worker exits by itself after SPCWATCH_SINK_RETRY_MAX_SECONDS): only readiness says so.
        stalled = watch.stalled() if runtime.sink.unavailable() is None else []
        return self.json({"status": "stalled" if stalled else "ok", "reasons": stalled},
                         status=503 if stalled else 200)


FETCH_WATCHDOG_SECONDS = 10.0
"""How long a partition may sit with records fetched past what Faust delivered before it is re-read."""


def _install_fetch_watchdog(runtime: Runtime) -> None:
    """Re-read input partitions whose fetched records faust-streaming dropped after a rebalance.

    Seen in tests/faults/test_failover.py (2 workers, 8 partitions, one SIGKILLed): after the
    takeover the survivor's aiokafka consumer stood at the partition's end (its position had
    moved past every record) while Faust had handed none of them to the streams (its read
    offset still None) -- fetched records of a ``getmany`` that Faust (0.15.3) discards when the
    consumer generation changes or the partition was not in its active set at fetch time, without
    seeking back. Nothing later arrives on such a partition to reveal the hole (so
    :class:`~stream_app.runtime.runner.DeliveryGaps` never sees it) and its committed offset
    never moves: the commit "stall" of issue #20. When a partition's fetch position and Faust's
    read offset both stand still for :data:`FETCH_WATCHDOG_SECONDS` with records between them,
    outside a rebalance and with no stream buffer full for it, the partition is sought back to
    Faust's read offset, so those records are fetched and delivered again (a record delivered twice
    is applied once: processors are idempotent and Faust's acknowledgements are per offset).
    """
    app = runtime.app
    seen: dict[Any, tuple[Any, int, float]] = {}
    inputs = {t.get_topic_name() for t in runtime.input_topics.values()}

    @app.timer(FETCH_WATCHDOG_SECONDS / 2, name="spcwatch.fetch_watchdog")
    async def fetch_watchdog() -> None:
        consumer = app.consumer
        if app.rebalancing or not consumer.flow_active:
            seen.clear()
            return
        client = getattr(getattr(consumer, "_thread", None), "_consumer", None)
        if client is None:
            return
        assignment = client._subscription.subscription
        if assignment is None or assignment.assignment is None:
            return
        now = time.monotonic()
        for atp in list(assignment.assignment.tps):
            if atp.topic not in inputs:
                continue
            state = assignment.assignment.state_value(atp)
            if state is None or not state.has_valid_position or state.paused:
                continue
            tp = next((t for t in consumer.assignment() if t.topic == atp.topic and t.partition == atp.partition),
                      None)
            if tp is None or tp in consumer._buffered_partitions:
                seen.pop(atp, None)
                continue
            read = consumer._read_offset.get(tp)
            if read is not None:
                # Only partitions Faust has delivered nothing of since they were assigned (the case
                # seen): seeking back one whose stream merely waits (back-pressure of a slow database)
                # would deliver acknowledged offsets again, and repeated offsets in Faust's list of
                # acknowledgements hold its commits back (faust-streaming #559/#625).
                seen.pop(atp, None)
                continue
            position = state.position
            expected = read if read is not None else (consumer._committed_offset.get(tp) or 0)
            if position <= expected + 1:
                seen.pop(atp, None)
                continue
            before = seen.get(atp)
            if before is None or before[:2] != (read, position):
                seen[atp] = (read, position, now)
                continue
            if now - before[2] < FETCH_WATCHDOG_SECONDS:
                continue
            log.warning("%s[%d]: records up to offset %d were fetched but Faust delivered none after "
                        "offset %s for %.0f s (dropped at a rebalance); reading again from offset %d",
                        atp.topic, atp.partition, position - 1, read, now - before[2], expected)
            seen.pop(atp, None)
            await consumer.seek(tp, expected)
