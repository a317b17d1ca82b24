"""Duplicates change nothing (issue #20): every use case, offline.

At-least-once delivery makes a message delivered twice normal (a producer's retry, a redelivery
after a restart), and a sample may come again inside another batch. For each use case the stream
is run once and again with every message delivered twice (the copy a few messages later, as a
retry or a redelivery comes), through ``spcwatch replay`` and through the processor message by
message (the worker's path: whole batches, arrival order); every table and every alert must be
as if each message had come once.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import MetaData, Table, select

from agents.core.contract import Outputs
from agents.core.events import DECODERS
from agents.core.settings import Settings
from agents.infra import InfraProcessor, InfraSettings
from agents.registry import PROCESSORS
from stream_app import simulate
from stream_app.replay import run_replay
from stream_app.runtime import db
from stream_app.runtime.sink import Sink
from tests.infra_data import FAULT, SILENT, samples

Message = tuple[str, bytes]  # (topic, value)
SKIP_TABLES = {"pipeline_log", "schema_migrations"}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Orders, payments, ledger, forecasts and demand of the simulator, every scenario on."""
    out = tmp_path_factory.mktemp("sim") / "sim.jsonl"
    parser = argparse.ArgumentParser()
    simulate.add_arguments(parser)
    args = parser.parse_args(["--domains", "orders,forecast", "--history-days", "2", "--duration", "6h",
                              "--start", "2026-02-01T00:00:00Z", "--scenario", "all", "--seed", "11",
                              "--out", str(out), "--quiet", "--speed", "max"])
    simulate.write_file(simulate.plan_from_args(args), stderr=io.StringIO())
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def infra_messages() -> list[Message]:
    return [("metrics.samples", orjson.dumps({"samples": b}))
            for b in samples(days=3.0, faults=(FAULT,), silent=SILENT)]


def messages_of(use_case: str, simulated: list[dict[str, Any]]) -> list[Message]:
    if use_case == "infra":
        return infra_messages()
    topics = PROCESSORS[use_case](Settings()).topics
    lines = [line for line in simulated if line["topic"] in topics]
    if use_case == "recon":  # half the orders, payments and ledger entries are plenty (and quick)
        lines = lines[len(lines) // 2:]
    return [(line["topic"], orjson.dumps({k: v for k, v in line.items() if k != "topic"})) for line in lines]


def delivered_twice(messages: list[Message], seed: int = 5) -> list[Message]:
    """Every message again, 0-20 messages after the first copy."""
    rng = random.Random(seed)
    slots = [(i, 0, m) for i, m in enumerate(messages)] + [(i + rng.randint(0, 20), 1, m)
                                                         for i, m in enumerate(messages)]
    return [m for _, _, m in sorted(slots, key=lambda s: (s[0], s[1]))]


def processor_for(use_case: str) -> Any:
    if use_case == "infra":
        return InfraProcessor(InfraSettings(interval_seconds=300.0))
    return PROCESSORS[use_case](Settings())


async def _tables(url: str) -> dict[str, list[tuple]]:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda sync: sync.dialect.get_table_names(sync))
            metadata = MetaData()
            out = {}
            for name in sorted(set(names) - SKIP_TABLES):
                table = await conn.run_sync(lambda sync, n=name: Table(n, metadata, autoload_with=sync))
                out[name] = sorted(tuple(r) for r in (await conn.execute(select(table))).all())
            return out
    finally:
        await engine.dispose()


def replayed(tmp_path: Path, name: str, use_case: str, messages: Iterable[Message]) -> tuple[dict, list]:
    """``spcwatch replay`` over the messages (a multi-topic use case's lines carry their topic)."""
    path, url = tmp_path / f"{name}.jsonl", f"sqlite+aiosqlite:///{tmp_path / name}.db"
    single = len(processor_for(use_case).topics) == 1
    path.write_bytes(b"".join(
        (value if single else orjson.dumps({"topic": topic, **orjson.loads(value)})) + b"\n"
        for topic, value in messages))
    out = io.StringIO()
    asyncio.run(run_replay(Settings(db_url=url), processor_for(use_case), path, out))
    return asyncio.run(_tables(url)), [orjson.loads(line) for line in out.getvalue().splitlines()]


def streamed(tmp_path: Path, name: str, use_case: str, messages: Iterable[Message]) -> tuple[dict, list]:
    """The processor message by message in arrival order, as the worker's runner feeds it (a batch
    at once, ticks on the highest event time), rows through the sink; alerts in order."""
    url = f"sqlite+aiosqlite:///{tmp_path / name}.db"

    async def run() -> list[dict]:
        engine = db.create_engine(url)
        await db.upgrade(engine)
        sink = Sink(engine)
        processor, store, alerts = processor_for(use_case), {}, []
        pending = Outputs()  # rows of a key keep their order: one write at the end, as a checkpoint's
        watermark = last_tick = 0.0

        async def emit(outputs: Any) -> None:
            pending.merge(Outputs(rows=outputs.rows))
            for alert in outputs.alerts:
                alerts.append(alert.to_event())
                pending.add_row("alerts", alert.to_row())

        try:
            for topic, value in messages:
                events = DECODERS[topic](value).events
                await emit(processor.process(store, topic, events))
                watermark = max(watermark, *(e.ts for e in events))
                if watermark - last_tick >= 60:
                    await emit(processor.tick(store, watermark))
                    last_tick = watermark
            await emit(processor.tick(store, watermark))
            await emit(processor.tick(store, watermark))
            for table, rows in pending.rows.items():
                await sink.upsert(table, rows)
        finally:
            await engine.dispose()
        return alerts

    alerts = asyncio.run(run())
    return asyncio.run(_tables(url)), alerts


USE_CASES = ("infra", "store", "recon", "forecast", "menu")


@pytest.mark.parametrize("use_case", USE_CASES)
def test_every_message_delivered_twice_changes_no_row_and_no_alert(
        use_case: str, simulated: list[dict[str, Any]], tmp_path: Path) -> None:
    messages = messages_of(use_case, simulated)
    twice = delivered_twice(messages)
    for run in (replayed, streamed):
        once_tables, once_alerts = run(tmp_path, f"{run.__name__}-once", use_case, messages)
        twice_tables, twice_alerts = run(tmp_path, f"{run.__name__}-twice", use_case, twice)
        assert sum(map(len, once_tables.values())) > 0
        for table, rows in once_tables.items():
            assert twice_tables[table] == rows, f"{run.__name__}: {table} differs"
        assert twice_alerts == once_alerts, run.__name__


def test_the_same_samples_in_two_different_batches_change_nothing(tmp_path: Path) -> None:
    """Each sample in its own batch and again in a batch with the resource's next timestamp (a
    collector that re-sends a window): first one wins."""
    batches = list(samples(days=3.0, faults=(FAULT,), silent=SILENT))
    messages = [("metrics.samples", orjson.dumps({"samples": b})) for b in batches]
    previous: dict[str, list[dict]] = {}
    overlapping: list[Message] = []
    for batch in batches:
        rid = batch[0]["resource_id"]
        overlapping.append(("metrics.samples", orjson.dumps({"samples": batch})))
        if rid in previous:
            overlapping.append(("metrics.samples", orjson.dumps({"samples": previous[rid] + batch})))
        previous[rid] = batch
    once = streamed(tmp_path, "once", "infra", messages)
    again = streamed(tmp_path, "overlapping", "infra", overlapping)
    assert again[0] == once[0]
    assert again[1] == once[1] and any(a["rule"] == "WE1" for a in once[1])
