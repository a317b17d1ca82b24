"""A worker asked to stop exits, even when its shutdown hangs (a supervisor restarts exits, not hangs)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest

from tests.stream_app.runtime.test_worker import produce, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.integration]

# Loaded into the worker (PYTHONPATH): the crash blocks the event loop for good, the worst
# hang there is (nothing on the loop can run; only a thread can still end the process).
HANG_ON_CRASH = '''
import time
import faust

async def _hang(self, reason):
    time.sleep(3600)

faust.App.crash = _hang
'''


def test_a_crash_whose_shutdown_hangs_still_exits_non_zero(
        make_worker, kafka_bootstrap: str, topic_prefix: str, sqlite_url: str,
        tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HANG_ON_CRASH)
    path = sqlite_url.split(":///", 1)[1]
    worker = make_worker(PYTHONPATH=str(hook), SPCWATCH_CRASH_EXIT_SECONDS="3",
                         SPCWATCH_RECON_ALERT_CATEGORIES="excluded_test_data",
                         SPCWATCH_RECON_ALERT_MIN_AMOUNT_MINOR="0")
    worker.start()

    def tables() -> list[str]:
        with sqlite3.connect(path) as conn:
            return [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE name = 'alerts'")]

    wait_until(lambda: tables() == ["alerts"], "the migrations")
    with sqlite3.connect(path) as conn:  # the alert's write fails: the agent raises, the worker crashes
        conn.execute("ALTER TABLE alerts RENAME TO alerts_away")
    asyncio.run(produce(kafka_bootstrap, topic_prefix + "orders", [(b"7101", orjson.dumps({
        "event_id": "o-7101", "order_id": "7101", "store_id": "US00001", "ts": "2026-02-17T08:12:09-05:00",
        "status": "paid", "total": "12.40", "currency": "NZD", "items": []}))]))
    wait_until(lambda: worker.proc.poll() is not None, "the worker to exit", timeout=120)
    assert worker.proc.returncode == 1
    log = worker.log_text()
    assert "spcwatch.recon.orders failed" in log
    assert "after it was asked to stop" in log and "SPCWATCH_CRASH_EXIT_SECONDS" in log
