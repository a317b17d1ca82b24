"""Shared pieces of the benchmarks: timing, the sample payload, topic filling."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import pymysql
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

BOOTSTRAP = "127.0.0.1:9092"


def sample_message(i: int) -> bytes:
    """A ~150-byte single-sample message, like a CloudWatch metric sample."""
    return orjson.dumps({
        "ts": 1771322700 + i, "source": "cloudwatch", "resource_type": "rds",
        "resource_id": f"aws-db-{i % 1000:04d}", "metric": "CPUUtilization", "value": 40.0 + (i % 17),
    })


def median_of(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    values = [measure() for _ in range(runs)]
    return statistics.median(values), values


def unique(name: str) -> str:
    return f"bench.{name}.{uuid.uuid4().hex[:8]}"


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


async def fill_topic(bootstrap: str, topic: str, count: int, make: Callable[[int], bytes] = sample_message,
                     key: Callable[[int], bytes] | None = None) -> float:
    """Produce ``count`` messages as fast as the producer allows; returns messages/s."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024,
                                acks=1, compression_type=None)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for i in range(count):
            pending.append(await producer.send(topic, make(i), key=key(i) if key else None))
            if len(pending) >= 20000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count / (time.perf_counter() - started)


# --------------------------------------------------------------------------- a real worker

MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "spcwatch", "password": "spcwatch"}
ROOT = Path(__file__).resolve().parent.parent


def mysql_url(database: str) -> str:
    return f"mysql+aiomysql://spcwatch:spcwatch@127.0.0.1:3306/{database}"


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """An empty MariaDB database for one run (the worker migrates it), dropped afterwards."""
    database = f"spcwatch_bench_{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(**MYSQL, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{database}`")
        yield database
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        conn.close()


def consumed(port: int, topics: Iterable[str]) -> float:
    """``spcwatch_events_consumed_total`` of a worker, summed over ``topics``."""
    wanted = {f'topic="{t}"' for t in topics}
    total = 0.0
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("spcwatch_events_consumed_total{") and any(w in line for w in wanted):
                    total += float(line.rsplit(" ", 1)[1])
    except OSError:
        pass
    return total


def count_rows(database: str, table: str) -> int:
    """Rows in a table (0 while the database or table does not exist yet)."""
    try:
        conn = pymysql.connect(**MYSQL, database=database, autocommit=True)
    except pymysql.MySQLError:
        return 0
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            return int(cur.fetchone()[0])
    except pymysql.MySQLError:
        return 0
    finally:
        conn.close()


async def delete_prefixed(bootstrap: str, prefix: str) -> None:
    """Every topic of one run: inputs and what the worker created (alerts, ticks, changelogs)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
    finally:
        await admin.close()
    if names:
        await delete_topics(bootstrap, names)


METRICS_POLL_SECONDS = 1.0
"""How often the harness reads a worker's ``/metrics``. Rendering it costs the worker CPU
(~10 ms with thousands of label children): polled 20 times a second, as before 2026-11-26, it
took a quarter of the worker's time, which a Prometheus scraping every 15 s never would."""


ROWS_POLL_SECONDS = 0.5
"""How often the harness counts a run's rows in MariaDB (``COUNT(*)`` costs the database)."""


@dataclass
class WorkerRun:
    """Wall-clock marks of one worker over pre-filled topics (``time.perf_counter``)."""

    first: float  # the first poll that saw events counted on /metrics
    first_count: float  # events counted by then
    consumed: float  # all events counted (interpolated between the last two polls)
    done: float  # the expected rows are in the database (== consumed without a rows check)
    peak_rss_mb: float
    rss_mb: float = 0.0  # resident when done: what the worker keeps (peak adds buffers in flight)

    def rate(self, count: int, end_to_end: bool = True) -> float:
        if self.first_count >= count:
            raise RuntimeError(f"all {count:,} events were consumed before the first poll: too few to time")
        return (count - self.first_count) / ((self.done if end_to_end else self.consumed) - self.first)


