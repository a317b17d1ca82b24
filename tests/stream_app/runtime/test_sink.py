"""The sink against real databases: idempotent upserts and retries."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url

from stream_app.runtime import db
from stream_app.runtime.metrics import SpcMetrics
from stream_app.runtime.sink import Sink, SinkUnavailable

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 17, 10, 5, tzinfo=UTC)


def alert_row(i: int, status: str = "firing", value: float = 97.2) -> dict:
    return {
        "alert_id": f"a-{i:05d}", "status": status, "severity": "warning", "use_case": "infra",
        "rule": "WE1", "rules": ["WE1"], "entity": {"resource_id": f"r{i}", "metric": "cpu"},
        "entity_key": f"r{i}|cpu", "value": value, "expected_center": 41.0, "expected_lower": 12.3,
        "expected_upper": 69.7, "zscore": 5.9, "starts_at": T0 + timedelta(minutes=i),
        "ends_at": None, "summary": "cpu high", "runbook_url": None, "updated_at": T0,
    }


async def _rows(engine) -> list[tuple]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql(
            "SELECT alert_id, status, value, entity, starts_at, ends_at FROM alerts ORDER BY alert_id")
        return [tuple(r) for r in result]


@pytest.fixture
async def engine(db_url: str):  # type: ignore[no-untyped-def]
    engine = db.create_engine(db_url)
    await db.upgrade(engine)
    yield engine
    await engine.dispose()


async def test_same_batch_twice_gives_the_same_rows(engine) -> None:  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    sink = Sink(engine, SpcMetrics(registry), batch_size=7)  # several statements per call
    rows = [alert_row(i) for i in range(25)]
    assert await sink.upsert("alerts", rows) == 25
    first = await _rows(engine)
    assert await sink.upsert("alerts", rows) == 25
    assert await _rows(engine) == first
    assert len(first) == 25
    assert registry.get_sample_value("spcwatch_sink_rows_total", {"table": "alerts"}) == 50
    assert registry.get_sample_value("spcwatch_sink_batches_total", {"table": "alerts"}) == 2
    alert_id, status, value, entity, starts_at, ends_at = first[3]
    assert (alert_id, status, value, ends_at) == ("a-00003", "firing", 97.2, None)
    assert orjson.loads(entity) == {"metric": "cpu", "resource_id": "r3"}
    assert str(starts_at).startswith("2026-02-17 10:08:00")  # stored as naive UTC


async def test_upsert_updates_non_key_columns(engine) -> None:  # type: ignore[no-untyped-def]
    sink = Sink(engine)
    await sink.upsert("alerts", [alert_row(1)])
    resolved = {**alert_row(1, status="resolved", value=50.0), "ends_at": T0 + timedelta(hours=1)}
    await sink.upsert("alerts", [resolved])
    ((alert_id, status, value, _entity, _starts, ends_at),) = await _rows(engine)
    assert (alert_id, status, value) == ("a-00001", "resolved", 50.0)
    assert str(ends_at).startswith("2026-02-17 11:05:00")


async def test_a_row_without_a_column_leaves_that_column_unchanged(engine) -> None:  # type: ignore[no-untyped-def]
    sink = Sink(engine)
    await sink.upsert("alerts", [alert_row(1), alert_row(2)])
    partial = alert_row(1, status="resolved", value=50.0)
    del partial["summary"]  # a nullable column the update must not touch
    await sink.upsert("alerts", [alert_row(3), partial])
    rows = {r[0]: r for r in await _rows(engine)}
    assert set(rows) == {"a-00001", "a-00002", "a-00003"}
    assert rows["a-00001"][1:3] == ("resolved", 50.0)
    async with engine.connect() as conn:
        summary = (await conn.exec_driver_sql("SELECT summary FROM alerts WHERE alert_id = 'a-00001'")).scalar()
    assert summary == "cpu high"


async def test_writes_of_a_key_keep_their_order_across_column_sets(engine) -> None:  # type: ignore[no-untyped-def]
    """One batch: a partial row of key 2 first opens its column set, then key 1 full, partial, full again.

    Statements per column set in first-seen order would run key 1's last (full) row before its
    partial one and leave the partial row's status.
    """
    sink = Sink(engine)
    partial = alert_row(2, status="resolved")
    del partial["summary"]
    first_partial = {**alert_row(1, status="resolved"), "summary": None}
    del first_partial["summary"]
    await sink.upsert("alerts", [alert_row(2), partial, alert_row(1, status="firing"), first_partial,
                                 alert_row(1, status="firing", value=1.5)])
    rows = {r[0]: r for r in await _rows(engine)}
    assert rows["a-00001"][1:3] == ("firing", 1.5)  # the last row of the key wins
    assert rows["a-00002"][1] == "resolved"


async def test_non_transient_errors_raise_at_once(engine) -> None:  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    bad = {**alert_row(1), "status": None}  # NOT NULL violation: retrying cannot help
    with pytest.raises(Exception) as info:
        await Sink(engine, SpcMetrics(registry), retry_max_seconds=30).upsert("alerts", [bad])
    assert not isinstance(info.value, SinkUnavailable)
    assert registry.get_sample_value("spcwatch_sink_errors_total", {"table": "alerts"}) is None


class FlakyProxy:
    """A TCP proxy to the database that can refuse service, like a restarting server."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.serving = False
        self.server: asyncio.AbstractServer | None = None
        self.refused = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.serving:
            self.refused += 1
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def stop(self) -> None:
        if self.server:
            self.server.close()


