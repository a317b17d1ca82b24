"""Delivery to people: ``alerts`` topic -> worker's forwarder -> real Alertmanager -> webhook.

Alertmanager runs from ``scripts/services.sh up alertmanager`` (own run dir, free port) with a
config of one webhook receiver, grouped per alert, ``group_wait`` 0: what is timed is spcwatch's
forwarder plus Alertmanager's dispatch, not a team's chosen ``group_wait`` (30 s in
deploy/alertmanager/alertmanager.yml, which adds itself to every first notification).

* latency: alerts published to the topic at a steady pace, each timed from its publication to
  its webhook receipt (p50 / p99);
* throughput: a burst of alerts, timed until Alertmanager accepted them all (the forwarder's
  ``spcwatch_notifications_total{status="sent"}``) and until the webhook got them all;
* end to end (the issue's figure): infra samples stamped with the wall clock at publication on
  ``metrics.samples`` at a steady 2,000 messages/s, warmed series of which a known set gets one
  x5 spike each; each spike timed from its sample's timestamp to the webhook's receipt of its
  alert (detection, the ``alerts`` topic, the forwarder and Alertmanager's dispatch).

``python -m bench.bench_notify [--workers N] [--e2e-only]``: N workers of one consumer group (each
forwarding the ``alerts`` partitions it holds); ``--e2e-only`` runs only the end-to-end phase at
the issue's rate (no latency, burst or sustained-rate phase).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from bench.common import BOOTSTRAP, ROOT, consumed, create_topic, delete_prefixed, scratch_database, worker

PACED_ALERTS, PACE_PER_S = 300, 50
BURST_ALERTS = 5000
# End to end: E2E_SERIES warmed series (one metric per resource) at E2E_RATE messages/s for
# E2E_SECONDS; each gets one x5 spike at a random moment of the live phase.
E2E_RATE = int(os.environ.get("SPCWATCH_BENCH_NOTIFY_RATE", "2000"))
E2E_SECONDS = float(os.environ.get("SPCWATCH_BENCH_NOTIFY_SECONDS", "60"))
E2E_SERIES = int(os.environ.get("SPCWATCH_BENCH_NOTIFY_SERIES", "200"))
# ... then, on E2E_SERIES more, a rate the worker sustains on this busy machine: the pipeline's
# latency without a backlog.
SUSTAINED_RATE = int(os.environ.get("SPCWATCH_BENCH_NOTIFY_SUSTAINED_RATE", "500"))
SUSTAINED_SECONDS = float(os.environ.get("SPCWATCH_BENCH_NOTIFY_SUSTAINED_SECONDS", "20"))
HISTORY_POINTS = 3 * 48 - 2  # three days of half-hourly points: warm baselines, hour-of-day slots filled


class Webhook:
    """Records when each alert_id first arrived firing."""

    def __init__(self) -> None:
        self.received: dict[str, float] = {}
        self.alerts: dict[str, dict[str, Any]] = {}  # alert_id -> its first firing notification
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
                        hook.alerts.setdefault(alert["labels"]["alert_id"], alert)
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


E2E_HEADER = ("| offered (single samples, {series} series) | achieved | worker behind at the end "
              "| **event → webhook, p50 / p99** (max) | detection, p50 / p99 | spikes / their alerts at the webhook "
              "| alerts delivered in the phase |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |")


def _history(series: int) -> list[bytes]:
    """One backfill batch per series: three days of half-hourly points up to 1.5 h ago."""
    import random

    rng, now = random.Random(1), time.time()
    return [orjson.dumps({"history": True, "samples": [
        {"ts": now - 3 * 86400 + 1800 * k, "resource_type": "ec2", "resource_id": f"e2e-{i:04d}",
         "metric": "CPUUtilization", "value": 50 + rng.gauss(0, 2)} for k in range(HISTORY_POINTS)]})
        for i in range(series)]


async def _produce_history(topic: str, series: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=10)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, m, key=f"e2e-{i:04d}".encode())
                               for i, m in enumerate(_history(series))])
    finally:
        await producer.stop()


async def _produce_live(topic: str, first: int, rate: float, seconds: float,
                        spikes: dict[str, float]) -> tuple[int, float]:
    """Single samples of series ``first``.. ``first + E2E_SERIES`` stamped *now*, paced at ``rate``.

    Returns (messages, seconds taken); ``spikes`` gets each resource's spike timestamp (its ``ts``).
    """
    import random

    rng = random.Random(first)
    rounds = int(rate * seconds / E2E_SERIES)
    spike_round = {i: rng.randrange(2, rounds) for i in range(first, first + E2E_SERIES)}
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=2)
    await producer.start()
    started = time.perf_counter()
    try:
        for r in range(rounds):
            for k, i in enumerate(range(first, first + E2E_SERIES)):
                rid, value, now = f"e2e-{i:04d}", 50 + rng.gauss(0, 2), time.time()
                if spike_round[i] == r:
                    value *= 5
                    spikes[rid] = now
                await producer.send(topic, orjson.dumps({
                    "ts": now, "resource_type": "ec2", "resource_id": rid, "metric": "CPUUtilization",
                    "value": value}), key=rid.encode())
                ahead = (r * E2E_SERIES + k + 1) / rate - (time.perf_counter() - started)
                if ahead > 0.005:
                    await asyncio.sleep(ahead)
        await producer.flush()
        return rounds * E2E_SERIES, time.perf_counter() - started
    finally:
        await producer.stop()


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def _spike_receipts(hook: Webhook, spikes: dict[str, float]) -> dict[str, tuple[float, str]]:
    """Per spiked resource: (webhook receipt, alert_id) of its first value alert started at or after its spike."""
    found: dict[str, tuple[float, str]] = {}
    with hook.lock:
        for aid, alert in hook.alerts.items():
            rid = alert["labels"].get("resource_id", "")
            if (rid in spikes and alert["labels"].get("alertname") != "ABSENT"
                    and _epoch(alert["startsAt"]) >= spikes[rid] - 1.0):
                found[rid] = min(found.get(rid, (float("inf"), "")), (hook.received[aid], aid))
    return found


async def _on_topic(topic: str, starts: dict[str, list[float]] | None = None) -> dict[str, float]:
    """alert_id -> when the worker produced its first record on ``alerts`` (the record's timestamp);
    ``starts`` gets, per resource, the start of every firing value alert on the topic."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        parts = list(consumer.assignment())
        ends = await consumer.end_offsets(parts)
        first: dict[str, float] = {}
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    first.setdefault(record.key.decode(), record.timestamp / 1000)
                    if starts is not None:
                        event = orjson.loads(record.value)
                        if event.get("status") == "firing" and event.get("rule") != "ABSENT":
                            rid = (event.get("entity") or {}).get("resource_id", "")
                            starts.setdefault(rid, []).append(_epoch(event["starts_at"]))
        return first
    finally:
        await consumer.stop()


def _quantile(values: list[float], q: float) -> float:
    return values[int(q * (len(values) - 1))] if values else float("nan")


def _consumed(ports: list[int]) -> float:
    return sum(consumed(port, ["metrics.samples"]) for port in ports)


def _live_phase(ports: list[int], topic: str, hook: Webhook, first: int, rate: float, seconds: float,
                offset: int, alerts_topic: str) -> dict[str, Any]:
    """One paced phase: event timestamp -> webhook receipt of each spike's alert."""
    from collections import Counter

    before_alerts = len(hook.received)
    spikes: dict[str, float] = {}
    live_start = time.time()
    messages, took = asyncio.run(_produce_live(topic, first, rate, seconds, spikes))
    _wait("the live samples consumed", lambda: _consumed(ports) >= offset + messages, timeout=600)
    consumed_at = time.time()
    deadline = time.monotonic() + 60  # the last spikes' alerts through the forwarder and Alertmanager
    while len(_spike_receipts(hook, spikes)) < len(spikes) and time.monotonic() < deadline:
        time.sleep(0.2)
    found = _spike_receipts(hook, spikes)
    latencies = sorted(found[rid][0] - spikes[rid] for rid in found)
    starts: dict[str, list[float]] = {}
    produced = asyncio.run(_on_topic(alerts_topic, starts))
    # Spikes without an alert at the webhook: was one produced on the alerts topic (delivery) or not (detection)?
    missing = [rid for rid in spikes if rid not in found]
    on_topic = sum(1 for rid in missing if any(t >= spikes[rid] - 1.0 for t in starts.get(rid, ())))
    detection = sorted(produced[aid] - spikes[rid] for rid, (_, aid) in found.items() if aid in produced)
    with hook.lock:
        new = [aid for aid in list(hook.received)[before_alerts:] if hook.received[aid] >= live_start]
        live = [hook.received[aid] for aid in new]
        rules = Counter(hook.alerts[aid]["labels"].get("alertname", "?") for aid in new)
    return {"offered": rate, "messages": messages, "seconds": took, "rate": messages / took,
            "spikes": len(spikes), "found": len(found), "missing_on_topic": on_topic,
            "lag": max(0.0, consumed_at - live_start - took),
            "p50": statistics.median(latencies) if latencies else float("nan"),
            "p99": _quantile(latencies, 0.99), "max": latencies[-1] if latencies else float("nan"),
            "detect_p50": statistics.median(detection) if detection else float("nan"),
            "detect_p99": _quantile(detection, 0.99), "rules": ", ".join(f"{n} {r}" for r, n in rules.most_common()),
            "alerts": len(live),
            "alerts_per_s": len(live) / max(max(live, default=live_start) - live_start, 1e-9)}


def _end_to_end(ports: list[int], prefix: str, hook: Webhook, sustained: bool = True) -> list[dict[str, Any]]:
    """The issue's figure at E2E_RATE, then (``sustained``) a rate this worker sustains here, each on
    series of its own."""
    topic = f"{prefix}metrics.samples"
    plan = [(0, E2E_RATE, E2E_SECONDS)] + ([(E2E_SERIES, SUSTAINED_RATE, SUSTAINED_SECONDS)] if sustained else [])
    asyncio.run(_produce_history(topic, len(plan) * E2E_SERIES))
    offset = len(plan) * E2E_SERIES * HISTORY_POINTS
    _wait("the warm-up history", lambda: _consumed(ports) >= offset)
    time.sleep(2)  # its alerts (history: recorded, not notified) drained
    phases = []
    for first, rate, seconds in plan:
        phases.append(_live_phase(ports, topic, hook, first, rate, seconds, offset, f"{prefix}alerts"))
        offset += phases[-1]["messages"]
    return phases


def _sent_total(port: int) -> float:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        body = resp.read().decode()
    return sum(s.value for f in text_string_to_metric_families(body) for s in f.samples
               if s.name == "spcwatch_notifications_total" and s.labels.get("status") == "sent")


def _consuming(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return any(line.startswith("spcwatch_worker_consuming ") and float(line.split()[1]) == 1
                       for line in resp.read().decode().splitlines())
    except OSError:
        return False


def run(workers: int = int(os.environ.get("SPCWATCH_BENCH_NOTIFY_WORKERS", "1")), e2e_only: bool = False) -> str:
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
        asyncio.run(create_topic(BOOTSTRAP, f"{prefix}metrics.samples", 4))
        with scratch_database() as database, contextlib.ExitStack() as stack:
            ports = [stack.enter_context(worker(prefix, database, {
                "SPCWATCH_ALERTMANAGER_URL": f"http://127.0.0.1:{am_port}",
                "SPCWATCH_ALERTMANAGER_RESEND_SECONDS": "600"}, partitions=4,
                name="worker" if i == 0 else f"worker{i}")) for i in range(workers)]
            _wait("the workers", lambda: all(_up(p) and _consuming(p) for p in ports), timeout=180)
            if e2e_only:
                e2e = _end_to_end(ports, prefix, hook, sustained=False)
                return _e2e_only_section(e2e, workers)
            # Latency: a steady pace, each alert timed from publication to webhook receipt.
            sent: dict[str, float] = {}
            paced = [_alert(f"p{i}", i) for i in range(PACED_ALERTS)]
            asyncio.run(_publish(topic, paced, PACE_PER_S, sent))
            _wait("the paced alerts at the webhook", lambda: hook.count("p") >= PACED_ALERTS)
            latencies = sorted(hook.received[a] - sent[a] for a in sent)
            p50 = statistics.median(latencies)
            p99 = latencies[int(0.99 * (len(latencies) - 1))]
            # Throughput: a burst; accepted by Alertmanager, then delivered to the webhook.
            before = sum(_sent_total(p) for p in ports)
            burst = [_alert(f"b{i}", i) for i in range(BURST_ALERTS)]
            start = time.time()
            asyncio.run(_publish(topic, burst, None, {}))
            published = time.time()
            _wait("Alertmanager accepting the burst",
                  lambda: sum(_sent_total(p) for p in ports) - before >= BURST_ALERTS)
            accepted = time.time()
            _wait("the burst at the webhook", lambda: hook.count("b") >= BURST_ALERTS)
            delivered = max(hook.received[a["alert_id"]] for a in burst)
            # End to end: infra samples at E2E_RATE/s -> detection -> forwarder -> Alertmanager -> webhook.
            e2e = _end_to_end(ports, prefix, hook)
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
    e2e_rows = "\n".join(_e2e_row(e, workers) for e in e2e)
    return f"""## Notifications: alerts topic → forwarder → Alertmanager → webhook

{_workers_text(workers)} (4 partitions) forwarding to a real Alertmanager 0.25 on the same machine
(`scripts/services.sh`), one webhook receiver, `group_wait: 0s`, grouped per alert (a team's
`group_wait`, 30 s in `deploy/alertmanager/alertmanager.yml`, adds itself to each first
notification). `python -m bench bench.bench_notify`.

| what | figure |
| --- | --- |
{rows}

End to end, the issue's figure: the same worker and Alertmanager, infra samples stamped with the
wall clock at publication (`ts` = publication time), {E2E_SERIES:,} resources warmed with three
days of half-hourly history (a backfill batch each, `"history": true`, not notified), then
single-sample messages at a steady pace, each resource one x5 spike at a random moment (the load
of bench_infra's 2,000 messages/s event-to-alert row). A second phase, on {E2E_SERIES} other warmed
resources, offers a rate the worker sustains here. Latency = webhook receipt − the spike's
timestamp (detection, `alerts` topic, forwarder, Alertmanager's dispatch); *detection* is the
part until the worker produced the alert on the `alerts` topic (the record's timestamp).
*Behind*: how long after the publisher's last sample the worker had consumed it (a backlog every
latency includes). The publisher runs on the same 2 cores as the worker, Alertmanager, Kafka and
MariaDB.

{E2E_HEADER.format(series=E2E_SERIES)}
{e2e_rows}
"""


def _up(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _workers_text(workers: int) -> str:
    return "One worker" if workers == 1 else f"{workers} workers of one consumer group"


def _missing(e: dict[str, Any]) -> str:
    """Spikes without an alert at the webhook, split by whether their alert was on the ``alerts`` topic."""
    n = e["spikes"] - e["found"]
    return f" ({n} missing: {e['missing_on_topic']} of them on `alerts`)" if n else ""


def _e2e_row(e: dict[str, Any], workers: int) -> str:
    return (f"| {e['offered']:,.0f}/s for {E2E_SECONDS if e['offered'] == E2E_RATE else SUSTAINED_SECONDS:.0f} s, "
            f"{workers} worker{'s' if workers > 1 else ''} | {e['rate']:,.0f}/s | {e['lag']:.1f} s "
            f"| **{e['p50']:.2f} s / {e['p99']:.2f} s** ({e['max']:.2f} s) "
            f"| {e['detect_p50']:.2f} s / {e['detect_p99']:.2f} s | {e['spikes']} / {e['found']}{_missing(e)} "
            f"| {e['alerts']} ({e['alerts_per_s']:.1f}/s; {e['rules']}) |")


def _e2e_only_section(e2e: list[dict[str, Any]], workers: int) -> str:
    load = os.getloadavg()
    return (f"End to end only ({_workers_text(workers).lower()}; load average at the end "
            f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}):\n\n{E2E_HEADER.format(series=E2E_SERIES)}\n"
            + "\n".join(_e2e_row(e, workers) for e in e2e) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=int(os.environ.get("SPCWATCH_BENCH_NOTIFY_WORKERS", "1")),
                        help="workers of one consumer group (default 1)")
    parser.add_argument("--e2e-only", action="store_true", help="only the end-to-end phase at the issue's rate")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    print(run(workers=args.workers, e2e_only=args.e2e_only))
