"""The contract's ``alerts`` event, built the same way by every use case.

``alert_id`` is deterministic: a hash of what identifies the episode (use case,
entity, rule family, start), so a replay or a restart re-emits the *same* id and
the ``alerts`` table keeps one row per episode.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from agents.core import runbooks

SEVERITIES = ("info", "warning", "critical")
USE_CASES = ("infra", "store", "forecast", "recon", "menu")


def alert_id(*parts: Any) -> str:
    """Stable id from the parts that identify an episode (24 hex chars)."""
    payload = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(payload, digest_size=12).hexdigest()


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert transition (``firing`` or ``resolved``) of one episode."""

    alert_id: str
    status: str
    severity: str
    use_case: str
    rule: str
    entity: dict[str, Any]
    starts_at: float
    summary: str
    rules: tuple[str, ...] = ()
    value: float | None = None
    center: float | None = None
    lower: float | None = None
    upper: float | None = None
    zscore: float | None = None
    ends_at: float | None = None
    runbook_url: str | None = None
    event_ts: float | None = None  # timestamp of the event that caused this transition (latency metric)
    history: bool = False  # caused by backfilled history: recorded, not notified (agents/history.py)
    summary_zh: str | None = None  # Simplified Chinese; by default from the rule's template (agents/core/runbooks)
    exhausted_at: float | None = None  # EXHAUSTION: projected time the limit is reached (``expected.exhausted_at``)

    def __post_init__(self) -> None:
        if self.status not in ("firing", "resolved"):
            raise ValueError(f"alert status must be firing or resolved, got {self.status!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert severity must be one of {SEVERITIES}, got {self.severity!r}")
        if self.use_case not in USE_CASES:
            raise ValueError(f"alert use_case must be one of {USE_CASES}, got {self.use_case!r}")

    def with_defaults(self, runbook_base: str) -> Alert:
        """The alert as published: ``summary_zh`` from its rule's template, ``runbook_url`` to the
        runbook served at ``runbook_base`` unless the use case configured one. Applied centrally
        (Runtime.emit, replay), so no use case builds either itself."""
        return replace(self, summary_zh=self.summary_zh or self.chinese_summary(),
                       runbook_url=self.runbook_url or runbooks.runbook_url(runbook_base, self.use_case, self.rule))

    def chinese_summary(self) -> str:
        return runbooks.summary_zh(self.use_case, self.rule, self.entity, self.status, value=self.value,
                                   center=self.center, lower=self.lower, upper=self.upper, zscore=self.zscore,
                                   rules=self.rules)

    def resolved(self, ends_at: float, **changes: Any) -> Alert:
        return replace(self, status="resolved", ends_at=ends_at, **changes)

    @property
    def entity_key(self) -> str:
        return "|".join(f"{k}={v}" for k, v in sorted(self.entity.items()))[:255]

    def to_event(self) -> dict[str, Any]:
        """The JSON object published on the ``alerts`` topic."""
        expected = None
        if self.center is not None:
            expected = {"center": _finite(self.center), "lower": _finite(self.lower), "upper": _finite(self.upper)}
        if self.exhausted_at is not None:
            expected = {**(expected or {}), "exhausted_at": rfc3339(self.exhausted_at)}
        return {
            "alert_id": self.alert_id,
            "status": self.status,
            "severity": self.severity,
            "use_case": self.use_case,
            "rule": self.rule,
            "rules": list(self.rules or (self.rule,)),
            "entity": self.entity,
            "value": _finite(self.value),
            "expected": expected,
            "zscore": _finite(self.zscore),
            "starts_at": rfc3339(self.starts_at),
            "ends_at": rfc3339(self.ends_at),
            "summary": self.summary,
            "summary_zh": self.summary_zh or self.chinese_summary(),
            "runbook_url": self.runbook_url,
            **({"history": True} if self.history else {}),
        }

    def to_row(self) -> dict[str, Any]:
        """The ``alerts`` table row (see sql/0001_alerts.sql)."""
        return {
            "alert_id": self.alert_id,
            "status": self.status,
            "severity": self.severity,
            "use_case": self.use_case,
            "rule": self.rule,
            "rules": list(self.rules or (self.rule,)),
            "entity": self.entity,
            "entity_key": self.entity_key,
            "value": _finite(self.value),
            "expected_center": _finite(self.center),
            "expected_lower": _finite(self.lower),
            "expected_upper": _finite(self.upper),
            "zscore": _finite(self.zscore),
            "starts_at": datetime.fromtimestamp(self.starts_at, UTC),
            "ends_at": None if self.ends_at is None else datetime.fromtimestamp(self.ends_at, UTC),
            "summary": self.summary,
            "runbook_url": self.runbook_url,
            "updated_at": datetime.fromtimestamp(self.ends_at or self.event_ts or self.starts_at, UTC),
            "history": int(self.history),
        }
