"""`make run` (scripts/run.sh) on the real services: it shows alerts from a scenario, and Ctrl-C stops
everything it started (worker, simulator, its topics) while leaving the services it found running."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stream_app.simdata import World
from stream_app.simgen import (
    BIASED_STORE,
    CENTS_STORE,
    CLOSING_STORE,
    DECLINE_STORE,
    DUPLICATE_STORE,
    MISSING_LEDGER_STORE,
    RDS_TARGET,
    REDIS_TARGET,
    silent_host_id,
)
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.integration

SCENARIO_ENTITIES = {DECLINE_STORE, CLOSING_STORE, BIASED_STORE, CENTS_STORE, MISSING_LEDGER_STORE,
                     DUPLICATE_STORE, RDS_TARGET, REDIS_TARGET, silent_host_id(World())}
ALERT_LINE = re.compile(r"^alert FIRING .*?(?:store_id|resource_id)=(\S+)")


def _lines(stream, sink: queue.Queue, log: list[str]) -> None:  # type: ignore[no-untyped-def]
    for line in stream:
        log.append(line.rstrip("\n"))
        sink.put(line.rstrip("\n"))
    sink.put(None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _topics(bootstrap: str, prefix: str) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    async def run() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return [t for t in await admin.list_topics() if t.startswith(prefix)]
        finally:
            await admin.close()

    return asyncio.run(run())


def test_make_run_shows_a_scenario_alert_and_stops_what_it_started(kafka_bootstrap: str, mysql_url: str,
                                                                    tmp_path: Path) -> None:
    # A light but real run: one day of order history (the reconciliation scenarios start at t0-1d),
    # half an hour of infrastructure history, then x60 with every scenario on.
    t0 = datetime.now(UTC).replace(hour=0, minute=30, second=0, microsecond=0)
    start = (t0 - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPCWATCH_")}
    env.update(
        SPCWATCH_KAFKA_BOOTSTRAP=kafka_bootstrap, SPCWATCH_DB_URL=mysql_url, SPCWATCH_WEB_PORT=str(port),
        SPCWATCH_WEB_HOST="127.0.0.1", SPCWATCH_PARTITIONS="2", SPCWATCH_RUN_LOG_DIR=str(tmp_path / "run"),
        SPCWATCH_RUN_SIMULATE_ARGS=f"--speed 60 --scenario all --history-days 1 --infra-history-days 0 "
                                   f"--start {start}",
    )
    proc = subprocess.Popen([str(ROOT / "scripts" / "run.sh")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    log: list[str] = []
    threading.Thread(target=_lines, args=(proc.stdout, lines, log), daemon=True).start()
    seen = None
    deadline = time.monotonic() + 300
    try:
        while seen is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            match = ALERT_LINE.match(line)
            if match and match.group(1) in SCENARIO_ENTITIES:
                seen = line
        worker_pid = int((tmp_path / "run" / "worker.pid").read_text())
        simulator_pid = int((tmp_path / "run" / "simulator.pid").read_text())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does in a terminal
        try:
            rc = proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    output = "\n".join(log)
    worker_log = tmp_path / "run" / "worker.log"
    assert seen is not None, (f"no alert from a scenario within 300s:\n{output[-4000:]}\n--- worker log:\n"
                              + "\n".join(worker_log.read_text(errors="replace").splitlines()[-40:]))
    assert rc == 0, output[-3000:]
    assert "run: worker stopped" in output and "run: simulator stopped" in output
    assert not _alive(worker_pid) and not _alive(simulator_pid)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
    prefix = re.search(r"run: topic prefix '([^']+)'", output)
    assert prefix is not None
    assert _topics(kafka_bootstrap, prefix.group(1)) == []  # the run's topics went with it
    assert "services: " not in output.split("run: stopping", 1)[1]  # services it found running stay up
