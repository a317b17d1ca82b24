"""Alert episodes: from per-point rule violations to firing/resolved events.

What an on-call person wants is one alert per incident, not one per point.
An *episode* opens (``firing``) on the first *signal* -- a point that completes
an enabled rule and clears the minimum effect size -- further signals extend
it, and it ``resolved`` after ``resolve_after`` consecutive in-control points.
After a resolution, ``cooldown`` further evaluated points must pass before a
new episode may open; signals inside the cooldown are suppressed (counted, not
alerted), which is what stops a noisy series from flapping.

A *budget in time* (``budget_seconds``) limits a series to one new episode per period:
a signal within ``budget_seconds`` of the previous episode's start opens nothing
(suppressed, counted) unless it escalates -- its |z| reaches ``escalate_z`` while the
previous episode's peak did not. A flapping series pages once per budget, a worsening
one pages again.

Counting convention: only *evaluated* points count (not warm-up, missing,
excluded or rejected-late ones): they carry no evidence either way.

Episode ids are deterministic: a hash of the series key and the start
timestamp, so a replay or a restarted worker produces the same id.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from .rules import RULE_IDS, first_rule, mask_rules


def episode_id(key: str, start_ts: float) -> str:
    """Deterministic id of the episode of series ``key`` starting at ``start_ts``."""
    h = hashlib.blake2b(f"{key}|{float(start_ts)!r}".encode(), digest_size=12)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class EpisodeEvent:
    """A firing or resolved transition, ready to become an ``alerts`` message.

    ``rule`` is the first rule in contract order among those that opened the
    episode; ``rules`` lists every rule seen during the episode so far.  For a
    ``resolved`` event, value/center/limits/z are those of the resolving point
    and ``peak_z`` the largest |z| of the episode.
    """

    kind: str  # "firing" | "resolved"
    episode_id: str
    key: str
    rule: str
    rules: tuple[str, ...]
    ts: float
    starts_at: float
    ends_at: float | None
    value: float
    center: float
    lower: float
    upper: float
    z: float
    peak_z: float
    n_signals: int


class EpisodeTracker:
    """Per-series episode state machine (O(1) state, no history).

    ``step(ts, signal, mask, value, center, sigma, z)`` is called for every
    evaluated point and returns an :class:`EpisodeEvent` or ``None``.
    """

    __slots__ = (
        "budget",
        "cool_left",
        "cooldown",
        "eid",
        "escalate",
        "firing",
        "key",
        "mask",
        "n_episodes",
        "n_sig",
        "n_suppressed",
        "ok_run",
        "peak",
        "resolve_after",
        "start_ts",
    )

    def __init__(self, key: str, resolve_after: int = 1, cooldown: int = 0, budget_seconds: float = 0.0,
                 escalate_z: float = math.inf) -> None:
        if resolve_after < 1:
            raise ValueError("resolve_after must be >= 1")
        self.budget = float(budget_seconds)
        self.escalate = float(escalate_z)
        self.key = key
        self.resolve_after = resolve_after
        self.cooldown = cooldown
        self.firing = False
        self.start_ts = 0.0
        self.eid = ""
        self.mask = 0
        self.ok_run = 0
        self.cool_left = 0
        self.n_sig = 0
        self.peak = 0.0
        self.n_episodes = 0
        self.n_suppressed = 0

    def allowed(self, ts: float, z: float) -> bool:
        """May a signal at ``ts`` with ``z`` open an episode, as far as the time budget goes?"""
        return (not self.budget or not self.n_episodes or ts >= self.start_ts + self.budget
                or (abs(z) >= self.escalate and self.peak < self.escalate))

    def step(
        self, ts: float, signal: bool, mask: int, value: float, center: float,
        sigma: float, z: float, lower: float | None = None, upper: float | None = None,
    ) -> EpisodeEvent | None:
        if self.firing:
            if signal:
                self.ok_run = 0
                self.mask |= mask
                self.n_sig += 1
                az = abs(z)
                if az > self.peak:
                    self.peak = az
                return None
            self.ok_run += 1
            if self.ok_run >= self.resolve_after:
                self.firing = False
                self.cool_left = self.cooldown
                return self._event("resolved", ts, value, center, sigma, z, ts, lower, upper)
            return None
        if signal:
            if self.cool_left > 0:
                self.cool_left -= 1
                self.n_suppressed += 1
                return None
            if self.budget and not self.allowed(ts, z):
                self.n_suppressed += 1
                return None
            self.firing = True
            self.start_ts = ts
            self.eid = episode_id(self.key, ts)
            self.mask = mask
            self.ok_run = 0
            self.n_sig = 1
            self.peak = abs(z)
            self.n_episodes += 1
            return self._event("firing", ts, value, center, sigma, z, None, lower, upper)
        if self.cool_left > 0:
            self.cool_left -= 1
        return None

    def _event(
        self, kind: str, ts: float, value: float, center: float, sigma: float,
        z: float, ends: float | None, lower: float | None = None, upper: float | None = None,
    ) -> EpisodeEvent:
        return EpisodeEvent(
            kind=kind, episode_id=self.eid, key=self.key,
            rule=first_rule(self.mask) or "", rules=tuple(sorted(mask_rules(self.mask), key=_ORDER.get)),
            ts=ts, starts_at=self.start_ts, ends_at=ends, value=value, center=center,
            lower=center - 3.0 * sigma if lower is None else lower,
            upper=center + 3.0 * sigma if upper is None else upper, z=z, peak_z=self.peak,
            n_signals=self.n_sig,
        )

    def to_list(self) -> list:
        return [int(self.firing), self.start_ts, self.mask, self.ok_run, self.cool_left,
                self.n_sig, self.peak, self.n_episodes, self.n_suppressed]

    def load_list(self, s: list) -> None:
        (f, self.start_ts, self.mask, self.ok_run, self.cool_left, self.n_sig, self.peak,
         self.n_episodes, self.n_suppressed) = s
        self.firing = bool(f)
        self.start_ts = float(self.start_ts)
        self.peak = float(self.peak)
        self.eid = episode_id(self.key, self.start_ts) if self.firing else ""


_ORDER = {r: i for i, r in enumerate(RULE_IDS)}
