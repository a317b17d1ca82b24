"""Delivery to people: ``alerts`` topic -> worker's forwarder -> real Alertmanager -> webhook.

Alertmanager runs from ``scripts/services.sh up alertmanager`` (own run dir, free port) with a
config of one webhook receiver, grouped per alert, ``group_wait`` 0: what is timed is spcwatch's
forwarder plus Alertmanager's dispatch, not a team's chosen ``group_wait`` (30 s in
deploy/alertmanager/alertmanager.yml, which adds itself to every first notification).

* latency: alerts published to the topic at a steady pace, each timed from its publication to
  its webhook receipt (p50 / p99);
* throughput: a burst of alerts, timed until Alertmanager accepted them all (the forwarder's
  ``spcwatch_notifications_total{status="sent"}``) and until the webhook got them all.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from agents.core.alerts import Alert
from bench.common import BOOTSTRAP, ROOT, delete_prefixed, scratch_database, worker

PACED_ALERTS, PACE_PER_S = 300, 50
BURST_ALERTS = 5000


class Webhook:
    """Records when each alert_id first arrived firing."""

    def __init__(self) -> None:
        self.received: dict[str, float] = {}
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                now = time.time()
                with hook.lock:
                    for alert in body["alerts"]:
                        hook.received.setdefault(alert["labels"]["alert_id"], now)
                self.send_response(200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, prefix: str) -> int:
        with self.lock:
            return sum(1 for k in self.received if k.startswith(prefix))


def _config(webhook_port: int) -> str:
    return f"""route:
  receiver: hook
  group_by: ["alert_id"]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: "http://127.0.0.1:{webhook_port}/"
        send_resolved: false
        max_alerts: 0
"""


def _alert(aid: str, i: int) -> dict[str, Any]:
    return Alert(alert_id=aid, status="firing", severity="warning", use_case="infra", rule="WE1",
                 entity={"resource_id": f"bench-{i % 500}", "metric": f"m{i}"}, starts_at=time.time(),
                 summary=f"bench alert {i}", value=float(i)).with_defaults("http://127.0.0.1:6066").to_event()


async def _publish(topic: str, alerts: list[dict[str, Any]], pace: float | None, sent: dict[str, float]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5 if pace is None else 0)
    await producer.start()
    try:
        start = time.monotonic()
        for i, alert in enumerate(alerts):
            if pace is not None:
                await asyncio.sleep(max(0.0, start + i / pace - time.monotonic()))
                sent[alert["alert_id"]] = time.time()
                await producer.send_and_wait(topic, orjson.dumps(alert), key=alert["alert_id"].encode())
            else:
                await producer.send(topic, orjson.dumps(alert), key=alert["alert_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()


def _wait(what: str, done: Any, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out: {what}")
        time.sleep(0.05)


def _sent_total(port: int) -> float:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        body = resp.read().decode()
    return sum(s.value for f in text_string_to_metric_families(body) for s in f.samples
               if s.name == "spcwatch_notifications_total" and s.labels.get("status") == "sent")


def run() -> str:
    hook = Webhook()
    tmp = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    (tmp / "am.yml").write_text(_config(hook.port))
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        am_port = sock.getsockname()[1]
    env = {**os.environ, "SPCWATCH_RUN_DIR": str(tmp / "run"), "SPCWATCH_ALERTMANAGER_PORT": str(am_port),
           "SPCWATCH_ALERTMANAGER_CONFIG": str(tmp / "am.yml")}
    services = [str(ROOT / "scripts" / "services.sh")]
    subprocess.run([*services, "up", "alertmanager"], env=env, check=True, capture_output=True, timeout=120)
    prefix = f"bench.notify.{uuid.uuid4().hex[:8]}."
    topic = f"{prefix}alerts"
    try:
        with scratch_database() as database, worker(prefix, database, {
                "SPCWATCH_ALERTMANAGER_URL": f"http://127.0.0.1:{am_port}",
                "SPCWATCH_ALERTMANAGER_RESEND_SECONDS": "600"}, partitions=4) as port:
            _wait("the worker", lambda: _up(port), timeout=120)
            # Latency: a steady pace, each alert timed from publication to webhook receipt.
            sent: dict[str, float] = {}
            paced = [_alert(f"p{i}", i) for i in range(PACED_ALERTS)]
            asyncio.run(_publish(topic, paced, PACE_PER_S, sent))
            _wait("the paced alerts at the webhook", lambda: hook.count("p") >= PACED_ALERTS)
            latencies = sorted(hook.received[a] - sent[a] for a in sent)
            p50 = statistics.median(latencies)
            p99 = latencies[int(0.99 * (len(latencies) - 1))]
            # Throughput: a burst; accepted by Alertmanager, then delivered to the webhook.
            before = _sent_total(port)
            burst = [_alert(f"b{i}", i) for i in range(BURST_ALERTS)]
            start = time.time()
            asyncio.run(_publish(topic, burst, None, {}))
            published = time.time()
            _wait("Alertmanager accepting the burst", lambda: _sent_total(port) - before >= BURST_ALERTS)
            accepted = time.time()
            _wait("the burst at the webhook", lambda: hook.count("b") >= BURST_ALERTS)
            delivered = max(hook.received[a["alert_id"]] for a in burst)
    finally:
        subprocess.run([*services, "down", "alertmanager"], env=env, capture_output=True, timeout=120)
        hook.server.shutdown()
        asyncio.run(delete_prefixed(BOOTSTRAP, prefix))
    rows = "\n".join(f"| {what} | {figure} |" for what, figure in [
        (f"latency, {PACED_ALERTS} alerts at {PACE_PER_S}/s: publication on `alerts` → webhook receipt, p50 / p99",
         f"{p50 * 1000:.0f} ms / {p99 * 1000:.0f} ms"),
        (f"burst of {BURST_ALERTS:,} alerts: published in", f"{published - start:.2f} s"),
        ("forwarding throughput (accepted by Alertmanager)", f"{BURST_ALERTS / (accepted - start):,.0f} alerts/s"),
        ("delivered to the webhook (Alertmanager's dispatch, one group per alert)",
         f"{BURST_ALERTS / (delivered - start):,.0f} alerts/s"),
    ])
    return f"""## Notifications: alerts topic → forwarder → Alertmanager → webhook

One worker (4 partitions) forwarding to a real Alertmanager 0.25 on the same machine
(`scripts/services.sh`), one webhook receiver, `group_wait: 0s`, grouped per alert (a team's
`group_wait`, 30 s in `deploy/alertmanager/alertmanager.yml`, adds itself to each first
notification). `python -m bench bench.bench_notify`.

| what | figure |
| --- | --- |
{rows}
"""


def _up(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    print(run())
