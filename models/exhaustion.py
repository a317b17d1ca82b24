"""Predictive exhaustion: when will a bounded metric reach its limit?

Why this shape: a leak or a filling disk is a *trend*, which the 3-sigma chart
sees only once the value is far from normal (a memory leak from 25 % is "out of
control" at ~50 %, hours after it was obvious where it was heading).  Here a
series is reduced to the means of fixed event-time bins (10 minutes by
default); when a bin closes, the last ``trend_bins`` bin means get a robust
line (Theil–Sen: the median of pairwise slopes, indifferent to a few odd bins),
a Mann–Kendall test says whether the rise is real, and the line is projected to
the limit.  An episode opens only if the trend is significant, points at the
limit, the crossing lies within the warning horizon *and* the last bin is above
everything the series showed in the day before the trend window (by twice the
trend's own noise): a metric that oscillates around a high but stable level
rises every day towards its usual crest, and that is not exhaustion.

Bounded state: at most ``trend_bins + history_bins`` bin means plus the open
bin; O(1) per sample, O(trend_bins²) once per bin.  Pure: event time only.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass

from .baseline import pack, unpack

HOUR = 3600.0
_PERCENT = re.compile(r"(Percent|percent|Utilization|utilization|_pct$)")


def default_limit(metric: str) -> tuple[bool, float] | None:
    """(rising, limit) of a metric whose name says it is a percentage, else ``None``."""
    return (True, 100.0) if _PERCENT.search(metric) else None


@dataclass(frozen=True, slots=True)
class ExhaustionConfig:
    limit: float = 100.0
    rising: bool = True
    """True: the metric rises to ``limit`` (usage %); False: it falls to it (free space)."""
    bin_seconds: float = 600.0
    trend_bins: int = 18
    """Bins in the fitted trend window (3 h)."""
    min_trend_bins: int = 9
    history_bins: int = 144
    """Bins before the trend window whose range the last bin must leave (24 h)."""
    min_history_bins: int = 36
    min_z: float = 3.0
    """Mann–Kendall z the trend must reach (one-sided p ≈ 0.0013)."""
    min_recent_z: float = 2.5
    """... and the newer half of the window on its own: a single step (a level shift,
    which the 3-sigma chart handles) gives that half at most z ≈ 2, a trend keeps rising."""
    warning_seconds: float = 24 * HOUR
    critical_seconds: float = 4 * HOUR

    def __post_init__(self) -> None:
        if not (self.bin_seconds > 0 and 3 <= self.min_trend_bins <= self.trend_bins and self.history_bins >= 0
                and 0 <= self.min_history_bins <= self.history_bins):
            raise ValueError("exhaustion: bin_seconds > 0, 3 <= min_trend_bins <= trend_bins, "
                             "0 <= min_history_bins <= history_bins")
        if not (0 < self.critical_seconds <= self.warning_seconds):
            raise ValueError("exhaustion: 0 < critical horizon <= warning horizon")


@dataclass(frozen=True, slots=True)
class ExhaustionEvent:
    """``firing`` (opened, or escalated to critical) or ``resolved``."""

    kind: str
    severity: str
    starts_at: float
    ts: float
    exhausted_at: float | None
    value: float
    """The last bin's mean (the metric's own units)."""
    slope_per_hour: float


@dataclass(frozen=True, slots=True)
class Projection:
    ts: float  # end of the last closed bin
    level: float  # fitted level then (oriented: rising towards the limit)
    slope: float  # per second (oriented)
    z: float  # Mann–Kendall
    recent_z: float  # Mann–Kendall of the newer half
    last: float  # last bin mean (oriented)
    history_max: float | None
    noise: float
    exhausted_at: float | None  # None: not heading there


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2.0


def _mk_z(s: int, n: int) -> float:
    """Mann–Kendall z of the statistic ``s`` over ``n`` points (continuity-corrected, no tie term)."""
    sd = math.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)
    return (s - 1) / sd if s > 0 else (s + 1) / sd if s < 0 else 0.0


class ExhaustionModel:
    """One series' trend towards its limit (see the module doc)."""

    __slots__ = ("bins", "cfg", "episode", "ob", "on", "os", "proj")

    def __init__(self, cfg: ExhaustionConfig) -> None:
        self.cfg = cfg
        self.bins: deque[tuple[int, float]] = deque()  # closed (bin index, oriented mean)
        self.ob: int | None = None  # open bin index
        self.on = 0
        self.os = 0.0
        self.episode: list | None = None  # [starts_at, severity] while firing
        self.proj: Projection | None = None

    def _orient(self, x: float) -> float:
        return x if self.cfg.rising else -x

    @property
    def _limit(self) -> float:
        return self._orient(self.cfg.limit)

    def update(self, ts: float, x: float) -> list[ExhaustionEvent]:
        """One sample (event-time order; older bins than the open one are ignored)."""
        if x - x:
            return []
        b = int(ts // self.cfg.bin_seconds)
        out: list[ExhaustionEvent] = []
        if self.ob is None or b > self.ob:
            if self.ob is not None and self.on:
                out = self._close()
            self.ob, self.on, self.os = b, 0, 0.0
        elif b < self.ob:
            return []
        self.on += 1
        self.os += self._orient(x)
        return out

    def _close(self) -> list[ExhaustionEvent]:
        cfg = self.cfg
        assert self.ob is not None
        self.bins.append((self.ob, self.os / self.on))
        lo = self.ob - cfg.trend_bins - cfg.history_bins + 1
        while self.bins and self.bins[0][0] < lo:
            self.bins.popleft()
        p = self.proj = self._project()
        return self._step(p)

    def _project(self) -> Projection | None:
        cfg = self.cfg
        assert self.ob is not None
        t_end = (self.ob + 1) * cfg.bin_seconds
        cut = self.ob - cfg.trend_bins + 1
        trend = [(b, y) for b, y in self.bins if b >= cut]
        hist = [y for b, y in self.bins if b < cut]
        n = len(trend)
        if n < cfg.min_trend_bins:
            return None
        t = [(b + 0.5) * cfg.bin_seconds - t_end for b, _ in trend]
        y = [v for _, v in trend]
        slopes = []
        h = n // 2
        s = sr = 0
        for i in range(n):
            for j in range(i + 1, n):
                d = y[j] - y[i]
                sign = (d > 0) - (d < 0)
                s += sign
                if i >= h:
                    sr += sign
                slopes.append(d / (t[j] - t[i]))
        slope = _median(slopes)
        level = _median([y[i] - slope * t[i] for i in range(n)])
        noise = 1.4826 * _median([abs(y[i] - level - slope * t[i]) for i in range(n)])
        z = _mk_z(s, n)
        recent_z = _mk_z(sr, n - h)
        lim = self._limit
        if y[-1] >= lim or level >= lim:
            at: float | None = t_end
        elif slope > 0:
            at = t_end + (lim - level) / slope
        else:
            at = None
        hmax = max(hist) if len(hist) >= max(1, cfg.min_history_bins) else None
        return Projection(t_end, level, slope, z, recent_z, y[-1], hmax, noise, at)

    def _step(self, p: Projection | None) -> list[ExhaustionEvent]:
        cfg = self.cfg
        ep = self.episode
        within = p is not None and p.exhausted_at is not None and p.exhausted_at - p.ts <= cfg.warning_seconds
        if ep is None:
            if not within or p is None or p.history_max is None:
                return []
            reached = p.last >= self._limit
            if not reached and not (p.z >= cfg.min_z and p.recent_z >= cfg.min_recent_z and p.slope > 0):
                return []
            if p.last <= p.history_max + 2.0 * p.noise:
                return []  # not beyond the range of the day before: a usual crest, not a leak
            sev = self._severity(p)
            self.episode = [p.ts, sev]
            return [self._event("firing", p)]
        if not within:
            assert p is None or p.ts >= ep[0]
            ts = p.ts if p is not None else ep[0]
            ev = ExhaustionEvent("resolved", ep[1], ep[0], ts, None, self._orient(p.last) if p else math.nan,
                                 self._orient(p.slope) * HOUR if p else 0.0)
            self.episode = None
            return [ev]
        assert p is not None
        if ep[1] == "warning" and self._severity(p) == "critical":
            ep[1] = "critical"
            return [self._event("firing", p)]
        return []

    def _severity(self, p: Projection) -> str:
        assert p.exhausted_at is not None
        return "critical" if p.exhausted_at - p.ts <= self.cfg.critical_seconds else "warning"

    def _event(self, kind: str, p: Projection) -> ExhaustionEvent:
        assert self.episode is not None
        return ExhaustionEvent(kind, self.episode[1], self.episode[0], p.ts, p.exhausted_at, self._orient(p.last),
                               self._orient(p.slope) * HOUR)

    @property
    def firing(self) -> bool:
        return self.episode is not None

    # -- state -----------------------------------------------------------------
    def to_state(self) -> dict:
        return {"b": [b for b, _ in self.bins], "y": pack([y for _, y in self.bins]),
                "o": [self.ob, self.on, self.os], "e": self.episode}

    @classmethod
    def from_state(cls, s: dict, cfg: ExhaustionConfig) -> ExhaustionModel:
        m = cls(cfg)
        m.bins.extend(zip(s["b"], unpack(s["y"]), strict=True))
        m.ob, m.on, m.os = s["o"][0], int(s["o"][1]), float(s["o"][2])
        m.episode = None if s["e"] is None else list(s["e"])
        if m.bins and m.ob is not None:
            # the projection of the last closed bin, recomputed (it is a pure function of the bins)
            ob = m.ob
            m.ob = m.bins[-1][0]
            m.proj = m._project()
            m.ob = ob
        return m