async def test_sink_retries_until_the_database_is_back(mysql_url: str) -> None:
    migrate = db.create_engine(mysql_url)
    await db.upgrade(migrate)
    url = make_url(mysql_url)
    proxy = FlakyProxy(url.host or "127.0.0.1", url.port or 3306)
    port = await proxy.start()
    engine = db.create_engine(url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False))
    registry = CollectorRegistry()
    sink = Sink(engine, SpcMetrics(registry), retry_max_seconds=60, backoff_initial=0.1, backoff_max=0.5)
    try:
        write = asyncio.create_task(sink.upsert("alerts", [alert_row(i) for i in range(10)]))
        await asyncio.sleep(1.5)
        assert not write.done(), "the write cannot have succeeded while the database was down"
        proxy.serving = True
        assert await asyncio.wait_for(write, 30) == 10
        assert proxy.refused >= 2
        assert registry.get_sample_value("spcwatch_sink_errors_total", {"table": "alerts"}) >= 2
        assert len(await _rows(migrate)) == 10
    finally:
        await proxy.stop()
        await engine.dispose()
        await migrate.dispose()


async def test_sink_gives_up_after_its_retry_budget(mysql_url: str) -> None:
    migrate = db.create_engine(mysql_url)
    await db.upgrade(migrate)
    url = make_url(mysql_url)
    proxy = FlakyProxy(url.host or "127.0.0.1", url.port or 3306)
    port = await proxy.start()
    engine = db.create_engine(url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False))
    try:
        with pytest.raises(SinkUnavailable, match="failed for"):
            await Sink(engine, retry_max_seconds=1.0, backoff_initial=0.1).upsert("alerts", [alert_row(1)])
        assert await _rows(migrate) == []
    finally:
        await proxy.stop()
        await engine.dispose()
        await migrate.dispose()


async def test_rows_for_one_key_in_a_batch_end_as_the_last_one(engine) -> None:  # type: ignore[no-untyped-def]
    await Sink(engine).upsert("alerts", [alert_row(1, value=1.0), alert_row(2), alert_row(1, value=3.0)])
    rows = {r[0]: r for r in await _rows(engine)}
    assert len(rows) == 2 and rows["a-00001"][2] == 3.0


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_DOUBLE = st.one_of(st.just(0.0), st.floats(min_value=1e-300, max_value=1e300),
                    st.floats(min_value=-1e300, max_value=-1e-300))


