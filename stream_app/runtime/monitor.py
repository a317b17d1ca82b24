"""Faust's Prometheus sensor, trimmed to what a busy worker can afford (see :class:`WorkerMonitor`)."""

from __future__ import annotations

from collections.abc import Iterator

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
