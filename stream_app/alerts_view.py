"""``spcwatch alerts tail``: a live terminal view of the ``alerts`` topic.

Keeps the latest state of every ``alert_id`` (firing → resolved) and shows
the firing ones first (by severity), then the recently resolved, with the
worker's throughput (from its ``/metrics``) and consumer lag (end offsets of
the input topics minus the worker group's committed offsets).

On a terminal the table is redrawn every second (plain ANSI, no dependency);
otherwise (a pipe, a log) every transition is one line, plus a status line
every 10 seconds. Ages are measured on the newest clock available: wall time,
or the alerts' own event time when a simulator runs ahead of the wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from agents.core.settings import Settings

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
_COLOURS = {"critical": "\x1b[1;31m", "warning": "\x1b[33m", "info": "\x1b[36m", "resolved": "\x1b[32m",
            "dim": "\x1b[2m", "bold": "\x1b[1m"}
_RESET = "\x1b[0m"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from-beginning", action="store_true",
                        help="read the alerts topic from its start (default: only new alerts)")
    parser.add_argument("--metrics-url", default=None,
                        help="the worker's /metrics for throughput (default: http://127.0.0.1:$SPCWATCH_WEB_PORT"
                             "/metrics; 'none' to skip)")
    parser.add_argument("--resolved", type=int, default=15, help="resolved alerts to keep on screen (default: 15)")
    parser.add_argument("--plain", action="store_true", help="one line per alert transition, even on a terminal")
    parser.add_argument("--no-color", action="store_true", help="no ANSI colours")


# --------------------------------------------------------------------------- state


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    try:
        from agents.core.events import parse_timestamp

        return parse_timestamp(value)
    except ValueError:
        return None


@dataclass(slots=True)
class AlertRow:
    alert_id: str
    status: str
    severity: str
    use_case: str
    rule: str
    entity: dict[str, Any]
    value: float | None
    expected: dict[str, Any] | None
    starts_at: float | None
    ends_at: float | None
    summary: str
    seen_at: float  # wall time this view received the latest transition

    @classmethod
    def from_event(cls, event: dict[str, Any], seen_at: float) -> AlertRow:
        return cls(
            alert_id=str(event.get("alert_id", "?")),
            status=str(event.get("status", "firing")),
            severity=str(event.get("severity", "warning")),
            use_case=str(event.get("use_case", "?")),
            rule=str(event.get("rule", "?")),
            entity=event.get("entity") if isinstance(event.get("entity"), dict) else {},
            value=event.get("value") if isinstance(event.get("value"), int | float) else None,
            expected=event.get("expected") if isinstance(event.get("expected"), dict) else None,
            starts_at=_ts(event.get("starts_at")),
            ends_at=_ts(event.get("ends_at")),
            summary=str(event.get("summary") or ""),
            seen_at=seen_at,
        )


@dataclass
class AlertBoard:
    """Latest state per alert id. A resolved alert stays resolved (a redelivered ``firing`` is ignored)."""

    keep_resolved: int = 15
    alerts: dict[str, AlertRow] = field(default_factory=dict)
    transitions: int = 0
    newest_event_time: float = 0.0

    def apply(self, event: dict[str, Any], seen_at: float) -> AlertRow | None:
        """Take one alerts-topic event; return the row when it changed what is shown."""
        row = AlertRow.from_event(event, seen_at)
        for ts in (row.starts_at, row.ends_at):
            if ts is not None and ts > self.newest_event_time:
                self.newest_event_time = ts
        old = self.alerts.get(row.alert_id)
        if old is not None and (old.status == row.status or old.status == "resolved"):
            return None
        self.alerts[row.alert_id] = row
        self.transitions += 1
        self._trim()
        return row

    def _trim(self) -> None:
        resolved = [r for r in self.alerts.values() if r.status == "resolved"]
        if len(resolved) > max(self.keep_resolved, 0) * 20:  # bound memory, keep plenty for the counts
            resolved.sort(key=lambda r: r.ends_at or 0.0)
            for row in resolved[: len(resolved) - self.keep_resolved * 20]:
                del self.alerts[row.alert_id]

    @property
    def firing(self) -> list[AlertRow]:
        rows = [r for r in self.alerts.values() if r.status == "firing"]
        return sorted(rows, key=lambda r: (SEVERITY_ORDER.get(r.severity, 9), -(r.starts_at or 0.0)))

    @property
    def resolved(self) -> list[AlertRow]:
        rows = [r for r in self.alerts.values() if r.status == "resolved"]
        return sorted(rows, key=lambda r: -(r.ends_at or r.seen_at))[: self.keep_resolved]

    def clock(self, wall: float) -> float:
        """'Now' for ages: the wall clock, or event time if the alerts are ahead of it."""
        return max(wall, self.newest_event_time)


# --------------------------------------------------------------------------- formatting


def format_age(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h{(seconds % 3600) // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d{(seconds % 86400) // 3600:02.0f}h"


def format_number(value: Any) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 1e9:
        return f"{value / 1e9:.2f}G"
    if magnitude >= 1e6:
        return f"{value / 1e6:.2f}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.1f}k"
    if magnitude >= 100 or magnitude == 0:
        return f"{value:.0f}" if value == int(value) else f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_value(row: AlertRow) -> str:
    text = format_number(row.value)
    if row.expected:
        center = format_number(row.expected.get("center"))
        lower, upper = row.expected.get("lower"), row.expected.get("upper")
        text += f" vs {center}"
        if lower is not None or upper is not None:
            text += f" [{format_number(lower)}, {format_number(upper)}]"
    return text


def format_entity(entity: dict[str, Any]) -> str:
    parts = []
    for key, value in entity.items():
        if isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in value.items())
        parts.append(f"{key}={value}")
    return " ".join(parts) or "-"


def log_line(row: AlertRow, now: float) -> str:
    """One line per transition (pipes and logs)."""
    age = format_age(now - row.starts_at) if row.starts_at else "-"
    if row.status == "resolved" and row.starts_at and row.ends_at:
        age = "lasted " + format_age(row.ends_at - row.starts_at)
    return (f"alert {row.status.upper():8} {row.severity:8} {row.use_case:8} {row.rule:14} "
            f"{format_entity(row.entity)}  value {format_value(row)}  age {age}  id {row.alert_id}")


@dataclass
class Stats:
    """Worker figures for the header; ``None`` means unknown (with a reason in ``note``)."""

    rate: float | None = None
    consumed: float | None = None
    lag: int | None = None
    note: str = ""
    source: str = ""


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def render(board: AlertBoard, stats: Stats, wall: float, width: int = 120, height: int = 40,
           title: str = "", colour: bool = True) -> str:
    """The full screen as text (no cursor movement)."""

    def paint(text: str, style: str) -> str:
        return f"{_COLOURS[style]}{text}{_RESET}" if colour and style in _COLOURS else text

    now = board.clock(wall)
    firing, resolved = board.firing, board.resolved
    rate = "-" if stats.rate is None else f"{stats.rate:,.0f} events/s"
    lag = "-" if stats.lag is None else f"{stats.lag:,}"
    lines = [
        paint(_clip(f"spcwatch alerts  {title}", width), "bold"),
        _clip(f"firing {len(firing)} · resolved {sum(1 for r in board.alerts.values() if r.status == 'resolved')}"
              f" · throughput {rate} · consumer lag {lag} messages"
              + (f" · {stats.note}" if stats.note else ""), width),
        paint(_clip(f"clock {datetime.fromtimestamp(now).strftime('%Y-%m-%d %H:%M:%S')}"
                    + (" (event time)" if now > wall + 1 else "") + "   Ctrl-C to quit", width), "dim"),
        "",
    ]
    entity_width = max(20, width - 94)
    header = (f"{'STATUS':9}{'SEV':9}{'USE CASE':9}{'ENTITY':{entity_width}} {'RULE':26}{'VALUE vs EXPECTED':30}"
              f"{'AGE':>9}")
    lines.append(paint(_clip(header, width), "bold"))
    room = max(3, height - len(lines) - 2)
    shown = firing[:room] + resolved[: max(0, room - len(firing))]
    if not shown:
        lines.append(paint("  (no alerts yet: they appear here as they fire)", "dim"))
    for row in shown:
        if row.status == "resolved" and row.starts_at and row.ends_at:
            age = format_age(row.ends_at - row.starts_at)
        else:
            age = format_age(now - row.starts_at) if row.starts_at else "-"
        text = (f"{row.status.upper():9}{row.severity:9}{row.use_case:9}"
                f"{_clip(format_entity(row.entity), entity_width):{entity_width}} {_clip(row.rule, 25):26}"
                f"{_clip(format_value(row), 29):30}{age:>9}")
        style = "resolved" if row.status == "resolved" else row.severity
        lines.append(paint(_clip(text, width), style))
    if len(firing) > room:
        lines.append(paint(f"  … and {len(firing) - room} more firing", "dim"))
    return "\n".join(lines)


# --------------------------------------------------------------------------- probes


def read_consumed(body: str) -> float:
    """Sum of ``spcwatch_events_consumed_total`` over topics in a Prometheus exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "spcwatch_events_consumed_total":
                total += sample.value
    return total


