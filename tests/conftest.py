"""Fixtures for real Kafka and real MySQL/MariaDB.

Where the services come from, in order: ``SPCWATCH_KAFKA_BOOTSTRAP`` /
``SPCWATCH_TEST_MYSQL_URL`` when set; else testcontainers when a Docker engine
answers; else the project's own ``scripts/services.sh up`` (local Kafka and
MariaDB). A service that cannot be had is a test *error*, never a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCAL_KAFKA = "127.0.0.1:9092"
# Property tests judge the code, not the machine's load: a shared 2-core CI machine running Kafka and
# MariaDB beside the suite made hypothesis's wall-clock health checks and deadlines fail tests whose
# examples were all correct. Examples stay the same; only the timing checks are off.
hypothesis.settings.register_profile(
    "spcwatch", deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.data_too_large])
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "spcwatch"))

LOCAL_MYSQL = "mysql+aiomysql://spcwatch:spcwatch@127.0.0.1:3306/spcwatch"


def _docker_engine() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


_started_local = False


def _local_services() -> None:
    global _started_local
    if _started_local:
        return
    result = subprocess.run([str(ROOT / "scripts" / "services.sh"), "up"], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"scripts/services.sh up failed:\n{result.stdout}\n{result.stderr}", pytrace=False)
    _started_local = True


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    bootstrap = os.environ.get("SPCWATCH_KAFKA_BOOTSTRAP")
    container = None
    if not bootstrap:
        if _docker_engine():
            from testcontainers.kafka import KafkaContainer

            container = KafkaContainer("apache/kafka:4.1.1").with_kraft()
            container.start()
            bootstrap = container.get_bootstrap_server()
        else:
            _local_services()
            bootstrap = LOCAL_KAFKA
    _wait_for_kafka(bootstrap)
    yield bootstrap
    _delete_test_topics(bootstrap)
    if container is not None:
        container.stop()


_USED_PREFIXES: list[str] = []


def _delete_test_topics(bootstrap: str) -> None:
    """Every topic the session's tests created (inputs, changelogs, ticks, ...).

    A broker kept between sessions otherwise collects thousands of partitions, and
    the local one (512 MB heap) ran out of memory under them.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    async def delete() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(tuple(_USED_PREFIXES))]
            for i in range(0, len(names), 200):
                await admin.delete_topics(names[i:i + 200])
        finally:
            await admin.close()

    if _USED_PREFIXES:
        try:
            asyncio.run(delete())
        except Exception as exc:  # the results stand; the broker keeps some topics
            print(f"conftest: could not delete the session's topics: {exc!r}", file=sys.stderr)


def _wait_for_kafka(bootstrap: str, timeout: float = 60.0) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()

    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(probe())
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                pytest.fail(f"no Kafka broker at {bootstrap}: {exc}", pytrace=False)
            time.sleep(1)


@pytest.fixture(scope="session")
def mysql_server_url() -> Iterator[str]:
    """URL of a MySQL-compatible server whose user may create ``spcwatch_*`` databases."""
    url = os.environ.get("SPCWATCH_TEST_MYSQL_URL")
    container = None
    if not url:
        if _docker_engine():
            from testcontainers.mysql import MySqlContainer

            container = MySqlContainer("mysql:8.4", username="root", password="spcwatch", dbname="spcwatch")
            container.start()
            host, port = container.get_container_host_ip(), container.get_exposed_port(3306)
            url = f"mysql+aiomysql://root:spcwatch@{host}:{port}/spcwatch"
        else:
            _local_services()
            url = LOCAL_MYSQL
    _wait_for_mysql(url)
    yield url
    if container is not None:
        container.stop()


def _mysql_exec(url: str, *statements: str) -> None:
    import pymysql
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password,
                           database=u.database, connect_timeout=5, autocommit=True)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def _wait_for_mysql(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _mysql_exec(url, "SELECT 1")
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                pytest.fail(f"no MySQL/MariaDB at {url.split('@')[-1]}: {exc}", pytrace=False)
            time.sleep(1)


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server (its URL), dropped afterwards."""
    from sqlalchemy.engine import make_url

    name = f"spcwatch_t{uuid.uuid4().hex[:10]}"
    _mysql_exec(server_url, f"CREATE DATABASE `{name}`")
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _mysql_exec(server_url, f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def mysql_url(mysql_server_url: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    with fresh_database(mysql_server_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'spcwatch.db'}"


@pytest.fixture(params=["sqlite", "mysql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each database test runs on the embedded default and on MariaDB/MySQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("mysql_url")


@pytest.fixture(autouse=True)
def _root_log_handlers_restored() -> Iterator[None]:
    """In-process CLI calls add a root handler on pytest's captured stderr, closed after the test.

    Left in place, every later log line of the session raises "I/O operation on closed file".
    """
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def topic_prefix() -> str:
    """Topics of one test never meet another's; deleted at the end of the session."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    _USED_PREFIXES.append(prefix)
    return prefix


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WorkerProcess:
    """A real ``spcwatch worker`` subprocess with its own prefix, port and database."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.port = int(env["SPCWATCH_WEB_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "stream_app.cli", "worker"], cwd=ROOT,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}", pytrace=False)
            if self.health()[0] == 200:
                return
            time.sleep(0.5)
        pytest.fail(f"worker not healthy after {timeout}s:\n{self.log_tail()}", pytrace=False)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def health(self) -> tuple[int, str]:
        return self.get("/health")

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The sum of the samples on /metrics named ``name`` whose labels include ``labels`` (0 when none)."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = self.get("/metrics")
        assert status == 200, f"/metrics answered {status}"
        return sum(sample.value for family in text_string_to_metric_families(body) for sample in family.samples
                   if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()))

    def log_text(self) -> str:
        """The whole log of the last start."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, sig: int = 15, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


@pytest.fixture
def worker_env(kafka_bootstrap: str, topic_prefix: str, sqlite_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPCWATCH_")}
    env.update(
        SPCWATCH_KAFKA_BOOTSTRAP=kafka_bootstrap,
        SPCWATCH_TOPIC_PREFIX=topic_prefix,
        SPCWATCH_DB_URL=sqlite_url,
        SPCWATCH_WEB_PORT=str(free_port()),
        SPCWATCH_WEB_HOST="127.0.0.1",
        SPCWATCH_PARTITIONS="2",
        SPCWATCH_LOG_FORMAT="text",
    )
    return env


@pytest.fixture
def make_worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator:
    workers: list[WorkerProcess] = []

    def make(**overrides: str) -> WorkerProcess:
        worker = WorkerProcess({**worker_env, **overrides}, tmp_path / f"worker{len(workers)}.log")
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop()


# --------------------------------------------------------------------------- make run, once per session

#: test files that read the same ``make run`` (tests/make_run.py): xdist keeps them on one worker
MAKE_RUN_FILES = ("tests/test_make_run.py", "tests/test_make_run_menu.py")


@pytest.fixture(scope="session")
def make_run(kafka_bootstrap: str, mysql_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One real ``make run`` until it has shown a scenario alert and the menu scenario's alert, then Ctrl-C;
    its record (:class:`tests.make_run.MakeRun`). Its database is read after the run, then dropped."""
    from tests.make_run import make_run as run

    with fresh_database(mysql_server_url) as url:
        yield run(kafka_bootstrap, url, tmp_path_factory.mktemp("make-run"))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` (make test) with the make-run files as one unit, so the session's single run is
    shared rather than made twice (each xdist worker has its own session fixtures)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return MAKE_RUN_FILES[0] if scope in MAKE_RUN_FILES else scope

    return Scheduling(config, log)
