"""A row the database refuses for its values goes to deadletter; the checkpoint and the worker go on."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.conftest import _mysql_exec
from tests.faults.test_database import query
from tests.stream_app.runtime.test_worker import SAMPLE, consume, produce, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.integration]

# Test-only: the database refuses one resource's series row, as a trigger's SIGNAL does (MySQL 1644).
TRIGGER = """CREATE TRIGGER refuse_db_bad BEFORE INSERT ON infra_series FOR EACH ROW
BEGIN
  IF NEW.resource_id = 'db-bad' THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'test: db-bad refused';
  END IF;
END"""


def test_a_row_the_database_refuses_is_dead_lettered_and_every_other_row_is_written(
        make_worker, kafka_bootstrap: str, topic_prefix: str, mysql_url: str) -> None:  # type: ignore[no-untyped-def]
    worker = make_worker(SPCWATCH_DB_URL=mysql_url)
    worker.start()
    wait_until(lambda: query(mysql_url, "SHOW TABLES LIKE 'infra_series'") != [], "the migrations")
    _mysql_exec(mysql_url, TRIGGER)

    topic = topic_prefix + "metrics.samples"
    good = [f"db-{i}" for i in range(10)]
    batch = [{**SAMPLE, "resource_id": r, "value": float(i)} for i, r in enumerate([*good[:5], "db-bad", *good[5:]])]
    asyncio.run(produce(kafka_bootstrap, topic, [(s["resource_id"].encode(), orjson.dumps(s)) for s in batch]))

    def resources() -> set[str]:
        return {r for (r,) in query(mysql_url, "SELECT DISTINCT resource_id FROM infra_rollups")}

    wait_until(lambda: resources() == set(good), "every other resource's rows")
    records = asyncio.run(consume(kafka_bootstrap, topic_prefix + "deadletter", 1))
    assert records, "the refused row must reach deadletter"
    letter = orjson.loads(records[0].value)
    assert letter["reason"] == "db_rejected" and letter["table"] == "infra_series"
    assert "1644: test: db-bad refused" in letter["detail"]
    assert orjson.loads(letter["original_text"])["resource_id"] == "db-bad"
    assert letter["source_topic"] == "metrics.samples" and letter["offset"] <= letter["last_offset"]
    assert worker.metric("spcwatch_rows_quarantined_total", {"table": "infra_series"}) >= 1

    # The checkpoint went on: its offsets are committed and the next samples are written.
    wait_until(lambda: worker.metric("spcwatch_consumer_lag", {"topic": topic}) == 0, "the commit")
    asyncio.run(produce(kafka_bootstrap, topic, [(b"db-0", orjson.dumps({**SAMPLE, "resource_id": "db-0",
                                                                         "ts": "2026-02-17T10:06:00Z"}))]))
    wait_until(lambda: len(query(mysql_url, "SELECT minute FROM infra_rollups WHERE resource_id = 'db-0'")) == 2,
               "the next sample's row")
    assert worker.proc.poll() is None, "the worker must keep running"
    assert "the database refused a row of infra_series" in worker.log_text()
