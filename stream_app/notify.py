"""Delivery to people: the ``alerts`` topic forwarded to Alertmanager, and the worker's
``/runbooks`` and ``/alerts`` pages that notifications link to.

Alertmanager does the routing, grouping, inhibition, silencing and the WeCom/webhook
receivers; spcwatch only keeps it told (``POST /api/v2/alerts``), as Prometheus does:

* every alert event goes to every Alertmanager of ``SPCWATCH_ALERTMANAGER_URL`` (an HA
  pair gets each alert twice and deduplicates between its peers);
* an event is acknowledged (its offset may commit) only after every Alertmanager took
  it (or, below, shed it while a peer took it), so a worker killed mid-way sends it again
  after its restart: nothing is lost, and Alertmanager deduplicates the repeats (one
  notification per episode and receiver);
* firing alerts live in a table of their own (``notify-firing``, changelogged) and are
  re-sent every ``SPCWATCH_ALERTMANAGER_RESEND_SECONDS`` until they resolve, so
  Alertmanager never times them out, also after a restart or a rebalance; a round of
  re-sends waits for room in a queue, it never sheds anything;
* while an Alertmanager is unreachable its sender retries with backoff; its queue is
  bounded (``SPCWATCH_ALERTMANAGER_QUEUE_MAX``). When the queue is full and no other
  Alertmanager is reachable (a single one, or every member of the pair down), the agent
  waits and the rest of the backlog stays in Kafka (consumer lag on ``alerts``): late,
  never lost. When a peer is reachable, the unreachable member's full queue sheds its
  oldest entries (``spcwatch_notifications_total{status="dropped"}``) so the peer keeps
  getting every alert in time; the member gets the firing ones back from the re-sends once
  it answers again (an Alertmanager forgets its alerts on restart anyway).

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

from agents.core import runbooks

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
    if event["use_case"] == "store" and isinstance(event.get("starts_at"), str):
        labels["day"] = event["starts_at"][:10]  # a chain alert inhibits its stores' alerts of that day
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


STATUSES = ("sent", "failed", "dropped")


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter("spcwatch_notifications", "Alerts posted to an Alertmanager, by outcome "
                            "(sent; failed: an attempt that will be retried; dropped: shed from the queue "
                            "of an unreachable member while a peer was reachable)", ["receiver", "status"],
                            registry=registry)
        self.queue = Gauge("spcwatch_notification_queue", "Alerts waiting to be posted to an Alertmanager",
                           ["receiver"], registry=registry)
        self.latency = Histogram("spcwatch_notification_latency_seconds",
                                 "Time from an alert's arrival at the forwarder to its acceptance by an Alertmanager",
                                 ["receiver"], buckets=LATENCY_BUCKETS, registry=registry)

    def export(self, url: str) -> None:
        """Every series of ``url`` at 0 from the start: ``rate()`` and ``absent()`` in rules and
        dashboards see a series before the first alert, failure or drop."""
        for status in STATUSES:
            self.sent.labels(url, status)
        self.queue.labels(url).set(0)
        self.latency.labels(url)


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
    inflight: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    resending: asyncio.Task[None] | None = field(default=None, repr=False)

    def backlog(self) -> int:
        """Alerts not yet taken by this Alertmanager: queued plus the batch being (re)tried."""
        return self.queue.qsize() + self.inflight


class Notifier:
    """Posts alerts to each Alertmanager in batches; retries each until it takes them."""

    def __init__(self, urls: tuple[str, ...], registry: CollectorRegistry, queue_max: int = 10000,
                 timeout: float = 10.0, lease: float = 240.0) -> None:
        self.urls = urls
        self.lease = lease
        self.queue_max = queue_max
        self.timeout = timeout
        self.metrics = NotifyMetrics(registry)
        for url in urls:
            self.metrics.export(url)
        self._receivers: list[_Receiver] = []
        self._session: aiohttp.ClientSession | None = None
        self._changed: asyncio.Event | None = None

    def _start(self) -> None:
        if self._receivers:
            return
        self._changed = asyncio.Event()
        for url in self.urls:
            receiver = _Receiver(url, asyncio.Queue(self.queue_max))
            receiver.task = asyncio.ensure_future(self._send_loop(receiver))
            self._receivers.append(receiver)

    def _change(self) -> None:
        """Wake whoever waits for room in a queue or for a member's health to change."""
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def _gauge(self, receiver: _Receiver) -> None:
        self.metrics.queue.labels(receiver.url).set(receiver.backlog())

    def _may_shed(self, receiver: _Receiver) -> bool:
        """A full queue sheds only when its Alertmanager is unreachable and a peer is reachable:
        the peer gets every alert; alone, waiting (the rest in Kafka) loses nothing."""
        return not receiver.healthy and any(r.healthy for r in self._receivers if r is not receiver)

    async def submit(self, alert: dict[str, Any], then: Callable[[], None] | None = None) -> None:
        """Queue ``alert`` for every Alertmanager; ``then`` runs once all of them took it (or shed
        it while a peer took it). Waits while a queue is full and may not shed (back-pressure)."""
        self._start()
        item = _Item(alert, time.monotonic(), len(self._receivers), then)
        for receiver in self._receivers:
            while receiver.queue.full():
                if self._may_shed(receiver):
                    oldest = receiver.queue.get_nowait()
                    self.metrics.sent.labels(receiver.url, "dropped").inc()
                    oldest.done()
                    break
                assert self._changed is not None
                await self._changed.wait()
            receiver.queue.put_nowait(item)
            self._gauge(receiver)

    def resend(self, alerts: list[dict[str, Any]],
               current: Callable[[str], dict[str, Any] | None] | None = None) -> None:
        """Re-send firing alerts to each reachable Alertmanager whose previous round is done. A
        round waits for room in the queue (nothing shed, however many alerts fire); an
        unreachable member gets the next round once it answers again. ``current`` (alert_id ->
        the alert if it still fires) is asked as each one is queued, so a round that waited
        never queues a firing copy behind the alert's resolution."""
        self._start()
        for receiver in self._receivers:
            if receiver.healthy and (receiver.resending is None or receiver.resending.done()):
                receiver.resending = asyncio.ensure_future(self._resend(receiver, list(alerts), current))

    async def _resend(self, receiver: _Receiver, alerts: list[dict[str, Any]],
                      current: Callable[[str], dict[str, Any] | None] | None) -> None:
        for snapshot in alerts:
            while receiver.queue.full():
                assert self._changed is not None
                await self._changed.wait()
            # No await from here to the put: the agent cannot resolve the alert in between.
            alert = snapshot if current is None else current(snapshot["labels"]["alert_id"])
            if alert is not None:
                receiver.queue.put_nowait(_Item(alert, time.monotonic(), 1))
                self._gauge(receiver)

    async def close(self) -> None:
        for receiver in self._receivers:
            for task in (receiver.task, receiver.resending):
                if task is not None:
                    task.cancel()
        if self._session is not None:
            await self._session.close()

    def backlog(self) -> int:
        return sum(r.backlog() for r in self._receivers)

    def _leased(self, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Firing alerts with ``endsAt`` = now + the lease, as Prometheus does: Alertmanager keeps
        them active while the re-sends renew it, whatever its own ``resolve_timeout``, and
        resolves them by itself if the worker is gone for longer than the lease."""
        ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + self.lease))
        return [a if "endsAt" in a else {**a, "endsAt": ends} for a in alerts]

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
            receiver.inflight = len(batch)
            self._change()  # room in the queue
            delay = BACKOFF_START
            while True:
                try:
                    await self._post(url, self._leased([item.alert for item in batch]))
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.metrics.sent.labels(url, "failed").inc(len(batch))
                    if receiver.healthy:
                        log.warning("alertmanager %s: cannot post %d alerts (%s: %s); retrying with backoff",
                                    url, len(batch), exc.__class__.__name__, exc)
                        receiver.healthy = False
                        self._change()  # a waiting submit may now shed this member's oldest entries
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX)
            if not receiver.healthy:
                log.info("alertmanager %s: reachable again", url)
                receiver.healthy = True
                self._change()
            now = time.monotonic()
            for item in batch:
                self.metrics.latency.labels(url).observe(now - item.queued)
                item.done()
            self.metrics.sent.labels(url, "sent").inc(len(batch))
            receiver.inflight = 0
            self._gauge(receiver)


def register(runtime: Any) -> Notifier | None:
    """The forwarding agent, its table and its re-send timer (only with SPCWATCH_ALERTMANAGER_URL)."""
    settings = runtime.settings
    if not settings.alertmanager_urls:
        return None
    app = runtime.app
    notifier = Notifier(settings.alertmanager_urls, runtime.registry, queue_max=settings.alertmanager_queue_max,
                        timeout=settings.alertmanager_timeout_seconds,
                        lease=settings.alertmanager_lease_seconds or 4 * settings.alertmanager_resend_seconds)
    firing = app.Table("notify-firing", default=None, partitions=settings.partitions, key_type=str)
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
            notifier.resend(alerts, current=firing.get)

    return notifier


# --------------------------------------------------------------------------- WeCom robot bridge

ROBOT_CONTENT_MAX = 4096
"""Bytes of a WeCom group robot's markdown ``content`` (the robot API's documented limit)."""


def robot_markdown(payload: dict[str, Any], content_max: int = ROBOT_CONTENT_MAX) -> dict[str, Any]:
    """An Alertmanager webhook notification (version 4) as a WeCom group-robot markdown message:
    ``{"msgtype": "markdown", "markdown": {"content": ...}}``, Chinese summary first, then the
    English one, the runbook and the alert's page; alerts that do not fit are counted at the end."""
    from urllib.parse import quote

    alerts = [a for a in payload.get("alerts") or [] if isinstance(a, dict)]
    common = payload.get("commonLabels") or {}
    firing = sum(1 for a in alerts if a.get("status") == "firing")
    what = f'{common.get("use_case", "")} {common.get("alertname", "")}'
    if payload.get("status") == "resolved":
        head = f'## <font color="info">已恢复 RESOLVED</font> {what}'
    else:
        head = f'## <font color="warning">告警 FIRING {firing}</font> {what}'
    lines = [head.rstrip()]
    external = str(payload.get("externalURL") or "").rstrip("/")
    blocks = []
    for alert in alerts:
        labels, ann = alert.get("labels") or {}, alert.get("annotations") or {}
        resolved = alert.get("status") == "resolved"
        state = '<font color="info">已恢复 resolved</font>' if resolved else \
            f'<font color="warning">{labels.get("severity", "")}</font>'
        block = [f"> {state} **{labels.get('alertname', '')}** {ann.get('summary_zh') or ann.get('summary', '')}",
                 f"> {ann.get('summary', '')}"]
        when = f"开始 starts {alert.get('startsAt', '')}"
        if resolved:
            when += f" · 结束 ends {alert.get('endsAt', '')}"
        block.append(f"> {when}")
        links = []
        if ann.get("runbook_url"):
            links.append(f"[处置手册 runbook]({ann['runbook_url']})")
        if alert.get("generatorURL"):
            links.append(f"[详情 details]({alert['generatorURL']})")
        if external and labels.get("alert_id") and not resolved:
            matcher = quote('{alert_id="' + str(labels["alert_id"]) + '"}', safe="")
            links.append(f"[静默 silence]({external}/#/silences/new?filter={matcher})")
        if links:
            block.append("> " + " · ".join(links))
        blocks.append("\n".join(block))
    content = lines[0]
    for i, block in enumerate(blocks):
        more = f"\n\n… 另有 {len(blocks) - i - 1} 条 / {len(blocks) - i - 1} more" if i < len(blocks) - 1 else ""
        candidate = f"{content}\n\n{block}"
        if len((candidate + more).encode()) > content_max:
            content += f"\n\n… 另有 {len(blocks) - i} 条 / {len(blocks) - i} more"
            break
        content = candidate
    return {"msgtype": "markdown", "markdown": {"content": content.encode()[:content_max].decode(errors="ignore")}}


