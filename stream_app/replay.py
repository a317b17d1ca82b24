"""``spcwatch replay``: a use case's processor over a JSONL file, without Kafka.

Lines are events of the contract (a line of a multi-topic use case also carries
``"topic"``). A line whose ``"topic"`` is another input topic of the contract (a file of
``spcwatch simulate --out`` holds every domain) is skipped and counted, not invalid: one
file serves every use case. The rest are validated by the same decoders as the worker, sorted by
event time (stable, so ties keep file order), fed to the same processor with a
dict as the state store, and ticked on event time. Alerts go to ``--output`` as
JSONL; rows go to ``SPCWATCH_DB_URL`` through the same idempotent sink.

The worker's clock rule holds here too, with the wall clock at the start of the replay: an event
more than ``SPCWATCH_MAX_CLOCK_SKEW_SECONDS`` ahead of it is reported invalid
(``invalid_timestamp``, "in the future") and not replayed, and ticks never pass that clock.
Recorded history is never ahead; to replay a file that runs ahead on purpose (a simulated
future), set ``SPCWATCH_MAX_CLOCK_SKEW_SECONDS=0``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from agents.core.contract import Outputs, Processor
from agents.core.events import DECODERS, INPUT_TOPICS, InvalidEvent, bound_to_clock, parse_json
from agents.core.settings import Settings
from stream_app.runtime import db
from stream_app.runtime.sink import Sink

FLUSH_ROWS = 5000


@dataclass(slots=True)
class ReplayReport:
    lines: int = 0
    events: int = 0
    invalid: list[tuple[int, str, str]] = field(default_factory=list)  # (line number, reason, detail)
    skipped: dict[str, int] = field(default_factory=dict)  # lines of other contract topics, by topic
    alerts: int = 0
    rows: int = 0


def read_events(
    lines: Iterable[bytes], processor: Processor, report: ReplayReport,
    now: float | None = None, max_skew: float = 0.0,
) -> list[tuple[float, int, str, Any]]:
    """Decode every line; invalid lines are reported with their line number, never dropped silently.
    With ``max_skew`` > 0, events more than that ahead of ``now`` (the wall clock) are invalid."""
    now = time.time() if now is None else now
    events: list[tuple[float, int, str, Any]] = []
    single = processor.topics[0] if len(processor.topics) == 1 else None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        report.lines += 1
        topic = single
        if single is None or b'"topic"' in raw:
            try:
                obj = parse_json(raw)
                named = obj.pop("topic", None) if isinstance(obj, dict) else None
            except InvalidEvent as exc:
                report.invalid.append((number, exc.reason, exc.detail))
                continue
            if named in INPUT_TOPICS and named not in processor.topics:
                report.skipped[named] = report.skipped.get(named, 0) + 1
                continue
            if named is not None or single is None:
                topic = named
                if topic not in processor.topics:
                    report.invalid.append((number, "invalid_value",
                                           f"'topic' must be one of {', '.join(processor.topics)}, got {topic!r}"))
                    continue
                raw = orjson.dumps(obj)
        assert topic is not None
        decoded = bound_to_clock(DECODERS[topic](raw), now, max_skew)
        for error in decoded.errors:
            where = "" if error.item_index is None else f" (item {error.item_index})"
            report.invalid.append((number, error.reason, error.detail + where))
        for event in decoded.events:
            events.append((event.ts, len(events), topic, event))
    events.sort(key=lambda item: (item[0], item[1]))
    return events


class _Writer:
    """Buffers rows for the sink and writes alerts to the output as they come."""

    def __init__(self, sink: Sink, output: TextIO, report: ReplayReport, runbook_base: str) -> None:
        self.runbook_base = runbook_base
        self.sink = sink
        self.output = output
        self.report = report
        self.pending = Outputs()
        self.pending_rows = 0

    async def emit(self, outputs: Outputs) -> None:
        for alert in outputs.alerts:
            alert = alert.with_defaults(self.runbook_base)
            self.output.write(orjson.dumps(alert.to_event()).decode() + "\n")
            self.pending.add_row("alerts", alert.to_row())
        self.report.alerts += len(outputs.alerts)
        for table, rows in outputs.rows.items():
            self.pending.add_rows(table, rows)
        self.pending_rows += len(outputs.alerts) + sum(len(r) for r in outputs.rows.values())
        if self.pending_rows >= FLUSH_ROWS:
            await self.flush()

    async def flush(self) -> None:
        for table, rows in self.pending.rows.items():
            # Rows of one key keep their order inside a batch: the last one wins,
            # exactly as separate upserts would.
            self.report.rows += await self.sink.upsert(table, rows)
        self.pending = Outputs()
        self.pending_rows = 0
        self.output.flush()


def drive(processor: Processor, events: Iterable[tuple[float, int, str, Any]], tick_event_seconds: float = 60.0,
          tick_limit: float = float("inf")) -> Iterator[Outputs]:
    """The processor over decoded events in event-time order, ticked every ``tick_event_seconds`` of
    event time (never past ``tick_limit``), with a dict as its state store: what ``spcwatch replay``
    runs between reading the file and the sink (tests drive processors through it too)."""
    store: dict[str, Any] = {}
    watermark = 0.0
    last_tick = 0.0
    for ts, _seq, topic, event in events:
        yield processor.process(store, topic, [event])
        watermark = max(watermark, ts)
        if watermark - last_tick >= tick_event_seconds:
            yield processor.tick(store, min(watermark, tick_limit))
            last_tick = watermark
    if watermark:
        # The worker goes on ticking after the input ends: twice is enough for timers that
        # judge the clock of the previous tick (infra's absence) to see the last one.
        yield processor.tick(store, min(watermark, tick_limit))
        yield processor.tick(store, min(watermark, tick_limit))


async def run_replay(settings: Settings, processor: Processor, input_path: Path, output: TextIO,
                     tick_event_seconds: float = 60.0) -> ReplayReport:
    report = ReplayReport()
    wall, max_skew = time.time(), settings.max_clock_skew_seconds
    with input_path.open("rb") as handle:
        events = read_events(handle, processor, report, wall, max_skew)
    # As in the worker: with the clock rule on, no timer runs ahead of the wall clock.
    tick_limit = wall if max_skew > 0 else float("inf")
    report.events = len(events)
    engine = db.create_engine(settings.db_url)
    try:
        await db.upgrade(engine)
        writer = _Writer(Sink(engine, batch_size=settings.sink_batch_size,
                              retry_max_seconds=settings.sink_retry_max_seconds), output, report,
                         settings.runbook_base)
        for outputs in drive(processor, events, tick_event_seconds, tick_limit):
            await writer.emit(outputs)
        await writer.flush()
    finally:
        await engine.dispose()
    return report


def print_report(report: ReplayReport, stream: TextIO = sys.stderr) -> None:
    for number, reason, detail in report.invalid[:20]:
        print(f"line {number}: {reason}: {detail}", file=stream)
    if len(report.invalid) > 20:
        print(f"... and {len(report.invalid) - 20} more invalid", file=stream)
    skipped = sum(report.skipped.values())
    other = (f"{skipped} of other topics skipped ({', '.join(f'{t} {n}' for t, n in sorted(report.skipped.items()))}), "
             if skipped else "")
    print(f"replay: {report.lines} lines, {report.events} events, {other}{len(report.invalid)} invalid, "
          f"{report.alerts} alerts, {report.rows} rows written", file=stream)
