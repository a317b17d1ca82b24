"""The simulator's promises (``spcwatch simulate --list``) checked against the alerts a run raised.

Each scenario's :class:`~stream_app.simgen.Expectation` says which use case fires which rule on
which entity, within how long of the scenario's start; the entities no scenario touches must stay
within their use case's false-alarm budget. One function for the test that replays every scenario
(tests/stream_app/test_scenario_promises.py) and for anyone checking a run of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stream_app.simgen import SCENARIOS, Expectation, Scenario

SILENT_HOST = "<the silent host>"  # the entity of host-silent: which host is the world's to say


@dataclass(frozen=True, slots=True)
class Verdict:
    scenario: str
    expectation: Expectation
    first_ts: float | None  # event time of the first matching firing alert (None: none)
    kept: bool
    why: str


def event_ts(alert: Mapping[str, Any]) -> float:
    """When an alert happened in event time (``starts_at`` of its episode for a firing one)."""
    when = alert.get("starts_at") if alert.get("status") == "firing" else alert.get("ends_at")
    return datetime.fromisoformat(str(when).replace("Z", "+00:00")).timestamp()


def matches(alert: Mapping[str, Any], use_case: str, entity: Mapping[str, str]) -> bool:
    got = alert.get("entity") or {}
    return alert.get("use_case") == use_case and all(got.get(k) == v for k, v in entity.items())


def check(alerts: Iterable[Mapping[str, Any]], t0: float, silent_host: str = "",
          scenarios: Iterable[Scenario] | None = None) -> list[Verdict]:
    """One verdict per expectation of ``scenarios`` (default: all), from the run's ``alerts``."""
    firing = [a for a in alerts if a.get("status") == "firing"]
    out = []
    for s in (SCENARIOS.values() if scenarios is None else scenarios):
        start = t0 + s.start
        for e in s.expect:
            entity = {k: (silent_host if v == SILENT_HOST else v) for k, v in e.entity.items()}
            mine = [a for a in firing if matches(a, e.use_case, entity)]
            if not e.rules:  # a promise of silence
                kept = not mine
                why = "no alert" if kept else f"{len(mine)} alerts: {sorted({a['rule'] for a in mine})}"
                out.append(Verdict(s.name, e, None, kept, why))
                continue
            hits = sorted(event_ts(a) for a in mine if a["rule"] in e.rules)
            first = hits[0] if hits else None
            if first is None:
                others = sorted({a["rule"] for a in mine})
                out.append(Verdict(s.name, e, None, False, f"never fired (other rules on it: {others or 'none'})"))
                continue
            late = first - start
            kept = late <= e.within
            out.append(Verdict(s.name, e, first, kept,
                               f"fired {late / 3600:+.1f} h after the start (promised within {e.within / 3600:g} h)"))
    return out


def pages_by_entity(alerts: Iterable[Mapping[str, Any]], use_case: str,
                    keys: tuple[str, ...]) -> dict[tuple[str, ...], set[float]]:
    """The notifications a person gets per entity (named by ``keys``): Alertmanager groups an entity's
    alerts (deploy/alertmanager: ``group_by`` the entity's labels), so alerts of one entity that start
    at the same event time are one page; ``info`` alerts (a class change for the better) page nobody."""
    out: dict[tuple[str, ...], set[float]] = {}
    for a in alerts:
        if a.get("use_case") == use_case and a.get("status") == "firing" and a.get("severity") != "info":
            entity = a.get("entity") or {}
            out.setdefault(tuple(str(entity.get(k, "")) for k in keys), set()).add(event_ts(a))
    return out


def touched(use_case: str, key: str, silent_host: str = "", scenarios: Iterable[Scenario] | None = None) -> set[str]:
    """The values of entity field ``key`` some scenario expects an alert of ``use_case`` on."""
    found = set()
    for s in (SCENARIOS.values() if scenarios is None else scenarios):
        for e in s.expect:
            if e.use_case == use_case and key in e.entity:
                found.add(silent_host if e.entity[key] == SILENT_HOST else e.entity[key])
    return found