def notification_lines(receiver: str, payload: dict[str, Any]) -> list[str]:
    """One line per alert of a notification: what ``make run`` shows as it is delivered."""
    out = []
    for alert in payload.get("alerts") or []:
        labels, ann = alert.get("labels") or {}, alert.get("annotations") or {}
        entity = " ".join(f"{k}={labels[k]}" for k in LABEL_FIELDS if k in labels)
        out.append(f"notified {receiver}: {str(alert.get('status', '')).upper()} {labels.get('severity', '')} "
                   f"{labels.get('use_case', '')} {labels.get('alertname', '')} {entity} | "
                   f"{ann.get('summary', '')} | {ann.get('runbook_url', '')}")
    return out


def bridge_app(robots: dict[str, str], default_robot: str | None = None,
               out: Callable[[str], None] = print, timeout: float = 10.0) -> Any:
    """The bridge's aiohttp application: ``POST /robot/<name>`` takes Alertmanager's webhook
    JSON and posts the robot message to the robot URL configured for ``name`` (else
    ``default_robot``; with neither, it only prints). A robot that refuses (HTTP error or a
    non-zero ``errcode``) answers 502, so Alertmanager retries the notification."""
    from aiohttp import web

    async def session_ctx(app: web.Application) -> Any:
        app["session"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
        yield
        await app["session"].close()

    async def robot(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            payload = await request.json()
        except ValueError:
            return web.json_response({"error": "body is not JSON (expected Alertmanager's webhook payload)"},
                                     status=400)
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            return web.json_response({"error": "expected Alertmanager's webhook payload with 'alerts'"}, status=400)
        for line in notification_lines(name, payload):
            out(line)
        url = robots.get(name) or default_robot
        if not url:
            return web.json_response({"status": "printed"})
        message = robot_markdown(payload)
        try:
            async with request.app["session"].post(url, json=message) as response:
                text = await response.text()
                reply: Any = None
                try:
                    reply = orjson_loads(text)
                except ValueError:
                    pass
                errcode = reply.get("errcode") if isinstance(reply, dict) else None
                if response.status >= 300 or errcode not in (0, None):
                    log.warning("wecom robot %s refused the message: HTTP %d %s", name, response.status, text[:200])
                    return web.json_response({"error": f"robot answered HTTP {response.status}: {text[:200]}"},
                                             status=502)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("wecom robot %s unreachable: %s", name, exc)
            return web.json_response({"error": f"robot unreachable: {exc}"}, status=502)
        return web.json_response({"status": "sent"})

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/robot/{name}", robot)
    app.router.add_get("/-/ready", lambda _request: web.Response(text="ready\n"))
    return app


def orjson_loads(text: str) -> Any:
    import orjson

    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None


async def run_bridge(host: str, port: int, robots: dict[str, str], default_robot: str | None = None) -> None:
    """Serve the bridge until cancelled."""
    from aiohttp import web

    runner = web.AppRunner(bridge_app(robots, default_robot, out=lambda line: print(line, flush=True)))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        print(f"wecom-bridge: listening on http://{host}:{port}/robot/<name> "
              f"({len(robots)} robots{', default robot set' if default_robot else ''})", flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


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
