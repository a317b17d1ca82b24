"""Collectors: poll a metrics source and publish samples to ``metrics.samples``.

A :class:`Collector` turns one poll into contract samples; :func:`run` does the
publishing (one ``{"samples": [...]}`` message per resource per poll, keyed by
``resource_id``, as the contract asks of producers). Prometheus is the first
source; CloudWatch (:mod:`stream_app.cloudwatch`) fits the same interface
(``poll(now) -> samples``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson

from agents.core.settings import Settings
from stream_app.runtime.topics import kafka_client_options

log = logging.getLogger(__name__)


class Collector(Protocol):
    source: str

    async def poll(self, now: float) -> list[dict[str, Any]]:
        """Contract samples (dicts) observed at ``now``."""
        ...


class CollectError(RuntimeError):
    """The source answered with an error, or not at all."""

    fatal = False  # True: retrying at the next interval cannot help (bad credentials): stop


@dataclass
class PrometheusCollector:
    """Instant queries against the Prometheus HTTP API (``/api/v1/query``).

    Each vector element becomes a sample: metric = ``__name__`` (or the query
    text for expressions without one), resource = the ``resource_label``
    (default ``instance``), all other labels kept as sample labels.
    """

    url: str
    queries: Sequence[str]
    resource_label: str = "instance"
    resource_type: str = "prometheus"
    source: str = "prometheus"
    timeout: float = 10.0
    dropped_non_finite: int = 0

    async def poll(self, now: float) -> list[dict[str, Any]]:
        samples: list[dict[str, Any]] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
            for query in self.queries:
                samples.extend(self._samples(query, await self._query(session, query, now)))
        return samples

    async def _query(self, session: aiohttp.ClientSession, query: str, now: float) -> list[dict[str, Any]]:
        endpoint = self.url.rstrip("/") + "/api/v1/query"
        try:
            async with session.get(endpoint, params={"query": query, "time": f"{now:.3f}"}) as response:
                body = orjson.loads(await response.read())
        except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            raise CollectError(f"cannot query Prometheus at {self.url}: {exc}") from exc
        if body.get("status") != "success":
            raise CollectError(f"Prometheus rejected {query!r}: {body.get('error', body)}")
        data = body["data"]
        if data.get("resultType") != "vector":
            raise CollectError(f"{query!r} returns a {data.get('resultType')}, not an instant vector")
        return data["result"]

    def _samples(self, query: str, result: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for element in result:
            out.extend(self.series_samples(query, element["metric"], [element["value"]]))
        return out

    def series_samples(self, query: str, metric_labels: dict[str, str],
                       values: list[list[Any]]) -> list[dict[str, Any]]:
        """Samples of one Prometheus series (``[[ts, "value"], ...]``, instant or range query)."""
        labels = dict(metric_labels)
        metric = labels.pop("__name__", query)
        resource = labels.pop(self.resource_label, None) or labels.get("job") or "unknown"
        out = []
        for ts, raw in values:
            value = float(raw)
            if not math.isfinite(value):
                self.dropped_non_finite += 1  # NaN/Inf are real Prometheus values, but not samples
                continue
            out.append({"ts": float(ts), "source": self.source, "resource_type": self.resource_type,
                        "resource_id": resource, "metric": metric, "value": value, "labels": labels})
        return out


def batches(samples: list[dict[str, Any]]) -> dict[str, bytes]:
    """One message per resource: ``resource_id -> {"samples": [...]}``."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        grouped.setdefault(sample["resource_id"], []).append(sample)
    return {resource: orjson.dumps({"samples": group}) for resource, group in grouped.items()}


def history_batches(samples: list[dict[str, Any]], max_samples: int = 2000) -> list[tuple[str, bytes]]:
    """History as ``(resource_id, {"samples": [...], "history": true})`` messages, at most
    ``max_samples`` each (Kafka's default message limit is 1 MB), in the order given."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        grouped.setdefault(sample["resource_id"], []).append(sample)
    out: list[tuple[str, bytes]] = []

    def add(resource: str, part: list[dict[str, Any]]) -> None:
        payload = orjson.dumps({"samples": part, "history": True})
        if len(payload) > MAX_MESSAGE_BYTES and len(part) > 1:  # long labels: halve until it fits
            add(resource, part[:len(part) // 2])
            add(resource, part[len(part) // 2:])
        else:
            out.append((resource, payload))

    for resource, group in grouped.items():
        for i in range(0, len(group), max_samples):
            add(resource, group[i:i + max_samples])
    return out


MAX_MESSAGE_BYTES = 900_000  # under Kafka's default 1 MB message limit


async def run(settings: Settings, collector: Collector, interval: float, once: bool = False) -> int:
    """Poll every ``interval`` seconds and publish; returns the samples published."""
    from stream_app.runtime.kafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all", linger_ms=20)
    await producer.start()
    topic = settings.topic("metrics.samples")
    published = 0
    try:
        while True:
            started = time.time()
            try:
                samples = await collector.poll(started)
            except CollectError as exc:
                if once or exc.fatal:
                    raise
                log.warning("collect: %s; retrying at the next interval", exc)
                samples = []
            sends = [await producer.send(topic, value, key=key.encode()) for key, value in batches(samples).items()]
            await asyncio.gather(*sends)
            published += len(samples)
            log.info("collect: published %d samples from %s", len(samples), collector.source)
            if once:
                return published
            await asyncio.sleep(max(0.0, interval - (time.time() - started)))
    finally:
        await producer.stop()
