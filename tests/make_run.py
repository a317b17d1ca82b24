"""One real ``make run`` (scripts/run.sh) for the tests that judge it (tests/test_make_run*.py).

It is the slowest thing the suite does (the simulator's history has to be caught up with), so it runs
once per session and the tests read its record: the conftest's ``make_run`` fixture, kept on one xdist
worker by the conftest's scheduler hook.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stream_app import simmenu
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

SCENARIO_ENTITIES = {DECLINE_STORE, CLOSING_STORE, BIASED_STORE, CENTS_STORE, MISSING_LEDGER_STORE,
                     DUPLICATE_STORE, RDS_TARGET, REDIS_TARGET, silent_host_id(World())}
ALERT_LINE = re.compile(r"^alert FIRING .*?(?:store_id|resource_id)=(\S+)")
# The menu-cost-increase scenario's promise (spcwatch simulate --list): the chain's Latte, no store_id.
MENU_ALERT_LINE = re.compile(r"^alert FIRING +\w+ +menu +MARGIN_EROSION +category=espresso "
                             rf"spu={simmenu.spu_of(simmenu.COST_ITEM)}  .* id (\S+)$")
DEADLINE_SECONDS = 900.0


@dataclass
class MakeRun:
    """What one run showed and left behind."""

    output: str  # everything run.sh printed, the alert view included
    rc: int
    port: int
    log_dir: Path
    db_url: str
    scenario_alert: str | None  # the first alert line of a scenario entity
    menu_alert: str | None  # the chain Latte's MARGIN_EROSION line
    worker_pid: int | None  # None: run.sh stopped before it started the worker (or the simulator)
    simulator_pid: int | None
    seconds_to_menu_alert: float | None  # figures for the report; never asserted

    @property
    def menu_alert_id(self) -> str | None:
        match = MENU_ALERT_LINE.match(self.menu_alert or "")
        return match.group(1) if match else None

    def worker_log_tail(self, lines: int = 40) -> str:
        path = self.log_dir / "worker.log"
        text = path.read_text(errors="replace") if path.exists() else "(no worker log)"
        return "\n".join(text.splitlines()[-lines:])


def default_simulate_args() -> str:
    """``make run``'s own simulator flags, read from scripts/run.sh so the test runs what users run."""
    match = re.search(r"^SIM_ARGS=\$\{SPCWATCH_RUN_SIMULATE_ARGS:-([^}]*)\}", (ROOT / "scripts" / "run.sh").read_text(),
                      re.MULTILINE)
    assert match, "scripts/run.sh no longer sets SIM_ARGS from SPCWATCH_RUN_SIMULATE_ARGS"
    return match.group(1)


def _lines(stream, sink: queue.Queue, log: list[str]) -> None:  # type: ignore[no-untyped-def]
    for line in stream:
        log.append(line.rstrip("\n"))
        sink.put(line.rstrip("\n"))
    sink.put(None)


def _pid(path: Path) -> int | None:
    """A pid file run.sh wrote (None: it never got that far; the output says why)."""
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def topics(bootstrap: str, prefix: str) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    async def run() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return [t for t in await admin.list_topics() if t.startswith(prefix)]
        finally:
            await admin.close()

    return asyncio.run(run())


def make_run(kafka_bootstrap: str, db_url: str, work: Path) -> MakeRun:
    """scripts/run.sh with its default simulator flags (event time pinned to today 00:30 UTC, so the days the
    scenarios fall on do not depend on the hour the suite runs), until it has shown a scenario alert and the
    menu scenario's alert (or the deadline passes); then Ctrl-C, as a user ends it."""
    t0 = datetime.now(UTC).replace(hour=0, minute=30, second=0, microsecond=0)
    args = default_simulate_args()
    history = re.search(r"--history-days (\S+)", args)
    assert history, args
    start = (t0 - timedelta(days=float(history.group(1)))).strftime("%Y-%m-%dT%H:%M:%SZ")
    port = free_port()
    log_dir = work / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPCWATCH_")}
    env.update(
        SPCWATCH_KAFKA_BOOTSTRAP=kafka_bootstrap, SPCWATCH_DB_URL=db_url, SPCWATCH_WEB_PORT=str(port),
        SPCWATCH_WEB_HOST="127.0.0.1", SPCWATCH_PARTITIONS="2", SPCWATCH_RUN_LOG_DIR=str(log_dir),
        SPCWATCH_RUN_SIMULATE_ARGS=f"{args} --start {start}",
    )
    began = time.monotonic()
    proc = subprocess.Popen([str(ROOT / "scripts" / "run.sh")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    log: list[str] = []
    reader = threading.Thread(target=_lines, args=(proc.stdout, lines, log), daemon=True)
    reader.start()
    scenario = menu = None
    menu_seconds = None
    deadline = began + DEADLINE_SECONDS
    try:
        while (scenario is None or menu is None) and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            match = ALERT_LINE.match(line)
            if scenario is None and match and match.group(1) in SCENARIO_ENTITIES:
                scenario = line
            if menu is None and MENU_ALERT_LINE.match(line):
                menu, menu_seconds = line, time.monotonic() - began
        worker_pid, simulator_pid = _pid(log_dir / "worker.pid"), _pid(log_dir / "simulator.pid")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does in a terminal
        try:
            rc = proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        reader.join(10)  # the last lines (the clean-up's) are in the log
    (work / "output.txt").write_text("\n".join(log) + "\n")  # kept with pytest's temporary directories
    return MakeRun("\n".join(log), rc, port, log_dir, db_url, scenario, menu, worker_pid, simulator_pid,
                   menu_seconds)