class RateProbe:
    """Throughput from two readings of the worker's counter."""

    def __init__(self, url: str | None, window: float = 10.0) -> None:
        self.url = url
        self.window = window
        self.readings: deque[tuple[float, float]] = deque()

    def _fetch(self) -> float:
        import urllib.request

        assert self.url is not None
        with urllib.request.urlopen(self.url, timeout=3) as response:
            return read_consumed(response.read().decode())

    async def poll(self, stats: Stats) -> None:
        if not self.url:
            return
        try:
            consumed = await asyncio.to_thread(self._fetch)
        except Exception as exc:
            stats.rate, stats.note = None, f"no /metrics at {self.url} ({type(exc).__name__})"
            self.readings.clear()
            return
        self.add(time.monotonic(), consumed, stats)

    def add(self, now: float, consumed: float, stats: Stats) -> None:
        """Rate over the last ``window`` seconds (a restarted worker resets the counter: start over)."""
        if self.readings and consumed < self.readings[-1][1]:
            self.readings.clear()
        self.readings.append((now, consumed))
        while len(self.readings) > 2 and now - self.readings[1][0] >= self.window:
            self.readings.popleft()
        first_time, first_value = self.readings[0]
        if now > first_time:
            stats.rate = (consumed - first_value) / (now - first_time)
        stats.consumed = consumed
        stats.note = ""


