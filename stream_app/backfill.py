"""Warm start: publish history to ``metrics.samples`` so a fresh worker's baselines are ready.

``spcwatch backfill prometheus`` reads ``query_range`` and ``spcwatch backfill cloudwatch``
reads ``GetMetricData``, chunk by chunk in time order, and publishes the samples as
``{"samples": [...], "history": true}`` batches keyed by ``resource_id``. The worker
processes them at batch speed; what history means there (recorded, not notified; repeats
dropped, so a second run changes nothing) is in :mod:`agents.history`.

Run it before the live collector starts (or before the worker has seen the range): history
older than what a series has already seen is dropped by the worker.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from agents.core.settings import Settings
from stream_app.collect import CollectError, PrometheusCollector, history_batches
from stream_app.runtime.topics import kafka_client_options

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
PROMETHEUS_MAX_POINTS = 11_000  # query_range refuses more points per series


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``60s`` or plain seconds."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"not a duration (e.g. 30d, 12h, 90m, 60s): {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def chunks(start: float, end: float, size: float) -> list[tuple[float, float]]:
    """``[start, end)`` cut into consecutive windows of ``size`` seconds."""
    out = []
    t = start
    while t < end:
        out.append((t, min(end, t + size)))
        t += size
    return out


@dataclass
class Report:
    samples: int = 0
    messages: int = 0
    chunks: int = 0
    seconds: float = 0.0


class Progress:
    """A tqdm bar (rate, ETA) on a terminal; a log line per chunk otherwise."""

    def __init__(self, total: int, what: str, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.total, self.what, self.done, self.samples = total, what, 0, 0
        self.started = time.monotonic()
        self.bar = None
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="chunk", desc=f"backfill {what}", file=self.stream,
                            dynamic_ncols=True)

    def update(self, window: tuple[float, float], samples: int) -> None:
        self.done += 1
        self.samples += samples
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.samples / elapsed
        if self.bar is not None:
            self.bar.set_postfix(samples=f"{self.samples:,}", rate=f"{rate:,.0f}/s", refresh=False)
            self.bar.update(1)
            return
        eta = elapsed / self.done * (self.total - self.done)
        day = datetime.fromtimestamp(window[0], UTC).strftime("%Y-%m-%d %H:%M")
        print(f"backfill {self.what}: chunk {self.done}/{self.total} (from {day} UTC) {samples:,} samples, "
              f"{self.samples:,} in all, {rate:,.0f} samples/s, ETA {eta:.0f} s", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def publish(settings: Settings, windows: Sequence[tuple[float, float]],
                  fetch: Callable[[float, float], Any], what: str, max_samples: int = 2000,
                  progress_stream: Any = None) -> Report:
    """For each window in order: ``await fetch(start, end)`` -> samples, published as history."""
    from stream_app.runtime.kafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all", linger_ms=50,
                                max_batch_size=1 << 20, max_request_size=4 << 20)
    await producer.start()
    topic = settings.topic("metrics.samples")
    report = Report()
    started = time.monotonic()
    progress = Progress(len(windows), what, progress_stream)
    try:
        pending: list[Any] = []
        for window in windows:
            samples = await fetch(*window)
            for key, value in history_batches(samples, max_samples):
                pending.append(await producer.send(topic, value, key=key.encode()))
                report.messages += 1
            if len(pending) > 500:
                await asyncio.gather(*pending)
                pending = []
            report.samples += len(samples)
            report.chunks += 1
            progress.update(window, len(samples))
        await asyncio.gather(*pending)
    finally:
        progress.close()
        await producer.stop()
    report.seconds = time.monotonic() - started
    return report


# --------------------------------------------------------------------------- Prometheus


@dataclass
class PrometheusHistory:
    """``query_range`` for each query over one window (end exclusive, so windows do not overlap)."""

    url: str
    queries: Sequence[str]
    step: float = 60.0
    resource_label: str = "instance"
    resource_type: str = "prometheus"
    timeout: float = 120.0

    def __post_init__(self) -> None:
        self._mapper = PrometheusCollector(self.url, self.queries, resource_label=self.resource_label,
                                           resource_type=self.resource_type)
        self._session: aiohttp.ClientSession | None = None

    @property
    def max_window(self) -> float:
        return (PROMETHEUS_MAX_POINTS - 1) * self.step

    def aligned(self, since: float, until: float) -> tuple[float, float]:
        """Windows on the step grid, as a live collector polling every step would have seen."""
        return since - since % self.step, until - until % self.step

    async def fetch(self, start: float, end: float) -> list[dict[str, Any]]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        last = end - self.step  # query_range includes its end
        if last < start:
            return []
        samples: list[dict[str, Any]] = []
        for query in self.queries:
            params = {"query": query, "start": f"{start:.3f}", "end": f"{last:.3f}", "step": f"{self.step:g}"}
            try:
                async with self._session.get(self.url.rstrip("/") + "/api/v1/query_range", params=params) as r:
                    body = orjson.loads(await r.read())
            except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
                raise CollectError(f"cannot query Prometheus at {self.url}: {exc}") from exc
            if body.get("status") != "success":
                raise CollectError(f"Prometheus rejected {query!r}: {body.get('error', body)}")
            for series in body["data"]["result"]:
                samples.extend(self._mapper.series_samples(query, series["metric"], series["values"]))
        return samples

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def backfill_prometheus(settings: Settings, history: PrometheusHistory, since: float, until: float,
                              chunk: float, progress_stream: Any = None) -> Report:
    start, end = history.aligned(since, until)
    try:
        return await publish(settings, chunks(start, end, min(chunk, history.max_window)), history.fetch,
                             "prometheus", progress_stream=progress_stream)
    finally:
        await history.close()


# --------------------------------------------------------------------------- CloudWatch


async def backfill_cloudwatch(settings: Settings, collector: Any, since: float, until: float, chunk: float,
                              progress_stream: Any = None) -> Report:
    """GetMetricData over the estate the collector discovers (or lists), window by window."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from stream_app.cloudwatch import _AUTH_CODES, CredentialsError, _client_error

    period = collector.period
    start, end = since - since % period, until - until % period
    try:
        resources = await asyncio.to_thread(collector.resources, time.time())
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise (CredentialsError if code in _AUTH_CODES else CollectError)(_client_error(exc)) from None
    except NoCredentialsError:
        raise CredentialsError("no AWS credentials found (environment, profile or instance role)") from None
    except BotoCoreError as exc:
        raise CollectError(f"cannot reach AWS: {exc}") from None

    async def fetch(t0: float, t1: float) -> list[dict[str, Any]]:
        try:
            return await asyncio.to_thread(collector.fetch, resources, t0, t1)
        except ClientError as exc:
            raise CollectError(_client_error(exc)) from None

    size = max(period, chunk - chunk % period)
    return await publish(settings, chunks(start, end, size), fetch, "cloudwatch", progress_stream=progress_stream)

