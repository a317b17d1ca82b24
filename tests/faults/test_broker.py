"""The broker SIGKILLed mid-stream and restarted: infra and reconciliation lose and repeat nothing.

A PRIVATE Kafka (``scripts/services.sh up kafka`` with its own run dir, port and controller
port) is killed here, never the shared one. One worker runs both use cases through the fault; its
rows are compared with the offline replay of the same input, its alerts with the replay's.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from agents.core.settings import Settings
from agents.recon import ReconProcessor
from stream_app.replay import run_replay
from tests.agents import test_recon_e2e as recon
from tests.agents.test_infra import INFRA_ENV, _alerts, episodes
from tests.agents.test_infra import _produce as produce_samples
from tests.agents.test_store import _rows, _same
from tests.conftest import free_port
from tests.faults.conftest import CHAOS, scaled, services
from tests.faults.test_failover import _rollup_samples
from tests.infra_data import replay, write_input

pytestmark = [pytest.mark.faults, pytest.mark.integration]

SCORES = ("series_id", "ts", "value", "center", "sigma", "zscore", "status")
ROLLUPS = ("series_id", "minute", "sample_count", "value_mean", "value_min", "value_max")


class PrivateKafka:
    def __init__(self, run_dir: Path) -> None:
        port = free_port()
        self.env = {**os.environ, "SPCWATCH_RUN_DIR": str(run_dir), "SPCWATCH_KAFKA_PORT": str(port),
                    "SPCWATCH_KAFKA_CONTROLLER_PORT": str(free_port())}
        self.env.pop("SPCWATCH_KAFKA_SECURE", None)
        self.pid_file = run_dir / "kafka" / "kafka.pid"
        self.bootstrap = f"127.0.0.1:{port}"

    def up(self) -> None:
        services(self.env, "up", "kafka")

    def kill(self) -> None:
        pid = int(self.pid_file.read_text().strip())
        os.kill(pid, signal.SIGKILL)
        while True:  # gone, not only signalled
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


@pytest.fixture(scope="module")
def broker() -> Iterator[PrivateKafka]:
    run_dir = Path(f"/tmp/spck-{uuid.uuid4().hex[:8]}")
    kafka = PrivateKafka(run_dir)
    kafka.up()
    try:
        yield kafka
    finally:
        services(kafka.env, "down", "--purge", "kafka")
        shutil.rmtree(run_dir, ignore_errors=True)


def test_a_broker_sigkilled_mid_stream_and_restarted_loses_and_duplicates_nothing(
        broker: PrivateKafka, make_worker, mysql_url: str, tmp_path: Path, topic_prefix: str,
        fault_report) -> None:  # type: ignore[no-untyped-def]
    # The control: the offline replay of the same input, infra and recon.
    path = tmp_path / "samples.jsonl"
    batches = write_input(path)
    n_points = sum(map(len, batches))
    replay_url = f"sqlite+aiosqlite:///{tmp_path / 'replay.db'}"
    expected = episodes(replay(tmp_path, replay_url, path))
    sc = recon.generate(n_orders=scaled(600, 1500), seed=12)
    events_path = tmp_path / "events.jsonl"
    events_path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sc.events))
    recon_url = f"sqlite+aiosqlite:///{tmp_path / 'recon.db'}"
    asyncio.run(run_replay(Settings(db_url=recon_url), ReconProcessor(), events_path, io.StringIO()))
    replayed = {t: asyncio.run(recon._rows(recon_url, t)) for t in ("recon_exceptions", "recon_orders")}
    assert {(r[0], r[1]): r[2] for r in replayed["recon_exceptions"]} == sc.expected

    bootstrap = broker.bootstrap
    worker = make_worker(SPCWATCH_DB_URL=mysql_url, SPCWATCH_KAFKA_BOOTSTRAP=bootstrap, **INFRA_ENV)
    worker.start()
    cut, half = int(len(batches) * 0.5), len(sc.events) // 2
    asyncio.run(produce_samples(bootstrap, topic_prefix + "metrics.samples", batches[:cut]))
    asyncio.run(recon._produce(bootstrap, topic_prefix, sc.events[:half]))
    deadline = time.monotonic() + 90
    while worker.metric("spcwatch_events_consumed_total", {"topic": "metrics.samples"}) < 0.5 * sum(
            map(len, batches[:cut])) and time.monotonic() < deadline:
        time.sleep(0.2)
    recon._wait_for_rows(mysql_url, "recon_orders", 50, worker)

    broker.kill()
    killed_at = time.monotonic()
    time.sleep(scaled(3, 15))  # and the restart itself takes ~15 s: the broker is away 18-30 s
    broker.up()
    restarts = 0
    if worker.proc.poll() is not None:  # it may give up on the broker: then a supervisor restarts it
        restarts += 1
        worker.start()
    asyncio.run(produce_samples(bootstrap, topic_prefix + "metrics.samples", batches[cut:]))
    asyncio.run(recon._produce(bootstrap, topic_prefix, sc.events[half:]))

    found = recon._settle(lambda: recon._exceptions(mysql_url), sc.expected, worker)
    assert found == sc.expected, recon._diff(found or {}, sc.expected)
    recovered = time.monotonic() - killed_at
    for table in ("recon_exceptions", "recon_orders"):
        streamed = recon._settle(lambda t=table: asyncio.run(recon._rows(mysql_url, t)), replayed[table], worker,
                                 timeout=60)
        assert streamed == replayed[table], f"{table}: {len(streamed or [])} rows, {len(replayed[table])} replayed"
    streamed_alerts = asyncio.run(_alerts(bootstrap, topic_prefix + "alerts", expected, 60))
    assert episodes(streamed_alerts) == expected, worker.log_tail()
    infra_alerts = [a for a in streamed_alerts if a["use_case"] == "infra"]
    assert len(infra_alerts) == len(episodes(infra_alerts)), "an infra alert published twice"
    assert _rollup_samples(mysql_url) == n_points  # no minute counted twice
    for table, columns in (("infra_anomaly_scores", SCORES), ("infra_metric_rollups", ROLLUPS)):
        want = asyncio.run(_rows(replay_url, table, columns))
        got = asyncio.run(_rows(mysql_url, table, columns))
        assert _same(got, want), f"{table}: {len(got)} rows, {len(want)} replayed"
    exited = worker.proc.poll() is not None
    assert not exited, worker.log_tail()
    for use_case in ("infra", "recon"):
        fault_report(fault="broker SIGKILLed mid-stream, restarted", use_case=use_case, rows_missing=0,
                     rows_extra=0, rows_different=0, alerts_missing=0, alerts_duplicated=0, restarts=restarts,
                     recover_seconds=round(recovered, 1), chaos="yes" if CHAOS else "no")
