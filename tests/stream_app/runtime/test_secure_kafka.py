"""The worker and the CLI against a broker with SASL_SSL (SCRAM-SHA-512) and ACLs, as on MSK (issue #20).

The broker is the secure profile of ``scripts/services.sh`` (``SPCWATCH_KAFKA_SECURE=1``), started
for this module in its own run dir on free ports and stopped afterwards; the shared plaintext broker
is not involved.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from agents.core.settings import Settings
from stream_app.cli import UserError, _run_or_unavailable
from stream_app.runtime.kafka import AIOKafkaConsumer, AIOKafkaProducer
from stream_app.runtime.topics import ALL_TOPICS, kafka_client_options
from tests.agents.test_infra import INFRA_ENV, episodes
from tests.conftest import ROOT, WorkerProcess, free_port
from tests.infra_data import FAULT, replay, samples

pytestmark = pytest.mark.integration

PREFIX = "sec."
USER = "spcwatch-app"
PASSWORD = "p@ss:w/rd%41"  # characters that break naive URL or JAAS handling
SAMPLE = {"ts": "2026-02-17T10:05:00Z", "source": "cloudwatch", "resource_type": "rds",
          "resource_id": "db-1", "metric": "CPUUtilization", "value": 41.7}


@dataclass(frozen=True)
class SecureKafka:
    bootstrap: str
    cafile: str
    services_env: dict[str, str]

    def env(self, user: str = USER, password: str = PASSWORD, **overrides: str) -> dict[str, str]:
        """A worker's environment: SASL_SSL as ``user``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPCWATCH_")}
        env.update(SPCWATCH_KAFKA_BOOTSTRAP=self.bootstrap, SPCWATCH_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
                   SPCWATCH_KAFKA_SASL_MECHANISM="SCRAM-SHA-512", SPCWATCH_KAFKA_SASL_USERNAME=user,
                   SPCWATCH_KAFKA_SASL_PASSWORD=password, SPCWATCH_KAFKA_SSL_CAFILE=self.cafile,
                   SPCWATCH_TOPIC_PREFIX=PREFIX, SPCWATCH_PARTITIONS="2", SPCWATCH_LOG_FORMAT="text",
                   SPCWATCH_WEB_HOST="127.0.0.1", SPCWATCH_WEB_PORT=str(free_port()))
        env.update(overrides)
        return env

    def settings(self, user: str = USER, password: str = PASSWORD) -> Settings:
        return Settings.from_env(self.env(user, password))

    def add_user(self, name: str, password: str, *acl: str) -> None:
        services(["kafka-user", name, *acl], {**self.services_env, "SPCWATCH_KAFKA_USER_PASSWORD": password})


