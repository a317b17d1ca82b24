"""The worker's own Prometheus metrics.

Metrics hang off an injected :class:`CollectorRegistry` (prometheus
client_python style) so tests build a fresh registry and read exact values.
"""

from __future__ import annotations

from collections.abc import Iterator

import faust
from faust.sensors.monitor import Monitor
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

# Event time to alert: from seconds (live) to hours (late data, day closes).
EVENT_TO_ALERT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)


class SpcMetrics:
    """Every metric spcwatch exports, created once per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events_consumed = Counter(
            "spcwatch_events_consumed", "Events consumed (samples count one each, also inside batches)",
            ["topic"], registry=registry)
        self.events_invalid = Counter(
            "spcwatch_events_invalid", "Events rejected to the dead-letter topic",
            ["topic", "reason"], registry=registry)
        self.events_rerouted = Counter(
            "spcwatch_events_rerouted", "Events re-sent to their own key's partition (batches mixing keys)",
            ["topic"], registry=registry)
        self.delivery_gaps = Counter(
            "spcwatch_delivery_gaps", "Offset gaps an agent found in a partition and read back "
            "(messages Faust fetched but did not deliver; transaction markers)", ["topic"], registry=registry)
        self.deadletter_published = Counter(
            "spcwatch_deadletter_published", "Messages published to the dead-letter topic",
            ["topic"], registry=registry)
        self.alerts = Counter(
            "spcwatch_alerts", "Alert events emitted (firing and resolved)",
            ["use_case", "rule", "severity"], registry=registry)
        self.event_to_alert_seconds = Histogram(
            "spcwatch_event_to_alert_seconds", "Wall time from the triggering event's timestamp to its alert",
            buckets=EVENT_TO_ALERT_BUCKETS, registry=registry)
        self.sink_batches = Counter(
            "spcwatch_sink_batches", "Batches written by the database sink", ["table"], registry=registry)
        self.sink_rows = Counter(
            "spcwatch_sink_rows", "Rows upserted by the database sink", ["table"], registry=registry)
        self.sink_errors = Counter(
            "spcwatch_sink_errors", "Failed database write attempts (each retry counts)",
            ["table"], registry=registry)
        self.sink_seconds = Histogram(
            "spcwatch_sink_write_seconds", "Time to write one batch, retries included",
            ["table"], registry=registry)
        self.worker_up = Gauge(
            "spcwatch_worker_consuming", "1 when the worker has partitions assigned and is consuming",
            registry=registry)


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
