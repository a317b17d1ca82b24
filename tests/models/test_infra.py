from __future__ import annotations

import itertools
import math
import statistics

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core.events import sample_from_obj
from models import DetectorConfig, RobustConfig
from models.detector import SeriesDetector
from models.infra import InfraModelConfig, ResourceMonitor
from tests.infra_data import DAY, START, Fault, samples

CONFIG = InfraModelConfig(detector=DetectorConfig.infra(), default_interval_seconds=300.0)
ROBUST = InfraModelConfig(detector=RobustConfig.infra(), default_interval_seconds=300.0)
BOTH = pytest.mark.parametrize("config", [CONFIG, ROBUST], ids=["spc", "robust"])


def feed(monitor: ResourceMonitor, batches) -> list:  # type: ignore[no-untyped-def]
    observations = []
    for batch in batches:
        parsed = [sample_from_obj(s) for s in batch if s["resource_id"] == monitor.resource_id]
        if parsed:
            observations.append(monitor.observe(parsed))
    return observations


@BOTH
def test_step_fault_fires_one_episode_and_resolves(config: InfraModelConfig) -> None:
    fault = Fault("db-01", "CPUUtilization", START + 2.5 * DAY, START + 2.5 * DAY + 7200, 3.0)
    monitor = ResourceMonitor("db-01", config)
    observations = feed(monitor, samples(days=3.0, faults=(fault,)))
    events = [(r.metric, e.kind, e.starts_at, sev) for o in observations for r in o.series for e, sev in r.events]
    assert [(m, k) for m, k, _, _ in events] == [("CPUUtilization", "firing"), ("CPUUtilization", "resolved")]
    assert fault.start <= events[0][2] < fault.start + 600  # caught at the first faulty point or the next
    assert events[0][3] == "critical"  # a 3x step on a 5%-noise series is far beyond 6 sigma


@BOTH
def test_healthy_resources_stay_quiet(config: InfraModelConfig) -> None:
    for rid in ("db-00", "db-03"):
        monitor = ResourceMonitor(rid, config)
        observations = feed(monitor, samples(days=3.0))
        assert [e for o in observations for r in o.series for e in r.events] == []
        assert monitor.health(monitor.last_seen) == (100, 0)


def test_rollups_aggregate_each_minute() -> None:
    monitor = ResourceMonitor("r", CONFIG)
    objs = [{"ts": START + s, "resource_id": "r", "metric": "m", "value": v}
            for s, v in ((0, 1.0), (20, 3.0), (40, 2.0), (61, 10.0))]
    obs = monitor.observe([sample_from_obj(o) for o in objs[:2]])
    assert obs.series[0].rollups == [(START, 2, 2.0, 1.0, 3.0)]
    obs = monitor.observe([sample_from_obj(o) for o in objs[2:]])
    assert obs.series[0].rollups == [(START, 3, 2.0, 1.0, 3.0), (START + 60, 1, 10.0, 10.0, 10.0)]


def test_absence_starts_after_the_configured_intervals_and_ends_with_a_sample() -> None:
    monitor = ResourceMonitor("db-02", CONFIG)
    feed(monitor, samples(days=0.5))
    last = monitor.last_seen
    assert monitor.interval == 300.0
    assert monitor.check_absent(last + 5 * 300.0 - 1) is None
    assert monitor.check_absent(last + 5 * 300.0) == last + 1500.0
    assert monitor.check_absent(last + 9999) is None  # already absent: no second start
    assert monitor.health(last + 2000) == (0, 0)
    obs = monitor.observe([sample_from_obj({"ts": last + 4000, "resource_id": "db-02", "metric": "m",
                                            "value": 1.0})])
    assert obs.returned_from_absence == last + 1500.0
    assert monitor.absent_since is None


