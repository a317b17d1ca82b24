"""Runtime.write_behind: checkpoint rows committed in order, in the background, acknowledged after."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agents.core.settings import Settings
from stream_app.runtime import db
from stream_app.runtime.app import MAX_PENDING_WRITES, Runtime
from stream_app.runtime.metrics import SpcMetrics
from stream_app.runtime.sink import Sink
from tests.stream_app.runtime.test_sink import alert_row

pytestmark = pytest.mark.integration


class _App:
    """What write_behind asks of the Faust app: to crash (the real worker's stop is tested in test_worker)."""

    def __init__(self) -> None:
        self.crashed: BaseException | None = None

    async def crash(self, exc: BaseException) -> None:
        self.crashed = exc


@pytest.fixture
async def runtime(db_url: str):  # type: ignore[no-untyped-def]
    engine = db.create_engine(db_url)
    await db.upgrade(engine)
    registry = CollectorRegistry()
    yield Runtime(settings=Settings(), app=_App(), metrics=SpcMetrics(registry),  # type: ignore[arg-type]
                  registry=registry, sink=Sink(engine))
    await engine.dispose()


async def _statuses(runtime: Runtime) -> dict[str, str]:
    async with runtime.sink.engine.connect() as conn:
        result = await conn.exec_driver_sql("SELECT alert_id, status FROM alerts")
        return dict(result.all())


async def test_rows_commit_in_order_and_acknowledgements_follow_their_commit(runtime: Runtime) -> None:
    acked: list[tuple[int, dict[str, str]]] = []
    pending: list[asyncio.Future[Any]] = []

    def ack(n: int) -> Any:
        def then() -> None:
            # Runs after the commit: the rows of checkpoint n must be visible now.
            pending.append(asyncio.ensure_future(_statuses(runtime)))
            acked.append((n, {}))
        return then

    status = ["firing", "resolved", "firing", "resolved", "firing"]
    for n, s in enumerate(status):
        await runtime.write_behind({"alerts": [alert_row(1, status=s), alert_row(2 + n)]}, ack(n))
        assert len(runtime._writes) <= MAX_PENDING_WRITES
    await asyncio.gather(*runtime._writes)
    seen = await asyncio.gather(*pending)
    assert [n for n, _ in acked] == [0, 1, 2, 3, 4]  # in the order asked
    final = await _statuses(runtime)
    assert final["a-00001"] == "firing"  # the last write of the key wins
    assert {f"a-{2 + n:05d}" for n in range(5)} <= set(final)
    assert all("a-00002" in rows for rows in seen)


class _GatedSink:
    """Each checkpoint's write finishes when the test opens its gate: the write queue's logic, not the database."""

    def __init__(self) -> None:
        self.gates: dict[int, asyncio.Event] = {}
        self.order: list[int] = []

    async def upsert(self, table: str, rows: list[dict[str, Any]]) -> int:
        n = rows[0]["n"]
        await self.gates.setdefault(n, asyncio.Event()).wait()
        self.order.append(n)
        return len(rows)


async def test_a_checkpoint_waiting_on_a_full_writer_keeps_its_place_in_the_order() -> None:
    """A partition's input agent and its tick agent checkpoint concurrently. Checkpoint 2 waits on
    the full writer; its wait ends, but before it resumes checkpoint 3 arrives and finds room.
    Written (and its state published) after 3, checkpoint 2's older snapshot of a key would
    overwrite 3's newer one in the changelog; with more agents waiting the same way, writes
    were popped twice (IndexError, seen in a benchmark)."""
    sink = _GatedSink()
    runtime = Runtime(settings=Settings(), app=_App(), metrics=SpcMetrics(CollectorRegistry()),  # type: ignore[arg-type]
                      registry=CollectorRegistry(), sink=sink)  # type: ignore[arg-type]
    acked: list[int] = []

    def checkpoint(n: int) -> Any:
        return runtime.write_behind({"t": [{"n": n}]}, lambda: acked.append(n))

    for n in range(MAX_PENDING_WRITES):
        await checkpoint(n)
    waiting = asyncio.ensure_future(checkpoint(MAX_PENDING_WRITES))
    await asyncio.sleep(0)
    assert not waiting.done()  # back-pressure: the writer is full
    sink.gates.setdefault(0, asyncio.Event()).set()
    await asyncio.sleep(0)  # the first write finishes; the waiting checkpoint is woken, not yet resumed
    assert runtime._writes[0].done()

    async def finish_the_rest() -> None:
        await asyncio.sleep(0.01)
        for n in range(1, MAX_PENDING_WRITES + 2):
            sink.gates.setdefault(n, asyncio.Event()).set()

    finishing = asyncio.ensure_future(finish_the_rest())
    await checkpoint(MAX_PENDING_WRITES + 1)  # another agent's checkpoint, taken later, before the first resumes
    await asyncio.gather(waiting, finishing)
    await runtime.drain_writes()
    expected = list(range(MAX_PENDING_WRITES + 2))
    assert sink.order == expected and acked == expected


async def test_a_checkpoint_without_rows_waits_for_no_room_and_acknowledges_after_the_writes_before_it() -> None:
    """Tick agents checkpoint every few seconds, mostly with nothing to write: holding a place in the
    full writer, they made the agents that do write wait (alert latency p99 0.2 s -> 1 s)."""
    sink = _GatedSink()
    runtime = Runtime(settings=Settings(), app=_App(), metrics=SpcMetrics(CollectorRegistry()),  # type: ignore[arg-type]
                      registry=CollectorRegistry(), sink=sink)  # type: ignore[arg-type]
    acked: list[str] = []
    for n in range(MAX_PENDING_WRITES):
        await runtime.write_behind({"t": [{"n": n}]}, lambda n=n: acked.append(f"write {n}"))
    await asyncio.wait_for(runtime.write_behind({}, lambda: acked.append("empty")), 1.0)  # no wait for room
    assert len(runtime._writes) == MAX_PENDING_WRITES and acked == []
    for n in range(MAX_PENDING_WRITES):
        sink.gates.setdefault(n, asyncio.Event()).set()
    await runtime.drain_writes()
    await asyncio.sleep(0)  # done-callbacks run on the next turn of the loop
    assert acked == [f"write {n}" for n in range(MAX_PENDING_WRITES)] + ["empty"]


async def test_a_checkpoint_without_rows_acknowledges_at_once_when_nothing_is_pending(runtime: Runtime) -> None:
    acked = []
    await runtime.write_behind({}, lambda: acked.append(1))
    assert acked == [1]
    assert not runtime._writes


async def test_a_failed_write_withholds_its_acks_and_later_ones_and_raises_in_the_caller(runtime: Runtime) -> None:
    acked: list[int] = []
    bad = {**alert_row(9), "no_such_column": 1}
    await runtime.write_behind({"alerts": [bad]}, lambda: acked.append(1))
    await runtime.write_behind({"alerts": [alert_row(10)]}, lambda: acked.append(2))
    with pytest.raises(Exception, match="no_such_column"):
        for _ in range(MAX_PENDING_WRITES + 1):
            await runtime.write_behind({"alerts": [alert_row(11)]}, lambda: acked.append(3))
    await asyncio.gather(*runtime._writes, return_exceptions=True)
    assert acked == []  # nothing after the failure is acknowledged: it will be redelivered
    assert "no_such_column" in repr(runtime.app.crashed)  # and the worker is stopped
