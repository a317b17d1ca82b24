"""The database frozen (SIGSTOP) mid-stream, and an outage longer than the sink's retry budget.

A PRIVATE MariaDB (``scripts/services.sh up mariadb`` with its own run dir and port) is
frozen here, never the shared one. The rows after the fault are compared with a replay
of the same input (``spcwatch replay``) into another database of the same server.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import ROOT, _mysql_exec, free_port
from tests.faults.conftest import services
from tests.stream_app.runtime.test_worker import produce, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.integration]

RESOURCES = 12


class PrivateMariaDB:
    def __init__(self, run_dir: Path, port: int) -> None:
        self.env = {**os.environ, "SPCWATCH_RUN_DIR": str(run_dir), "SPCWATCH_MYSQL_PORT": str(port)}
        self.pid_file = run_dir / "mariadb" / "mariadbd.pid"
        self.url = f"mysql+aiomysql://spcwatch:spcwatch@127.0.0.1:{port}/spcwatch"

    def services(self, *args: str) -> None:
        services(self.env, *args)

    @property
    def pid(self) -> int:
        return int(self.pid_file.read_text().strip())

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def database(self) -> str:
        name = f"spcwatch_f{uuid.uuid4().hex[:8]}"
        _mysql_exec(self.url, f"CREATE DATABASE `{name}`")
        return self.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="module")
def mariadb() -> Iterator[PrivateMariaDB]:
    run_dir = Path(f"/tmp/spcw-{uuid.uuid4().hex[:8]}")  # short: the unix socket path has a 108-byte limit
    server = PrivateMariaDB(run_dir, free_port())
    server.services("up", "mariadb")
    try:
        yield server
    finally:
        try:
            server.thaw()
        except (OSError, ValueError):
            pass
        server.services("down", "--purge", "mariadb")
        shutil.rmtree(run_dir, ignore_errors=True)


def samples(minutes: range) -> list[dict]:  # type: ignore[type-arg]
    return [{"ts": f"2026-02-17T10:{m:02d}:{s:02d}Z", "source": "cloudwatch", "resource_type": "rds",
             "resource_id": f"db-{r}", "metric": "CPUUtilization", "value": float(40 + (r * 7 + m * 3 + s) % 11)}
            for m in minutes for s in (0, 30) for r in range(RESOURCES)]


def messages(batch: list[dict]) -> list[tuple[bytes, bytes]]:  # type: ignore[type-arg]
    return [(s["resource_id"].encode(), orjson.dumps(s)) for s in batch]


def query(url: str, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    import pymysql
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = pymysql.connect(host=u.host, port=u.port, user=u.username, password=u.password, database=u.database,
                           connect_timeout=5, read_timeout=10)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())
    except pymysql.err.ProgrammingError:  # not migrated yet
        return []
    finally:
        conn.close()


ROLLUPS = ("SELECT resource_id, metric, minute, sample_count, value_mean, value_min, value_max "
           "FROM infra_rollups ORDER BY resource_id, metric, minute")
SCORES = ("SELECT resource_id, metric, ts, value, center, sigma, zscore, rules, status "
          "FROM infra_scores ORDER BY 1, 2, 3")


def replay(url: str, batch: list[dict], tmp_path: Path) -> None:  # type: ignore[type-arg]
    path = tmp_path / "input.jsonl"
    path.write_bytes(b"".join(orjson.dumps(s) + b"\n" for s in batch))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SPCWATCH_")}, "SPCWATCH_DB_URL": url}
    for args in (["db", "upgrade"], ["replay", "infra", "--input", str(path), "--output", str(tmp_path / "a.jsonl")]):
        result = subprocess.run([sys.executable, "-m", "stream_app.cli", *args], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr


def test_a_frozen_database_is_reported_and_after_it_thaws_every_row_is_written(
        mariadb: PrivateMariaDB, make_worker, kafka_bootstrap: str, topic_prefix: str,
        tmp_path: Path, fault_report) -> None:  # type: ignore[no-untyped-def]
    url = mariadb.database()
    worker = make_worker(SPCWATCH_DB_URL=url, SPCWATCH_DB_TIMEOUT_SECONDS="2", SPCWATCH_HEALTH_STALL_SECONDS="4",
                         SPCWATCH_SINK_RETRY_MAX_SECONDS="180")
    worker.start()
    topic = topic_prefix + "metrics.samples"
    before, during = samples(range(5, 8)), samples(range(8, 11))
    asyncio.run(produce(kafka_bootstrap, topic, messages(before)))
    wait_until(lambda: len(query(url, ROLLUPS)) == RESOURCES * 3, "the rows before the freeze")

    mariadb.freeze()
    frozen_at = time.monotonic()
    try:
        asyncio.run(produce(kafka_bootstrap, topic, messages(during)))
        reasons: list[str] = []

        def reported() -> bool:
            status, body = worker.health()
            reasons[:] = orjson.loads(body)["reasons"] if status == 503 else []
            return any(r.startswith("database:") for r in reasons) and any(r.startswith("stalled:") for r in reasons)

        wait_until(reported, "/health to report the frozen database and the stall", timeout=90)
        assert any("DatabaseTimeout" in r for r in reasons), reasons
        assert worker.get("/health/live")[0] == 200  # a restart would not cure the database: liveness holds
        assert worker.metric("spcwatch_sink_errors_total") > 0
        time.sleep(max(0.0, 20 - (time.monotonic() - frozen_at)))  # ~20 s frozen, retrying all along
        assert worker.proc.poll() is None
    finally:
        mariadb.thaw()
    thawed_at = time.monotonic()

    control = mariadb.database()
    replay(control, before + during, tmp_path)
    expected = query(control, ROLLUPS)
    assert len(expected) == RESOURCES * 6
    wait_until(lambda: query(url, ROLLUPS) == expected, "every row after the thaw", timeout=90)
    caught_up = time.monotonic() - thawed_at
    wait_until(lambda: worker.health()[0] == 200, "/health to recover", timeout=60)
    assert query(url, SCORES) == query(control, SCORES)
    log = worker.log_text()
    assert log.count("sink: a database write failed") == 1, "one WARNING per outage, not one per retry"
    assert "the database answers again after" in log
    fault_report(fault="database frozen (SIGSTOP) for 20 s mid-stream", use_case="infra", rows_missing=0,
                 rows_extra=0, rows_different=0, restarts=0, recover_seconds=round(caught_up, 1),
                 health_503_during_freeze="yes")


def test_an_outage_longer_than_the_retry_budget_exits_and_a_restart_writes_every_row(
        mariadb: PrivateMariaDB, make_worker, kafka_bootstrap: str, topic_prefix: str,  # type: ignore[no-untyped-def]
        tmp_path: Path, fault_report) -> None:
    url = mariadb.database()
    worker = make_worker(SPCWATCH_DB_URL=url, SPCWATCH_DB_TIMEOUT_SECONDS="2", SPCWATCH_SINK_RETRY_MAX_SECONDS="5",
                         SPCWATCH_CRASH_EXIT_SECONDS="10")
    worker.start()
    topic = topic_prefix + "metrics.samples"
    before, during = samples(range(5, 7)), samples(range(7, 9))
    asyncio.run(produce(kafka_bootstrap, topic, messages(before)))
    wait_until(lambda: len(query(url, ROLLUPS)) == RESOURCES * 2, "the rows before the outage")

    mariadb.freeze()
    try:
        asyncio.run(produce(kafka_bootstrap, topic, messages(during)))
        wait_until(lambda: worker.proc.poll() is not None, "the worker to give up and exit", timeout=120)
        assert worker.proc.returncode != 0
        assert "could not be written (SinkUnavailable" in worker.log_text()
    finally:
        mariadb.thaw()

    worker.start()  # from the committed offsets: the rows of the outage are written now
    restarted_at = time.monotonic()
    control = mariadb.database()
    replay(control, before + during, tmp_path)
    expected = query(control, ROLLUPS)
    assert {(r[0], r[2].minute) for r in expected} == {(f"db-{i}", m) for i in range(RESOURCES) for m in range(5, 9)}
    # Exactly once: the samples redone after the restart are refused as repeats of their series'
    # timestamps (a sample at the timestamp its series already has is a duplicate; before that rule,
    # a redone sample at the restored watermark was counted again: 36 samples in a minute of 24).
    wait_until(lambda: query(url, ROLLUPS) == expected, "every row after the restart, each once", timeout=90)
    fault_report(fault="database outage past SPCWATCH_SINK_RETRY_MAX_SECONDS (5 s): exit, restart",
                 use_case="infra", rows_missing=0, rows_extra=0, rows_different=0, restarts=1,
                 recover_seconds=round(time.monotonic() - restarted_at, 1))
