"""UC-IT-01 infrastructure monitoring: samples in, alerts and tables out.

The logic is in :mod:`models.infra` (per-resource detectors, absence, health);
this module translates its results into contract alerts and table rows, and is
the :class:`~agents.core.contract.Processor` that both the worker and
``spcwatch replay infra`` run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from agents.core.alerts import Alert, alert_id
from agents.core.contract import Outputs, StateStore, WorkerMetrics, row_datetime
from agents.core.events import MetricSample
from agents.core.settings import Settings, check, load_env
from agents.history import HistoryGate
from models import DetectorConfig, RobustConfig, StateError
from models.detector import STATUS_NAMES
from models.exhaustion import ExhaustionConfig, ExhaustionEvent
from models.infra import InfraModelConfig, Observation, ResourceMonitor

USE_CASE = "infra"
_RULES = ("WE1", "WE2", "WE3", "WE4", "N2", "N3", "N4", "N7", "N8")
_SEASONALITY = ("none", "hour_of_day", "hour_of_week")
_METHODS = ("robust", "spc")
_LIMIT = re.compile(r"^([^<>\s]+)\s*([<>])\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$")


def parse_limits(items: Sequence[str]) -> tuple[tuple[str, bool, float], ...]:
    """``metric>limit`` (rises to it) or ``metric<limit`` (falls to it), one per item."""
    out = []
    for item in items:
        m = _LIMIT.match(item.strip())
        if m is None:
            raise ValueError(f"{item!r} is not metric>limit or metric<limit")
        out.append((m.group(1), m.group(2) == ">", float(m.group(3))))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class InfraSettings:
    """``SPCWATCH_INFRA_*``: the defaults are the chosen ones (see bench/README.md, "Detection quality")."""

    method: str = "spc"  # or "robust" (opt-in: see bench/README.md, "Detection quality")
    window_days: int = 30
    seasonality: str = "hour_of_day"
    rules: tuple[str, ...] = ("WE1",)
    min_effect_rel: float = -1.0  # -1: the method's own default (0.5 robust, 1.0 spc)
    min_effect_abs: float = 0.0
    tail_probability: float = 1e-4
    budget_seconds: float = 6 * 3600.0
    resolve_after: int = 5
    cooldown: int = 10
    lateness_seconds: float = 0.0
    interval_seconds: float = 60.0
    absent_after_intervals: int = 5
    retire_after_seconds: float = 7 * 86400.0
    critical_z: float = 6.0
    scores: str = "all"
    history_rows: str = "signals"  # rows of backfilled history: signals (+ alerts, inventory) or all
    runbook_url: str = ""
    exhaustion: bool = True
    limits: tuple[str, ...] = ()
    exhaustion_percent: bool = True
    exhaustion_warning_hours: float = 24.0
    exhaustion_critical_hours: float = 4.0

    def validate(self) -> None:
        p = "SPCWATCH_INFRA_"
        check(self.method in _METHODS, p + "METHOD", f"must be robust or spc, got {self.method!r}")
        check(0 < self.tail_probability < 0.01, p + "TAIL_PROBABILITY",
              f"must be between 0 and 0.01, got {self.tail_probability}")
        check(self.budget_seconds >= 0, p + "BUDGET_SECONDS", "must be >= 0 (0: no budget)")
        check(1 <= self.window_days <= 366, p + "WINDOW_DAYS", f"must be 1-366, got {self.window_days}")
        check(self.seasonality in _SEASONALITY, p + "SEASONALITY",
              f"must be one of {', '.join(_SEASONALITY)}, got {self.seasonality!r}")
        unknown = [r for r in self.rules if r not in _RULES]
        check(bool(self.rules) and not unknown, p + "RULES",
              f"must be a comma-separated subset of {', '.join(_RULES)}, got {','.join(self.rules)!r}")
        check((self.min_effect_rel >= 0 or self.min_effect_rel == -1.0) and self.min_effect_abs >= 0,
              p + "MIN_EFFECT_REL",
              "and MIN_EFFECT_ABS must be >= 0")
        check(self.resolve_after >= 1 and self.cooldown >= 0, p + "RESOLVE_AFTER", "must be >= 1 (COOLDOWN >= 0)")
        check(self.lateness_seconds >= 0, p + "LATENESS_SECONDS", "must be >= 0")
        check(self.interval_seconds > 0, p + "INTERVAL_SECONDS", "must be > 0")
        check(self.absent_after_intervals >= 1, p + "ABSENT_AFTER_INTERVALS", "must be >= 1")
        check(self.retire_after_seconds >= 0, p + "RETIRE_AFTER_SECONDS", "must be >= 0 (0: never)")
        check(self.scores in ("all", "signals"), p + "SCORES", f"must be all or signals, got {self.scores!r}")
        check(self.history_rows in ("all", "signals"), p + "HISTORY_ROWS",
              f"must be all or signals, got {self.history_rows!r}")
        try:
            parse_limits(self.limits)
        except ValueError as exc:
            check(False, p + "LIMITS", f"must be comma-separated metric>limit or metric<limit: {exc}")
        check(0 < self.exhaustion_critical_hours <= self.exhaustion_warning_hours, p + "EXHAUSTION_CRITICAL_HOURS",
              "must be > 0 and <= EXHAUSTION_WARNING_HOURS")

    def model_config(self) -> InfraModelConfig:
        season = None if self.seasonality == "none" else self.seasonality
        detector: DetectorConfig | RobustConfig
        if self.method == "spc":  # the SPC charts (the default before 2026-12)
            detector = DetectorConfig.infra(
                window_seconds=self.window_days * 86400.0, seasonality=season, rules=self.rules,
                min_effect_rel=1.0 if self.min_effect_rel < 0 else self.min_effect_rel,
                min_effect_abs=self.min_effect_abs, resolve_after=self.resolve_after, cooldown=self.cooldown,
                lateness_seconds=self.lateness_seconds)
        else:
            detector = RobustConfig.infra(
                memory_days=float(self.window_days), seasonality=season, tail_probability=self.tail_probability,
                min_effect_rel=0.5 if self.min_effect_rel < 0 else self.min_effect_rel,
                min_effect_abs=self.min_effect_abs, resolve_after=self.resolve_after, cooldown=self.cooldown,
                lateness_seconds=self.lateness_seconds, budget_seconds=self.budget_seconds,
                escalate_z=self.critical_z)
        exhaustion = ExhaustionConfig(warning_seconds=self.exhaustion_warning_hours * 3600.0,
                                      critical_seconds=self.exhaustion_critical_hours * 3600.0)
        return InfraModelConfig(detector=detector, default_interval_seconds=self.interval_seconds,
                                absent_after_intervals=self.absent_after_intervals, critical_z=self.critical_z,
                                retire_after_seconds=self.retire_after_seconds,
                                exhaustion=exhaustion if self.exhaustion else None,
                                limits=parse_limits(self.limits), percent_limits=self.exhaustion_percent)


@lru_cache(maxsize=1 << 17)
def series_id(series_key: str) -> str:
    """Short stable id of a series for the tables (cached: every sample of the series asks)."""
    return hashlib.blake2b(series_key.encode(), digest_size=12).hexdigest()


_dt = lru_cache(maxsize=1 << 14)(row_datetime)  # cached: the rows of one checkpoint share a few minutes


@lru_cache(maxsize=1 << 10)
def _rules_json(rules: frozenset[str]) -> str:
    """The ``rules`` column of a point: its JSON text, made once per rule combination."""
    return orjson.dumps(sorted(rules)).decode()


class InfraProcessor:
    """State per ``resource_id``: a :class:`~models.infra.ResourceMonitor`."""

    use_case = USE_CASE
    topics = ("metrics.samples",)

    def __init__(self, settings: InfraSettings) -> None:
        self.settings = settings
        self.config = settings.model_config()
        self._gauges: Any = None
        # id(store) -> ``now`` of its previous tick. A store object of a revoked partition may leave
        # its id to a new one: that store's first tick then goes without the one-tick grace.
        self._clock_at_last_tick: dict[int, float] = {}
        self._history = HistoryGate()  # backfilled batches: warm, record, do not page (agents/history.py)

    @classmethod
    def from_settings(cls, _settings: Settings) -> InfraProcessor:
        return cls(load_env(InfraSettings, "SPCWATCH_INFRA_"))

    # -- state at the table boundary (see stream_app.runtime.runner.CachedStore) --------
    def load(self, state: dict) -> ResourceMonitor | None:
        try:
            return ResourceMonitor.from_state(state, self.config)
        except StateError:
            return None  # unknown version: the resource starts afresh

    def dump(self, monitor: ResourceMonitor) -> dict:
        return monitor.to_state()

    def bind_metrics(self, metrics: WorkerMetrics) -> None:
        from prometheus_client import Counter, Gauge

        registry = metrics.registry
        self._gauges = {
            "health": Gauge("spcwatch_infra_health_score", "0-100 health of a resource (formula in README)",
                            ["resource_id", "resource_type"], registry=registry),
            "active": Gauge("spcwatch_infra_active_episodes", "Series in a firing episode, by resource",
                            ["resource_id"], registry=registry),
            "series": Gauge("spcwatch_infra_series_tracked", "Series seen by this worker since it started",
                            registry=registry),
            "late": Counter("spcwatch_infra_samples_late", "Samples older than their series allows, rejected",
                            registry=registry),
            "duplicate": Counter("spcwatch_infra_samples_duplicate",
                                 "Samples at a timestamp their series already has (redeliveries), ignored",
                                 registry=registry),
        }
        self._series_seen: set[str] = set()
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def _resource_gauges(self, resource_id: str, resource_type: str) -> tuple[Any, Any]:
        """The resource's health and active-episode gauge children (labels() per sample is costly)."""
        children = self._children.get((resource_id, resource_type))
        if children is None:
            children = self._children[(resource_id, resource_type)] = (
                self._gauges["health"].labels(resource_id, resource_type),
                self._gauges["active"].labels(resource_id))
        return children

    def key(self, topic: str, event: MetricSample) -> str:
        return event.resource_id

    # -- the processor ---------------------------------------------------------
    def process(self, store: StateStore, topic: str, events: Sequence[MetricSample]) -> Outputs:
        out = Outputs()
        by_resource: dict[str, list[MetricSample]] = {}
        for sample in events:
            by_resource.setdefault(sample.resource_id, []).append(sample)
        for resource_id, samples in by_resource.items():
            monitor = store.get(resource_id)
            if monitor is None:
                monitor = ResourceMonitor(resource_id, self.config)
            history = samples[0].history
            if history and not (samples := self._history.unseen(monitor, samples)):
                continue
            first_alert = len(out.alerts)
            first_rows = {t: len(r) for t, r in out.rows.items()} if history else None
            observation = monitor.observe(samples)
            store[resource_id] = monitor
            self._outputs(out, monitor, observation)
            self._history.mark(out, first_alert, resource_id, history)
            if first_rows is not None and self.settings.history_rows == "signals":
                self._history.trim(out, first_rows)
        return out

    def tick(self, store: StateStore, now: float) -> Outputs:
        """Absence, judged against the clock as the *previous* tick saw it.

        After a silence of the whole partition (a collector down for half an hour) the first
        samples back move the clock past every resource's deadline while the other
        resources' samples of the same poll are still a few messages away; judged at once,
        they would flap absent. One tick later (a second in the worker) they have arrived.
        """
        previous = self._clock_at_last_tick.get(id(store))
        self._clock_at_last_tick[id(store)] = now
        if previous is None:
            return Outputs()
        now = min(now, previous)
        out = Outputs()
        peek = getattr(store, "peek", store.get)
        for resource_id in list(store.keys()):
            if self._history.in_history(resource_id):
                continue
            value = peek(resource_id)
            if isinstance(value, dict) and not ResourceMonitor.may_be_due(value, now, self.config):
                continue  # stored, not due: no need to load it (a worker may hold more than it caches)
            monitor = store.get(resource_id)
            if monitor is None:
                continue
            if monitor.retire_due(now):
                self._retire(store, monitor, now, out)
                continue
            started = monitor.check_absent(now)
            if started is None:
                continue
            store[resource_id] = monitor
            out.alerts.append(self._absent_alert(monitor, started))
            out.add_row("infra_inventory", self._inventory_row(monitor))
            out.add_row("infra_health_scores", self._health_row(monitor, started))
            if self._gauges:
                self._resource_gauges(resource_id, monitor.resource_type)[0].set(0)
        return out

    def _retire(self, store: StateStore, monitor: ResourceMonitor, now: float, out: Outputs) -> None:
        """Forget a resource absent for ``retire_after_seconds``: its ABSENT alert resolves as
        retired, its inventory row says so, its state and gauges go. If it ever reports again
        it starts afresh, as a new resource."""
        assert monitor.absent_since is not None
        rid = monitor.resource_id
        del store[rid]
        absent = self._absent_alert(monitor, monitor.absent_since)
        out.alerts.append(absent.resolved(now, event_ts=now, summary=(
            f"retired: {monitor.resource_type or 'resource'} {rid} absent since "
            f"{row_datetime(monitor.absent_since):%Y-%m-%d %H:%M} UTC, no longer watched")))
        out.add_row("infra_inventory", {**self._inventory_row(monitor), "status": "retired"})
        if self._gauges:
            children = self._children.pop((rid, monitor.resource_type), None)
            if children is not None:
                self._gauges["health"].remove(rid, monitor.resource_type)
                self._gauges["active"].remove(rid)

    # -- translation ----------------------------------------------------------------
    def _outputs(self, out: Outputs, monitor: ResourceMonitor, obs: Observation) -> None:
        rid = monitor.resource_id
        if obs.returned_from_absence is not None:
            absent = self._absent_alert(monitor, obs.returned_from_absence)
            out.alerts.append(absent.resolved(monitor.last_seen, event_ts=monitor.last_seen))
        if obs.returned_from_absence is None and not any(r.points for r in obs.series):
            # Only late or repeated samples: nothing changed, so nothing is written (a redelivered
            # message leaves every table as it was).
            self._count_refused(obs)
            return
        scores_all = self.settings.scores == "all"
        for result in obs.series:
            sid = series_id(result.series_key)
            # The series' names go to infra_series once per checkpoint (the sink keeps the last
            # row of a key); the per-point rows carry only its id.
            out.add_row("infra_series", {"series_id": sid, "resource_id": rid, "metric": result.metric,
                                         "labels": result.labels})
            for p in result.points:
                if scores_all or p.rules:
                    judged = p.status == 0
                    out.add_row("infra_anomaly_scores", {
                        "series_id": sid, "ts": _dt(p.ts), "value": p.value,
                        "center": p.center if judged else None, "sigma": p.sigma if judged else None,
                        "zscore": p.z if judged else None, "rules": _rules_json(p.rules),
                        "status": STATUS_NAMES[p.status]})
            for minute, count, mean, low, high in result.rollups:
                out.add_row("infra_metric_rollups", {
                    "series_id": sid, "minute": _dt(minute), "sample_count": count, "value_mean": mean,
                    "value_min": low, "value_max": high})
            for event, severity in result.events:
                out.alerts.append(self._episode_alert(monitor, result.metric, result.labels, event, severity))
            for exhaustion in result.exhaustion:
                out.alerts.append(self._exhaustion_alert(monitor, result.series_key, result.metric, result.labels,
                                                         exhaustion))
        out.add_row("infra_inventory", self._inventory_row(monitor))
        health_row = self._health_row(monitor, monitor.last_seen)
        out.add_row("infra_health_scores", health_row)
        if self._gauges:
            health, active = self._resource_gauges(rid, monitor.resource_type)
            health.set(health_row["score"])
            active.set(health_row["firing_series"])
            seen = self._series_seen
            new = [r.series_key for r in obs.series if r.series_key not in seen]
            if new:
                seen.update(new)
                self._gauges["series"].set(len(seen))
        self._count_refused(obs)

    def _count_refused(self, obs: Observation) -> None:
        if not self._gauges:
            return
        late = sum(r.late for r in obs.series)
        duplicates = sum(r.duplicates for r in obs.series)
        if late:
            self._gauges["late"].inc(late)
        if duplicates:
            self._gauges["duplicate"].inc(duplicates)

    def _episode_alert(self, monitor: ResourceMonitor, metric: str, labels: dict[str, str], event: Any,
                       severity: str) -> Alert:
        entity: dict[str, Any] = {"resource_id": monitor.resource_id, "metric": metric}
        if labels:
            entity["labels"] = labels
        direction = "above" if event.value > event.center else "below"
        summary = (f"{monitor.resource_type or 'resource'} {monitor.resource_id} {metric} = {event.value:.4g}, "
                   f"{direction} its expected {event.center:.4g} (z {event.z:+.1f}, {', '.join(event.rules)})")
        alert = Alert(
            alert_id=alert_id(USE_CASE, event.episode_id), status="firing", severity=severity,
            use_case=USE_CASE, rule=event.rule, rules=tuple(event.rules), entity=entity,
            value=event.value, center=event.center, lower=event.lower, upper=event.upper, zscore=event.z,
            starts_at=event.starts_at, summary=summary, runbook_url=self._runbook(event.rule), event_ts=event.ts)
        if event.kind == "resolved":
            return alert.resolved(event.ends_at if event.ends_at is not None else event.ts,
                                  summary=f"resolved: {summary}")
        return alert

    def _exhaustion_alert(self, monitor: ResourceMonitor, series_key: str, metric: str, labels: dict[str, str],
                          event: ExhaustionEvent) -> Alert:
        entity: dict[str, Any] = {"resource_id": monitor.resource_id, "metric": metric}
        if labels:
            entity["labels"] = labels
        what = f"{monitor.resource_type or 'resource'} {monitor.resource_id} {metric}"
        if event.kind == "resolved":
            summary = f"resolved: {what} = {event.value:.4g} is no longer heading for its limit within the horizon"
        else:
            assert event.exhausted_at is not None
            summary = (f"{what} = {event.value:.4g}, trending {event.slope_per_hour:+.3g}/h: projected to reach its "
                       f"limit at {row_datetime(event.exhausted_at):%Y-%m-%d %H:%M} UTC")
        alert = Alert(
            alert_id=alert_id(USE_CASE, "EXHAUSTION", series_key, event.starts_at), status="firing",
            severity=event.severity, use_case=USE_CASE, rule="EXHAUSTION", entity=entity, value=event.value,
            starts_at=event.starts_at, summary=summary, runbook_url=self._runbook("EXHAUSTION"),
            event_ts=event.ts, exhausted_at=event.exhausted_at)
        return alert.resolved(event.ts) if event.kind == "resolved" else alert

    def _absent_alert(self, monitor: ResourceMonitor, started: float) -> Alert:
        entity = {"resource_id": monitor.resource_id, "resource_type": monitor.resource_type}
        silent = monitor.silence_allowed
        return Alert(
            alert_id=alert_id(USE_CASE, "ABSENT", monitor.resource_id, started), status="firing",
            severity="critical", use_case=USE_CASE, rule="ABSENT", entity=entity,
            starts_at=started, event_ts=started, runbook_url=self._runbook("ABSENT"),
            summary=f"{monitor.resource_type or 'resource'} {monitor.resource_id} stopped reporting "
                    f"(no samples for {silent:.0f}s)")

    def _inventory_row(self, monitor: ResourceMonitor) -> dict[str, Any]:
        return {
            "resource_id": monitor.resource_id, "resource_type": monitor.resource_type or "unknown",
            "source": monitor.source or "unknown", "series_count": len(monitor.series),
            "first_seen": _dt(monitor.first_seen), "last_seen": _dt(monitor.last_seen),
            "status": "absent" if monitor.absent_since is not None else "active",
            "labels": monitor.labels,
        }

    def _health_row(self, monitor: ResourceMonitor, at: float) -> dict[str, Any]:
        score, firing = monitor.health(at)
        return {"resource_id": monitor.resource_id, "minute": _dt(at - at % 60),
                "resource_type": monitor.resource_type or "unknown", "score": score,
                "firing_series": firing, "absent": int(monitor.absent_since is not None)}

    def _runbook(self, rule: str) -> str | None:
        base = self.settings.runbook_url
        return f"{base.rstrip('/')}/infra/{rule.lower()}" if base else None
