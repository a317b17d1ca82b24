"""Batched, idempotent database writes.

Every row has a natural key (the table's primary key), so writing is an upsert:
replaying input rewrites the same rows instead of adding new ones. A call to
:meth:`Sink.upsert` returns only once the rows are committed; agents await it
before they move past the input that produced the rows, so Faust never commits
an offset whose rows are not in the database (at-least-once, no loss).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import orjson
from pymysql.converters import escape_bool, escape_float
from pymysql.cursors import RE_INSERT_VALUES
from sqlalchemy import MetaData, Table
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stream_app.runtime.metrics import SpcMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")

# MySQL errors worth retrying: deadlock, lock wait timeout, gone away, lost
# connection, can't connect, server shutdown, too many connections.
_MYSQL_TRANSIENT = {1040, 1053, 1205, 1213, 2002, 2003, 2006, 2013, 2055}


MAX_STATEMENT_CHARS = 1_000_000
"""Largest multi-row INSERT the sink sends to MySQL (aiomysql's ``executemany`` uses the same bound)."""
_NO_PARAMETERS = {"no_parameters": True}  # literal SQL: the driver must not %-format it


class SinkUnavailable(RuntimeError):
    """The database stayed unreachable for longer than the retry budget."""


class DatabaseTimeout(TimeoutError):
    """A database call got no answer within ``SPCWATCH_DB_TIMEOUT_SECONDS`` (transient: retried)."""


def _consume_result(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned attempt's outcome, so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


def is_transient(exc: BaseException) -> bool:
    """Errors a retry can fix (connectivity, locks), as opposed to bad rows or SQL."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        code = getattr(exc.orig, "args", (None,))[0] if exc.orig is not None else None
        if isinstance(code, int):
            return code in _MYSQL_TRANSIENT
        return "locked" in str(exc.orig) or "unable to open" in str(exc.orig)
    return isinstance(exc, ConnectionError | OSError | asyncio.TimeoutError)


# MySQL/MariaDB errors caused by the values of a row, not by the database or the SQL: data too
# long (1406), out of range (1264, 1690), incorrect value (1366, 1292, 1367), truncated (1265),
# NULL in a NOT NULL column (1048), a trigger's SIGNAL (1644), a CHECK constraint (3819, 4025).
_MYSQL_ROW_ERRORS = {1048, 1264, 1265, 1292, 1366, 1367, 1406, 1644, 1690, 3819, 4025}


def is_row_error(exc: BaseException) -> bool:
    """A write refused for the values of its rows (one bad row fails the whole statement)."""
    if not isinstance(exc, DBAPIError) or exc.orig is None or is_transient(exc):
        return False
    code = getattr(exc.orig, "args", (None,))[0]
    if isinstance(code, int):
        return code in _MYSQL_ROW_ERRORS
    return isinstance(exc, IntegrityError)  # SQLite: NOT NULL, CHECK


def database_message(exc: BaseException) -> str:
    """The database's own words for an error (``1406: Data too long for column ...``)."""
    args = getattr(getattr(exc, "orig", None), "args", None) or (str(exc),)
    if len(args) >= 2 and isinstance(args[0], int):
        return f"{args[0]}: {args[1]}"
    return str(args[0])


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _mysql_datetime(value: datetime) -> str:
    # What PyMySQL's own escaping writes: microseconds only when there are any.
    return value.isoformat(" ", "microseconds" if value.microsecond else "seconds")


def _sqlite_datetime(value: datetime) -> str:
    # SQLAlchemy's SQLite storage format (always microseconds), so its reads and binds compare equal.
    return value.isoformat(" ", "microseconds")


class _MySQLLiterals:
    """Values as the SQL literals a MySQL driver's ``executemany`` would write, at a fraction of the cost.

    aiomysql escapes every value through three generic calls and a type dispatch: ~7 µs of
    the writing process's CPU for a row of ten columns, more than the database spends
    storing it. This writes the same literals (PyMySQL's own escaping functions; strings
    through the connection's ``escape_string``, which knows the server's
    ``NO_BACKSLASH_ESCAPES`` mode) with one type check per value, and escapes each distinct
    string or timestamp of a write once (series ids, metric names and minutes repeat from
    row to row). Other types go to the driver's generic ``escape``.
    """

    def __init__(self, convert: _Converter, escape_string: Callable[[str], str],
                 escape: Callable[[Any], str]) -> None:
        self._convert = convert
        self._escape_string = escape_string
        self._escape = escape
        self._text: dict[Any, str] = {}  # str or datetime -> its literal, for one write

    def literal(self, value: Any) -> str:
        kind = type(value)
        if kind is float:
            return escape_float(value)
        if kind is int:
            return int.__repr__(value)
        if value is None:
            return "NULL"
        if kind is bool:
            return escape_bool(value)
        hashable = kind is str or kind is datetime
        if hashable:
            text = self._text.get(value)
            if text is not None:
                return text
        converted = value if kind is str else self._convert(value)  # datetime, date, JSON -> str
        text = ("'" + self._escape_string(converted) + "'" if type(converted) is str
                else self._escape(converted))
        if hashable:
            self._text[value] = text
        return text

    def rows(self, rows: Sequence[Mapping[str, Any]], order: Sequence[str]) -> list[str]:
        """One ``(v1,v2,...)`` tuple of literals per row, columns in ``order``."""
        literal = self.literal
        return ["(" + ",".join([literal(row[column]) for column in order]) + ")" for row in rows]


class _Converter:
    """Python values to what the driver takes, once per value, without SQLAlchemy's per-row machinery.

    Timestamps of a checkpoint repeat (every series shares the minute), so their
    text is cached.
    """

    def __init__(self, dialect: str) -> None:
        self._datetime_text = _mysql_datetime if dialect == "mysql" else _sqlite_datetime
        self._cache: dict[datetime, str] = {}

    def __call__(self, value: Any) -> Any:
        if type(value) in _PLAIN:
            return value
        if isinstance(value, datetime):
            text = self._cache.get(value)
            if text is None:
                if len(self._cache) > 100_000:
                    self._cache.clear()
                naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
                text = self._cache[value] = self._datetime_text(naive)
            return text
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, dict | list | tuple):
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        return value


class Sink:
    """Upserts rows by primary key, in batches, retrying transient failures."""

    def __init__(
        self,
        engine: AsyncEngine,
        metrics: SpcMetrics | None = None,
        *,
        batch_size: int = 1000,
        retry_max_seconds: float = 300.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        timeout_seconds: float = 30.0,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.batch_size = batch_size
        self.retry_max_seconds = retry_max_seconds
        self.timeout_seconds = timeout_seconds
        self.failing_since: float | None = None
        """Monotonic time of the first failed attempt of the current outage; None while writes succeed."""
        self.last_error = ""
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._tables: dict[str, Table] = {}
        self._statements: dict[tuple[str, tuple[str, ...]], tuple[str, tuple[str, ...]]] = {}
        self._convert = _Converter(engine.dialect.name)

    async def _table(self, name: str) -> Table:
        table = self._tables.get(name)
        if table is None:
            metadata = MetaData()
            async with self.engine.connect() as conn:
                table = await conn.run_sync(lambda sync: Table(name, metadata, autoload_with=sync))
            if not table.primary_key.columns:
                raise ValueError(f"table {name!r} has no primary key: upserts need a natural key")
            self._tables[name] = table
        return table

    @staticmethod
    def _segments(table: Table,
                  rows: Sequence[Mapping[str, Any]]) -> list[dict[tuple[str, ...], list[Mapping[str, Any]]]]:
        """Rows by column set, only the last row of each key in each, in segments run one after another.

        Within a segment a key has one column set, so the statements of a segment can run in any
        order; a row that gives a key another column set (a partial upsert after a full one, say)
        starts the next segment, so writes of a key are never reordered.
        """
        keys = [c.name for c in table.primary_key.columns]
        segments: list[dict[tuple[str, ...], dict[tuple[Any, ...], Mapping[str, Any]]]] = [{}]
        shape_of: dict[tuple[Any, ...], tuple[str, ...]] = {}
        for row in rows:
            shape, key = tuple(row), tuple(row.get(k) for k in keys)
            if shape_of.setdefault(key, shape) != shape:
                segments.append({})
                shape_of = {key: shape}
            segments[-1].setdefault(shape, {})[key] = row
        return [{shape: list(by_key.values()) for shape, by_key in segment.items()} for segment in segments]

    def _statement(self, table: Table, shape: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
        """The driver-level upsert for one column set, compiled once and cached.

        Returns the SQL and its parameter order (the table's column order).
        Executed with ``executemany``: the drivers batch it into multi-row
        INSERTs themselves, which costs far less than compiling a statement with
        a thousand VALUES tuples or letting SQLAlchemy process every row.
        """
        cached = self._statements.get((table.name, shape))
        if cached is not None:
            return cached
        keys = {c.name for c in table.primary_key.columns}
        columns = [c for c in shape if c not in keys]
        if self.engine.dialect.name == "mysql":
            insert = mysql_insert(table)
            stmt = (insert.prefix_with("IGNORE") if not columns
                    else insert.on_duplicate_key_update({c: insert.inserted[c] for c in columns}))
        else:
            insert = sqlite_insert(table)
            stmt = (insert.on_conflict_do_nothing(index_elements=list(keys)) if not columns
                    else insert.on_conflict_do_update(index_elements=list(keys),
                                                      set_={c: insert.excluded[c] for c in columns}))
        compiled = stmt.compile(dialect=self.engine.dialect, column_keys=list(shape))
        order = tuple(compiled.positiontup or ())
        if sorted(order) != sorted(shape):
            raise ValueError(f"unexpected parameters for {table.name}: {order}")
        statement = self._statements[(table.name, shape)] = (compiled.string, order)
        return statement

    async def _write_literals(self, conn: AsyncConnection,
                              prepared: list[tuple[tuple[str, tuple[str, ...]], list[Mapping[str, Any]]]]) -> None:
        """MySQL: multi-row INSERTs of literal rows (see :class:`_MySQLLiterals`), as ``executemany`` builds them.

        The next statement is rendered while the server executes the previous one: rendering
        is CPU here and executing is CPU there, and one after the other left both half idle.
        """
        driver = (await conn.get_raw_connection()).driver_connection
        literals = _MySQLLiterals(self._convert, driver.escape_string, driver.escape)
        in_flight: asyncio.Future[Any] | None = None
        try:
            for statement in self._literal_statements(literals, prepared):
                if in_flight is not None:
                    await in_flight
                in_flight = asyncio.ensure_future(conn.exec_driver_sql(statement, execution_options=_NO_PARAMETERS))
                await asyncio.sleep(0)  # let it send the statement before the next is rendered
            if in_flight is not None:
                await in_flight
        except BaseException:
            if in_flight is not None and not in_flight.done():
                # Never leave the connection with a statement half-way: let it finish, then raise.
                await asyncio.gather(in_flight, return_exceptions=True)
            raise

    def _literal_statements(self, literals: _MySQLLiterals,
                            prepared: list[tuple[tuple[str, tuple[str, ...]], list[Mapping[str, Any]]]],
                            ) -> Iterator[str]:
        """The INSERTs, rendered one at a time: at most ``batch_size`` rows and about
        ``MAX_STATEMENT_CHARS`` characters each, well below the servers' ``max_allowed_packet``."""
        for (sql, order), shape_rows in prepared:
            match = RE_INSERT_VALUES.match(sql)
            if match is None:
                raise ValueError(f"not a multi-row INSERT: {sql[:80]}")
            prefix, postfix = match.group(1) % (), (match.group(3) or "") % ()
            for i in range(0, len(shape_rows), self.batch_size):
                chunk: list[str] = []
                size = 0
                for values in literals.rows(shape_rows[i:i + self.batch_size], order):
                    if chunk and size + len(values) > MAX_STATEMENT_CHARS:
                        yield prefix + ",".join(chunk) + postfix
                        chunk, size = [], 0
                    chunk.append(values)
                    size += len(values) + 1
                yield prefix + ",".join(chunk) + postfix

    async def _transaction(self, prepared: list[tuple[tuple[str, tuple[str, ...]], list[Mapping[str, Any]]]]) -> None:
        async with self.engine.begin() as conn:
            if self.engine.dialect.name == "mysql":
                await self._write_literals(conn, prepared)
            else:
                convert = self._convert
                for (sql, order), shape_rows in prepared:
                    params = [tuple(convert(row[c]) for c in order) for row in shape_rows]
                    for i in range(0, len(params), self.batch_size):
                        await conn.exec_driver_sql(sql, params[i:i + self.batch_size])

    async def _within_timeout(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work``; after ``timeout_seconds`` without an answer raise :class:`DatabaseTimeout`.

        A database that is frozen (or a network that drops packets) never answers, not even
        the ROLLBACK a cancelled transaction sends: waiting for the cancellation to finish
        would hang as well. So the attempt is cancelled and left to end on its own (its
        connection goes back to the pool or is dropped when the database answers again; a
        transaction it may still commit holds the locks of its rows, so a later write of
        those rows comes after it).
        """
        task = asyncio.ensure_future(work)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timeout_seconds)
        except BaseException:
            task.cancel()
            raise
        if not done:
            task.cancel()
            task.add_done_callback(_consume_result)
            raise DatabaseTimeout(f"no answer within {self.timeout_seconds:g}s (SPCWATCH_DB_TIMEOUT_SECONDS)")
        return task.result()

    def _failed(self, exc: BaseException) -> None:
        """One WARNING per outage (not per retry); /health reports it until a write succeeds."""
        text = str(exc).splitlines()[0][:300] if str(exc) else ""
        self.last_error = f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            log.warning("sink: a database write failed (%s); retrying for up to %.0fs "
                        "(SPCWATCH_SINK_RETRY_MAX_SECONDS), nothing is acknowledged meanwhile",
                        self.last_error, self.retry_max_seconds)

    def unavailable(self) -> str | None:
        """Why the database counts as unavailable now (for /health), or None."""
        if self.failing_since is None:
            return None
        return (f"database: writes failing for {time.monotonic() - self.failing_since:.0f}s "
                f"({self.last_error})")

    async def isolate(self, table_name: str,
                      rows: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], str]]:
        """Write ``rows`` whose write failed with a row error: bisect down to the rows the database
        refuses, write every other row, and return the refused ones with the database's message.

        Halves are written in order, so the last write of a key still wins. Any other error
        (the database down past the retry budget, a missing table) raises as from :meth:`upsert`.
        """
        rejected: list[tuple[Mapping[str, Any], str]] = []

        async def write(part: Sequence[Mapping[str, Any]]) -> None:
            try:
                await self.upsert(table_name, part)
            except Exception as exc:
                if not is_row_error(exc):
                    raise
                if len(part) == 1:
                    rejected.append((part[0], database_message(exc)))
                    return
                await write(part[:len(part) // 2])
                await write(part[len(part) // 2:])

        if len(rows) == 1:
            await write(rows)
        else:
            await write(rows[:len(rows) // 2])
            await write(rows[len(rows) // 2:])
        return rejected

    async def upsert(self, table_name: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Write ``rows`` in one transaction; returns the row count once committed.

        Transient failures are retried with capped exponential backoff and
        jitter until ``retry_max_seconds``; then :class:`SinkUnavailable`.
        Anything else (bad SQL, constraint violations) raises at once.
        """
        if not rows:
            return 0
        started = time.monotonic()
        # Rows with the same columns go in one statement; a row that leaves a
        # column out leaves it unchanged on update (a partial upsert). Within a
        # shape only the last row of each key is sent: the same end state as
        # upserting them one after another, for less work.
        delay = self.backoff_initial
        attempt = 0
        prepared: list[tuple[tuple[str, tuple[str, ...]], list[Mapping[str, Any]]]] | None = None
        while True:
            attempt += 1
            try:
                if prepared is None:
                    table = await self._within_timeout(self._table(table_name))
                    prepared = [(self._statement(table, shape), shape_rows)
                                for segment in self._segments(table, rows)
                                for shape, shape_rows in segment.items()]
                await self._within_timeout(self._transaction(prepared))
                break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if self.metrics:
                    self.metrics.sink_errors.labels(table_name).inc()
                self._failed(exc)
                elapsed = time.monotonic() - started
                if elapsed >= self.retry_max_seconds:
                    raise SinkUnavailable(
                        f"writing {len(rows)} rows to {table_name!r} failed for {elapsed:.0f}s "
                        f"(SPCWATCH_SINK_RETRY_MAX_SECONDS): {self.last_error}"
                    ) from exc
                log.debug("sink: %s write failed (attempt %d, %s); retrying in %.1fs",
                          table_name, attempt, exc.__class__.__name__, delay)
                await asyncio.sleep(min(delay, max(0.0, self.retry_max_seconds - elapsed)))
                delay = min(self.backoff_max, delay * 2) * (0.8 + 0.4 * random.random())
        if self.failing_since is not None:
            log.warning("sink: the database answers again after %.0fs of failed writes",
                        time.monotonic() - self.failing_since)
            self.failing_since = None
        if self.metrics:
            self.metrics.sink_batches.labels(table_name).inc()
            self.metrics.sink_rows.labels(table_name).inc(len(rows))
            self.metrics.sink_seconds.labels(table_name).observe(time.monotonic() - started)
        return len(rows)
