"""``spcwatch simulate``: publish the simulated world (``simgen``) to Kafka, or to a JSONL file.

Pacing: events before ``t0`` (the warm-up history) go as fast as possible so the
detectors' baselines are warm when the live part starts; from ``t0`` on, event
time runs at ``--speed`` times wall time (``max``: no pacing at all). The
producer batches with linger, so ``--speed max`` can saturate a worker.

This module imports only the standard library at the top: ``spcwatch --help``
stays fast. Heavy imports (numpy, aiokafka) happen when a command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from agents.core.settings import ConfigError, Settings

if TYPE_CHECKING:
    from stream_app.simgen import SimConfig, SimEvent

DAY = 86400.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}


def parse_duration(text: str, flag: str) -> float:
    """``90s``, ``15m``, ``2h``, ``3d``, ``1w`` or plain seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{flag} must be a duration like 90s, 15m, 2h, 3d, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_speed(text: str) -> float | None:
    """``max`` (no pacing, None) or a positive factor (1 = real time)."""
    if text.strip().lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ConfigError(f"--speed must be a positive number or 'max', got {text!r}") from None
    if not (speed > 0 and math.isfinite(speed)):
        raise ConfigError(f"--speed must be a positive number or 'max', got {text!r}")
    return speed


def parse_instant(text: str) -> float:
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--start must be an RFC 3339 time or a date, got {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list", action="store_true", help="list the scenarios and what spcwatch should flag")
    parser.add_argument("--scenario", nargs="+", action="extend", default=[], metavar="NAME",
                        help="scenarios to switch on (repeatable), or 'all'")
    parser.add_argument("--domains", default="infra,orders,forecast",
                        help="comma-separated: infra, orders, forecast (default: all three)")
    parser.add_argument("--speed", default="60",
                        help="event-time speed after the history: 1 = real time, N = N times faster, "
                             "max = as fast as possible (default: 60)")
    parser.add_argument("--duration", default=None,
                        help="how long the live part lasts in event time, e.g. 2h, 3d "
                             "(default: until interrupted; required with --out)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument("--history-days", type=float, default=30.0,
                        help="days of history before the live part, published as fast as possible so "
                             "baselines are warm (default: 30)")
    parser.add_argument("--infra-history-days", type=float, default=1.0,
                        help="infrastructure history: from UTC midnight this many days before the live "
                             "day; 0 = none (default: 1; the infra baseline is warm after one closed UTC "
                             "day, and the estate is most of the volume)")
    parser.add_argument("--start", default=None,
                        help="event time of the first event, RFC 3339 (default: now minus --history-days; "
                             "with --speed max and --duration, the live part ends now)")
    parser.add_argument("--infra-interval", default="5m",
                        help="infrastructure sample interval (default: 5m, CloudWatch basic monitoring)")
    parser.add_argument("--out", metavar="FILE",
                        help="write JSONL (one event per line with a \"topic\" field) instead of publishing; "
                             "'-' for stdout")
    parser.add_argument("--linger-ms", type=int, default=20, help="producer linger (default: 20)")
    parser.add_argument("--batch-kb", type=int, default=512, help="producer max batch size in KiB (default: 512)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


@dataclass(frozen=True)
class Plan:
    """A validated simulation request."""

    config: SimConfig
    speed: float | None
    out: str | None
    linger_ms: int
    batch_bytes: int
    quiet: bool


def plan_from_args(args: argparse.Namespace, now: float | None = None) -> Plan:
    """Validate the flags; raises :class:`ConfigError` with a one-line message."""
    from stream_app.simgen import DOMAINS, SimConfig, resolve_scenarios

    domains = tuple(d.strip() for d in args.domains.split(",") if d.strip())
    bad = [d for d in domains if d not in DOMAINS]
    if bad or not domains:
        raise ConfigError(f"--domains takes a comma-separated subset of {', '.join(DOMAINS)}, got {args.domains!r}")
    try:
        scenarios = resolve_scenarios(args.scenario)
    except ValueError as exc:
        raise ConfigError(f"--scenario: {exc}") from None
    speed = parse_speed(args.speed)
    if not (0 <= args.history_days <= 400) or not (0 <= args.infra_history_days <= 400):
        raise ConfigError("--history-days and --infra-history-days must be between 0 and 400")
    history = args.history_days * DAY
    duration = None if args.duration is None else parse_duration(args.duration, "--duration")
    if args.start is not None:
        start = parse_instant(args.start)
        t0 = start + history
    else:
        t0 = math.floor((time.time() if now is None else now) / 60) * 60.0
        if speed is None and duration is not None:
            # As fast as possible over a finite span: the span that ends now, so no event is ahead
            # of the wall clock (the worker dead-letters those beyond SPCWATCH_MAX_CLOCK_SKEW_SECONDS).
            t0 -= duration
        start = t0 - history
    if args.out and duration is None:
        raise ConfigError("--out needs --duration (a file cannot be endless)")
    interval = parse_duration(args.infra_interval, "--infra-interval")
    if not 10 <= interval <= 3600 or DAY % interval:
        raise ConfigError("--infra-interval must divide a day and be between 10s and 1h")
    if args.linger_ms < 0 or args.batch_kb < 1:
        raise ConfigError("--linger-ms must be >= 0 and --batch-kb >= 1")
    # Infra history is whole UTC days (the infra baseline's buckets); 0: no infra history at all.
    infra_start = (t0 // DAY) * DAY - args.infra_history_days * DAY if args.infra_history_days > 0 else t0
    config = SimConfig(t0=t0, start=start, end=None if duration is None else t0 + duration, seed=args.seed,
                       domains=domains, scenarios=scenarios, infra_interval=interval,
                       infra_start=max(start, infra_start))
    return Plan(config, speed, args.out, args.linger_ms, args.batch_kb * 1024, args.quiet)


def describe_scenarios() -> str:
    """The text of ``--list``."""
    from stream_app.simgen import SCENARIOS

    def rel(seconds: float | None) -> str:
        if seconds is None:
            return "end"
        sign = "-" if seconds < 0 else "+"
        seconds = abs(seconds)
        unit = next((u for u, s in (("d", DAY), ("h", 3600.0), ("min", 60.0)) if seconds >= s and seconds % s == 0),
                    "s")
        return f"t0{sign}{seconds / {'d': DAY, 'h': 3600.0, 'min': 60.0, 's': 1.0}[unit]:g}{unit}"

    lines = ["Scenarios (t0 = where the live part starts; --scenario NAME ... or all):", ""]
    for s in SCENARIOS.values():
        lines.append(f"{s.name}  [{s.domain}, {rel(s.start)} .. {rel(s.end)}]")
        lines.append(f"    {s.summary}")
        for e in s.expect:
            rules = "/".join(e.rules) if e.rules else "no alert"
            entity = ", ".join(f"{k}={v}" for k, v in e.entity.items())
            lines.append(f"    expect: {e.use_case} {rules} on {entity}, within {rel(e.within)[3:]} of its start "
                         f"(needs {e.history_days:g} days of history): {e.note}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- progress


class Progress:
    """Events sent and rate, on one refreshed line (a terminal) or a line every 10 s (a log)."""

    def __init__(self, stream: TextIO, t0: float, quiet: bool = False) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.quiet = quiet
        self.t0 = t0
        self.messages = 0
        self.samples = 0
        self.started = self.last_print = self.window_start = time.monotonic()
        self.window_count = 0
        self.rate = 0.0
        self.event_ts = 0.0
        self.interval = 1.0 if self.tty else 10.0

    def add(self, event: SimEvent) -> None:
        self.messages += 1
        self.samples += len(event.value["samples"]) if event.topic == "metrics.samples" else 1
        self.event_ts = event.ts

    def maybe_print(self, mode: str) -> None:
        now = time.monotonic()
        if now - self.last_print >= self.interval:
            self.print(mode, now)

    def print(self, mode: str, now: float | None = None, final: bool = False) -> None:
        now = time.monotonic() if now is None else now
        elapsed = now - self.window_start
        if elapsed > 0:
            self.rate = (self.messages - self.window_count) / elapsed
        self.window_start, self.window_count, self.last_print = now, self.messages, now
        if self.quiet and not final:
            return
        when = datetime.fromtimestamp(self.event_ts, UTC).strftime("%Y-%m-%d %H:%M") if self.event_ts else "-"
        phase = "history" if self.event_ts < self.t0 else mode
        line = (f"simulate: {self.messages:,} messages ({self.samples:,} events) · {self.rate:,.0f} msg/s · "
                f"event time {when}Z · {phase}")
        if final:
            total = now - self.started
            line = (f"simulate: done: {self.messages:,} messages ({self.samples:,} events) in {total:,.1f}s "
                    f"({self.messages / total if total else 0:,.0f} msg/s), last event time {when}Z")
        if self.tty and not final:
            self.stream.write("\r\x1b[K" + line)
        else:
            self.stream.write(("\n" if self.tty else "") + line + "\n")
        self.stream.flush()


# --------------------------------------------------------------------------- outputs


def write_file(plan: Plan, stderr: TextIO | None = None) -> int:
    """All events to JSONL (each line carries its ``topic``), as fast as possible."""
    import orjson

    from stream_app.simgen import generate

    progress = Progress(stderr or sys.stderr, plan.config.t0, plan.quiet)
    handle = sys.stdout.buffer if plan.out == "-" else open(plan.out or "", "wb")
    try:
        for event in generate(plan.config):
            handle.write(orjson.dumps({"topic": event.topic, **event.value}) + b"\n")
            progress.add(event)
            if progress.messages % 4096 == 0:
                progress.maybe_print("file")
    finally:
        if handle is not sys.stdout.buffer:
            handle.close()
        else:
            handle.flush()
    progress.print("file", final=True)
    return 0


class Pacer:
    """Maps event time to wall time after ``t0``: wall = wall_at_t0 + (ts - t0) / speed."""

    def __init__(self, t0: float, speed: float | None, clock: Any = time.monotonic) -> None:
        self.t0, self.speed, self.clock = t0, speed, clock
        self.wall_t0: float | None = None

    def delay(self, ts: float) -> float:
        """Seconds to wait before sending an event at ``ts`` (0 during the history or at max speed)."""
        if self.speed is None or ts < self.t0:
            return 0.0
        if self.wall_t0 is None:
            self.wall_t0 = self.clock()
        return self.wall_t0 + (ts - self.t0) / self.speed - self.clock()


def ahead_of_wall(plan: Plan, settings: Settings, stderr: TextIO, now: float | None = None) -> bool:
    """Say so when the simulated event time will pass the wall clock by more than the allowed skew:
    a worker with the clock rule on dead-letters those events (``make run`` turns it off)."""
    skew = settings.max_clock_skew_seconds
    now = time.time() if now is None else now
    end = plan.config.end
    runs_ahead = (end is None or end > now + skew) if plan.speed is None or plan.speed > 1 else (
        plan.config.t0 > now + skew)
    if skew > 0 and runs_ahead:
        stderr.write(f"simulate: event time will run more than {skew:g} s ahead of the wall clock; a worker "
                     "dead-letters such events unless it runs with SPCWATCH_MAX_CLOCK_SKEW_SECONDS=0\n")
    return skew > 0 and runs_ahead


async def publish(plan: Plan, settings: Settings, stderr: TextIO | None = None) -> int:
    """Send the simulation to the contract's topics (with ``SPCWATCH_TOPIC_PREFIX``) until done or stopped."""
    import orjson

    from agents.core.events import INPUT_TOPICS
    from stream_app.runtime.kafka import AIOKafkaProducer
    from stream_app.runtime.topics import ensure_topics, kafka_client_options
    from stream_app.simgen import generate

    await ensure_topics(settings, INPUT_TOPICS)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    names = {topic: settings.topic(topic) for topic in INPUT_TOPICS}
    producer = AIOKafkaProducer(**kafka_client_options(settings), client_id="spcwatch-simulate",
                                linger_ms=plan.linger_ms, max_batch_size=plan.batch_bytes, acks=1,
                                request_timeout_ms=30000)
    await producer.start()
    ahead_of_wall(plan, settings, stderr or sys.stderr)
    mode = "live at max speed" if plan.speed is None else f"live x{plan.speed:g}"
    progress = Progress(stderr or sys.stderr, plan.config.t0, plan.quiet)
    pacer = Pacer(plan.config.t0, plan.speed)
    pending: list[asyncio.Future[Any]] = []
    try:
        for event in generate(plan.config):
            if stop.is_set():
                break
            wait = pacer.delay(event.ts)
            if wait > 0.005:
                await asyncio.gather(*pending)
                pending.clear()
                progress.maybe_print(mode)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                    break
                except TimeoutError:
                    pass
            pending.append(await producer.send(names[event.topic], orjson.dumps(event.value), key=event.key))
            progress.add(event)
            if len(pending) >= 2000:
                await asyncio.gather(*pending)  # surfaces delivery errors; lets the sender run
                pending.clear()
                progress.maybe_print(mode)
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
        progress.print(mode, final=True)
    return 0
