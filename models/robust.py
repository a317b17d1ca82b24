"""RobustDetector: a false-alarm budget that holds whatever the series' distribution.

Per (local) day the limits are fixed; per point, in event-time order:

1. ``e = x - centre[slot]``, the seasonal residual; ``L``, the median of the previous
   ``local_points`` residuals (the local level: where the series has just been);
2. the point chart judges ``u = (e - L) / scale[slot]``, the step away from the local
   level in robust scales (day-to-day wander of the level does not count, a spike or a
   drop does); the short-average chart judges the mean of the last ``avg_points``
   ``e / scale`` (a sustained shift: an outage of a noisy count, a doubled rate);
3. a point *signals* (rule ``WE1``: beyond a limit) when either is beyond its side's limit
   and the deviation clears the minimum effect;
4. the point is counted, as integers, into the day's histograms: ``e / scale`` per slot
   (centre learning), ``|u|`` per slot (scale learning), and, unless an episode is firing,
   the tails of ``u`` and of the short average (the limits' learning);
5. a run of short averages beyond their limit on one side that lasts ``shift_points``
   points and ``shift_seconds`` is a confirmed level shift: the centres move to the run's
   level (re-baselining), so a new normal is alerted once, then learned.

At each day's close: each slot's centre moves towards the day's median (read from the
integer histogram, at most 4 scales a day, weighted by the day's share of the evidence),
its scale towards the day's median |u| (at most x2 / ÷2 a day, pooled with the whole day's
for slots with few points); the tails decay (``memory_days``) and take the day's counts;
each side's limit is where the fitted tail (the farther of an exponential and a power tail
beyond 3 scales, with a prior) falls to ``tail_probability``. So heavy-tailed, spiky or
zero-inflated series get wide limits of their own, quiet ones tight limits, with the same
per-point false-alarm probability. A point beyond a limit enters the tail only as "beyond
3": anomalies must not teach the detector to ignore the next one.

Warm-up is the first closed day (``min_samples`` points): its samples are kept (at most
2,048, thinned evenly) and give the first medians and scales.

Why integer histograms: counts are exact and order-free, so the vectorised path
(``update_many``, numpy) gives bit-identical results to ``update`` and to a detector cut,
serialised and restored anywhere -- and the state is small (no per-day rings).
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .baseline import pack, unpack
from .config import RobustConfig
from .detector import MISSING, NAN, OK, WARMUP, Batch, InOrderFront, StateError, Verdict, run_episodes
from .episodes import EpisodeEvent, EpisodeTracker
from .rules import rules_mask

STATE_KIND = "robust"
STATE_VERSION = 2
DAY = 86400.0
HOUR = 3600.0
WE1 = rules_mask(("WE1",))
SIGNED_EDGES = (-64.0, -32.0, -16.0, -8.0, -4.0, -2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0,
                32.0, 64.0)
NB = len(SIGNED_EDGES) + 1  # 14 bins of u per slot and day
TAIL_EDGES = (3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 32.0, 48.0, 64.0, 96.0, 128.0, 192.0, 256.0)
NT = len(TAIL_EDGES)  # bins of |u| beyond 3, per side
_TAIL_MID = [(a + b) / 2.0 - 3.0 for a, b in itertools.pairwise(TAIL_EDGES)] + [384.0 - 3.0]
AVG_EDGES = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0)
NA = len(AVG_EDGES)  # bins of the short average's |mean| beyond 1, per side
_AVG_MID = [(a + b) / 2.0 - 1.0 for a, b in itertools.pairwise(AVG_EDGES)] + [16.0 - 1.0]
Q = 16.0  # residuals enter the short average as integers of 1/16 scale (exact sums), winsorised at 16
_AE = np.asarray(AVG_EDGES)
_SE = np.asarray(SIGNED_EDGES)
_TE = np.asarray(TAIL_EDGES)
BUFFER_MAX = 2048
MAD = 1.4826  # sigma / median |z| of a normal
MEANAD = 1.2533  # sigma / mean |z| of a normal
MR_MED = 0.9539  # median |x_i - x_{i-1}| / sigma for white noise
MR2_MED = 0.6745 * math.sqrt(6.0)  # median |x_{i+1} - 2 x_i + x_{i-1}| / sigma for white noise
PARETO_PRIOR = math.log1p(0.1)  # the power tail's prior: mean log-excess of a light tail (Hill alpha ~10)
SLOT_PRIOR = 10.0  # points a slot needs in a day before its own spread outweighs the day's
MAG_BINS, MAG_LOW = 128, -60  # binary exponents of |residual| kept per day (clamped)
FLOOR_SHARE = 0.5  # scales never fall below this share of 1.4826 x the median non-zero |residual|
# (zero-inflated and quantised series: their MAD is 0; read from binary-exponent bins, so coarse)


def _median(xs: Sequence[float]) -> float:
    """The median, computed the same way everywhere (both paths call this)."""
    s = sorted(xs)
    n = len(s)
    m = n // 2
    return s[m] if n % 2 else (s[m - 1] + s[m]) / 2.0


def _hist_quantile(counts: Sequence[float], edges: Sequence[float], q: float, lo: float, hi: float) -> float:
    """Quantile ``q`` of binned data, linearly interpolated inside its bin; the open outer
    bins are taken as ``[lo, edges[0])`` and ``[edges[-1], hi)``."""
    total = sum(counts)
    target = q * total
    acc = 0.0
    for i, c in enumerate(counts):
        if c and acc + c >= target:
            a = edges[i - 1] if i > 0 else lo
            b = edges[i] if i < len(edges) else hi
            return a + (b - a) * ((target - acc) / c)
        acc += c
    return hi


_FOLD_EDGES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
_FOLD_MID = (0.125, 0.375, 0.75, 1.5, 3.0, 6.0, 8.0)
NF = len(_FOLD_EDGES) + 1  # bins of |u| per slot and day (scale learning)
_FE = np.asarray(_FOLD_EDGES)


def _added(counts: list[int], bins: np.ndarray, size: int) -> list[int]:
    """``counts`` plus one for each entry of ``bins``."""
    if not bins.shape[0]:
        return counts
    return [p + q for p, q in zip(counts, np.bincount(bins, minlength=size).tolist(), strict=True)]


def _tail_bins(v: np.ndarray, limit: float, edges: np.ndarray) -> np.ndarray:
    """Tail bins of |values| beyond the base; those beyond ``limit`` go to the first bin."""
    return np.where(v <= limit, np.searchsorted(edges, v, side="right") - 1, 0).astype(np.int64)


class RobustVerdict(Verdict):
    """A :class:`~models.Verdict` with explicit (asymmetric) limits and ``season``, the seasonal
    part of the centre (the hour's centre minus the day's mean centre: what EXHAUSTION removes
    before it judges a trend)."""

    __slots__ = ("hi", "lo", "season")

    def __init__(self, ts: float, value: float, center: float, sigma: float, z: float, mask: int,
                 status: int, signal: bool, event: EpisodeEvent | None, lo: float = NAN, hi: float = NAN,
                 season: float = NAN) -> None:
        super().__init__(ts, value, center, sigma, z, mask, status, signal, event)
        self.lo = lo
        self.hi = hi
        self.season = season

    @property
    def lower(self) -> float:
        return self.lo

    @property
    def upper(self) -> float:
        return self.hi


@dataclass
class RobustBatch(Batch):
    """:class:`~models.Batch` plus the explicit limits and the seasonal part per row."""

    lo: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hi: np.ndarray = field(default_factory=lambda: np.zeros(0))
    season: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def lower(self) -> np.ndarray:
        return self.lo

    @property
    def upper(self) -> np.ndarray:
        return self.hi

    def verdicts(self) -> list[Verdict]:
        ev = dict(zip(self.event_index, self.events, strict=True))
        return [
            RobustVerdict(float(t), float(v), float(c), float(s), float(zz), int(m), int(st), bool(sg), ev.get(i),
                          float(a), float(b), float(lv))
            for i, (t, v, c, s, zz, m, st, sg, a, b, lv) in enumerate(zip(
                self.ts.tolist(), self.value.tolist(), self.center.tolist(), self.sigma.tolist(),
                self.z.tolist(), self.mask.tolist(), self.status.tolist(), self.signal.tolist(),
                self.lo.tolist(), self.hi.tolist(), self.season.tolist(), strict=True))
        ]

    @classmethod
    def from_verdicts(cls, vs: Sequence[Verdict]) -> RobustBatch:
        b = Batch.from_verdicts(vs)
        return cls(**{f: getattr(b, f) for f in ("ts", "value", "center", "sigma", "z", "mask", "status",
                                                  "signal", "events", "event_index")},
                   lo=np.array([getattr(v, "lo", NAN) for v in vs], dtype=np.float64),
                   hi=np.array([getattr(v, "hi", NAN) for v in vs], dtype=np.float64),
                   season=np.array([getattr(v, "season", NAN) for v in vs], dtype=np.float64))

    @classmethod
    def concat(cls, parts: Sequence[Batch]) -> RobustBatch:
        b = Batch.concat(parts)
        cat = np.concatenate

        def col(name: str) -> np.ndarray:
            return cat([getattr(p, name) for p in parts]) if parts else np.zeros(0)

        return cls(**{f: getattr(b, f) for f in ("ts", "value", "center", "sigma", "z", "mask", "status",
                                                  "signal", "events", "event_index")},
                   lo=col("lo"), hi=col("hi"), season=col("season"))


def _empty(n: int) -> RobustBatch:
    return RobustBatch(
        ts=np.zeros(n), value=np.zeros(n), center=np.full(n, NAN), sigma=np.full(n, NAN), z=np.full(n, NAN),
        mask=np.zeros(n, np.int32), status=np.zeros(n, np.int8), signal=np.zeros(n, bool),
        lo=np.full(n, NAN), hi=np.full(n, NAN), season=np.full(n, NAN))


class RobustDetector(InOrderFront):
    """One series, judged against robust seasonal limits at its own tail (see module doc).

    The same interface as :class:`~models.SeriesDetector`: ``update``, ``update_many``,
    ``flush`` (their shared front end, :class:`~models.detector.InOrderFront`),
    ``to_state``/``from_state``, ``firing``, counters.
    """

    _VERDICT = RobustVerdict
    _BATCH = RobustBatch

    __slots__ = (
        "_a",
        "_a_hi",
        "_a_lo",
        "_atail",
        "_atail_day",
        "_atail_n",
        "_atail_nday",
        "_b_end",
        "_buf",
        "_c",
        "_cur",
        "_cw",
        "_day_n",
        "_eff_rel",
        "_ep",
        "_fhist",
        "_floor",
        "_hist",
        "_hours",
        "_level",
        "_lims",
        "_loc",
        "_mag",
        "_q",
        "_run_d",
        "_run_n",
        "_run_side",
        "_run_t0",
        "_stride",
        "_t_hi",
        "_t_lo",
        "_tail",
        "_tail_day",
        "_tail_n",
        "_tail_nday",
        "_tz",
        "_w",
        "_warm",
        "_wd",
        "_weekly",
        "_wn",
        "_ww",
        "config",
        "key",
        "n_missing",
    )

    def __init__(self, key: str, config: RobustConfig | None = None) -> None:
        cfg = config or RobustConfig()
        self.key = key
        self.config = cfg
        self._tz = float(cfg.tz_offset_seconds)
        self._hours = 24 if cfg.seasonality else 1
        self._weekly = cfg.seasonality == "hour_of_week"
        self._ep = EpisodeTracker(key, cfg.resolve_after, cfg.cooldown, cfg.budget_seconds, cfg.escalate_z)
        super().__init__(cfg.lateness_seconds)
        self.n_missing = 0
        self._cur: int | None = None
        self._b_end = -math.inf
        self._warm = False
        h = self._hours
        self._c = np.zeros(h)  # centre per hour of day
        self._a = np.ones(h)  # scale per hour of day
        self._w = np.zeros(h)  # evidence (decayed sample count) per hour of day
        self._cw = np.zeros(168) if self._weekly else None  # centre per hour of week
        self._ww = np.zeros(168) if self._weekly else None
        self._tail = [0.0] * (2 * NT)  # decayed counts beyond 3 scales: upper side, then lower
        self._tail_n = 0.0  # decayed count of points behind them
        self._atail = [0.0] * (2 * NA)  # the same for the short average, beyond 1 scale
        self._atail_n = 0.0
        self._q: list[int] = []  # the short average's last residuals, in 1/16 scales
        self._loc: list[float] = []  # the last residuals: their median is the local level
        self._a_hi = self._a_lo = math.inf
        self._level = 0.0
        self._floor = 0.0  # decayed median of the non-zero |residuals|: a floor under the scales
        self._buf: tuple[list[float], list[float]] | None = ([], [])  # warm-up samples (ts, x)
        self._stride = 1
        self._wn = 0
        self._new_day()
        self._run_side = 0
        self._run_n = 0
        self._run_t0 = 0.0
        self._run_d: list[float] = []
        self._wd = 0
        self._lims: list[tuple[float, float, float]] = [(NAN, NAN, NAN)] * h
        self._t_hi = self._t_lo = math.inf
        self._eff_rel = 0.0

    def _new_day(self) -> None:
        self._mag = [0] * MAG_BINS  # the day's |residual| by binary exponent
        self._hist = [0] * (self._hours * NB)
        self._fhist = [0] * (self._hours * NF)
        self._tail_day = [0] * (2 * NT)
        self._day_n = 0
        self._tail_nday = 0
        self._atail_day = [0] * (2 * NA)
        self._atail_nday = 0

    # -- time -----------------------------------------------------------------------
    def _slot(self, ts: float) -> int:
        return int(((ts + self._tz) % DAY) // HOUR) if self._hours > 1 else 0

    def _advance(self, ts: float) -> None:
        b = int((ts + self._tz) // DAY)
        if b != self._cur:
            if self._cur is not None:
                self._close()
            self._cur = b
            self._wd = int((b + 3) % 7)  # 1970-01-01 was a Thursday; Monday = 0
            self._new_day()
            self._recompute()
        self._b_end = (b + 1) * DAY - self._tz

    def _close(self) -> None:
        """The day is over: learn from it (or, in warm-up, from the samples kept)."""
        if not self._warm:
            buf = self._buf
            assert buf is not None
            if len(buf[1]) >= self.config.min_samples:
                self._init(buf[0], buf[1])
            return
        if self._day_n:
            self._learn()

    def _init(self, ts: list[float], xs: list[float]) -> None:
        x = np.asarray(xs, dtype=np.float64)
        slots = np.asarray([self._slot(t) for t in ts], dtype=np.int64)
        med = _median(xs)
        spread = MAD * _median(np.abs(x - med).tolist())
        if spread == 0.0:
            spread = MEANAD * float(np.mean(np.abs(x - med)))
        c = np.full(self._hours, med)
        w = np.zeros(self._hours)
        for s in np.unique(slots).tolist():
            sel = x[slots == s]
            c[s] = _median(sel.tolist())
            w[s] = float(sel.shape[0])
        res = x - c[slots]
        scale = MAD * _median(np.abs(res).tolist())
        if x.shape[0] > 2:
            # second differences: white noise shows in them, a smooth daily cycle hardly
            mr = np.abs(np.diff(x, 2))
            scale = max(scale, _median(mr.tolist()) / MR2_MED)
            if scale == 0.0:
                scale = MEANAD * float(np.mean(mr)) / math.sqrt(6.0)
        if scale == 0.0:
            scale = MEANAD * float(np.mean(np.abs(res)))
        nz = np.abs(res[res != 0.0])
        self._floor = _median(nz.tolist()) if nz.shape[0] else 0.0
        a = np.full(self._hours, scale)
        unseen = w == 0
        a[unseen] = max(scale, spread)
        self._c, self._a, self._w = c, a, w
        if self._weekly:
            assert self._cw is not None and self._ww is not None
            days = np.asarray([int(((t + self._tz) // DAY + 3) % 7) for t in ts], dtype=np.int64)
            keys = days * 24 + slots
            for k in np.unique(keys).tolist():
                sel = x[keys == k]
                self._cw[k] = _median(sel.tolist())
                self._ww[k] = float(sel.shape[0])
        self._buf = None
        self._warm = True

    def _learn(self) -> None:
        cfg = self.config
        keep = 1.0 - 1.0 / cfg.centre_days
        hist = self._hist
        lims = self._lims
        wd = self._wd
        fh = self._fhist
        r_all = self._ratio([sum(fh[s * NF + i] for s in range(self._hours)) for i in range(NF)], self._day_n)
        for s in range(self._hours):
            counts = hist[s * NB:(s + 1) * NB]
            n = sum(counts)
            if not n:
                self._w[s] *= keep
                continue
            med_u = _hist_quantile(counts, SIGNED_EDGES, 0.5, -128.0, 128.0)
            # the slot's own spread, pooled with the day's (a slot with one point a day says little)
            own = n / (n + SLOT_PRIOR)
            r = min(2.0, max(0.5, self._ratio(fh[s * NF:(s + 1) * NF], n) ** own * r_all ** (1.0 - own)))
            c_used, a_used, _eff = lims[s]
            clamp = cfg.centre_step
            target = c_used + a_used * max(-clamp, min(clamp, med_u))  # the day's median, in value units
            w_old = float(self._w[s]) * keep
            share = n / (w_old + n)
            self._c[s] += share * (target - float(self._c[s]))
            self._a[s] *= r ** share
            self._w[s] = w_old + n
            if self._weekly:
                assert self._cw is not None and self._ww is not None
                k = wd * 24 + s
                ww_old = float(self._ww[k]) * keep
                share_w = n / (ww_old + n)
                self._cw[k] += share_w * (target - float(self._cw[k]))
                self._ww[k] = ww_old + n
        if sum(self._mag):
            e = _hist_quantile(self._mag, range(1, MAG_BINS), 0.5, 0.0, float(MAG_BINS))
            self._floor = self._floor * keep + 2.0 ** (e + MAG_LOW - 1.0) * (1.0 - keep)
        keep_t = 1.0 - 1.0 / cfg.memory_days
        self._tail = [a * keep_t + b for a, b in zip(self._tail, self._tail_day, strict=True)]
        self._tail_n = self._tail_n * keep_t + self._tail_nday
        self._atail = [a * keep_t + b for a, b in zip(self._atail, self._atail_day, strict=True)]
        self._atail_n = self._atail_n * keep_t + self._atail_nday

    @staticmethod
    def _ratio(folded: Sequence[int], n: int) -> float:
        """How much wider the residuals were than the scale: 1.4826 x median |u| (x 1.2533 the
        mean |u| when most residuals are ~0: a zero-inflated or quantised series)."""
        mad_u = _hist_quantile(folded, _FOLD_EDGES, 0.5, 0.0, 8.0)
        r = MAD * mad_u
        if mad_u < 0.25:
            r = max(r, MEANAD * sum(f * m for f, m in zip(folded, _FOLD_MID, strict=True)) / n)
        return r

    def _limit(self, counts: Sequence[float], n: float, mids: Sequence[float], base: float, prior_share: float,
               prior_excess: float, floor: float) -> float:
        """Where the tail beyond ``base`` scales, fitted to the decayed ``counts`` (of ``n`` points) with
        a prior, falls to ``tail_probability``: the farther of an exponential tail (mean excess) and a
        power tail (Hill's estimate), so heavy tails (latencies, counts) get limits as wide as theirs."""
        cfg = self.config
        ex = sum(counts)
        share = (ex + cfg.tail_prior_points * prior_share) / (n + cfg.tail_prior_points)
        k = cfg.tail_prior_exceedances
        excess = (sum(c * m for c, m in zip(counts, mids, strict=True)) + k * prior_excess) / (ex + k)
        log_excess = (sum(c * math.log1p(m / base) for c, m in zip(counts, mids, strict=True))
                      + k * PARETO_PRIOR) / (ex + k)
        p = cfg.tail_probability
        if share > p:
            ratio = math.log(share / p)
            t = max(base + excess * ratio, base * math.exp(log_excess * ratio))
        else:
            t = base
        return min(cfg.max_limit, max(floor, t))

    def _recompute(self) -> None:
        """The limits of the current day (per hour: centre, scale, minimum effect)."""
        if not self._warm:
            return
        cfg = self.config
        point = (self._tail_n, _TAIL_MID, 3.0, cfg.tail_prior_share, cfg.tail_prior_excess, cfg.min_limit)
        self._t_hi = self._limit(self._tail[:NT], *point)
        self._t_lo = self._limit(self._tail[NT:], *point)
        avg = (self._atail_n, _AVG_MID, 1.0, cfg.avg_prior_share, cfg.avg_prior_excess, cfg.avg_min_limit)
        self._a_hi = self._limit(self._atail[:NA], *avg)
        self._a_lo = self._limit(self._atail[NA:], *avg)
        lims = []
        cs = []
        for s in range(self._hours):
            c = float(self._c[s])
            if self._weekly:
                assert self._cw is not None and self._ww is not None
                k = self._wd * 24 + s
                ww = float(self._ww[k])
                c = (ww * float(self._cw[k]) + cfg.week_shrink * c) / (ww + cfg.week_shrink)
            cs.append(c)
        level = sum(abs(c) for c in cs) / len(cs)
        self._level = sum(cs) / len(cs)
        for s, c in enumerate(cs):
            a = float(self._a[s]) * math.sqrt(1.0 + cfg.centre_uncertainty / (float(self._w[s]) + 0.5))
            a = max(a, cfg.scale_floor_abs, cfg.scale_floor_rel * abs(c), FLOOR_SHARE * MAD * self._floor)
            eff = max(cfg.min_effect_abs, cfg.min_effect_rel * max(abs(c), cfg.min_effect_level * level))
            lims.append((c, a, eff))
        self._lims = lims

    def _rebaseline(self) -> None:
        """A confirmed level shift: every centre moves to where the run's last points say the new
        level is -- by their median ratio when the series is non-negative (most infrastructure
        metrics: a busier service is busier at every hour, and noisier), else by their median
        difference; scales follow (grow if the run is noisier); the day's learning starts again.
        With ``hour_of_week`` only today's weekly centres move (a weekend is not a shift of the
        weekdays); a shift that lasts is met again, and learned, on each weekday."""
        xs, cs = self._run_d[0::2], self._run_d[1::2]
        if float(np.min(self._c)) >= 0.0 and min(xs) >= 0.0 and min(cs) > 0.0:
            rho = min(50.0, max(0.02, _median([x / c for x, c in zip(xs, cs, strict=True)])))
            self._c = self._c * rho
            self._a = self._a * rho
            self._floor *= rho
            if self._cw is not None:  # the weekly centres of today only: other weekdays keep their own
                day = slice(self._wd * 24, self._wd * 24 + 24)
                self._cw[day] = self._cw[day] * rho
            resid = [x - c * rho for x, c in zip(xs, cs, strict=True)]
        else:
            delta = _median([x - c for x, c in zip(xs, cs, strict=True)])
            self._c = self._c + delta
            if self._cw is not None:
                day = slice(self._wd * 24, self._wd * 24 + 24)
                self._cw[day] = self._cw[day] + delta
            resid = [x - c - delta for x, c in zip(xs, cs, strict=True)]
        self._floor = max(self._floor, _median([abs(r) for r in resid]))
        if len(resid) >= 3:
            spread = MAD * _median([abs(r) for r in resid])
            mean_a = float(np.mean(self._a))
            if mean_a > 0 and spread > mean_a:
                self._a = self._a * min(3.0, spread / mean_a)
        self._run_side = self._run_n = 0
        self._run_t0 = 0.0
        self._run_d = []
        self._q = []
        self._loc = []
        self._new_day()
        self._recompute()

    # -- reads --------------------------------------------------------------------------
    @property
    def warm(self) -> bool:
        return self._warm

    @property
    def firing(self) -> bool:
        return self._ep.firing

    @property
    def n_episodes(self) -> int:
        return self._ep.n_episodes

    @property
    def n_suppressed(self) -> int:
        return self._ep.n_suppressed

    @property
    def limits_now(self) -> tuple[float, float]:
        """(upper, lower) limit of the day, in scales."""
        return self._t_hi, self._t_lo

    def _warmup(self, ts: float, x: float) -> None:
        buf = self._buf
        assert buf is not None
        if self._wn % self._stride == 0:
            buf[0].append(ts)
            buf[1].append(x)
            if len(buf[1]) >= BUFFER_MAX:
                self._buf = buf = (buf[0][::2], buf[1][::2])
                self._stride *= 2
        self._wn += 1

    def _process(self, ts: float, x: float) -> Verdict:
        if ts >= self._b_end:
            self._advance(ts)
        if x - x:  # NaN or ±inf
            self.n_missing += 1
            return RobustVerdict(ts, x, NAN, NAN, NAN, 0, MISSING, False, None)
        if not self._warm:
            self._warmup(ts, x)
            return RobustVerdict(ts, x, NAN, NAN, NAN, 0, WARMUP, False, None)
        cfg = self.config
        s = int(((ts + self._tz) % DAY) // HOUR) if self._hours > 1 else 0
        c, a, eff = self._lims[s]
        e = x - c
        loc = self._loc
        lv = _median(loc) if len(loc) == cfg.local_points else 0.0
        d = e - lv
        u = d / a
        thi, tlo = self._t_hi, self._t_lo
        m = 0
        sgl = False
        if u > thi:
            m = WE1
            sgl = d >= eff
        elif u < -tlo:
            m = WE1
            sgl = d <= -eff
        z = 3.0 * u / thi if u >= 0 else 3.0 * u / tlo
        k = cfg.avg_points
        ub = NAN
        side = 0
        if k:
            ring = self._q
            ring.append(math.floor(max(-Q, min(Q, e / a)) * Q + 0.5))
            if len(ring) > k:
                del ring[0]
            if len(ring) == k:
                ub = sum(ring) / (Q * k)
                if ub > self._a_hi:
                    m = WE1
                    side = 1
                    sgl = sgl or ub * a >= eff
                    za = 3.0 * ub / self._a_hi
                    if za > abs(z):
                        z = za
                elif ub < -self._a_lo:
                    m = WE1
                    side = -1
                    sgl = sgl or -ub * a >= eff
                    za = 3.0 * ub / self._a_lo
                    if -za > abs(z):
                        z = za
        center = c + lv
        lo, hi = center - tlo * a, center + thi * a
        sigma = (hi - lo) / 6.0
        ep = self._ep
        firing_before = ep.firing
        ev = ep.step(ts, sgl, m, x, center, sigma, z, lo, hi) if (sgl or firing_before or ep.cool_left) else None
        # learning, in integers
        self._hist[s * NB + bisect_right(SIGNED_EDGES, e / a)] += 1
        self._fhist[s * NF + bisect_right(_FOLD_EDGES, abs(u))] += 1
        self._day_n += 1
        if d:
            self._mag[min(MAG_BINS - 1, max(0, math.frexp(d)[1] - MAG_LOW))] += 1
        if not firing_before:
            # beyond the limit counts only as beyond 3: anomalies must not blind the next judgement
            self._tail_nday += 1
            if u > 3.0:
                self._tail_day[bisect_right(TAIL_EDGES, u) - 1 if u <= thi else 0] += 1
            elif u < -3.0:
                self._tail_day[NT + (bisect_right(TAIL_EDGES, -u) - 1 if -u <= tlo else 0)] += 1
            if ub == ub:
                self._atail_nday += 1
                if ub > 1.0:
                    self._atail_day[bisect_right(AVG_EDGES, ub) - 1 if ub <= self._a_hi else 0] += 1
                elif ub < -1.0:
                    self._atail_day[NA + (bisect_right(AVG_EDGES, -ub) - 1 if -ub <= self._a_lo else 0)] += 1
        loc.append(e)
        if len(loc) > cfg.local_points:
            del loc[0]
        season = c - self._level
        # a level shift: the short average beyond its limit, on one side, long enough
        if side:
            if side == self._run_side:
                self._run_n += 1
                self._run_d.append(x)
                self._run_d.append(c)
                if len(self._run_d) > 2 * cfg.shift_points:
                    del self._run_d[:2]
            else:
                self._run_side, self._run_n, self._run_t0, self._run_d = side, 1, ts, [x, c]
            if self._run_n >= cfg.shift_points and ts - self._run_t0 >= cfg.shift_seconds:
                self._rebaseline()
        elif self._run_side:
            self._run_side = self._run_n = 0
            self._run_t0 = 0.0
            self._run_d = []
        return RobustVerdict(ts, x, center, sigma, z, m, OK, sgl, ev, lo, hi, season)

    # -- vectorised ---------------------------------------------------------------------------
    def _process_vec(self, t: np.ndarray, x: np.ndarray) -> RobustBatch:
        n = t.shape[0]
        res = _empty(n)
        res.ts = t
        res.value = x
        if n == 0:
            return res
        finite = np.isfinite(x)
        res.status[~finite] = MISSING
        self.n_missing += int(n - np.count_nonzero(finite))
        local = t + self._tz
        b = (local // DAY).astype(np.int64)
        cuts = np.flatnonzero(b[1:] != b[:-1]) + 1
        bounds = [0, *cuts.tolist(), n]
        hours = ((local % DAY) // HOUR).astype(np.int64) if self._hours > 1 else np.zeros(n, np.int64)
        for i0, i1 in itertools.pairwise(bounds):
            if float(t[i0]) >= self._b_end:
                self._advance(float(t[i0]))
            idx = np.flatnonzero(finite[i0:i1]) + i0
            if not self._warm:
                for i in idx.tolist():
                    self._warmup(float(t[i]), float(x[i]))
                res.status[idx] = WARMUP
                continue
            while idx.shape[0]:
                idx = self._segment(res, t, x, hours, idx)
        return res

    def _segment(self, res: RobustBatch, t: np.ndarray, x: np.ndarray, hours: np.ndarray,
                 idx: np.ndarray) -> np.ndarray:
        """Judge the finite points ``idx`` of one day with the current limits, up to and including
        the first that confirms a level shift; returns the points still to judge."""
        cfg = self.config
        cols = list(zip(*self._lims, strict=True))
        hs = hours[idx]
        c = np.asarray(cols[0], dtype=np.float64)[hs]
        a = np.asarray(cols[1], dtype=np.float64)[hs]
        eff = np.asarray(cols[2], dtype=np.float64)[hs]
        xs = x[idx]
        tt = t[idx]
        e = xs - c
        m = e.shape[0]
        ea = e / a
        # the short average and the level-shift runs it makes (they decide where to stop)
        k = cfg.avg_points
        ub = np.full(m, NAN)
        side = np.zeros(m, dtype=np.int64)
        if k:
            qs = np.floor(np.clip(ea, -Q, Q) * Q + 0.5).astype(np.int64)
            ring = self._q
            ext = np.concatenate((np.asarray(ring, dtype=np.int64), qs))
            cum = np.concatenate(([0], np.cumsum(ext)))
            pos = np.arange(m) + len(ring)
            full = pos - k + 1 >= 0
            sums = cum[pos + 1] - cum[np.maximum(pos + 1 - k, 0)]
            ub[full] = sums[full] / (Q * k)
            side = np.where(ub > self._a_hi, 1, np.where(ub < -self._a_lo, -1, 0)).astype(np.int64)
        new = np.ones(m, dtype=bool)
        new[1:] = side[1:] != side[:-1]
        gstart = np.maximum.accumulate(np.where(new, np.arange(m), 0))
        runlen = np.arange(m) - gstart + 1
        t0 = tt[gstart]
        carry = self._run_side != 0 and side[0] == self._run_side
        if carry:
            first = gstart == 0
            runlen = np.where(first, runlen + self._run_n, runlen)
            t0 = np.where(first, self._run_t0, t0)
        trig = (side != 0) & (runlen >= cfg.shift_points) & (tt - t0 >= cfg.shift_seconds)
        stop = int(np.argmax(trig)) + 1 if trig.any() else m
        sl = slice(0, stop)
        rows = idx[sl]
        es, as_, effs, cs, eas, ubs, sides = e[sl], a[sl], eff[sl], c[sl], ea[sl], ub[sl], side[sl]
        # the local level: median of the previous local_points residuals
        mp = cfg.local_points
        lring = self._loc
        lext = np.concatenate((np.asarray(lring, dtype=np.float64), es))
        lpos = np.arange(stop) + len(lring)  # index in lext of each judged point
        lv = np.zeros(stop)
        have = lpos - mp >= 0
        if have.any():
            win = np.lib.stride_tricks.sliding_window_view(lext, mp)  # win[j] = lext[j:j+mp]
            lv[have] = np.median(win[lpos[have] - mp], axis=1)
        ds = es - lv
        us = ds / as_
        thi, tlo = self._t_hi, self._t_lo
        up = us > thi
        dn = us < -tlo
        beyond = up | dn
        sg = (up & (ds >= effs)) | (dn & (ds <= -effs))
        z = np.where(us >= 0, 3.0 * us / thi, 3.0 * us / tlo)
        if k:
            a_up = sides > 0
            a_dn = sides < 0
            beyond |= a_up | a_dn
            sg |= (a_up & (ubs * as_ >= effs)) | (a_dn & (-ubs * as_ >= effs))
            za = np.where(a_up, 3.0 * ubs / self._a_hi, np.where(a_dn, 3.0 * ubs / self._a_lo, 0.0))
            z = np.where(np.abs(za) > np.abs(z), za, z)
        mask = np.where(beyond, WE1, 0).astype(np.int32)
        center = cs + lv
        lo = center - tlo * as_
        hi = center + thi * as_
        res.center[rows] = center
        res.sigma[rows] = (hi - lo) / 6.0
        res.z[rows] = z
        res.mask[rows] = mask
        res.signal[rows] = sg
        res.status[rows] = OK
        res.lo[rows] = lo
        res.hi[rows] = hi
        res.season[rows] = cs - self._level
        ep = self._ep
        firing0 = ep.firing
        n_ev = len(res.events)
        run_episodes(ep, res, rows, sg, res.lo, res.hi)
        # firing before each point's step, from the episode transitions just made
        delta = np.zeros(stop + 1, dtype=np.int64)
        for row, ev in zip(res.event_index[n_ev:], res.events[n_ev:], strict=True):
            delta[int(np.searchsorted(rows, row)) + 1] += 1 if ev.kind == "firing" else -1
        fb = (int(firing0) + np.cumsum(delta)[:stop]) > 0
        # learning counts (integers: order-free, exact)
        hsl = hs[sl]
        self._hist = _added(self._hist, hsl * NB + np.searchsorted(_SE, eas, side="right"), self._hours * NB)
        self._fhist = _added(self._fhist, hsl * NF + np.searchsorted(_FE, np.abs(us), side="right"),
                             self._hours * NF)
        self._day_n += stop
        nz = ds[ds != 0.0]
        if nz.shape[0]:
            self._mag = _added(self._mag, np.clip(np.frexp(nz)[1].astype(np.int64) - MAG_LOW, 0, MAG_BINS - 1),
                               MAG_BINS)
        free = ~fb
        self._tail_nday += int(np.count_nonzero(free))
        uf = us[free]
        self._tail_day = _added(self._tail_day, np.concatenate((
            _tail_bins(uf[uf > 3.0], thi, _TE), _tail_bins(-uf[uf < -3.0], tlo, _TE) + NT)), 2 * NT)
        if k:
            uba = ubs[free]
            uba = uba[uba == uba]
            self._atail_nday += int(uba.shape[0])
            self._atail_day = _added(self._atail_day, np.concatenate((
                _tail_bins(uba[uba > 1.0], self._a_hi, _AE), _tail_bins(-uba[uba < -1.0], self._a_lo, _AE) + NA)),
                2 * NA)
            self._q = ext[:len(ring) + stop][-k:].tolist()
        self._loc = lext[-mp:].tolist()
        # the run at the end of what was judged
        last = stop - 1
        if side[last] == 0:
            self._run_side = self._run_n = 0
            self._run_t0 = 0.0
            self._run_d = []
        else:
            g = int(gstart[last])
            tail = np.column_stack((xs[g:stop], c[g:stop])).ravel().tolist()
            if g == 0 and carry:
                self._run_d = (self._run_d + tail)[-2 * cfg.shift_points:]
                self._run_n += stop
            else:
                self._run_side, self._run_n, self._run_t0 = int(side[last]), stop - g, float(tt[g])
                self._run_d = tail[-2 * cfg.shift_points:]
            if bool(trig[last]):
                self._rebaseline()
        return idx[stop:]

    # -- state ----------------------------------------------------------------------------------
    def to_state(self) -> dict:
        cfg = self.config
        hist = [v for i, c in enumerate(self._hist) if c for v in (i, c)]
        tail_day = [v for i, c in enumerate(self._tail_day) if c for v in (i, c)]
        return {
            "v": STATE_VERSION, "kind": STATE_KIND, "key": self.key,
            "g": [cfg.seasonality or "", cfg.tz_offset_seconds],
            "k": [self._cur, int(self._warm), self._wm if self._wm > -math.inf else None],
            "m": pack([*self._c.tolist(), *self._a.tolist(), *self._w.tolist()]) if self._warm else None,
            "w": pack([*self._cw.tolist(), *self._ww.tolist()]) if self._warm and self._cw is not None else None,
            "t": [self._tail_n, pack(self._tail), self._atail_n, pack(self._atail), self._floor,
                  [v for i, c in enumerate(self._mag) if c for v in (i, c)]],
            "d": [self._day_n, self._tail_nday, hist, tail_day, self._atail_nday,
                  [v for i, c in enumerate(self._atail_day) if c for v in (i, c)], self._q,
                  [v for i, c in enumerate(self._fhist) if c for v in (i, c)], pack(self._loc) if self._loc else ""],
            "b": None if self._buf is None else [self._stride, self._wn, pack(self._buf[0]), pack(self._buf[1])],
            "r": [self._run_side, self._run_n, self._run_t0, pack(self._run_d) if self._run_d else ""],
            "e": self._ep.to_list(),
            "q": [[a, b, c if math.isfinite(c) else None] for a, b, c in sorted(self._heap)] or None,
            "c": [self.n_seen, self.n_late, self.n_missing, self._seq],
            "dn": [self._done if self._done > -math.inf else None, self.n_duplicate],
        }

    @classmethod
    def from_state(cls, state: dict, config: RobustConfig | None = None, key: str | None = None) -> RobustDetector:
        cfg = config or RobustConfig()
        if state.get("v") != STATE_VERSION or state.get("kind") != STATE_KIND:
            raise StateError(f"not a robust detector state (v={state.get('v')!r})")
        if state["g"] != [cfg.seasonality or "", cfg.tz_offset_seconds]:
            raise StateError(f"state geometry {state['g']} does not match config")
        det = cls(key if key is not None else state["key"], cfg)
        cur, warm, wm = state["k"]
        det._cur = cur
        det._warm = bool(warm)
        det._wm = -math.inf if wm is None else float(wm)
        h = det._hours
        if state["m"] is not None:
            f = np.asarray(unpack(state["m"]))
            det._c, det._a, det._w = f[:h].copy(), f[h:2 * h].copy(), f[2 * h:].copy()
        if state["w"] is not None:
            f = np.asarray(unpack(state["w"]))
            det._cw, det._ww = f[:168].copy(), f[168:].copy()
        det._tail_n = float(state["t"][0])
        det._tail = unpack(state["t"][1])
        det._atail_n = float(state["t"][2])
        det._atail = unpack(state["t"][3])
        det._floor = float(state["t"][4])
        mag = state["t"][5]
        for i in range(0, len(mag), 2):
            det._mag[mag[i]] = mag[i + 1]
        day_n, tail_nday, hist, tail_day, atail_nday, atail_day, det._q, fhist, loc = state["d"]
        det._loc = unpack(loc) if loc else []
        for i in range(0, len(fhist), 2):
            det._fhist[fhist[i]] = fhist[i + 1]
        det._atail_nday = int(atail_nday)
        for i in range(0, len(atail_day), 2):
            det._atail_day[atail_day[i]] = atail_day[i + 1]
        det._day_n, det._tail_nday = int(day_n), int(tail_nday)
        for i in range(0, len(hist), 2):
            det._hist[hist[i]] = hist[i + 1]
        for i in range(0, len(tail_day), 2):
            det._tail_day[tail_day[i]] = tail_day[i + 1]
        if state["b"] is None:
            det._buf = None
        else:
            stride, wn, bt, bx = state["b"]
            det._stride, det._wn, det._buf = int(stride), int(wn), (unpack(bt), unpack(bx))
        side, rn, rt0, rd = state["r"]
        det._run_side, det._run_n, det._run_t0 = int(side), int(rn), float(rt0)
        det._run_d = unpack(rd) if rd else []
        det._ep.load_list(state["e"])
        if state["q"]:
            det._heap = [(float(a), int(b), NAN if c is None else float(c)) for a, b, c in state["q"]]
        det.n_seen, det.n_late, det.n_missing, det._seq = state["c"]
        done, det.n_duplicate = state.get("dn") or (None, 0)  # absent in states written before 2026-12-03
        det._done = -math.inf if done is None else float(done)
        if det._cur is not None:
            det._wd = int((det._cur + 3) % 7)
            det._b_end = (det._cur + 1) * DAY - det._tz
            det._recompute()
        return det
