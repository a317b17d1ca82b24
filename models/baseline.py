"""Rolling baselines over a time window, kept as time-bucketed sufficient statistics.

Why buckets: a 30-day window of minute samples is 43,200 values; the limits
only need count, mean, M2 (sum of squared deviations) and the sum of moving
ranges.  Those combine exactly across buckets (Chan et al.), so a window is a
ring of ``window / bucket`` closed buckets plus one open bucket.  Memory and
state size depend on the window's *resolution* (number of buckets), never on
the number of samples.

Timing convention: the baseline used for a point is the closed buckets whose
index lies in ``[b - W, b - 1]`` where ``b`` is the point's bucket and ``W =
window / bucket``; the point's own (open) bucket does not count until it
closes.  So centre and sigma change only when a bucket rolls (once a day with
the default 1-day buckets, the classic "recompute limits periodically" of SPC),
which is also what makes the hot path cheap: centre/sigma are cached per
bucket, not recomputed per sample.

Numerics: each bucket accumulates ``x - k`` where ``k`` is the bucket's first
value (a shift that keeps sums of squares well conditioned); a bucket is turned
into (n, mean, M2) when it closes.  The open-bucket sums are plain sequential
float additions, which ``numpy.cumsum`` reproduces bit for bit -- that is what
lets the vectorised path match the incremental one exactly.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

D2 = 1.128  # d2 for moving ranges of span 2 (MR-bar / d2 estimates sigma)


def close_bucket(n: int, k: float, s1: float, s2: float) -> tuple[float, float]:
    """(mean, M2) of a bucket from its shifted sums."""
    mean = k + s1 / n
    m2 = s2 - s1 * s1 / n
    return mean, (m2 if m2 > 0.0 else 0.0)


class Moments:
    """Count, mean and M2 of a stream with exact merge (Chan et al.).

    A small pure statistic in the River style: ``update`` one value, ``merge``
    another summary, read ``mean``/``var``.  Used to combine closed buckets.
    """

    __slots__ = ("m2", "mean", "n")

    def __init__(self, n: int = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.n = n
        self.mean = mean
        self.m2 = m2

    def update(self, x: float) -> Moments:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)
        return self

    def merge(self, n: int, mean: float, m2: float) -> Moments:
        if n == 0:
            return self
        if self.n == 0:
            self.n, self.mean, self.m2 = n, mean, m2
            return self
        tot = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / tot
        self.m2 += m2 + delta * delta * self.n * n / tot
        self.n = tot
        return self

    def var(self, ddof: int = 1) -> float:
        return self.m2 / (self.n - ddof) if self.n > ddof else 0.0

    def std(self, ddof: int = 1) -> float:
        return math.sqrt(self.var(ddof))


class RollingBaseline:
    """Time-windowed mean / std / moving range of one series.

    ``roll(b)`` moves to bucket ``b`` (closing the open bucket and expiring
    buckets that left the window) and recomputes the cached reads; ``add(y)``
    accumulates one value into the open bucket in O(1); ``add_many`` does the
    same for an array with identical floating-point results.

    Reads (valid after the last roll): ``n``, ``mean``, ``std`` (sample, ddof 1)
    and ``mr_sigma`` (mean moving range / 1.128).  Moving ranges are between
    consecutive *admitted* values, across bucket boundaries and gaps.

    Bytes per series: one closed bucket is (index, n, mean, M2, mr_sum, mr_n);
    in memory a tuple of six numbers (~0.3 KB with its objects), serialised
    ~45 bytes (packed float64 + small ints).  30 buckets ≈ 1.3 KB of state.
    """

    __slots__ = (
        "cur",
        "has_last",
        "last",
        "mean",
        "mr_n",
        "mr_sigma",
        "n",
        "ok",
        "omn",
        "omr",
        "on",
        "os1",
        "os2",
        "ring",
        "std",
        "window_buckets",
    )

    def __init__(self, window_buckets: int) -> None:
        if window_buckets < 1:
            raise ValueError("window must hold at least one bucket")
        self.window_buckets = window_buckets
        self.cur: int | None = None  # index of the open bucket
        self.on = 0
        self.ok = self.os1 = self.os2 = self.omr = 0.0
        self.omn = 0
        self.last = 0.0
        self.has_last = False
        self.ring: deque[tuple[int, int, float, float, float, int]] = deque()
        self.n = 0
        self.mean = self.std = self.mr_sigma = 0.0
        self.mr_n = 0

    # -- updates -----------------------------------------------------------
    def add(self, y: float) -> None:
        n = self.on
        if n == 0:
            self.ok = y
        d = y - self.ok
        self.on = n + 1
        self.os1 += d
        self.os2 += d * d
        if self.has_last:
            self.omr += abs(y - self.last)
            self.omn += 1
        else:
            self.has_last = True
        self.last = y

    def add_many(self, ys: np.ndarray) -> None:
        """``add`` each value in order, vectorised, bit-identical."""
        m = ys.shape[0]
        if m == 0:
            return
        if self.on == 0:
            self.ok = float(ys[0])
        d = ys - self.ok
        self.os1 = float(np.cumsum(np.concatenate(([self.os1], d)))[-1])
        self.os2 = float(np.cumsum(np.concatenate(([self.os2], d * d)))[-1])
        self.on += m
        if self.has_last:
            prev = np.concatenate(([self.last], ys[:-1]))
            mr = np.abs(ys - prev)
            self.omn += m
        else:
            mr = np.abs(ys[1:] - ys[:-1])
            self.omn += m - 1
            self.has_last = True
        if mr.shape[0]:
            self.omr = float(np.cumsum(np.concatenate(([self.omr], mr)))[-1])
        self.last = float(ys[-1])

    def close(self) -> None:
        """Close the open bucket into the ring (without moving the clock)."""
        if self.on:
            mean, m2 = close_bucket(self.on, self.ok, self.os1, self.os2)
            assert self.cur is not None
            self.ring.append((self.cur, self.on, mean, m2, self.omr, self.omn))
        self.on = 0
        self.ok = self.os1 = self.os2 = self.omr = 0.0
        self.omn = 0

    def roll(self, b: int) -> None:
        """Make ``b`` the open bucket; expire buckets older than the window."""
        if self.cur is not None:
            self.close()
        self.cur = b
        lo = b - self.window_buckets
        ring = self.ring
        while ring and ring[0][0] < lo:
            ring.popleft()
        self.recompute()

    def recompute(self) -> None:
        mo = Moments()
        mrs = 0.0
        mrn = 0
        for _, n, mean, m2, mr, mn in self.ring:
            mo.merge(n, mean, m2)
            mrs += mr
            mrn += mn
        self.n = mo.n
        self.mean = mo.mean
        self.std = mo.std()
        self.mr_n = mrn
        self.mr_sigma = (mrs / mrn) / D2 if mrn else 0.0

    # -- state ---------------------------------------------------------------
    def to_state(self) -> dict:
        ring = self.ring
        return {
            "cur": self.cur,
            "b": [r[0] for r in ring],
            "n": [r[1] for r in ring],
            "f": pack([x for r in ring for x in (r[2], r[3], r[4])]),
            "mn": [r[5] for r in ring],
            "o": [self.on, self.ok, self.os1, self.os2, self.omr, self.omn],
            "l": self.last if self.has_last else None,
        }

    @classmethod
    def from_state(cls, s: dict, window_buckets: int) -> RollingBaseline:
        bl = cls(window_buckets)
        bl.cur = s["cur"]
        f = unpack(s["f"])
        for i, (b, n, mn) in enumerate(zip(s["b"], s["n"], s["mn"], strict=True)):
            bl.ring.append((b, n, f[3 * i], f[3 * i + 1], f[3 * i + 2], mn))
        on, ok, os1, os2, omr, omn = s["o"]
        bl.on, bl.ok, bl.os1, bl.os2, bl.omr, bl.omn = int(on), float(ok), float(os1), float(os2), float(omr), int(omn)
        if s["l"] is not None:
            bl.last = float(s["l"])
            bl.has_last = True
        bl.recompute()
        return bl


class SlotProfile:
    """Seasonal centres: per-slot means (hour of day, hour of week, ...) over
    the same bucket ring as :class:`RollingBaseline`.

    Each closed bucket stores, for the slots it saw, (count, sum of ``x - k``)
    with one shift ``k`` per bucket.  ``centers[s]``/``counts[s]`` are cached
    at each roll.  Dispersion is not kept per slot (a slot sees ~30 points a
    month at hourly resolution: too few for a stable sigma); the detector pools
    the residuals around the slot centres instead.
    """

    __slots__ = ("centers", "cnt", "counts", "cur", "ok", "on", "ring", "slots", "sums", "window_buckets")

    def __init__(self, slots: int, window_buckets: int) -> None:
        self.slots = slots
        self.window_buckets = window_buckets
        self.cur: int | None = None
        self.ok = 0.0
        self.on = 0
        self.cnt = [0] * slots
        self.sums = [0.0] * slots
        self.ring: deque[tuple[int, float, tuple[int, ...], tuple[int, ...], tuple[float, ...]]] = deque()
        self.centers = [0.0] * slots
        self.counts = [0] * slots

    def add(self, slot: int, x: float) -> None:
        if self.on == 0:
            self.ok = x
        self.on += 1
        self.cnt[slot] += 1
        self.sums[slot] += x - self.ok

    def open_mean(self, slot: int) -> float | None:
        """Mean of the slot's points so far in the open bucket (``None``: none yet)."""
        n = self.cnt[slot]
        return self.ok + self.sums[slot] / n if n else None

    def add_many(self, slots: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """``add`` each value in order; returns, per value, :meth:`open_mean`
        of its slot just *before* it was added (NaN: none), bit-identical."""
        m = xs.shape[0]
        prior = np.full(m, math.nan)
        if m == 0:
            return prior
        if self.on == 0:
            self.ok = float(xs[0])
        self.on += m
        d = xs - self.ok
        for s in np.unique(slots).tolist():
            where = slots == s
            sel = d[where]
            cs = np.cumsum(np.concatenate(([self.sums[s]], sel)))
            n0 = self.cnt[s]
            n = np.arange(n0, n0 + sel.shape[0], dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                pm = self.ok + cs[:-1] / n
            pm[n == 0.0] = math.nan
            prior[where] = pm
            self.cnt[s] += sel.shape[0]
            self.sums[s] = float(cs[-1])
        return prior

    def close(self) -> None:
        if self.on:
            present = [s for s in range(self.slots) if self.cnt[s]]
            assert self.cur is not None
            self.ring.append(
                (self.cur, self.ok, tuple(present), tuple(self.cnt[s] for s in present),
                 tuple(self.sums[s] for s in present))
            )
        self.on = 0
        self.ok = 0.0
        self.cnt = [0] * self.slots
        self.sums = [0.0] * self.slots

    def roll(self, b: int) -> None:
        if self.cur is not None:
            self.close()
        self.cur = b
        lo = b - self.window_buckets
        while self.ring and self.ring[0][0] < lo:
            self.ring.popleft()
        self.recompute()

    def recompute(self) -> None:
        n = [0] * self.slots
        tot = [0.0] * self.slots
        for _, k, present, cnts, sums in self.ring:
            for s, c, sm in zip(present, cnts, sums, strict=True):
                n[s] += c
                tot[s] += c * k + sm
        self.counts = n
        self.centers = [tot[s] / n[s] if n[s] else 0.0 for s in range(self.slots)]

    def to_state(self) -> dict:
        return {
            "cur": self.cur,
            "r": [[b, k, list(p), list(c), pack(list(sm))] for b, k, p, c, sm in self.ring],
            "o": [self.on, self.ok, self.cnt, pack(self.sums)],
        }

    @classmethod
    def from_state(cls, s: dict, slots: int, window_buckets: int) -> SlotProfile:
        p = cls(slots, window_buckets)
        p.cur = s["cur"]
        for b, k, pres, cnts, sums in s["r"]:
            p.ring.append((b, float(k), tuple(pres), tuple(cnts), tuple(unpack(sums))))
        on, ok, cnt, sums = s["o"]
        p.on, p.ok, p.cnt, p.sums = int(on), float(ok), list(cnt), unpack(sums)
        p.recompute()
        return p


# -- seasonal slot functions ---------------------------------------------------
SEASONALITY_SLOTS = {"hour_of_day": 24, "hour_of_week": 168, "day_of_week": 7}


def slot_of(ts: float, seasonality: str, tz_offset: float = 0.0) -> int:
    """Slot index of a timestamp; weeks start Monday 00:00 local time."""
    t = ts + tz_offset
    if seasonality == "hour_of_day":
        return int((t // 3600.0) % 24.0)
    day = t // 86400.0
    wd = int((day + 3.0) % 7.0)  # 1970-01-01 was a Thursday
    if seasonality == "day_of_week":
        return wd
    return wd * 24 + int((t // 3600.0) % 24.0)


def slots_of(ts: np.ndarray, seasonality: str, tz_offset: float = 0.0) -> np.ndarray:
    """Vectorised :func:`slot_of` (same float operations)."""
    t = ts + tz_offset
    if seasonality == "hour_of_day":
        return ((t // 3600.0) % 24.0).astype(np.int64)
    day = t // 86400.0
    wd = ((day + 3.0) % 7.0).astype(np.int64)
    if seasonality == "day_of_week":
        return wd
    return wd * 24 + ((t // 3600.0) % 24.0).astype(np.int64)


# -- compact float arrays for state --------------------------------------------
def pack(xs: Sequence[float]) -> str:
    """float64 little-endian, base64: exact and ~40% smaller than JSON reprs."""
    import base64

    return base64.b64encode(np.asarray(xs, dtype="<f8").tobytes()).decode("ascii")


def unpack(s: str) -> list[float]:
    import base64

    return np.frombuffer(base64.b64decode(s), dtype="<f8").tolist()