def services(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run([str(ROOT / "scripts" / "services.sh"), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"services.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}", pytrace=False)
    return result.stdout


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    run_dir = tmp_path_factory.mktemp("secure-run")
    port = free_port()
    env = {**os.environ, "SPCWATCH_RUN_DIR": str(run_dir), "SPCWATCH_KAFKA_SECURE": "1",
           "SPCWATCH_KAFKA_SECURE_PORT": str(port), "SPCWATCH_KAFKA_SECURE_CONTROLLER_PORT": str(free_port()),
           "SPCWATCH_KAFKA_SECURE_USER": USER, "SPCWATCH_KAFKA_SECURE_PASSWORD": PASSWORD,
           "SPCWATCH_KAFKA_SECURE_ACL_PREFIX": PREFIX, "SPCWATCH_KAFKA_HEAP_OPTS": "-Xms128m -Xmx384m"}
    try:
        out = services(["up", "kafka"], env)
        assert f"user {USER}, ALL on topics and groups named {PREFIX}*" in out
        assert PASSWORD not in out
        yield SecureKafka(f"127.0.0.1:{port}", str(run_dir / "kafka-secure" / "tls" / "ca.pem"), env)
    finally:
        subprocess.run([str(ROOT / "scripts" / "services.sh"), "down", "kafka"], cwd=ROOT, env=env,
                       capture_output=True, timeout=120)


async def _produce(settings: Settings, batches: list[list[dict]]) -> None:
    """Over SASL_SSL, with the options every spcwatch tool's producer uses."""
    producer = AIOKafkaProducer(**kafka_client_options(settings), linger_ms=10, acks="all")
    await producer.start()
    try:
        pending = [await producer.send(settings.topic("metrics.samples"), orjson.dumps({"samples": b}),
                                       key=b[0]["resource_id"].encode()) for b in batches]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _alerts(settings: Settings, until: set[tuple], timeout: float) -> list[dict]:
    consumer = AIOKafkaConsumer(settings.topic("alerts"), **kafka_client_options(settings),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[dict] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and not until <= episodes(found):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(orjson.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    return found


def _rows(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(sql).fetchone()[0])


def test_a_worker_over_sasl_ssl_consumes_samples_and_writes_rows_and_alerts(
        secure_kafka: SecureKafka, tmp_path: Path) -> None:
    batches = list(samples(resources=2, days=3.0, faults=(FAULT,)))
    path = tmp_path / "samples.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"samples": b}) + b"\n" for b in batches))
    expected = episodes(replay(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'replay.db'}", path))
    assert expected, "the scenario must raise alerts"
    n_points = sum(map(len, batches))

    database = tmp_path / "worker.db"
    env = secure_kafka.env(SPCWATCH_DB_URL=f"sqlite+aiosqlite:///{database}",
                           SPCWATCH_DATA_DIR=str(tmp_path / "data"), **INFRA_ENV)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.start()
        settings = secure_kafka.settings()
        asyncio.run(_produce(settings, batches))
        streamed = asyncio.run(_alerts(settings, expected, 120))
        assert episodes(streamed) == expected, worker.log_tail()
        deadline = time.monotonic() + 60  # rows land at the worker's next checkpoint
        while _rows(database, "SELECT COUNT(*) FROM infra_anomaly_scores") < n_points and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _rows(database, "SELECT COUNT(*) FROM infra_anomaly_scores") == n_points
        assert _rows(database, "SELECT COUNT(*) FROM alerts") == len({e[0] for e in expected})
        assert worker.metric("spcwatch_events_consumed_total", {"topic": "metrics.samples"}) == n_points
    finally:
        worker.stop()
    assert PASSWORD not in worker.log_text()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream_app.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The run ended with exit 78 and exactly one error line (log records of the start may precede it)."""
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("spcwatch: error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    return errors[0]


def test_a_user_without_acls_gets_one_line_and_exit_78(secure_kafka: SecureKafka, tmp_path: Path) -> None:
    secure_kafka.add_user("no-acls", "nothing-granted")
    line = _one_error_line(_cli(secure_kafka.env("no-acls", "nothing-granted"), "topics", "create"))
    assert line.startswith("spcwatch: error: Kafka denied access to topic sec.")
    assert "for user no-acls: grant it ALL" in line and f"topics named {PREFIX}*" in line

    # A tool's producer (collect, backfill) meets the same wall at its first send.
    with pytest.raises(UserError) as denied:
        _run_or_unavailable(None, _produce(secure_kafka.settings("no-acls", "nothing-granted"), [[SAMPLE]]),
                            "Kafka", kafka=secure_kafka.settings("no-acls", "nothing-granted"))
    assert denied.value.code == 78
    assert str(denied.value).startswith(f"Kafka denied access to topic {PREFIX}metrics.samples for user no-acls: ")

    # Topics granted, the consumer group not: the worker stops before Faust starts, naming the group.
    secure_kafka.add_user("topics-only", "half-granted", PREFIX, "topics")
    env = secure_kafka.env("topics-only", "half-granted", SPCWATCH_DB_URL=f"sqlite+aiosqlite:///{tmp_path / 'w.db'}",
                           SPCWATCH_DATA_DIR=str(tmp_path / "data"))
    line = _one_error_line(_cli(env, "worker"))
    assert line == (f"spcwatch: error: Kafka denied access to group {PREFIX}spcwatch for user topics-only: "
                    f"grant it READ on the groups named {PREFIX}* (README: Secure Kafka (MSK))")

    # The contract's topics and the group granted by name, Faust's changelog topics not: Faust meets
    # the wall when it creates them; the worker still ends in one line and 78 (after Faust's own log).
    names = ",".join(f"={PREFIX}{name}" for name in (*ALL_TOPICS, "spcwatch"))
    secure_kafka.add_user("by-name", "named-grants", names)
    env = secure_kafka.env("by-name", "named-grants", SPCWATCH_DB_URL=f"sqlite+aiosqlite:///{tmp_path / 'w.db'}",
                           SPCWATCH_DATA_DIR=str(tmp_path / "data2"))
    result = _cli(env, "worker")
    assert result.returncode == 78, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"spcwatch: error: Kafka denied access to topic {PREFIX}spcwatch-"), last
    assert last.endswith(f"-changelog for user by-name: grant it ALL (DESCRIBE, CREATE, READ, WRITE) on the topics "
                         f"named {PREFIX}* (README: Secure Kafka (MSK))"), last


def test_a_wrong_password_or_an_unknown_ca_is_one_line(secure_kafka: SecureKafka) -> None:
    result = _cli(secure_kafka.env(password="not-the-password"), "topics", "create")
    line = _one_error_line(result)
    assert line.startswith(f"spcwatch: error: Kafka at {secure_kafka.bootstrap} refused the SCRAM-SHA-512 "
                           f"login of user {USER}: ")
    assert "SaslAuthenticationFailed" in line and "not-the-password" not in result.stderr

    line = _one_error_line(_cli(secure_kafka.env(SPCWATCH_KAFKA_SSL_CAFILE=""), "topics", "create"))
    assert line.startswith(f"spcwatch: error: TLS handshake with Kafka at {secure_kafka.bootstrap} failed: ")
    assert "certificate" in line and "SPCWATCH_KAFKA_SSL_CAFILE" in line


@pytest.mark.parametrize(("protocol", "says"), [
    ("SASL_SSL", "closed the connection during the TLS handshake (a listener without TLS?"),
    ("SASL_PLAINTEXT", "does not expect a SASL login there (a listener without SASL?"),
])
def test_a_secure_client_on_a_plaintext_listener_is_told_so(kafka_bootstrap: str, protocol: str, says: str) -> None:
    """The shared plaintext broker: the wrong protocol for a port is a configuration error too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPCWATCH_")}
    env.update(SPCWATCH_KAFKA_BOOTSTRAP=kafka_bootstrap, SPCWATCH_KAFKA_SECURITY_PROTOCOL=protocol,
               SPCWATCH_KAFKA_SASL_USERNAME=USER, SPCWATCH_KAFKA_SASL_PASSWORD=PASSWORD)
    line = _one_error_line(_cli(env, "topics", "create"))
    assert line.startswith(f"spcwatch: error: Kafka at {kafka_bootstrap} {says}"), line
