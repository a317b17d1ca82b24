"""UC-IT-01: one monitored resource — its series, inventory facts, absence, health.

Pure and incremental: samples in, verdicts/episodes/rollups out; the state is a
small JSON-able dict per resource (each series' detector state plus a few
numbers), so the agent can keep it in a Faust table keyed by ``resource_id``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .config import DetectorConfig, RobustConfig
from .detector import DUPLICATE, LATE, OK, SeriesDetector, StateError
from .episodes import EpisodeEvent
from .exhaustion import ExhaustionConfig, ExhaustionEvent, ExhaustionModel, default_limit
from .robust import RobustDetector

Detector = SeriesDetector | RobustDetector

STATE_VERSION = 1
GAPS_KEPT = 9
"""Recent gaps a series keeps to estimate its reporting period (their median)."""
PAUSES_KEPT = 8
PAUSE_MEMORY = 7 * 86400.0
"""A resource remembers its longest silences of the last week (its usual pause: see ``_note_pause``)."""


def make_detector(key: str, config: DetectorConfig | RobustConfig) -> Detector:
    """The detector a configuration asks for: SPC charts (``DetectorConfig``) or robust limits."""
    return RobustDetector(key, config) if isinstance(config, RobustConfig) else SeriesDetector(key, config)


def detector_from_state(state: dict, config: DetectorConfig | RobustConfig) -> Detector:
    """Restore a detector of ``config``'s kind; ``StateError`` if the state is of another kind."""
    if isinstance(config, RobustConfig):
        return RobustDetector.from_state(state, config)
    if state.get("kind") is not None:
        raise StateError(f"a {state['kind']} state cannot restore an SPC detector")
    return SeriesDetector.from_state(state, config)


@dataclass(frozen=True, slots=True)
class InfraModelConfig:
    detector: DetectorConfig | RobustConfig = field(default_factory=DetectorConfig.infra)
    """The SPC charts by default; ``RobustConfig`` for the robust detector (``SPCWATCH_INFRA_METHOD=robust``:
    not the default, it lost on the held-out half, see bench/README.md "Detection quality")."""
    default_interval_seconds: float = 60.0
    """Reporting interval assumed until a resource shows its own (see :meth:`ResourceMonitor.observe`)."""
    absent_after_intervals: int = 5
    """A resource silent for its usual pause plus this many intervals is absent (Prometheus ``absent()``)."""
    critical_z: float = 6.0
    """An episode whose |z| reaches this is critical, else warning."""
    retire_after_seconds: float = 7 * 86400.0
    """A resource absent this long is forgotten (0: never): instances an autoscaling group
    terminated would otherwise stay absent, and in memory, for ever."""
    health_recent_seconds: float = 3600.0
    """Episodes resolved this recently still cost health points."""
    exhaustion: ExhaustionConfig | None = field(default_factory=ExhaustionConfig)
    """Trend projection of bounded metrics (``None``: off); its limit is set per metric."""
    limits: tuple[tuple[str, bool, float], ...] = ()
    """(metric, rising, limit): metrics with a configured limit (they win over the percent rule)."""
    percent_limits: bool = True
    """Metrics named as percentages (``Percent``, ``Utilization``, ``_pct``) are bounded at 100."""

    def exhaustion_for(self, metric: str) -> ExhaustionConfig | None:
        """The exhaustion config of a metric, or ``None`` when it has no limit."""
        if self.exhaustion is None:
            return None
        bound = next(((r, lim) for m, r, lim in self.limits if m == metric), None)
        if bound is None and self.percent_limits:
            bound = default_limit(metric)
        return None if bound is None else replace(self.exhaustion, rising=bound[0], limit=bound[1])


@dataclass(slots=True)
class Point:
    """One judged sample, as the ``anomaly_scores`` table wants it."""

    ts: float
    value: float
    center: float
    sigma: float
    z: float
    rules: frozenset[str]
    status: int


@dataclass(slots=True)
class SeriesResult:
    series_key: str
    metric: str
    labels: dict[str, str]
    points: list[Point]
    rollups: list[tuple[float, int, float, float, float]]  # minute start, count, mean, min, max
    events: list[tuple[EpisodeEvent, str]]  # (event, severity)
    late: int
    exhaustion: list[ExhaustionEvent] = field(default_factory=list)
    duplicates: int = 0  # samples at a timestamp the series already has: ignored (the first one wins)


@dataclass(slots=True)
class Observation:
    series: list[SeriesResult]
    returned_from_absence: float | None  # absent_since of the episode that just ended