@contextlib.contextmanager
def worker(prefix: str, database: str, env: dict[str, str] | None = None, partitions: int = 4,
           command: Sequence[str] = ("-m", "stream_app.cli", "worker"), name: str = "worker") -> Iterator[int]:
    """A real ``spcwatch worker`` subprocess for one run; yields its HTTP port. Its log: /tmp/<prefix><name>.log
    (workers of one group, same prefix and database, each need a ``name`` of their own: log and state)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SPCWATCH_")}
    environ.update(SPCWATCH_KAFKA_BOOTSTRAP=BOOTSTRAP, SPCWATCH_TOPIC_PREFIX=prefix, SPCWATCH_WEB_PORT=str(port),
                   SPCWATCH_DB_URL=mysql_url(database), SPCWATCH_WEB_HOST="127.0.0.1",
                   SPCWATCH_LOG_LEVEL="WARNING", SPCWATCH_PARTITIONS=str(partitions),
                   SPCWATCH_DATA_DIR=f"/tmp/{prefix}data" if name == "worker" else f"/tmp/{prefix}{name}-data",
                   **(env or {}))
    with Path(f"/tmp/{prefix}{name}.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=environ,
                                stdout=log, stderr=subprocess.STDOUT)
        _workers[port] = proc
        try:
            yield port
        finally:
            _workers.pop(port, None)
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


_workers: dict[int, subprocess.Popen[bytes]] = {}


def wait_consumed(port: int, topics: Iterable[str], n_events: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while consumed(port, topics) < n_events:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not consume {n_events} events within {timeout:.0f} s")
        time.sleep(METRICS_POLL_SECONDS)


def run_worker(prefix: str, database: str, topics: Iterable[str], n_events: int, *, rows_table: str = "",
               n_rows: int = 0, env: dict[str, str] | None = None, partitions: int = 4,
               timeout: float = 600, command: Sequence[str] = ("-m", "stream_app.cli", "worker")) -> WorkerRun:
    """Start ``spcwatch worker`` on pre-filled topics and time it from the first poll that sees events.

    Start-up and rebalancing are excluded: the rate counts the events after that poll.
    The moment the last event was counted is interpolated between the two polls around it.
    ``done`` waits for ``n_rows`` rows in ``rows_table`` when given (end to end: committed
    in MariaDB; polled on the database, which costs the worker nothing).
    """
    topics = list(topics)
    with worker(prefix, database, env, partitions, command) as port:
        proc = _workers[port]
        deadline = time.monotonic() + timeout

        def alive() -> None:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {proc.returncode}; log: /tmp/{prefix}worker.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not finish within {timeout:.0f} s; log: /tmp/{prefix}worker.log")

        # Phase 1, /metrics once a second: the first poll that sees events, then the poll that sees all.
        polls: list[tuple[float, float]] = []  # (time, events counted), from the first poll that saw any
        while not polls or polls[-1][1] < n_events:
            alive()
            seen, now = consumed(port, topics), time.perf_counter()
            if seen:
                polls.append((now, seen))
            if seen < n_events:
                time.sleep(METRICS_POLL_SECONDS)
        (first, first_count), (now, seen) = polls[0], polls[-1]
        then, before = polls[-2] if len(polls) > 1 else (now, seen)
        consumed_at = then + (now - then) * (n_events - before) / max(seen - before, 1.0)
        # Phase 2, end to end: the rows in the database (polled there, at no cost to the worker).
        while rows_table and count_rows(database, rows_table) < n_rows:
            alive()
            time.sleep(ROWS_POLL_SECONDS)
        done = time.perf_counter() if rows_table else consumed_at
        return WorkerRun(first, first_count, consumed_at, done, _rss_mb(proc.pid, "VmHWM"), _rss_mb(proc.pid))


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of ``pid`` now (``VmRSS``) or at its peak (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0