def test_values_reach_the_database_exactly_as_given(db_url: str) -> None:
    """Whatever text, numbers, timestamps and JSON a row holds is read back unchanged.

    On MySQL the sink writes rows as literal SQL (``_MySQLLiterals``): quotes,
    backslashes, NULs, ``%`` and any Unicode must survive its escaping, and the text
    must not be %-formatted by the driver.
    """
    loop = asyncio.new_event_loop()
    engine = db.create_engine(db_url)
    loop.run_until_complete(db.upgrade(engine))
    sink = Sink(engine, batch_size=3)
    counter = iter(range(1_000_000))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rows=st.lists(st.tuples(_TEXT, _DOUBLE, st.datetimes(min_value=datetime(1971, 1, 1),
                                                               max_value=datetime(2037, 12, 31)),
                                   st.dictionaries(_TEXT, st.one_of(_TEXT, st.integers(-2**53, 2**53))),
                                   st.one_of(st.none(), _TEXT)), min_size=1, max_size=7))
    @example(rows=[("it's 100% \\ \"done\" %s %(x)s \x00", -1.5e-7, datetime(2026, 2, 17, 10, 5, 0, 123456),
                    {"k'%s": "\\'"}, None)])
    def write_and_read(rows: list[tuple[str, float, datetime, dict, str | None]]) -> None:
        ids = [f"p-{next(counter):07d}" for _ in rows]
        written = [{**alert_row(0), "alert_id": alert_id, "summary": text, "value": value,
                    "starts_at": ts.replace(tzinfo=UTC), "entity": entity, "runbook_url": url}
                   for alert_id, (text, value, ts, entity, url) in zip(ids, rows, strict=True)]

        async def round_trip() -> list[tuple]:
            await sink.upsert("alerts", written)
            async with engine.connect() as conn:
                result = await conn.exec_driver_sql(
                    "SELECT summary, value, starts_at, entity, runbook_url FROM alerts "
                    f"WHERE alert_id IN ({','.join(repr(i) for i in ids)}) ORDER BY alert_id")
                return [tuple(r) for r in result]

        read = loop.run_until_complete(round_trip())
        assert [(text, value, ts, orjson.loads(entity), url)
                for text, value, ts, entity, url in read] == [
            (text, value, _stored(ts, db_url), entity, url) for text, value, ts, entity, url in rows]

    try:
        write_and_read()
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()


def _stored(ts: datetime, db_url: str) -> datetime | str:
    """How a naive UTC timestamp reads back: a datetime from MySQL, SQLAlchemy's text from SQLite."""
    return ts if db_url.startswith("mysql") else ts.isoformat(" ", "microseconds")


async def test_a_row_that_cannot_be_written_fails_the_whole_upsert_and_leaves_the_connection_usable(
        mysql_url: str) -> None:
    """Statements are rendered while the previous one runs: a bad value in the third statement
    (NaN has no MySQL literal) fails the upsert after two were sent; none of it is committed."""
    engine = db.create_engine(mysql_url)
    try:
        await db.upgrade(engine)
        sink = Sink(engine, batch_size=2)
        rows = [alert_row(i) for i in range(6)]
        rows[4] = {**rows[4], "value": float("nan")}
        with pytest.raises(Exception, match="nan can not be used with MySQL"):
            await sink.upsert("alerts", rows)
        assert await _rows(engine) == []
        assert await sink.upsert("alerts", [alert_row(7)]) == 1
        assert [r[0] for r in await _rows(engine)] == ["a-00007"]
    finally:
        await engine.dispose()


async def test_isolate_writes_every_row_but_the_refused_one_and_returns_the_database_message(
        engine) -> None:  # type: ignore[no-untyped-def]
    rows = [alert_row(i) for i in range(9)]
    rows[5] = {**rows[5], "status": None}  # NOT NULL: a row error (MySQL 1048, SQLite IntegrityError)
    with pytest.raises(Exception) as info:
        await Sink(engine).upsert("alerts", rows)
    from stream_app.runtime.sink import is_row_error

    assert is_row_error(info.value)
    rejected = await Sink(engine, batch_size=2).isolate("alerts", rows)
    assert [row["alert_id"] for row, _ in rejected] == ["a-00005"]
    assert "status" in rejected[0][1]
    assert [r[0] for r in await _rows(engine)] == [f"a-{i:05d}" for i in range(9) if i != 5]


async def test_a_database_that_never_answers_times_out_and_counts_as_an_outage(caplog) -> None:  # type: ignore[no-untyped-def]
    """A black hole (accepts connections, never answers) like a frozen server: each attempt is cut
    at the timeout, retried, and the outage is one WARNING and what /health reports."""
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers, not even the handshake

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    engine = db.create_engine(f"mysql+aiomysql://u:p@127.0.0.1:{port}/x")
    registry = CollectorRegistry()
    sink = Sink(engine, SpcMetrics(registry), retry_max_seconds=2.5, backoff_initial=0.1, timeout_seconds=0.5)
    try:
        with caplog.at_level("WARNING", logger="stream_app.runtime.sink"):
            with pytest.raises(SinkUnavailable, match="DatabaseTimeout"):
                await sink.upsert("alerts", [alert_row(1)])
        assert registry.get_sample_value("spcwatch_sink_errors_total", {"table": "alerts"}) >= 2
        assert sum("a database write failed" in r.getMessage() for r in caplog.records) == 1
        assert (sink.unavailable() or "").startswith("database: writes failing for")
    finally:
        server.close()
        await engine.dispose()