class SeriesMonitor:
    """A detector plus the per-minute rollup in progress and episode severity."""

    __slots__ = ("detector", "exhaustion", "gaps", "labels", "last_resolved", "last_ts", "metric", "minute",
                 "peak_z", "period", "severity")

    def __init__(self, detector: Detector, metric: str, labels: dict[str, str],
                 exhaustion: ExhaustionConfig | None = None) -> None:
        self.detector = detector
        self.exhaustion = None if exhaustion is None else ExhaustionModel(exhaustion)
        self.metric = metric
        self.labels = labels
        self.minute: list[float] = []  # [minute start, n, sum, min, max] of the open minute
        self.severity = "warning"
        self.peak_z = 0.0
        self.last_resolved: float | None = None
        self.last_ts: float | None = None  # newest timestamp seen
        self.gaps: list[float] = []  # the last GAPS_KEPT positive gaps between its timestamps
        self.period = 0.0  # their median: how often this series reports (0: not known yet)

    def note_times(self, ts: Sequence[float]) -> bool:
        """Record the gaps before ``ts`` (in time order); True if the period estimate changed.

        The median of recent gaps, not the smallest: a collector catching up, a re-scrape
        or jitter gives one short gap now and then, and an interval learned from it would
        declare the resource absent after a fraction of its real silence.
        """
        last, gaps = self.last_ts, self.gaps
        for t in ts:
            if last is None:
                last = t
            elif t > last:
                gaps.append(t - last)
                last = t
        self.last_ts = last
        if len(gaps) > GAPS_KEPT:
            del gaps[:-GAPS_KEPT]
        if not gaps:
            return False
        ordered = sorted(gaps)
        middle = len(ordered) // 2
        period = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
        changed, self.period = period != self.period, period
        return changed

    def to_state(self) -> dict:
        state = {"d": self.detector.to_state(), "m": self.metric, "l": self.labels, "u": self.minute,
                 "s": [self.severity, self.peak_z, self.last_resolved], "g": [self.last_ts, self.gaps]}
        if self.exhaustion is not None:
            state["x"] = self.exhaustion.to_state()
        return state

    @classmethod
    def from_state(cls, state: dict, config: DetectorConfig | RobustConfig,
                   exhaustion: ExhaustionConfig | None = None) -> SeriesMonitor:
        monitor = cls(detector_from_state(state["d"], config), state["m"], state["l"], exhaustion)
        if exhaustion is not None and "x" in state:  # else (no limit before): its trend starts now
            monitor.exhaustion = ExhaustionModel.from_state(state["x"], exhaustion)
        monitor.minute = list(state["u"])
        monitor.severity, monitor.peak_z, monitor.last_resolved = state["s"]
        if "g" in state:  # states written before 2026-11-26 have no gaps: learnt again from the next samples
            monitor.last_ts, gaps = state["g"]
            monitor.gaps = list(gaps)
            monitor.note_times(())
        return monitor

    def observe(self, ts: Sequence[float], values: Sequence[float], critical_z: float) -> SeriesResult:
        """Samples of this series in time order; one sample skips numpy (its set-up costs more)."""
        det = self.detector
        if len(ts) == 1:
            verdicts = det.update(float(ts[0]), float(values[0]))
            rows = [(v.ts, v.value, v.center, v.sigma, v.z, v.rules, v.status, v.event) for v in verdicts]
        else:
            batch = det.update_many(np.asarray(ts, dtype=np.float64), np.asarray(values, dtype=np.float64))
            events = dict(zip(batch.event_index, batch.events, strict=True))
            rows = [(t, x, c, s, z, batch.rules(i) if m else frozenset(), st, events.get(i))
                    for i, (t, x, c, s, z, m, st) in enumerate(zip(
                        batch.ts.tolist(), batch.value.tolist(), batch.center.tolist(), batch.sigma.tolist(),
                        batch.z.tolist(), batch.mask.tolist(), batch.status.tolist(), strict=True))]
        points: list[Point] = []
        events_out: list[tuple[EpisodeEvent, str]] = []
        rollups: dict[float, tuple[float, int, float, float, float]] = {}
        late = duplicates = 0
        for t, x, c, s, z, rules, status, event in rows:
            if status == LATE:
                late += 1
                continue
            if status == DUPLICATE:  # no point, no rollup: a redelivered sample changes nothing
                duplicates += 1
                continue
            points.append(Point(t, x, c, s, z, rules, status))
            self._roll(t, x)
            if status == OK and self.detector.firing and math.isfinite(z):
                self.peak_z = max(self.peak_z, abs(z))
            if event is not None:
                if event.kind == "firing":
                    self.peak_z = abs(event.z)
                    self.severity = "critical" if self.peak_z >= critical_z else "warning"
                else:
                    self.last_resolved = event.ts
                events_out.append((event, self.severity))
            rollups[self.minute[0]] = self._open_rollup()
        exhausted: list[ExhaustionEvent] = []
        if self.exhaustion is not None:
            for p in points:
                exhausted.extend(self.exhaustion.update(p.ts, p.value))
        return SeriesResult("", self.metric, self.labels, points, list(rollups.values()), events_out, late,
                            exhausted, duplicates)

    def _roll(self, ts: float, value: float) -> None:
        """Add a sample to its minute (samples arrive in time order).

        The row is re-emitted with the running aggregate each time its minute
        grows, so the upserted row is always the whole minute so far.
        """
        start = math.floor(ts / 60.0) * 60.0
        m = self.minute
        if m and m[0] == start:
            m[1] += 1
            m[2] += value
            m[3] = min(m[3], value)
            m[4] = max(m[4], value)
        else:
            self.minute = [start, 1, value, value, value]

    def _open_rollup(self) -> tuple[float, int, float, float, float]:
        m = self.minute
        return (m[0], int(m[1]), m[2] / m[1], m[3], m[4])


