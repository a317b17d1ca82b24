"""A message whose processing stops the worker stops it at most SPCWATCH_POISON_MAX_RESTARTS times."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import ROOT
from tests.stream_app.runtime.test_worker import SAMPLE, consume, produce, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.integration]

# Loaded into the worker (PYTHONPATH): the infra processor raises on one value, as a bug would.
RAISE_ON_666 = '''
from agents import infra

_process = infra.InfraProcessor.process

def _process_or_raise(self, store, topic, events):
    if any(e.value == 666.0 for e in events):
        raise RuntimeError("test: a processor bug on value 666")
    return _process(self, store, topic, events)

infra.InfraProcessor.process = _process_or_raise
'''


def test_a_message_that_keeps_stopping_the_worker_is_dead_lettered_after_n_restarts(
        make_worker, kafka_bootstrap: str, topic_prefix: str, sqlite_url: str,
        tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(RAISE_ON_666)
    worker = make_worker(PYTHONPATH=str(hook), SPCWATCH_POISON_MAX_RESTARTS="2", SPCWATCH_CRASH_EXIT_SECONDS="15",
                         SPCWATCH_DATA_DIR=str(tmp_path / "data"))
    path = sqlite_url.split(":///", 1)[1]

    def minutes(resource: str) -> list[str]:
        try:
            with sqlite3.connect(path) as conn:
                return [m[11:16] for (m,) in conn.execute(
                    "SELECT minute FROM infra_rollups WHERE resource_id = ? ORDER BY minute", (resource,))]
        except sqlite3.OperationalError:  # not migrated yet
            return []

    topic = topic_prefix + "metrics.samples"
    subprocess.run([sys.executable, "-m", "stream_app.cli", "topics", "create"], cwd=ROOT, env=worker.env,
                   check=True, capture_output=True, timeout=120)
    asyncio.run(produce(kafka_bootstrap, topic, [
        (b"db-boom", orjson.dumps({**SAMPLE, "resource_id": "db-boom", "value": 666.0})),
        (b"db-boom", orjson.dumps({**SAMPLE, "resource_id": "db-boom", "ts": "2026-02-17T10:06:00Z"}))]))
    for run in (1, 2):  # each start reads the message again from the committed offset, and stops
        worker.proc = subprocess.Popen([sys.executable, "-m", "stream_app.cli", "worker"], cwd=ROOT, env=worker.env,
                                       stdout=worker.log_path.open("ab"), stderr=subprocess.STDOUT)
        wait_until(lambda: worker.proc.poll() is not None, f"run {run} to stop on the message", timeout=150)
        assert worker.proc.returncode != 0
        assert worker.log_text().count("test: a processor bug on value 666") >= run
    assert minutes("db-boom") == []

    worker.start()  # the third time the message is dead-lettered and the partition goes on
    wait_until(lambda: minutes("db-boom") == ["10:06"], "the next message of the partition")
    records = asyncio.run(consume(kafka_bootstrap, topic_prefix + "deadletter", 1))
    assert [orjson.loads(r.value)["reason"] for r in records] == ["poison_message"]
    letter = orjson.loads(records[0].value)
    assert letter["offset"] == 0 and "stopped the worker 2 times" in letter["detail"]
    assert orjson.loads(letter["original_text"])["value"] == 666.0
    assert worker.metric("spcwatch_poison_messages_total", {"topic": "metrics.samples"}) == 1
    assert "dead-lettered and skipped (SPCWATCH_POISON_MAX_RESTARTS)" in worker.log_text()
    assert worker.proc.poll() is None