def test_an_absent_resource_is_due_for_retirement_after_the_configured_time_and_never_when_disabled() -> None:
    for retire_after in (86400.0, 0.0):
        config = InfraModelConfig(detector=DetectorConfig.infra(), default_interval_seconds=300.0,
                                  retire_after_seconds=retire_after)
        monitor = ResourceMonitor("db-02", config)
        feed(monitor, samples(days=0.5))
        started = monitor.check_absent(monitor.last_seen + 1500.0)
        assert started is not None
        state = orjson.loads(orjson.dumps(monitor.to_state()))
        for now, due in ((started + 86400.0 - 1, False), (started + 86400.0, bool(retire_after))):
            assert monitor.retire_due(now) is due
            assert ResourceMonitor.may_be_due(state, now, config) is due  # the timer's skim agrees
    reporting = ResourceMonitor("db-03", CONFIG)
    feed(reporting, samples(days=0.5))
    assert not reporting.retire_due(reporting.last_seen + 30 * 86400.0)  # never absent: never retired


def test_health_score_formula() -> None:
    fault = Fault("db-01", "CPUUtilization", START + 2.5 * DAY, START + 2.5 * DAY + 7200, 3.0)
    monitor = ResourceMonitor("db-01", CONFIG)
    scores = []
    for batch in samples(days=3.0, faults=(fault,)):
        parsed = [sample_from_obj(s) for s in batch if s["resource_id"] == "db-01"]
        if parsed:
            monitor.observe(parsed)
            scores.append((parsed[0].ts, monitor.health(parsed[0].ts)))
    during = [h for ts, h in scores if fault.start + 600 <= ts < fault.end]
    after = [h for ts, h in scores if fault.end + 3600 <= ts < fault.end + 3 * 3600]
    assert set(during) == {(50, 1)}  # one critical episode: -50
    assert (90, 0) in after  # resolved within the hour: -10
    assert scores[-1][1] == (100, 0) or scores[-1][0] - fault.end > 3600


