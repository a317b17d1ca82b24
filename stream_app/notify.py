"""Delivery to people: the ``alerts`` topic forwarded to Alertmanager, and the worker's
``/runbooks`` and ``/alerts`` pages that notifications link to.

Alertmanager does the routing, grouping, inhibition, silencing and the WeCom/webhook
receivers; spcwatch only keeps it told (``POST /api/v2/alerts``), as Prometheus does:

* every alert event goes to every Alertmanager of ``SPCWATCH_ALERTMANAGER_URL`` (an HA
  pair gets each alert twice and deduplicates between its peers);
* an event is acknowledged (its offset may commit) only after every Alertmanager took
  it, so a worker killed mid-way sends it again after its restart: nothing is lost, and
  Alertmanager deduplicates the repeats (one notification per episode and receiver);
* firing alerts live in a table of their own (``notify-firing``, changelogged) and are
  re-sent every ``SPCWATCH_ALERTMANAGER_RESEND_SECONDS`` until they resolve, so
  Alertmanager never times them out, also after a restart or a rebalance;
* while an Alertmanager is unreachable its sender retries with backoff; its queue is
  bounded (``SPCWATCH_ALERTMANAGER_QUEUE_MAX``): when full the agent waits and the rest
  of the backlog stays in Kafka (consumer lag on ``alerts``), visible as
  ``spcwatch_notification_queue``.

Events marked ``"history": true`` (backfilled from history) are recorded, not notified.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream_app import runbooks

log = logging.getLogger(__name__)

LABEL_FIELDS = ("resource_id", "metric", "store_id", "sku", "order_id", "category", "spu")
"""Entity fields that become labels; nothing else of an entity (labels, currency, ...) does."""
ANNOTATION_NUMBERS = ("value", "center", "lower", "upper", "zscore")
BATCH_MAX = 500
BACKOFF_START, BACKOFF_MAX = 0.5, 30.0
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def _num(x: Any) -> str | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return f"{x:.6g}" if isinstance(x, int | float) else str(x)


def to_alertmanager(event: dict[str, Any], worker_base: str) -> dict[str, Any]:
    """An ``alerts`` event as an Alertmanager API v2 postable alert."""
    entity = event.get("entity") or {}
    labels = {"alertname": str(event["rule"]), "use_case": str(event["use_case"]),
              "severity": str(event["severity"]), "alert_id": str(event["alert_id"])}
    for name in LABEL_FIELDS:
        value = entity.get(name)
        if value is not None and not isinstance(value, dict | list):
            labels[name] = str(value)
    expected = event.get("expected") or {}
    numbers = {"value": event.get("value"), "center": expected.get("center"), "lower": expected.get("lower"),
               "upper": expected.get("upper"), "zscore": event.get("zscore")}
    rules = ", ".join(event.get("rules") or [event["rule"]])
    context = ", ".join(f"{k}={v}" for k, v in entity.items())
    annotations = {
        "summary": event.get("summary") or "",
        "summary_zh": event.get("summary_zh") or "",
        "description": (f"{event['use_case']} {event['status']} since {event.get('starts_at')}: "
                        f"{context}; rules {rules}"),
        "runbook_url": event.get("runbook_url") or runbooks.runbook_url(worker_base, event["use_case"], event["rule"]),
    }
    for name in ANNOTATION_NUMBERS:
        text = _num(numbers[name])
        if text is not None:
            annotations[name] = text
    alert: dict[str, Any] = {
        "labels": labels, "annotations": annotations, "startsAt": event.get("starts_at"),
        "generatorURL": f"{worker_base.rstrip('/')}/alerts/{event['alert_id']}",
    }
    if event.get("status") == "resolved":
        alert["endsAt"] = event.get("ends_at") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return alert


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter("spcwatch_notifications", "Alerts posted to an Alertmanager, by outcome "
                            "(sent; failed: an attempt that will be retried)", ["receiver", "status"],
                            registry=registry)
        self.queue = Gauge("spcwatch_notification_queue", "Alerts waiting to be posted to an Alertmanager",
                           ["receiver"], registry=registry)
        self.latency = Histogram("spcwatch_notification_latency_seconds",
                                 "Time from an alert's arrival at the forwarder to its acceptance by an Alertmanager",
                                 ["receiver"], buckets=LATENCY_BUCKETS, registry=registry)


@dataclass(eq=False)
class _Item:
    alert: dict[str, Any]
    queued: float
    pending: int
    then: Callable[[], None] | None = None

    def done(self) -> None:
        self.pending -= 1
        if self.pending == 0 and self.then is not None:
            self.then()


@dataclass
class _Receiver:
    url: str
    queue: asyncio.Queue[_Item]
    healthy: bool = True
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Notifier:
    """Posts alerts to each Alertmanager in batches; retries each until it takes them."""

    def __init__(self, urls: tuple[str, ...], registry: CollectorRegistry, queue_max: int = 10000,
                 timeout: float = 10.0) -> None:
        self.urls = urls
        self.queue_max = queue_max
        self.timeout = timeout
        self.metrics = NotifyMetrics(registry)
        self._receivers: list[_Receiver] = []
        self._session: aiohttp.ClientSession | None = None

    def _start(self) -> None:
        if self._receivers:
            return
        for url in self.urls:
            receiver = _Receiver(url, asyncio.Queue(self.queue_max))
            receiver.task = asyncio.ensure_future(self._send_loop(receiver))
            self._receivers.append(receiver)
            self.metrics.queue.labels(url).set(0)

    async def submit(self, alert: dict[str, Any], then: Callable[[], None] | None = None) -> None:
        """Queue ``alert`` for every Alertmanager; ``then`` runs once all of them took it.
        Waits while a queue is full (back-pressure to the consumer)."""
        self._start()
        item = _Item(alert, time.monotonic(), len(self._receivers), then)
        for receiver in self._receivers:
            await receiver.queue.put(item)
            self.metrics.queue.labels(receiver.url).set(receiver.queue.qsize())

    def resend(self, alerts: list[dict[str, Any]]) -> None:
        """Re-send firing alerts to the Alertmanagers that are healthy and idle (a backlogged
        one gets them again on the next round; re-sending does not pile up in queues)."""
        self._start()
        for receiver in self._receivers:
            if not receiver.healthy or not receiver.queue.empty():
                continue
            for alert in alerts[: max(0, self.queue_max - receiver.queue.qsize())]:
                receiver.queue.put_nowait(_Item(alert, time.monotonic(), 1))
            self.metrics.queue.labels(receiver.url).set(receiver.queue.qsize())

    async def close(self) -> None:
        for receiver in self._receivers:
            if receiver.task is not None:
                receiver.task.cancel()
        if self._session is not None:
            await self._session.close()

    def backlog(self) -> int:
        return sum(r.queue.qsize() for r in self._receivers)

    async def _post(self, url: str, alerts: list[dict[str, Any]]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        async with self._session.post(f"{url}/api/v2/alerts", json=alerts) as response:
            if response.status >= 300:
                body = (await response.text())[:200]
                raise RuntimeError(f"HTTP {response.status}: {body}")

    async def _send_loop(self, receiver: _Receiver) -> None:
        queue, url = receiver.queue, receiver.url
        while True:
            batch = [await queue.get()]
            while len(batch) < BATCH_MAX and not queue.empty():
                batch.append(queue.get_nowait())
            delay = BACKOFF_START
            while True:
                try:
                    await self._post(url, [item.alert for item in batch])
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.metrics.sent.labels(url, "failed").inc(len(batch))
                    if receiver.healthy:
                        log.warning("alertmanager %s: cannot post %d alerts (%s: %s); retrying with backoff",
                                    url, len(batch), exc.__class__.__name__, exc)
                    receiver.healthy = False
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX)
            if not receiver.healthy:
                log.info("alertmanager %s: reachable again", url)
            receiver.healthy = True
            now = time.monotonic()
            for item in batch:
                self.metrics.latency.labels(url).observe(now - item.queued)
                item.done()
            self.metrics.sent.labels(url, "sent").inc(len(batch))
            self.metrics.queue.labels(url).set(queue.qsize())


def register(runtime: Any) -> Notifier | None:
    """The forwarding agent, its table and its re-send timer (only with SPCWATCH_ALERTMANAGER_URL)."""
    settings = runtime.settings
    if not settings.alertmanager_urls:
        return None
    app = runtime.app
    notifier = Notifier(settings.alertmanager_urls, runtime.registry, queue_max=settings.alertmanager_queue_max,
                        timeout=settings.alertmanager_timeout_seconds)
    firing = app.Table("notify-firing", default=None, partitions=settings.partitions,
                       key_serializer="json", value_serializer="json")
    base = settings.runbook_base

    @runtime.agent(runtime.alerts_topic, name="notify")
    async def forward(stream: Any) -> None:
        """Every alert to every Alertmanager; acknowledged once all of them took it."""
        async for event in stream.noack().events():
            value = event.value
            if not isinstance(value, dict) or "alert_id" not in value or value.get("history"):
                event.ack()  # backfilled history (record only) or not an alert event
                continue
            alert = to_alertmanager(value, base)
            if value.get("status") == "firing":
                firing[value["alert_id"]] = alert
            elif firing.get(value["alert_id"]) is not None:
                del firing[value["alert_id"]]
            await notifier.submit(alert, then=event.ack)

    @app.timer(interval=settings.alertmanager_resend_seconds)
    async def resend() -> None:
        alerts = [alert for alert in firing.values() if alert is not None]
        if alerts:
            notifier.resend(alerts)

    return notifier


# --------------------------------------------------------------------------- web pages


def _lang(request: Any) -> str:
    lang = request.query.get("lang")
    if lang:
        return "zh" if lang.lower().startswith("zh") else "en"
    accept = request.headers.get("Accept-Language", "")
    first = accept.split(",")[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"


def _row_event(row: dict[str, Any]) -> dict[str, Any]:
    import orjson

    def js(v: Any) -> Any:
        return orjson.loads(v) if isinstance(v, str | bytes) else v

    def ts(v: Any) -> str | None:
        return None if v is None else v.isoformat(timespec="milliseconds").replace("+00:00", "") + "Z"

    entity = js(row["entity"]) or {}
    event = {
        "alert_id": row["alert_id"], "status": row["status"], "severity": row["severity"],
        "use_case": row["use_case"], "rule": row["rule"], "rules": js(row["rules"]) or [row["rule"]],
        "entity": entity, "value": row["value"],
        "expected": None if row["expected_center"] is None else {
            "center": row["expected_center"], "lower": row["expected_lower"], "upper": row["expected_upper"]},
        "zscore": row["zscore"], "starts_at": ts(row["starts_at"]), "ends_at": ts(row["ends_at"]),
        "summary": row["summary"], "runbook_url": row["runbook_url"],
    }
    event["summary_zh"] = runbooks.summary_zh(
        row["use_case"], row["rule"], entity, row["status"], value=row["value"], center=row["expected_center"],
        lower=row["expected_lower"], upper=row["expected_upper"], zscore=row["zscore"], rules=tuple(event["rules"]))
    return event


def register_web(runtime: Any) -> None:
    """``GET /runbooks/<use_case>/<rule>`` (HTML, en/zh) and ``GET /alerts/<alert_id>`` (JSON)."""
    from sqlalchemy import text

    app = runtime.app

    @app.page("/runbooks/{use_case}/{rule}")
    async def runbook_page(self: Any, request: Any, use_case: str, rule: str) -> Any:
        lang = _lang(request)
        page = runbooks.render_html(use_case.lower(), rule.upper(), lang)
        if page is None:
            known = ", ".join(f"{u}: {len(r)} rules" for u, r in runbooks.RULES_BY_USE_CASE.items())
            return self.text(f"no runbook for {use_case}/{rule} (known use cases: {known})\n", status=404)
        return self.html(page, headers={"Content-Language": "zh-Hans" if lang == "zh" else "en"})

    @app.page("/alerts/{alert_id}")
    async def alert_page(self: Any, request: Any, alert_id: str) -> Any:
        async with runtime.sink.engine.connect() as conn:
            result = await conn.execute(text("SELECT * FROM alerts WHERE alert_id = :id"), {"id": alert_id})
            row = result.mappings().first()
        if row is None:
            return self.json({"error": f"no alert {alert_id}"}, status=404)
        event = _row_event(dict(row))
        history = [{"status": "firing", "at": event["starts_at"]}]
        if event["ends_at"] is not None:
            history.append({"status": "resolved", "at": event["ends_at"]})
        updated = row["updated_at"]
        return self.json({"alert": event, "history": history,
                          "updated_at": None if updated is None else updated.isoformat()})
