"""Predictive exhaustion: when will a bounded metric reach its limit?

Why this shape: a leak or a filling disk is a *trend*, which the 3-sigma chart
sees only once the value is far from normal (a memory leak from 25 % is "out of
control" at ~50 %, hours after it was obvious where it was heading).  Here a
series is reduced to the means of fixed event-time bins (10 minutes by
default); when a bin closes, the last ``trend_bins`` bin means get a robust
line (Theil–Sen: the median of pairwise slopes, indifferent to a few odd bins)
that is projected to the limit.

An episode opens only if the rise is real (Mann–Kendall over the window, and
over its newer half on its own: a single step to a new level gives that half
z ≈ 2 at most, and is the 3-sigma chart's business), the projected crossing
lies within the warning horizon, and the series is above where it was a day
earlier: the median *seasonal difference* (each trend bin minus the same bin
a day before) exceeds three times the trend's noise, and a sign test says
nearly all of them are above zero (z ≥ ``min_z``).  A leak puts today above
yesterday; the usual morning ramp, an oscillation around a high but stable
level, or noise does not.  So it needs one day of history, like the
detector's warm-up.

Bounded state: at most ``trend_bins + season_bins`` bin means plus the open
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
    season_bins: int = 144
    """Lag of the seasonal differences, in bins (a day)."""
    min_z: float = 3.0
    """Mann–Kendall z the trend must reach (one-sided p ≈ 0.0013)."""
    min_recent_z: float = 2.5
    """... and over the newer half of the window on its own (a single step gives it z ≈ 2 at most)."""
    warning_seconds: float = 24 * HOUR
    critical_seconds: float = 4 * HOUR

    def __post_init__(self) -> None:
        if not (self.bin_seconds > 0 and 6 <= self.min_trend_bins <= self.trend_bins and self.season_bins >= 1):
            raise ValueError("exhaustion: bin_seconds > 0, 6 <= min_trend_bins <= trend_bins, season_bins >= 1")
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
    last: float  # last bin mean (oriented)
    z: float  # Mann–Kendall of the trend window
    recent_z: float  # ... of its newer half
    above_z: float  # sign-test z that the bins are above the same bins a day before (0: no day before)
    rise: float  # median seasonal difference / 3 × the trend's noise (> 1: clearly above)
    exhausted_at: float | None  # None: not heading there


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2.0


def _mk_z(y: list[float]) -> float:
    """Mann–Kendall z of a trend in ``y`` (continuity-corrected, no tie term)."""
    n = len(y)
    if n < 3:
        return 0.0
    s = 0
    for i in range(n):
        yi = y[i]
        for j in range(i + 1, n):
            s += (y[j] > yi) - (y[j] < yi)
    sd = math.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)
    return (s - 1) / sd if s > 0 else (s + 1) / sd if s < 0 else 0.0


def _theil_sen(t: list[float], y: list[float]) -> tuple[float, float, float]:
    """(slope, level at t = 0, robust residual scale) of the Theil–Sen line."""
    n = len(y)
    slope = _median([(y[j] - y[i]) / (t[j] - t[i]) for i in range(n) for j in range(i + 1, n)])
    level = _median([y[i] - slope * t[i] for i in range(n)])
    noise = 1.4826 * _median([abs(y[i] - level - slope * t[i]) for i in range(n)])
    return slope, level, noise


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
        lo = self.ob - cfg.trend_bins - cfg.season_bins + 1
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
        if len(trend) < cfg.min_trend_bins:
            return None
        t = [(b + 0.5) * cfg.bin_seconds - t_end for b, _ in trend]
        y = [v for _, v in trend]
        slope, level, noise = _theil_sen(t, y)
        lim = self._limit
        if y[-1] >= lim or level >= lim:
            at: float | None = t_end
        elif slope > 0:
            at = t_end + (lim - level) / slope
        else:
            at = None
        earlier = {b: v for b, v in self.bins if b < cut}
        paired = [(tt, v - earlier[b - cfg.season_bins])
                  for tt, (b, v) in zip(t, trend, strict=True) if b - cfg.season_bins in earlier]
        z, recent_z = _mk_z(y), _mk_z(y[len(y) // 2:])
        above_z = rise = 0.0
        if len(paired) >= cfg.min_trend_bins:
            d = [p[1] for p in paired]
            m = len(d)
            above_z = (sum(1 for v in d if v > 0) - sum(1 for v in d if v < 0)) / math.sqrt(m)  # sign test
            med = _median(d)
            rise = med / (3.0 * noise) if noise > 0 else (math.inf if med > 0 else 0.0)
        return Projection(t_end, level, slope, y[-1], z, recent_z, above_z, rise, at)

    def _step(self, p: Projection | None) -> list[ExhaustionEvent]:
        cfg = self.cfg
        ep = self.episode
        within = p is not None and p.exhausted_at is not None and p.exhausted_at - p.ts <= cfg.warning_seconds
        if ep is None:
            if not within or p is None:
                return []
            if not (p.z >= cfg.min_z and p.recent_z >= cfg.min_recent_z and p.above_z >= cfg.min_z
                    and p.rise > 1.0):
                return []  # not rising against the same hours of the day before: a usual ramp, not a leak
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