@BOTH
def test_state_round_trip_continues_identically(config: InfraModelConfig) -> None:
    fault = Fault("db-01", "CPUUtilization", START + 2.5 * DAY, START + 2.5 * DAY + 7200, 3.0)
    batches = list(samples(days=3.0, faults=(fault,)))
    whole = ResourceMonitor("db-01", config)
    expected = feed(whole, batches)
    split = ResourceMonitor("db-01", config)
    got = feed(split, batches[: len(batches) // 2])
    restored = ResourceMonitor.from_state(orjson.loads(orjson.dumps(split.to_state())), config)
    got += feed(restored, batches[len(batches) // 2:])

    def flat(observations):  # type: ignore[no-untyped-def]
        return [(r.series_key, [(p.ts, p.value, p.z, p.rules) for p in r.points], r.rollups,
                 [(e.episode_id, e.kind) for e, _ in r.events]) for o in observations for r in o.series]

    assert len(flat(got)) == len(flat(expected))
    for a, b in zip(flat(got), flat(expected), strict=True):
        assert a[0] == b[0] and a[2] == b[2] and a[3] == b[3]
        assert all(x[:2] == y[:2] and x[3] == y[3] and (x[2] == y[2] or (math.isnan(x[2]) and math.isnan(y[2])))
                   for x, y in zip(a[1], b[1], strict=True))


def test_a_small_shift_is_a_warning_episode() -> None:
    config = InfraModelConfig(detector=DetectorConfig.infra(min_effect_rel=0.3), default_interval_seconds=300.0,
                              critical_z=50.0)
    fault = Fault("db-01", "CPUUtilization", START + 2.5 * DAY, START + 2.5 * DAY + 7200, 1.6)
    monitor = ResourceMonitor("db-01", config)
    events = [(e.kind, sev) for o in feed(monitor, samples(days=3.0, faults=(fault,)))
              for r in o.series for e, sev in r.events]
    assert events == [("firing", "warning"), ("resolved", "warning")]


def test_no_absence_before_the_interval_is_known() -> None:
    monitor = ResourceMonitor("new", CONFIG)
    monitor.observe([sample_from_obj({"ts": START, "resource_id": "new", "metric": "m", "value": 1.0})])
    assert monitor.check_absent(START + 100 * 300.0) is None
    monitor.observe([sample_from_obj({"ts": START + 600, "resource_id": "new", "metric": "m", "value": 1.0})])
    assert monitor.check_absent(START + 600 + 5 * 600.0) == START + 600 + 5 * 600.0


def _observe(monitor: ResourceMonitor, ts: float, metric: str = "m") -> None:
    monitor.observe([sample_from_obj({"ts": ts, "resource_id": monitor.resource_id, "metric": metric,
                                      "value": 1.0})])


def test_jitter_and_a_catch_up_burst_do_not_shorten_the_interval() -> None:
    """A scrape 2 s after the previous one (a collector catching up) once made the interval 2 s,
    and the resource 'absent' after 10 s of its normal one-minute silence."""
    monitor = ResourceMonitor("r", CONFIG)
    t = START
    for i in range(30):
        t += 60.0 + (0.7 if i % 2 else -0.6)
        _observe(monitor, t)
        if i == 20:
            t += 2.0
            _observe(monitor, t)
    assert 59.0 < monitor.interval < 61.0
    assert monitor.check_absent(t + 120.0) is None
    assert monitor.check_absent(t + 5 * monitor.interval) == t + 5 * monitor.interval


def test_two_sources_offset_within_the_minute_are_one_minute_apart_not_seven_seconds() -> None:
    monitor = ResourceMonitor("i-1", CONFIG)
    for minute in range(12):
        _observe(monitor, START + 60.0 * minute, "CPUUtilization")  # CloudWatch, on the minute
        _observe(monitor, START + 60.0 * minute + 7.0, "node_load1")  # an exporter, 7 s later
    assert monitor.interval == 60.0
    last = monitor.last_seen
    assert monitor.check_absent(last + 53.0 + 60.0) is None  # the next minute is merely late


def test_the_interval_is_the_longest_period_among_the_series() -> None:
    """An exporter every 15 s and CloudWatch every 5 min: when the exporter stops, the resource
    still reports every 5 min, so it is absent only after 5 x 5 min of silence."""
    monitor = ResourceMonitor("db-1", CONFIG)
    for k in range(0, 41):
        _observe(monitor, START + 15.0 * k, "exporter")
        if k % 20 == 0:
            _observe(monitor, START + 15.0 * k, "cloudwatch")
    assert monitor.interval == 300.0
    assert monitor.check_absent(monitor.last_seen + 5 * 15.0) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=40), st.lists(st.integers(1, 39), max_size=5))
def test_period_is_the_median_of_the_last_gaps_however_the_samples_are_split(
        times: list[int], cuts: list[int]) -> None:
    """Incremental (any split into calls, repeats and late samples included) == the batch definition."""
    from models.infra import GAPS_KEPT, SeriesMonitor

    series = SeriesMonitor(SeriesDetector("k", DetectorConfig.infra()), "m", {})
    bounds = [0, *sorted({c for c in cuts if c < len(times)}), len(times)]
    for lo, hi in itertools.pairwise(bounds):
        series.note_times(sorted(float(t) for t in times[lo:hi]))
    newest: list[float] = []  # the running maximum: samples older than it add no gap
    for lo, hi in itertools.pairwise(bounds):
        for t in sorted(times[lo:hi]):
            if not newest or t > newest[-1]:
                newest.append(float(t))
    gaps = [b - a for a, b in itertools.pairwise(newest)][-GAPS_KEPT:]
    assert series.period == (statistics.median(gaps) if gaps else 0.0)
    assert series.last_ts == newest[-1]


def test_series_periods_survive_a_state_round_trip_and_old_states_still_load() -> None:
    monitor = ResourceMonitor("r", CONFIG)
    for k in range(6):
        _observe(monitor, START + 60.0 * k)
    state = orjson.loads(orjson.dumps(monitor.to_state()))
    restored = ResourceMonitor.from_state(state, CONFIG)
    assert restored.interval == 60.0 and restored.series["r|m"].gaps == [60.0] * 5
    for series_state in state["s"].values():
        del series_state["g"]  # written before the gaps were kept
    old = ResourceMonitor.from_state(state, CONFIG)
    assert old.interval == 60.0  # the stored interval stands until the series show theirs again
    _observe(old, START + 360.0)
    _observe(old, START + 420.0)
    assert old.interval == 60.0


def _batch_job(monitor: ResourceMonitor, start: float, hours: int, pause_hours: float = 1.0) -> tuple[float, list]:
    """Minute samples for ``hours`` hours, then a silence of ``pause_hours`` (an hourly batch
    exporter's rhythm, every 6 h); returns the last sample's time and the absences the timer saw."""
    t, absences = start, []
    for _ in range(hours // 6):
        for _ in range(int((6 - pause_hours) * 60)):
            _observe(monitor, t)
            t += 60.0
        last = t - 60.0
        for now in range(int(last), int(last + pause_hours * 3600), 60):  # the timer ticks through the pause
            started = monitor.check_absent(float(now))
            if started is not None:
                absences.append(started)
        t = last + pause_hours * 3600.0
    return t - 60.0, absences


def test_a_source_that_routinely_pauses_pages_for_its_usual_pause_only_until_it_has_seen_it_twice() -> None:
    monitor = ResourceMonitor("batch", InfraModelConfig())
    _last, absences = _batch_job(monitor, START, 6 * 8)  # 8 pauses of an hour, every 6 h
    assert len(absences) == 2  # the first two pauses: its rhythm is not known yet
    assert monitor.pause == 3600.0  # the usual silence: from the last sample to the next, an hour later
    assert monitor.silence_allowed == monitor.pause + 5 * 60.0


def test_a_source_that_routinely_pauses_and_stops_for_good_fires_after_its_pause_plus_the_intervals() -> None:
    monitor = ResourceMonitor("batch", InfraModelConfig())
    _batch_job(monitor, START, 6 * 3)
    t = monitor.last_seen + 3600.0  # back after its pause, reports for a while, then stops for good
    for k in range(30):
        _observe(monitor, t + 60.0 * k)
    last = monitor.last_seen
    due = last + monitor.pause + 5 * 60.0
    assert monitor.check_absent(due - 1.0) is None
    assert monitor.check_absent(due) == due
    state = orjson.loads(orjson.dumps(monitor.to_state()))
    restored = ResourceMonitor.from_state(state, InfraModelConfig())
    assert restored.pause == monitor.pause and restored.pauses == monitor.pauses
    assert not ResourceMonitor.may_be_due(state, due + 3600.0, InfraModelConfig())  # absent already
    fresh = ResourceMonitor.from_state({**state, "t": [*state["t"][:3], None, state["t"][4]]}, InfraModelConfig())
    assert ResourceMonitor.may_be_due(fresh.to_state(), due, InfraModelConfig())
    assert not ResourceMonitor.may_be_due(fresh.to_state(), due - 1.0, InfraModelConfig())


def test_a_steady_source_is_absent_after_the_intervals_and_one_long_outage_does_not_widen_that() -> None:
    monitor = ResourceMonitor("steady", InfraModelConfig())
    for k in range(120):
        _observe(monitor, START + 60.0 * k)
    outage_end = monitor.last_seen + 6 * 3600.0  # one 6-hour outage, then back
    assert monitor.check_absent(monitor.last_seen + 300.0) == monitor.last_seen + 300.0
    for k in range(120):
        _observe(monitor, outage_end + 60.0 * k)
    assert monitor.pause == 0.0  # one silence is an incident, not a rhythm
    assert monitor.check_absent(monitor.last_seen + 299.0) is None
    assert monitor.check_absent(monitor.last_seen + 300.0) == monitor.last_seen + 300.0


def test_states_written_before_pauses_were_kept_still_load() -> None:
    monitor = ResourceMonitor("r", CONFIG)
    for k in range(6):
        _observe(monitor, START + 60.0 * k)
    state = orjson.loads(orjson.dumps(monitor.to_state()))
    state["t"] = state["t"][:4]
    del state["p"]
    old = ResourceMonitor.from_state(state, CONFIG)
    assert old.pause == 0.0 and old.pauses == []
    assert ResourceMonitor.may_be_due(state, START + 300.0 + 5 * 300.0, CONFIG) is not None