async def consumer_lag(admin: Any, consumer: Any, group_id: str, topics: list[str]) -> int:
    """Messages on the input topics not yet committed by the worker group."""
    from stream_app.runtime.kafka import TopicPartition

    committed = await admin.list_consumer_group_offsets(group_id)
    described = await admin.describe_topics(topics)
    partitions = [TopicPartition(d["topic"], p["partition"]) for d in described if d.get("error_code") == 0
                  for p in d["partitions"]]
    if not partitions:
        return 0
    ends = await consumer.end_offsets(partitions)
    lag = 0
    for tp in partitions:
        done = committed.get(tp)
        offset = done.offset if done is not None and done.offset >= 0 else 0
        lag += max(0, ends.get(tp, 0) - offset)
    return lag


# --------------------------------------------------------------------------- the command


async def tail(settings: Settings, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    import orjson

    from agents.core.events import INPUT_TOPICS
    from stream_app.runtime.kafka import AIOKafkaAdminClient, AIOKafkaConsumer
    from stream_app.runtime.topics import ALERTS, kafka_client_options

    live = out.isatty() and not args.plain
    colour = live and not args.no_color
    url = args.metrics_url or f"http://127.0.0.1:{settings.web_port}/metrics"
    url = None if url.lower() == "none" else url
    topic = settings.topic(ALERTS)
    options = kafka_client_options(settings)
    consumer = AIOKafkaConsumer(topic, **options, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest" if args.from_beginning else "latest")
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=10000)
    await consumer.start()
    await admin.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    board = AlertBoard(keep_resolved=args.resolved)
    stats = Stats()
    rate = RateProbe(url)
    inputs = [settings.topic(t) for t in INPUT_TOPICS]
    title = f"· topic {topic} on {settings.kafka_bootstrap} · worker group {settings.group_id}"
    if not live:
        out.write(f"alerts tail: {topic} on {settings.kafka_bootstrap}"
                  f"{' from the beginning' if args.from_beginning else ''}; metrics {url or 'off'}\n")
        out.flush()
    next_stats = 0.0
    next_status_line = time.monotonic() + 10
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=250, max_records=2000)
            wall = time.time()
            for records in batch.values():
                for record in records:
                    try:
                        event = orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        continue
                    if not isinstance(event, dict):
                        continue
                    row = board.apply(event, wall)
                    if row is not None and not live:
                        out.write(log_line(row, board.clock(wall)) + "\n")
            if time.monotonic() >= next_stats:
                next_stats = time.monotonic() + 2.0
                await rate.poll(stats)
                try:
                    stats.lag = await asyncio.wait_for(consumer_lag(admin, consumer, settings.group_id, inputs), 5)
                except Exception:
                    stats.lag = None
            if live:
                size = shutil.get_terminal_size((120, 40))
                out.write("\x1b[H\x1b[2J" + render(board, stats, time.time(), size.columns, size.lines, title,
                                                    colour) + "\n")
            elif time.monotonic() >= next_status_line:
                next_status_line = time.monotonic() + 10
                rate_text = "-" if stats.rate is None else f"{stats.rate:,.0f}/s"
                out.write(f"status: firing {len(board.firing)}, transitions {board.transitions}, "
                          f"throughput {rate_text}, lag {'-' if stats.lag is None else stats.lag}"
                          f"{' · ' + stats.note if stats.note else ''}\n")
            out.flush()
    finally:
        await consumer.stop()
        await admin.close()
    out.write(f"\nalerts tail: {board.transitions} transitions seen, {len(board.firing)} still firing\n")
    out.flush()
    return 0
