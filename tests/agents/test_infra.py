"""UC-IT-01 end to end: the processor offline, and the real worker on Kafka + MariaDB."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agents.infra import InfraProcessor, InfraSettings
from stream_app.runtime import db
from tests.infra_data import SILENT, START, replay, samples, write_input

TABLES = ("alerts", "infra_series", "infra_metric_rollups", "infra_anomaly_scores", "infra_health_scores",
          "infra_inventory")


def episodes(alerts: list[dict]) -> set[tuple]:
    """The infra alerts' transitions (a worker running other use cases beside infra publishes theirs too)."""
    return {(a["alert_id"], a["status"], a["rule"], a["severity"], a["entity"]["resource_id"],
             a["starts_at"], a["ends_at"]) for a in alerts if a["use_case"] == "infra"}


def rows_when(url: str, ready, timeout: float = 60) -> dict[str, list[tuple]]:  # type: ignore[no-untyped-def]
    """Table rows once ``ready(rows)`` holds: rows land at the worker's next checkpoint."""
    deadline = time.monotonic() + timeout
    while True:
        rows = asyncio.run(table_rows(url))
        if ready(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


async def table_rows(url: str) -> dict[str, list[tuple]]:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            return {t: sorted(tuple(r) for r in (await conn.exec_driver_sql(f"SELECT * FROM {t}")).all())
                    for t in TABLES}
    finally:
        await engine.dispose()


def test_the_absence_timer_loads_only_resources_that_may_be_due() -> None:
    """A worker may hold more resources than it caches: the timer skims stored state instead of loading it."""
    from agents.core.events import sample_from_obj
    from stream_app.runtime.store import CachedStore, PartitionStore

    processor = InfraProcessor(InfraSettings())
    loads = []
    load = processor.load
    processor.load = lambda state: loads.append(state["r"][0]) or load(state)  # type: ignore[method-assign]
    cached = CachedStore(PartitionStore({}, 0), processor, max_cached=2)
    plain: dict = {}
    for minute in range(3):  # ten resources show their 60 s interval; r7 then falls silent
        for r in range(10):
            if r == 7 and minute == 2:
                continue
            sample = [sample_from_obj({"ts": START + 60 * minute, "resource_id": f"r{r}", "metric": "cpu",
                                       "value": 1.0})]
            processor.process(cached, "metrics.samples", sample)
            processor.process(plain, "metrics.samples", sample)
    cached.write_back()  # all stored; only two stay live
    loads.clear()
    assert processor.tick(cached, START + 120 + 60).alerts == []  # nobody due yet
    assert loads == []
    due = START + 60 + 5 * 60  # r7's last sample + 5 intervals
    assert processor.tick(cached, due).alerts == []  # judged against the previous tick's clock ...
    alerts = processor.tick(cached, due).alerts  # ... so the next one finds it
    assert [a.entity["resource_id"] for a in alerts] == ["r7"]
    processor.tick(plain, due)
    assert [(a.alert_id, a.starts_at) for a in alerts] == [(a.alert_id, a.starts_at)
                                                            for a in processor.tick(plain, due).alerts]
    assert set(loads) <= {"r7"}  # the others were skimmed, not loaded


def test_after_a_silence_of_the_whole_partition_only_resources_that_stay_silent_are_absent() -> None:
    """A collector down for 30 minutes: its first poll back moves the clock past every deadline
    before the other resources' samples of that poll are processed."""
    from agents.core.events import sample_from_obj

    processor = InfraProcessor(InfraSettings())
    store: dict = {}

    def report(r: int, ts: float) -> None:
        processor.process(store, "metrics.samples", [sample_from_obj(
            {"ts": ts, "resource_id": f"r{r}", "metric": "cpu", "value": 1.0})])

    for minute in range(3):
        for r in range(5):
            report(r, START + 60 * minute)
        assert processor.tick(store, START + 60 * minute).alerts == []
    back = START + 120 + 1800
    report(0, back)  # the first message of the poll after the outage
    assert processor.tick(store, back).alerts == []  # a tick between two messages of that poll
    for r in (1, 2, 3):  # r4 does not come back
        report(r, back)
    alerts = processor.tick(store, back).alerts
    assert [(a.entity["resource_id"], a.status) for a in alerts] == [("r4", "firing")]
    assert alerts[0].starts_at == START + 120 + 5 * 60  # absent since its own deadline


def test_retirement_is_configured_from_the_environment_and_bad_values_name_the_variable() -> None:
    from agents.core.settings import ConfigError, load_env

    settings = load_env(InfraSettings, "SPCWATCH_INFRA_", {"SPCWATCH_INFRA_RETIRE_AFTER_SECONDS": "0"})
    assert settings.model_config().retire_after_seconds == 0.0
    assert InfraSettings().model_config().retire_after_seconds == 7 * 86400.0
    with pytest.raises(ConfigError, match=r"^SPCWATCH_INFRA_RETIRE_AFTER_SECONDS must be >= 0"):
        load_env(InfraSettings, "SPCWATCH_INFRA_", {"SPCWATCH_INFRA_RETIRE_AFTER_SECONDS": "-1"})


def test_a_resource_absent_long_enough_is_retired_and_comes_back_as_a_new_one() -> None:
    """Terminated instances must not stay absent (and in memory) for ever."""
    from prometheus_client import CollectorRegistry, generate_latest

    from agents.core.contract import Outputs, row_datetime
    from agents.core.events import sample_from_obj
    from stream_app.runtime.metrics import SpcMetrics
    from stream_app.runtime.store import CachedStore, PartitionStore

    processor = InfraProcessor(InfraSettings(retire_after_seconds=3600.0))
    metrics = SpcMetrics(CollectorRegistry())
    processor.bind_metrics(metrics)
    store = CachedStore(PartitionStore({}, 0), processor, max_cached=1)  # r0 lives in the table only

    def report(r: int, ts: float) -> None:
        processor.process(store, "metrics.samples", [sample_from_obj(
            {"ts": ts, "resource_type": "ec2", "resource_id": f"r{r}", "metric": "cpu", "value": 1.0})])

    def tick(now: float) -> Outputs:
        processor.tick(store, now)  # the timer judges against the previous tick's clock
        return processor.tick(store, now)

    for minute in range(70):  # r0 reports for three minutes, r1 keeps reporting
        if minute < 3:
            report(0, START + 60 * minute)
        report(1, START + 60 * minute)
    store.write_back()
    absent_at = START + 120 + 5 * 60
    fired = tick(absent_at).alerts
    assert [(a.entity["resource_id"], a.status) for a in fired] == [("r0", "firing")]
    assert not tick(absent_at + 3600 - 60)  # not yet
    retired = tick(absent_at + 3600)
    assert [(a.alert_id, a.status, a.ends_at) for a in retired.alerts] == [
        (fired[0].alert_id, "resolved", absent_at + 3600)]
    assert retired.alerts[0].summary.startswith("retired: ec2 r0 absent since")
    assert [(r["resource_id"], r["status"]) for r in retired.rows["infra_inventory"]] == [("r0", "retired")]
    assert "r0" not in store and "r1" in store
    assert store.write_back()["r0"] is None  # a tombstone: the changelog forgets it too
    exposition = generate_latest(metrics.registry).decode()
    assert 'resource_id="r0"' not in exposition and 'resource_id="r1"' in exposition
    later = tick(absent_at + 7200)  # r1 has gone quiet by now; r0 is retired once, then nothing
    assert [a.entity["resource_id"] for a in later.alerts] == ["r1"]
    back = processor.process(store, "metrics.samples", [sample_from_obj(
        {"ts": absent_at + 7300, "resource_type": "ec2", "resource_id": "r0", "metric": "cpu", "value": 1.0})])
    assert back.alerts == []  # a new resource: nothing to resolve
    assert [(r["status"], r["first_seen"]) for r in back.rows["infra_inventory"]] == [
        ("active", row_datetime(absent_at + 7300))]


def test_replay_finds_the_fault_and_the_silent_host_and_nothing_else(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "samples.jsonl"
    write_input(path, SILENT)
    alerts = replay(tmp_path, sqlite_url, path)
    found = sorted((a["entity"]["resource_id"], a["rule"], a["status"]) for a in alerts)
    assert found == [("db-01", "WE1", "firing"), ("db-01", "WE1", "resolved"), ("db-04", "ABSENT", "firing")]
    fault = [a for a in alerts if a["rule"] == "WE1"]
    assert fault[0]["entity"] == {"resource_id": "db-01", "metric": "CPUUtilization",
                                  "labels": {"region": "us-east-1"}}
    assert fault[0]["alert_id"] == fault[1]["alert_id"]
    assert fault[0]["value"] > fault[0]["expected"]["upper"]
    absent = next(a for a in alerts if a["rule"] == "ABSENT")
    last = max(s["ts"] for b in samples(days=3.0, silent=SILENT) for s in b if s["resource_id"] == "db-04")
    assert absent["starts_at"] == time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(last + 5 * 300))
    rows = asyncio.run(table_rows(sqlite_url))
    inventory = {r[0]: r for r in rows["infra_inventory"]}
    assert len(inventory) == 6 and inventory["db-04"][-1] == "absent" and inventory["db-00"][-1] == "active"
    n_points = sum(len(b) for b in samples(days=3.0, silent=SILENT))
    assert len(rows["infra_anomaly_scores"]) == n_points
    assert len(rows["infra_metric_rollups"]) == n_points  # 5-minute samples: one per minute row
    assert {r[1] for r in rows["alerts"]} == {"resolved", "firing"}


@pytest.mark.integration
def test_replaying_the_same_input_twice_leaves_identical_rows(tmp_path: Path, mysql_url: str) -> None:
    path = tmp_path / "samples.jsonl"
    write_input(path, SILENT)
    first_alerts = replay(tmp_path, mysql_url, path)
    first = asyncio.run(table_rows(mysql_url))
    second_alerts = replay(tmp_path, mysql_url, path)
    assert asyncio.run(table_rows(mysql_url)) == first
    assert episodes(second_alerts) == episodes(first_alerts)
    assert len(first["alerts"]) == 2  # one row per alert_id, updated on resolution


async def _produce(bootstrap: str, topic: str, batches: list[list[dict]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, acks="all")
    await producer.start()
    try:
        pending = [await producer.send(topic, orjson.dumps({"samples": b}), key=b[0]["resource_id"].encode())
                   for b in batches]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _alerts(bootstrap: str, topic: str, until: set[tuple], timeout: float) -> list[dict]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    found: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until <= episodes(found):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(orjson.loads(r.value) for r in records)
        # a little longer: anything unexpected would show up now
        end = time.monotonic() + 3
        while time.monotonic() < end:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(orjson.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    return found


INFRA_ENV = {"SPCWATCH_INFRA_INTERVAL_SECONDS": "300"}


@pytest.mark.integration
def test_stream_gives_the_same_alerts_as_replay(tmp_path: Path, sqlite_url: str, mysql_url: str, make_worker,
                                                kafka_bootstrap: str, topic_prefix: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "samples.jsonl"
    batches = write_input(path, SILENT)
    expected = episodes(replay(tmp_path, sqlite_url, path))
    worker = make_worker(SPCWATCH_DB_URL=mysql_url, SPCWATCH_PARTITIONS="1", **INFRA_ENV)
    worker.start()
    asyncio.run(_produce(kafka_bootstrap, topic_prefix + "metrics.samples", batches))
    streamed = asyncio.run(_alerts(kafka_bootstrap, topic_prefix + "alerts", expected, 120))
    assert episodes(streamed) == expected, worker.log_tail()
    assert worker.metric("spcwatch_events_consumed_total", {"topic": "metrics.samples"}) == sum(map(len, batches))
    assert worker.metric("spcwatch_alerts_total", {"use_case": "infra", "rule": "WE1", "severity": "critical"}) == 2
    assert worker.metric("spcwatch_infra_health_score", {"resource_id": "db-04", "resource_type": "rds"}) == 0
    rows = rows_when(mysql_url, lambda r: len(r["infra_inventory"]) == 6)
    assert len(rows["alerts"]) == 2 and len(rows["infra_inventory"]) == 6
    # Ticks a previous owner of the partition sent (read back after a restart or a rebalance) carry its
    # clock, which can be far past the state this worker holds: they must not move the clock.
    last = max(s["ts"] for b in batches for s in b)
    asyncio.run(_stale_ticks(kafka_bootstrap, topic_prefix + "spcwatch.infra.ticks", last + 86400))
    assert episodes(asyncio.run(_alerts(kafka_bootstrap, topic_prefix + "alerts", expected, 30))) == expected


async def _stale_ticks(bootstrap: str, topic: str, now: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for _ in range(3):  # back to back: the timer's one-tick grace must not be what saves the day
            await producer.send(topic, orjson.dumps({"now": now}), key=b"tick", partition=0)
        await producer.flush()
    finally:
        await producer.stop()


@pytest.mark.integration
def test_sigkill_mid_stream_loses_and_duplicates_nothing(tmp_path: Path, sqlite_url: str, mysql_url: str,
                                                         make_worker, kafka_bootstrap: str,
                                                         topic_prefix: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "samples.jsonl"
    batches = write_input(path)
    expected = episodes(replay(tmp_path, sqlite_url, path))
    assert len(expected) == 2
    worker = make_worker(SPCWATCH_DB_URL=mysql_url, **INFRA_ENV)
    worker.start()
    cut = int(len(batches) * 0.85)  # after the baselines are warm, before the fault
    topic = topic_prefix + "metrics.samples"
    asyncio.run(_produce(kafka_bootstrap, topic, batches[:cut]))
    deadline = time.monotonic() + 60
    while worker.metric("spcwatch_events_consumed_total", {"topic": "metrics.samples"}) < 0.6 * sum(
            map(len, batches[:cut])) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
    asyncio.run(_produce(kafka_bootstrap, topic, batches[cut:]))
    worker.start()
    streamed = asyncio.run(_alerts(kafka_bootstrap, topic_prefix + "alerts", expected, 120))
    assert episodes(streamed) == expected, worker.log_tail()
    n_points = sum(map(len, batches))
    rows = rows_when(mysql_url, lambda r: len(r["infra_anomaly_scores"]) >= n_points)
    assert [r[:2] for r in rows["alerts"]] == [(next(iter(expected))[0], "resolved")]  # one row per alert_id
    assert len(rows["infra_anomaly_scores"]) == n_points  # nothing lost, nothing twice


@pytest.mark.integration
def test_metrics_scraped_by_a_real_prometheus(tmp_path: Path, make_worker, kafka_bootstrap: str,
                                              topic_prefix: str) -> None:  # type: ignore[no-untyped-def]
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (.ci/run installs the Debian package)"
    from tests.conftest import free_port

    worker = make_worker(**INFRA_ENV)
    worker.start()
    batches = list(samples(days=0.2))
    asyncio.run(_produce(kafka_bootstrap, topic_prefix + "metrics.samples", batches))
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: spcwatch\n"
                      f"    static_configs: [{{targets: ['127.0.0.1:{worker.port}']}}]\n")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        query = urllib.parse.quote('spcwatch_events_consumed_total{topic="metrics.samples"}')
        value = 0.0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and value < sum(map(len, batches)):
            time.sleep(1)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?query={query}", timeout=5) as r:
                    result = orjson.loads(r.read())["data"]["result"]
                value = float(result[0]["value"][1]) if result else 0.0
            except OSError:
                continue
        assert value == sum(map(len, batches))
    finally:
        proc.terminate()
        proc.wait(20)


def test_the_redis_memory_leak_fires_exhaustion_hours_before_it_is_full_and_before_we1() -> None:
    """The simulator's redis-memory-leak, one closed day of history (the simulator's default)."""
    from datetime import UTC, datetime

    from agents.core.events import sample_from_obj
    from stream_app.simdata import World
    from stream_app.simgen import REDIS_TARGET, SimConfig, infra_events

    t0 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()
    cfg = SimConfig(t0=t0, start=t0 - 86400.0, end=t0 + 12 * 3600.0, scenarios=("redis-memory-leak",),
                    world=World(), domains=("infra",), infra_interval=300.0)
    batches = [[sample_from_obj(s) for s in e.value["samples"]] for e in infra_events(cfg)
               if e.key == REDIS_TARGET.encode()]
    processor = InfraProcessor(InfraSettings(interval_seconds=300.0))
    store: dict = {}
    alerts = [a for b in batches for a in processor.process(store, "metrics.samples", b).alerts]
    metric = "DatabaseMemoryUsagePercentage"
    usage = [(s.ts, s.value) for b in batches for s in b if s.metric == metric]
    full = next(t for t, v in usage if v >= 100.0)
    mine = [a for a in alerts if a.entity["metric"] == metric]
    exhaustion = [a for a in mine if a.rule == "EXHAUSTION"]
    we1 = next(a for a in mine if a.rule == "WE1")
    first = exhaustion[0]
    assert first.status == "firing" and first.severity == "warning"
    assert first.event_ts is not None and first.event_ts < we1.starts_at and full - first.event_ts > 4 * 3600
    assert [a.severity for a in exhaustion] == ["warning", "critical"]
    assert len({a.alert_id for a in exhaustion}) == 1  # one episode, escalated
    event = exhaustion[1].to_event()
    exhausted_at = datetime.fromisoformat(event["expected"]["exhausted_at"].replace("Z", "+00:00")).timestamp()
    assert abs(exhausted_at - full) < 3600 and exhausted_at > exhaustion[1].event_ts
    assert "projected to reach its limit" in event["summary"]
    healthy = {a.entity["metric"] for a in alerts if a.rule == "EXHAUSTION"}
    assert healthy == {metric}  # the resource's other bounded metrics stay quiet
    state = processor.dump(store[REDIS_TARGET])
    assert "x" in state["s"][next(k for k in state["s"] if metric in k)]


def test_limits_come_from_the_environment_and_a_bad_one_names_the_variable() -> None:
    from agents.core.settings import ConfigError, load_env

    env = {"SPCWATCH_INFRA_LIMITS": "FreeStorageSpace<0,DatabaseConnections>500"}
    model = load_env(InfraSettings, "SPCWATCH_INFRA_", env).model_config()
    free, conns = model.exhaustion_for("FreeStorageSpace"), model.exhaustion_for("DatabaseConnections")
    assert free is not None and (free.rising, free.limit) == (False, 0.0)
    assert conns is not None and (conns.rising, conns.limit) == (True, 500.0)
    cpu = model.exhaustion_for("CPUUtilization")
    assert cpu is not None and (cpu.rising, cpu.limit) == (True, 100.0)
    assert model.exhaustion_for("NetworkIn") is None
    off = load_env(InfraSettings, "SPCWATCH_INFRA_", {"SPCWATCH_INFRA_EXHAUSTION": "false"}).model_config()
    assert off.exhaustion_for("CPUUtilization") is None
    with pytest.raises(ConfigError, match=r"^SPCWATCH_INFRA_LIMITS must be comma-separated"):
        load_env(InfraSettings, "SPCWATCH_INFRA_", {"SPCWATCH_INFRA_LIMITS": "FreeStorageSpace=0"})


def _half_hour_batches(days: float, faults: tuple) -> list[list[dict]]:
    """10 resources x 2 metrics (20 healthy series) at 10 minutes (fewer points a day keep the test
    short), one message per resource and half hour (3 timestamps: less than the 50 minutes after
    which a resource is absent, so the partition's clock never runs ahead of a resource by that)."""
    from tests.infra_data import samples as gen

    by_hour: dict[tuple[str, int], list[dict]] = {}
    for batch in gen(resources=10, days=days, interval=600.0, seed=11, faults=faults):
        key = (batch[0]["resource_id"], int((batch[0]["ts"] - START) // 1800))
        by_hour.setdefault(key, []).extend(batch)
    return [by_hour[k] for k in sorted(by_hour, key=lambda k: (k[1], k[0]))]


@pytest.mark.integration
def test_twenty_healthy_series_for_eight_days_and_one_spike_page_exactly_once(
        tmp_path: Path, sqlite_url: str, mysql_url: str, make_worker, kafka_bootstrap: str,
        topic_prefix: str) -> None:  # type: ignore[no-untyped-def]
    """The default detector on real Kafka + MariaDB: a x3 CPU spike of 20 minutes on db-03 on day 8
    is the only episode over 20 healthy series (daily cycle, 5 % noise) x 8 days."""
    from tests.infra_data import Fault

    spike = Fault("db-03", "CPUUtilization", START + 7.5 * 86400.0, START + 7.5 * 86400.0 + 1200.0, 3.0)
    batches = _half_hour_batches(8.0, (spike,))
    path = tmp_path / "samples.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"samples": b}) + b"\n" for b in batches))
    replayed = replay(tmp_path, sqlite_url, path)
    firing = [a for a in replayed if a["status"] == "firing" and a["rule"] != "ABSENT"]
    assert [(a["entity"]["resource_id"], a["entity"]["metric"]) for a in firing] == [("db-03", "CPUUtilization")]
    assert firing[0]["starts_at"].startswith("2026-02-24T12:")  # START + 7.5 days
    expected = episodes(replayed)
    worker = make_worker(SPCWATCH_DB_URL=mysql_url, SPCWATCH_PARTITIONS="1", **INFRA_ENV)
    worker.start()
    asyncio.run(_produce(kafka_bootstrap, topic_prefix + "metrics.samples", batches))
    streamed = asyncio.run(_alerts(kafka_bootstrap, topic_prefix + "alerts", expected, 120))
    assert episodes(streamed) == expected, worker.log_tail()
    rows = rows_when(mysql_url, lambda r: len(r["alerts"]) >= 1 and len(r["infra_inventory"]) == 10)
    assert len(rows["alerts"]) == 1 and len(rows["infra_inventory"]) == 10


def test_the_method_comes_from_the_environment_and_a_bad_one_names_the_variable() -> None:
    from agents.core.settings import ConfigError, load_env
    from models import DetectorConfig, RobustConfig

    spc = load_env(InfraSettings, "SPCWATCH_INFRA_", {}).model_config().detector
    assert isinstance(spc, DetectorConfig) and spc.min_effect_rel == 1.0
    robust = load_env(InfraSettings, "SPCWATCH_INFRA_", {"SPCWATCH_INFRA_METHOD": "robust",
                                                          "SPCWATCH_INFRA_TAIL_PROBABILITY": "1e-5"}).model_config()
    assert isinstance(robust.detector, RobustConfig)
    assert (robust.detector.tail_probability, robust.detector.min_effect_rel) == (1e-5, 0.5)
    with pytest.raises(ConfigError, match=r"^SPCWATCH_INFRA_METHOD must be robust or spc"):
        load_env(InfraSettings, "SPCWATCH_INFRA_", {"SPCWATCH_INFRA_METHOD": "ewma"})
    with pytest.raises(ConfigError, match=r"^SPCWATCH_INFRA_TAIL_PROBABILITY must be between"):
        load_env(InfraSettings, "SPCWATCH_INFRA_", {"SPCWATCH_INFRA_TAIL_PROBABILITY": "0.5"})



def test_replay_refuses_the_future_and_a_host_ahead_within_the_bound_raises_no_absence(
        tmp_path: Path, sqlite_url: str) -> None:
    """The clock rule in ``spcwatch replay`` (the worker calls the same function, and caps its timer
    the same way): a sample a day ahead is reported invalid and moves no clock. A host 290 s ahead
    (within the 300 s bound) is applied; with 30-s samples the others' absence deadline (5 intervals,
    150 s) is shorter than that, but no timer runs past the wall clock, so nobody is absent."""
    import io

    from agents.core.settings import Settings
    from stream_app.replay import run_replay

    now = time.time()
    base = now - 30 - now % 30 - 30 * 19
    healthy = [{"ts": base + 30 * step, "resource_id": f"r{r}", "metric": "cpu", "value": 1.0 + r}
               for step in range(20) for r in range(5)]
    ahead = [{"ts": base + 30 * step + 290, "resource_id": "ahead", "metric": "cpu", "value": 1.0}
             for step in range(20)]
    day_ahead = [{"ts": base + 300 + 86400, "resource_id": "r0", "metric": "cpu", "value": 9.0}]

    def run(name: str, lines: list[dict], skew: str) -> tuple[object, list[dict]]:
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
        out = io.StringIO()
        settings = Settings.from_env({"SPCWATCH_DB_URL": sqlite_url, "SPCWATCH_MAX_CLOCK_SKEW_SECONDS": skew})
        report = asyncio.run(run_replay(settings, InfraProcessor(InfraSettings(interval_seconds=30.0)), path, out))
        return report, [orjson.loads(line) for line in out.getvalue().splitlines()]

    def absent(alerts: list[dict]) -> set[str]:
        return {a["entity"]["resource_id"] for a in alerts if a["rule"] == "ABSENT"}

    report, alerts = run("future", healthy + day_ahead, "300")
    assert [(reason, "s in the future" in detail) for _, reason, detail in report.invalid] == [  # type: ignore[attr-defined]
        ("invalid_timestamp", True)]
    assert absent(alerts) == set()
    report, alerts = run("within", healthy + ahead, "300")
    assert not report.invalid and absent(alerts) == set()  # type: ignore[attr-defined]
    # Without the bound (and its timer cap) the others are judged by the clock the host ahead moved.
    _, alerts = run("unbounded", healthy + ahead, "0")
    assert absent(alerts) == {f"r{r}" for r in range(5)}