def _absence_due(last: float | None, interval: float, absent_since: float | None, intervals: int,
                 pause: float = 0.0) -> float | None:
    """When a resource last seen at ``last`` becomes absent (None: not judged, or absent already):
    after its usual pause (0 for a steady source) plus ``intervals`` of its interval."""
    if absent_since is not None or last is None or not interval:
        return None
    return last + pause + intervals * interval


def _retirement_due(absent_since: float | None, now: float, config: InfraModelConfig) -> bool:
    return (absent_since is not None and config.retire_after_seconds > 0
            and now >= absent_since + config.retire_after_seconds)


class ResourceMonitor:
    """Everything known about one resource, keyed by its ``resource_id``."""

    def __init__(self, resource_id: str, config: InfraModelConfig) -> None:
        self.resource_id = resource_id
        self.config = config
        self.resource_type = ""
        self.source = ""
        self.first_seen = math.inf
        self.last_seen = -math.inf
        self.interval = 0.0  # the longest reporting period among its series (0: none known yet)
        self.absent_since: float | None = None
        self.labels: dict[str, str] = {}  # of the latest sample: region, cluster, ...
        self.series: dict[str, SeriesMonitor] = {}
        self.pauses: list[tuple[float, float]] = []  # (end, length) of its longest recent silences
        self.pause = 0.0  # its usual pause: the second longest of them (0: it has none)

    # -- samples ----------------------------------------------------------
    def observe(self, samples: Sequence) -> Observation:
        """Samples of this resource (any order, any series); returns what they caused."""
        returned = None
        if self.absent_since is not None and max(s.ts for s in samples) > self.last_seen:
            # Only a sample after the silence ends it: a late one (a wrong clock a month behind)
            # neither ends an absence nor resets the retirement it is heading for.
            returned = self.absent_since
            self.absent_since = None
        groups: dict[str, list] = {}
        for sample in samples:
            groups.setdefault(sample.series_key, []).append(sample)
            self.resource_type = sample.resource_type or self.resource_type
            self.source = sample.source or self.source
            self.labels = sample.labels or self.labels
        first = min(s.ts for s in samples)
        if self.interval and math.isfinite(self.last_seen) and first - self.last_seen > 2.0 * self.interval:
            self._note_pause(first, first - self.last_seen)
        self.last_seen = max(self.last_seen, max(s.ts for s in samples))
        results = []
        periods_changed = False
        for key, group in groups.items():
            group.sort(key=lambda s: s.ts)
            monitor = self.series.get(key)
            if monitor is None:
                metric = group[0].metric
                monitor = self.series[key] = SeriesMonitor(
                    make_detector(key, self.config.detector), metric, group[0].labels,
                    self.config.exhaustion_for(metric))
            ts = [s.ts for s in group]
            periods_changed |= monitor.note_times(ts)
            result = monitor.observe(ts, [s.value for s in group], self.config.critical_z)
            result.series_key = key
            results.append(result)
        accepted = [r.points[0].ts for r in results if r.points]
        if accepted:  # a late or repeated sample (a clock a month behind) does not move it back
            self.first_seen = min(self.first_seen, *accepted)
        if periods_changed:
            # The longest period: a resource whose CloudWatch metrics come every 5 minutes and
            # exporter metrics every 15 s is silent for 5 minutes when the exporter stops, and
            # that is the exporter's absence, not the resource's.
            self.interval = max(m.period for m in self.series.values())
        return Observation(results, returned)

    def _note_pause(self, end: float, length: float) -> None:
        """A silence of the whole resource longer than twice its interval. Its usual pause is the
        second longest of the last week's: a batch exporter's nightly gap, an hourly job's hour,
        a sparse CloudWatch metric's quiet spells, seen at least twice, are its rhythm; one long
        silence is not (a resource that stops for good is judged by the rhythm it had)."""
        kept = [p for p in self.pauses if p[0] > end - PAUSE_MEMORY]
        kept.append((end, length))
        kept.sort(key=lambda p: (-p[1], -p[0]))
        self.pauses = kept[:PAUSES_KEPT]
        self.pause = self.pauses[1][1] if len(self.pauses) >= 2 else 0.0

    # -- time ---------------------------------------------------------------
    @property
    def silence_allowed(self) -> float:
        """How long it may be silent before it is absent: its usual pause plus
        ``absent_after_intervals`` of its interval."""
        return self.pause + self.config.absent_after_intervals * self.expected_interval

    @property
    def expected_interval(self) -> float:
        return self.interval or self.config.default_interval_seconds

    def check_absent(self, now: float) -> float | None:
        """If the resource just became absent at event time ``now``, when that started.

        Only once the resource has shown its interval (two distinct timestamps):
        judging a 5-minute exporter by a 1-minute default would cry wolf.
        """
        last = self.last_seen if math.isfinite(self.last_seen) else None
        deadline = _absence_due(last, self.interval, self.absent_since, self.config.absent_after_intervals,
                                self.pause)
        if deadline is not None and now >= deadline:
            self.absent_since = deadline
            return deadline
        return None

    def retire_due(self, now: float) -> bool:
        """Absent for ``retire_after_seconds`` by event time ``now``: time to forget it."""
        return _retirement_due(self.absent_since, now, self.config)

    @staticmethod
    def may_be_due(state: dict, now: float, config: InfraModelConfig) -> bool:
        """Would :meth:`check_absent` fire, or :meth:`retire_due` hold, at ``now`` for this stored
        state? Read without loading it, so a timer can skim resources that are not in memory."""
        try:
            _first, last, interval, absent_since, *rest = state["t"]
        except (KeyError, TypeError, ValueError):
            return True  # not a shape we know: load it and let the monitor decide
        deadline = _absence_due(last, interval, absent_since, config.absent_after_intervals,
                                float(rest[0]) if rest else 0.0)
        return (deadline is not None and now >= deadline) or _retirement_due(absent_since, now, config)

    def health(self, now: float) -> tuple[int, int]:
        """``(score 0-100, firing series)``.

        100, minus 50 per series in a critical episode, 25 per series in a
        warning episode, 10 per series whose episode resolved within
        ``health_recent_seconds``; 0 while the resource is absent.
        """
        if self.absent_since is not None:
            return 0, 0
        penalty = 0
        firing = 0
        for monitor in self.series.values():
            if monitor.detector.firing:
                firing += 1
                penalty += 50 if monitor.severity == "critical" else 25
            elif monitor.last_resolved is not None and now - monitor.last_resolved <= self.config.health_recent_seconds:
                penalty += 10
        return max(0, 100 - penalty), firing

    # -- state -----------------------------------------------------------------
    def to_state(self) -> dict:
        return {
            "v": STATE_VERSION,
            "r": [self.resource_id, self.resource_type, self.source, self.labels],
            "t": [self.first_seen if math.isfinite(self.first_seen) else None,
                  self.last_seen if math.isfinite(self.last_seen) else None, self.interval, self.absent_since,
                  self.pause],
            "p": [list(p) for p in self.pauses],
            "s": {key: monitor.to_state() for key, monitor in self.series.items()},
        }

    @classmethod
    def from_state(cls, state: dict, config: InfraModelConfig) -> ResourceMonitor:
        if state.get("v") != STATE_VERSION:
            raise StateError(f"unsupported infra state version {state.get('v')!r}")
        resource_id, resource_type, source, labels = state["r"]
        monitor = cls(resource_id, config)
        monitor.resource_type, monitor.source, monitor.labels = resource_type, source, labels
        first, last, monitor.interval, monitor.absent_since, *rest = state["t"]
        monitor.pause = float(rest[0]) if rest else 0.0  # states before 2026-12 have no pauses
        monitor.pauses = [(float(a), float(b)) for a, b in state.get("p", [])]
        monitor.first_seen = math.inf if first is None else first
        monitor.last_seen = -math.inf if last is None else last
        for key, series_state in state["s"].items():
            try:
                monitor.series[key] = SeriesMonitor.from_state(series_state, config.detector,
                                                               config.exhaustion_for(series_state["m"]))
            except (StateError, ValueError, KeyError, TypeError):
                # Another detector or baseline geometry by configuration: this series starts afresh.
                monitor.series[key] = SeriesMonitor(
                    make_detector(key, config.detector), series_state["m"], series_state["l"],
                    config.exhaustion_for(series_state["m"]))
        return monitor
