"""Faust's Prometheus sensor, trimmed to what a busy worker can afford (see :class:`WorkerMonitor`)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import faust
from faust.sensors.monitor import Monitor
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

# The series faust's PrometheusMonitor updates for every message or event (see WorkerMonitor).
_PER_MESSAGE_SERIES = (
    "messages_received", "active_messages", "messages_received_per_topics",
    "messages_received_per_topics_partition", "events_runtime_latency", "total_events",
    "total_active_events", "total_events_per_stream", "table_operations", "topic_partition_end_offset",
)


class WorkerMonitor(PrometheusMonitor):
    """Faust's Prometheus sensor without the series it updates for every message.

    Those are several labelled-series updates per message and event: 7 % of a
    single-sample infra worker's time (bench/README.md). Per message this does what
    faust's base Monitor does (what every faust app pays); events per topic are
    ``spcwatch_events_consumed_total``, and end offsets and lag are read from the base
    Monitor's books when scraped (:class:`PartitionOffsets`). Rebalances, commits,
    sends, assignments and web requests are exported as faust exports them.
    """

    on_message_in = Monitor.on_message_in
    on_stream_event_in = Monitor.on_stream_event_in
    on_stream_event_out = Monitor.on_stream_event_out
    on_message_out = Monitor.on_message_out
    on_table_get = Monitor.on_table_get
    on_table_set = Monitor.on_table_set
    on_table_del = Monitor.on_table_del
    track_tp_end_offset = Monitor.track_tp_end_offset

    @classmethod
    def install(cls, app: faust.App, registry: CollectorRegistry) -> WorkerMonitor:
        metrics = FaustMetrics.create(registry, "faust")
        for name in _PER_MESSAGE_SERIES:
            registry.unregister(getattr(metrics, name))
        monitor = cls(metrics=metrics)
        app.monitor = monitor
        registry.register(PartitionOffsets(monitor))
        return monitor


class PartitionOffsets:
    """Per consumed partition: the log end offset seen at the last fetch and the consumer lag
    (end offset minus committed offset), from faust's Monitor when scraped."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        end = GaugeMetricFamily("spcwatch_partition_end_offset",
                                "Log end offset of a consumed partition at the worker's last fetch",
                                labels=["topic", "partition"])
        lag = GaugeMetricFamily("spcwatch_consumer_lag",
                                "Messages of a partition not yet committed: end offset - committed offset",
                                labels=["topic", "partition"])
        committed = self.monitor.tp_committed_offsets
        for tp, offset in sorted(self.monitor.tp_end_offsets.items()):
            labels = [tp.topic, str(tp.partition)]
            end.add_metric(labels, offset)
            done = committed.get(tp)
            lag.add_metric(labels, max(offset - (done if done is not None else 0), 0))
        yield end
        yield lag


class StallWatch:
    """Input partitions with messages waiting (lag > 0) whose committed offset has not moved for ``seconds``.

    The wait starts when lag is first seen on a partition or its committed offset last
    moved, whichever is later; :meth:`observe` runs every few seconds (a timer), so a
    partition idle for hours that gets a message is not stalled at once. A worker whose
    agents wait on a hung database or a stuck call keeps fetching and answering HTTP:
    this is what tells it apart from a busy one.
    """

    def __init__(self, monitor: Monitor, seconds: float) -> None:
        self.monitor = monitor
        self.seconds = seconds
        self._waiting: dict[Any, tuple[int | None, float]] = {}  # tp -> (committed offset, waiting since)

    def observe(self, tps: Iterable[Any]) -> None:
        now = time.monotonic()
        ends, committed = self.monitor.tp_end_offsets, self.monitor.tp_committed_offsets
        waiting: dict[Any, tuple[int | None, float]] = {}
        for tp in tps:
            end = ends.get(tp)
            done = committed.get(tp)
            if end is None or end - (done or 0) <= 0:
                continue
            before = self._waiting.get(tp)
            waiting[tp] = before if before is not None and before[0] == done else (done, now)
        self._waiting = waiting

    def stalled(self) -> list[str]:
        """One line per stalled partition: topic[partition], its lag and for how long nothing was committed."""
        now = time.monotonic()
        ends = self.monitor.tp_end_offsets
        return [f"stalled: {tp.topic}[{tp.partition}] lag {ends.get(tp, 0) - (done or 0)}, "
                f"no offset committed for {now - since:.0f}s (SPCWATCH_HEALTH_STALL_SECONDS)"
                for tp, (done, since) in sorted(self._waiting.items()) if now - since >= self.seconds]
