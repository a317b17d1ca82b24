"""``spcwatch backfill prometheus`` against a real Prometheus whose TSDB holds two days of history.

The TSDB is written by ``promtool tsdb create-blocks-from openmetrics``; the backfill publishes
to a real Kafka topic; the published batches go through the real infra processor, beside a
second processor that is given the same samples one poll at a time, as a live collector would.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest

from agents.core.events import MetricSample, decode_samples
from agents.infra import InfraProcessor, InfraSettings
from stream_app.backfill import chunks, parse_duration
from tests.conftest import free_port
from tests.stream_app.runtime.test_worker import consume

pytestmark = pytest.mark.integration

NOW = time.time()
END = NOW - NOW % 3600 - 3600  # the last sample of the history
START = END - 2 * 86400 - 2 * 3600
SPIKE_INSIDE = END - 6 * 3600  # db-1: three minutes of 500, then back to normal
RESOURCES = ("db-1", "db-2")


def value(resource: str, ts: float) -> float:
    if resource == "db-1" and SPIKE_INSIDE <= ts < SPIKE_INSIDE + 180:
        return 500.0
    if resource == "db-2" and ts >= END - 60:  # db-2: the history ends inside an episode
        return 500.0
    hour = (ts % 86400) / 3600
    noise = ((int(ts // 60) * 7919 + len(resource)) % 13 - 6) / 3  # deterministic, ±2
    return 50 + 10 * math.sin(2 * math.pi * hour / 24) + noise


def history() -> list[tuple[str, float, float]]:
    return [(r, ts, value(r, ts)) for r in RESOURCES for ts in range(int(START), int(END) + 1, 60)]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    prometheus_bin, promtool = shutil.which("prometheus"), shutil.which("promtool")
    assert prometheus_bin and promtool, "prometheus/promtool are not installed (.ci/run installs the Debian package)"
    tmp = tmp_path_factory.mktemp("prom")
    lines = ["# TYPE cpu gauge"]
    lines += [f'cpu{{instance="{r}",job="node"}} {v!r} {int(ts)}' for r, ts, v in history()]
    (tmp / "history.om").write_text("\n".join([*lines, "# EOF", ""]))
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(tmp / "history.om"),
                    str(tmp / "tsdb")], check=True, capture_output=True, timeout=120)
    (tmp / "prometheus.yml").write_text("global: {scrape_interval: 1h}\n")
    port = free_port()
    proc = subprocess.Popen([prometheus_bin, f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'tsdb'}", "--storage.tsdb.retention.time=10y",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/api/v1/query?query=cpu&time={END}", timeout=2) as response:
                    if len(orjson.loads(response.read())["data"]["result"]) == 2:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("prometheus did not come up with the imported history")
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def _feed(processor: InfraProcessor, store: dict, messages: list[list[MetricSample]]) -> list:
    alerts = []
    for events in messages:
        alerts += processor.process(store, "metrics.samples", events).alerts
    return alerts


def _live(resource: str, ts: float, v: float) -> list[MetricSample]:
    return [MetricSample(ts, "prometheus", "prometheus", resource, "cpu", v, {"job": "node"})]


def _detectors(store: dict) -> dict:
    return {rid: {key: s["d"] for key, s in monitor.to_state()["s"].items()} for rid, monitor in store.items()}


def test_helpers_parse_durations_and_cut_windows() -> None:
    assert parse_duration("30d") == 30 * 86400 and parse_duration("90m") == 5400 and parse_duration("15") == 15
    with pytest.raises(ValueError):
        parse_duration("3 weeks")
    assert chunks(0, 250, 100) == [(0, 100), (100, 200), (200, 250)]


def test_backfill_warms_like_live_records_history_and_fires_right_after(
        prometheus: str, kafka_bootstrap: str, topic_prefix: str) -> None:
    env = {"SPCWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap, "SPCWATCH_TOPIC_PREFIX": topic_prefix, "PATH": "/usr/bin:/bin"}
    cli = [sys.executable, "-m", "stream_app.cli"]
    assert subprocess.run([*cli, "topics", "create"], env=env, capture_output=True, timeout=60).returncode == 0
    until = datetime.fromtimestamp(END + 60, UTC).isoformat()
    result = subprocess.run([*cli, "backfill", "prometheus", "--url", prometheus, "--query", "cpu",
                             "--since", f"{int(END + 60 - START)}s", "--until", until, "--chunk", "12h"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = history()
    assert f"published {len(expected)} samples of history" in result.stderr
    assert "backfill prometheus: chunk 5/5" in result.stderr  # progress lines when not on a terminal
    records = asyncio.run(consume(kafka_bootstrap, topic_prefix + "metrics.samples", 10))
    assert len(records) == 10  # 5 chunks x 2 resources, each under the 2000-sample cap
    assert all(orjson.loads(r.value)["history"] is True for r in records)
    records.sort(key=lambda r: (r.partition, r.offset))
    backfilled = [decode_samples(r.value).events for r in records]
    assert all({s.resource_id for s in m} == {r.key.decode()} and all(s.history for s in m)
               for r, m in zip(records, backfilled, strict=True))
    got = sorted((s.resource_id, s.ts, s.value) for m in backfilled for s in m)
    assert got == sorted(expected)  # every sample, once, with the value Prometheus stored

    # The worker warmed by the backfill, and one that saw the same samples live, minute by minute.
    warm, warm_store = InfraProcessor(InfraSettings()), {}
    live, live_store = InfraProcessor(InfraSettings()), {}
    history_alerts = _feed(warm, warm_store, backfilled)
    live_alerts = _feed(live, live_store, [_live(r, ts, v) for ts in range(int(START), int(END) + 1, 60)
                                           for r, v in ((r, value(r, ts)) for r in RESOURCES)])
    assert _detectors(warm_store) == _detectors(live_store)  # same baselines, same episode state

    # The past: db-1's episode started and ended inside the history, recorded but marked; db-2's is open.
    assert [(a.entity["resource_id"], a.status) for a in live_alerts] == [
        ("db-1", "firing"), ("db-1", "resolved"), ("db-2", "firing")]
    assert sorted((a.alert_id, a.status) for a in history_alerts) == sorted((a.alert_id, a.status) for a in live_alerts)
    assert all(a.history for a in history_alerts) and not any(a.history for a in live_alerts)
    assert all(a.to_event()["history"] is True and a.to_row()["history"] == 1 for a in history_alerts)

    # History writes, of its per-point rows, only the signals (HISTORY_ROWS=all: every one).
    trimmed = InfraProcessor(InfraSettings()).process({}, "metrics.samples", backfilled[0]).rows
    assert "infra_metric_rollups" not in trimmed or trimmed["infra_metric_rollups"] == []
    assert all(r["rules"] != "[]" for r in trimmed.get("infra_anomaly_scores", []))
    assert trimmed["infra_inventory"] and trimmed["infra_series"]
    full = InfraProcessor(InfraSettings(history_rows="all")).process({}, "metrics.samples", backfilled[0]).rows
    assert len(full["infra_metric_rollups"]) == len(full["infra_anomaly_scores"]) == len(backfilled[0])

    # Backfilling again (or over what the worker saw) changes nothing.
    before = _detectors(warm_store)
    assert _feed(warm, warm_store, backfilled) == []
    assert _detectors(warm_store) == before

    # Right after the history: db-1 spikes and fires at once (its baseline is warm; a cold worker
    # would be warming up), db-2's open episode fires as a live alert with its first live sample.
    after = END + 60
    cold = InfraProcessor(InfraSettings())
    assert _feed(cold, {}, [_live("db-1", after, 500.0)]) == []
    spike = _feed(warm, warm_store, [_live("db-1", after, 500.0)])
    assert [(a.entity["resource_id"], a.status, a.history) for a in spike] == [("db-1", "firing", False)]
    carried = _feed(warm, warm_store, [_live("db-2", after, 500.0)])
    assert [(a.alert_id, a.status, a.history) for a in carried] == [(live_alerts[-1].alert_id, "firing", False)]
    assert _feed(warm, warm_store, [_live("db-2", after + 60, 500.0)]) == []  # sent once


async def test_history_alerts_are_recorded_marked_and_the_live_send_clears_the_mark(db_url: str) -> None:
    from sqlalchemy import text

    from agents.core.alerts import Alert
    from stream_app.runtime import db
    from stream_app.runtime.sink import Sink

    engine = db.create_engine(db_url)
    try:
        await db.upgrade(engine)
        sink = Sink(engine)
        past = Alert(alert_id="h-1", status="firing", severity="warning", use_case="infra", rule="WE1",
                     entity={"resource_id": "db-2", "metric": "cpu"}, starts_at=END, summary="s", history=True)
        await sink.upsert("alerts", [past.to_row()])
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT history FROM alerts WHERE alert_id = 'h-1'"))).scalar() == 1
        from dataclasses import replace

        await sink.upsert("alerts", [replace(past, history=False).to_row()])  # still open at the end: sent live
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT history FROM alerts WHERE alert_id = 'h-1'"))).scalar() == 0
    finally:
        await engine.dispose()
