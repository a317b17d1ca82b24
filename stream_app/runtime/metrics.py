"""The worker's own Prometheus metrics.

Faust-free (the sink and the replay use them too; faust's own sensor is in
:mod:`stream_app.runtime.monitor`). Metrics hang off an injected :class:`CollectorRegistry` (prometheus
client_python style) so tests build a fresh registry and read exact values.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.rows_quarantined = Counter(
            "spcwatch_rows_quarantined", "Rows the database refused for their values, sent to deadletter "
            "instead of stopping the worker", ["table"], registry=registry)
        self.poison_messages = Counter(
            "spcwatch_poison_messages", "Messages dead-lettered and skipped after stopping the worker "
            "SPCWATCH_POISON_MAX_RESTARTS times", ["topic"], registry=registry)
        self.sink_seconds = Histogram(
            "spcwatch_sink_write_seconds", "Time to write one batch, retries included",
            ["table"], registry=registry)
        self.worker_up = Gauge(
            "spcwatch_worker_consuming", "1 when the worker has partitions assigned and is consuming",
            registry=registry)
