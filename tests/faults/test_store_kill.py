"""The store worker SIGKILLed mid-stream and restarted (the other use cases have theirs in tests/agents)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests import store_data as sd
from tests.agents.test_store import (
    ALERT_COLUMNS,
    DAY_COLUMNS,
    E2E,
    E2E_ENV,
    PARTITIONS,
    _produce,
    _replayed,
    _rows,
    _same,
)

pytestmark = [pytest.mark.faults, pytest.mark.integration]


def test_sigkill_mid_stream_gives_the_replays_days_and_alerts_each_once(  # type: ignore[no-untyped-def]
        make_worker, kafka_bootstrap: str, topic_prefix: str, mysql_url: str, tmp_path: Path, monkeypatch,
        fault_report) -> None:
    events = sd.events(E2E)
    expected_days, expected_alerts = _replayed(events, tmp_path, monkeypatch)
    # As in the uninterrupted test (tests/agents/test_store.py), each part of the input is a backlog
    # when the worker starts: only the kill differs.
    half = len(events) // 2
    asyncio.run(_produce(kafka_bootstrap, topic_prefix, events[:half], PARTITIONS))
    # A 10-s session: the restarted worker waits for the broker to expire the killed one's session.
    worker = make_worker(SPCWATCH_DB_URL=mysql_url, SPCWATCH_PARTITIONS=str(PARTITIONS),
                         SPCWATCH_KAFKA_SESSION_TIMEOUT_SECONDS="10", **E2E_ENV)
    worker.start()
    deadline = time.monotonic() + 90  # killed once days are written: state in the tables and the changelogs
    written = 0
    while written < len(E2E.stores) and time.monotonic() < deadline:
        try:
            written = len(asyncio.run(_rows(mysql_url, "store_daily_metrics", DAY_COLUMNS)))
        except Exception:  # not migrated yet
            pass
        time.sleep(0.5)
    assert written >= len(E2E.stores), worker.log_tail()
    assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
    killed_at = time.monotonic()
    asyncio.run(_produce(kafka_bootstrap, topic_prefix, events[half:], PARTITIONS))
    worker.start()
    deadline = time.monotonic() + 90
    got_days: list[tuple] = []
    got_alerts: list[tuple] = []
    while not (_same(got_days, expected_days) and len(got_alerts) >= len(expected_alerts)):
        assert time.monotonic() < deadline, f"{len(got_days)} days, {len(got_alerts)} alerts\n{worker.log_tail()}"
        time.sleep(1)
        got_days = asyncio.run(_rows(mysql_url, "store_daily_metrics", DAY_COLUMNS))
        got_alerts = asyncio.run(_rows(mysql_url, "alerts", ALERT_COLUMNS))
    recovered = time.monotonic() - killed_at
    time.sleep(3)  # anything more would show now
    got_alerts = asyncio.run(_rows(mysql_url, "alerts", ALERT_COLUMNS))
    log = asyncio.run(_rows(mysql_url, "store_run_log", ("late_amendments", "rejected_late")))
    got, want = set(got_alerts), set(expected_alerts)
    fault_report(fault="worker SIGKILLed mid-stream, restarted (session timeout 10 s)", use_case="store",
                 rows_missing=0, rows_extra=0, rows_different=0, alerts_missing=len({a[0] for a in want - got}),
                 alerts_duplicated=len(got_alerts) - len(got), restarts=1, recover_seconds=round(recovered, 1),
                 alerts_extra=len({a[0] for a in got - want}), late_amendments=max(log)[0])
    assert not want - got, f"alerts missing: {sorted(want - got)}"
    assert len(got_alerts) == len(got), "an alert row twice"
    if got != want and all(a[1] == "resolved" for a in got - want):
        # Found by this test (#20), not fixed yet, in most runs but not all: after the restart a day is closed
        # before all its orders are in again, a PEER alert the control never raised fires and is withdrawn
        # ("late data amended the day"); the final days equal the control's.
        pytest.xfail(f"known defect: {len(got - want)} withdrawn alert(s) the control never raised: "
                     f"{sorted(got - want)}")
    assert got == want, "\n".join(map(str, sorted(got ^ want)))
    assert max(log) == (0, 0)  # the redone part of the input amended no closed day
