"""A worker that stops making progress while input waits says so on /health and /health/live."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from tests.stream_app.runtime.test_worker import SAMPLE, produce, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.integration]

# Loaded into the worker (PYTHONPATH): one resource's rows hang in the sink for good, with no error
# (a call that never returns); the database itself answers, so only the stall can tell.
HANG_ONE_WRITE = '''
import asyncio
from stream_app.runtime import sink

_upsert = sink.Sink.upsert

async def _upsert_or_hang(self, table, rows):
    if any(row.get("resource_id") == "db-hang" for row in rows):
        await asyncio.Event().wait()
    return await _upsert(self, table, rows)

sink.Sink.upsert = _upsert_or_hang
'''


def test_a_stalled_worker_answers_503_on_health_and_live(
        make_worker, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HANG_ONE_WRITE)
    worker = make_worker(PYTHONPATH=str(hook), SPCWATCH_HEALTH_STALL_SECONDS="8")
    worker.start()
    topic = topic_prefix + "metrics.samples"
    asyncio.run(produce(kafka_bootstrap, topic, [(b"db-1", orjson.dumps(SAMPLE))]))
    wait_until(lambda: worker.metric("spcwatch_consumer_lag", {"topic": topic}) == 0, "the first commit")
    status, body = worker.health()
    assert status == 200 and worker.get("/health/live")[0] == 200, body

    asyncio.run(produce(kafka_bootstrap, topic, [
        (b"db-hang", orjson.dumps({**SAMPLE, "resource_id": "db-hang"})),
        (b"db-1", orjson.dumps({**SAMPLE, "ts": "2026-02-17T10:06:00Z"}))]))
    wait_until(lambda: worker.get("/health/live")[0] == 503, "/health/live to report the stall")
    status, body = worker.health()
    reasons = orjson.loads(body)["reasons"]
    assert status == 503 and any(r.startswith(f"stalled: {topic}[") for r in reasons), reasons
    assert not any(r.startswith("database:") for r in reasons)
    assert worker.proc.poll() is None
