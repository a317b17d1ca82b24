"""SeriesDetector: baseline + rules + episodes for one series, incremental and vectorised.

Per point, in event-time order:

1. if the point's bucket is new, the baseline rolls (limits recomputed);
2. NaN/inf -> ``MISSING``; inside an exclusion window -> ``EXCLUDED`` (neither
   enters the baseline nor the rules nor the episode counts);
3. not enough baseline yet -> ``WARMUP`` (the point is learned, not judged);
4. otherwise ``OK``: the rules are evaluated on ``d = x - centre``, an episode
   may fire/extend/resolve, and the point enters the baseline unless protection
   refuses it.

``update`` and ``update_many`` give identical results (same floats, same
rules, same episodes); ``to_state``/``from_state`` cut a stream anywhere.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from statistics import NormalDist

import numpy as np

from .baseline import RollingBaseline, SlotProfile, slot_of, slots_of
from .config import DetectorConfig
from .episodes import EpisodeEvent, EpisodeTracker
from .rules import CUSUM, RuleState, mask_rules, rules_mask, rules_vec

OK, WARMUP, MISSING, EXCLUDED, LATE, DUPLICATE = 0, 1, 2, 3, 4, 5
STATUS_NAMES = ("ok", "warmup", "missing", "excluded", "late", "duplicate")
STATE_VERSION = 1
NAN = math.nan
_BIG = 1 << 62


MR_DF_PER_RANGE = 0.62  # degrees of freedom of a moving-range sigma per moving range (Nelson 1982)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def t_upper_tail(x: float, df: float) -> float:
    """P(T > x) for Student's t with ``df`` degrees of freedom, x >= 0."""
    return 0.5 * _betainc(df / 2.0, 0.5, df / (df + x * x))


@lru_cache(maxsize=4096)
def zone_factors(df: float) -> tuple[float, float, float]:
    """The 1σ, 2σ, 3σ lines as Student-t quantiles (in sigmas) of the normal tail probabilities.

    A point beyond the kσ line of a normal with *known* sigma has probability
    ``1 - Φ(k)``; with sigma *estimated* with ``df`` degrees of freedom the same
    probability needs the t quantile (a prediction limit).  Bisection: cached, and
    computed only when limits are recomputed.
    """
    df = max(df, 0.5)
    out = []
    for k in (1.0, 2.0, 3.0):
        tail = 1.0 - NormalDist().cdf(k)
        lo, hi = k, 2.0 * k
        while t_upper_tail(hi, df) > tail:
            lo, hi = hi, 2.0 * hi
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if t_upper_tail(mid, df) > tail:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-12 * hi:
                break
        out.append(hi)
    return out[0], out[1], out[2]


def _quiet_runs(sg: np.ndarray) -> np.ndarray:
    n = sg.shape[0]
    idx = np.arange(n, dtype=np.int64)
    last = np.maximum.accumulate(np.where(sg, idx, -1))
    return idx - last


def run_episodes(ep: EpisodeTracker, res: Batch, eidx: np.ndarray, sg: np.ndarray,
                 lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> None:
    """Run the episode state machine over the evaluated points ``eidx`` of ``res``.

    Equivalent to calling ``EpisodeTracker.step`` on every point, but it jumps: runs of
    extending signals are folded with numpy and only the transitions (firing, resolved)
    go through ``step``. ``lo``/``hi`` (per row of ``res``): explicit limits for the events.
    """
    m = int(eidx.shape[0])
    sig_pos = np.flatnonzero(sg)
    ns = int(sig_pos.shape[0])
    if ns == 0 and not ep.firing and ep.cool_left == 0:
        return
    R = ep.resolve_after
    masks_e = res.mask[eidx]
    absz = np.abs(res.z[eidx])
    quiet = _quiet_runs(sg)  # length of the run of non-signals ending at each point
    res_pos = np.flatnonzero(quiet == R)
    csig = np.concatenate(([0], np.cumsum(sg, dtype=np.int64)))

    def call(p: int, s: bool) -> None:
        i = int(eidx[p])
        e = ep.step(float(res.ts[i]), s, int(res.mask[i]), float(res.value[i]),
                    float(res.center[i]), float(res.sigma[i]), float(res.z[i]),
                    None if lo is None else float(lo[i]), None if hi is None else float(hi[i]))
        if e is not None:
            res.events.append(e)
            res.event_index.append(i)

    pos = 0
    while pos < m:
        if ep.firing:
            j = int(np.searchsorted(sig_pos, pos))
            nxt = int(sig_pos[j]) if j < ns else m
            r = pos + (R - ep.ok_run) - 1
            if r < nxt:  # quiet long enough before the next signal
                ep.ok_run += r - pos
                call(r, False)
                pos = r + 1
                continue
            if nxt == m:
                ep.ok_run += m - pos
                break
            k = int(np.searchsorted(res_pos, nxt))
            p = int(res_pos[k]) if k < res_pos.shape[0] else m
            sel = sg[nxt:p]
            ep.mask |= int(np.bitwise_or.reduce(masks_e[nxt:p][sel]))
            ep.n_sig += int(csig[p] - csig[nxt])
            pk = float(absz[nxt:p][sel].max())
            if pk > ep.peak:
                ep.peak = pk
            if p == m:
                ep.ok_run = int(quiet[m - 1])
                break
            ep.ok_run = R - 1
            call(p, False)
            pos = p + 1
        else:
            cl = ep.cool_left
            if cl:
                end = min(pos + cl, m)
                ep.n_suppressed += int(csig[end] - csig[pos])
                ep.cool_left = cl - (end - pos)
                pos = end
                continue
            j = int(np.searchsorted(sig_pos, pos))
            if j >= ns:
                break
            if ep.budget and ep.n_episodes:
                cand = sig_pos[j:]
                ok = res.ts[eidx[cand]] >= ep.start_ts + ep.budget
                if ep.peak < ep.escalate:
                    ok |= absz[cand] >= ep.escalate
                if not ok.any():
                    ep.n_suppressed += int(cand.shape[0])
                    break
                k = int(np.argmax(ok))
                ep.n_suppressed += k
                j += k
            pos = int(sig_pos[j])
            call(pos, True)
            pos += 1


class StateError(ValueError):
    """State from an incompatible version or config (window/bucket/seasonality)."""


class Verdict:
    """The judgement of one sample.

    ``status``: 0 ok, 1 warmup, 2 missing, 3 excluded, 4 late (rejected).
    ``center``/``sigma``/``z`` are NaN unless ``status == OK``.  ``mask`` holds
    the enabled rules this point completes (``rules`` as ids); ``signal`` says
    whether it counts for episodes (a rule fired and the effect is large
    enough); ``event`` is the episode transition this point caused, if any.
    """

    __slots__ = ("center", "event", "mask", "sigma", "signal", "status", "ts", "value", "z")

    def __init__(
        self, ts: float, value: float, center: float, sigma: float, z: float, mask: int,
        status: int, signal: bool, event: EpisodeEvent | None,
    ) -> None:
        self.ts = ts
        self.value = value
        self.center = center
        self.sigma = sigma
        self.z = z
        self.mask = mask
        self.status = status
        self.signal = signal
        self.event = event

    @property
    def lower(self) -> float:
        return self.center - 3.0 * self.sigma

    @property
    def upper(self) -> float:
        return self.center + 3.0 * self.sigma

    @property
    def rules(self) -> frozenset[str]:
        return mask_rules(self.mask)

    @property
    def warmup(self) -> bool:
        return self.status == WARMUP

    @property
    def late(self) -> bool:
        return self.status == LATE

    @property
    def status_name(self) -> str:
        return STATUS_NAMES[self.status]

    def __repr__(self) -> str:
        return (f"Verdict(ts={self.ts!r}, value={self.value!r}, status={self.status_name}, "
                f"center={self.center!r}, sigma={self.sigma!r}, z={self.z!r}, "
                f"rules={sorted(self.rules)}, signal={self.signal}, event={self.event})")


@dataclass
class Batch:
    """Columnar result of :meth:`SeriesDetector.update_many` (one row per
    released sample, in release order), plus the episode events with the row
    index that caused each."""

    ts: np.ndarray
    value: np.ndarray
    center: np.ndarray
    sigma: np.ndarray
    z: np.ndarray
    mask: np.ndarray
    status: np.ndarray
    signal: np.ndarray
    events: list[EpisodeEvent] = field(default_factory=list)
    event_index: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def lower(self) -> np.ndarray:
        return self.center - 3.0 * self.sigma

    @property
    def upper(self) -> np.ndarray:
        return self.center + 3.0 * self.sigma

    def rules(self, i: int) -> frozenset[str]:
        return mask_rules(int(self.mask[i]))

    def verdicts(self) -> list[Verdict]:
        ev = dict(zip(self.event_index, self.events, strict=True))
        return [
            Verdict(float(t), float(v), float(c), float(s), float(zz), int(m), int(st), bool(sg), ev.get(i))
            for i, (t, v, c, s, zz, m, st, sg) in enumerate(zip(
                self.ts.tolist(), self.value.tolist(), self.center.tolist(), self.sigma.tolist(),
                self.z.tolist(), self.mask.tolist(), self.status.tolist(), self.signal.tolist(),
                strict=True))
        ]

    @classmethod
    def from_verdicts(cls, vs: Sequence[Verdict]) -> Batch:
        evs = [(i, v.event) for i, v in enumerate(vs) if v.event is not None]
        return cls(
            ts=np.array([v.ts for v in vs], dtype=np.float64),
            value=np.array([v.value for v in vs], dtype=np.float64),
            center=np.array([v.center for v in vs], dtype=np.float64),
            sigma=np.array([v.sigma for v in vs], dtype=np.float64),
            z=np.array([v.z for v in vs], dtype=np.float64),
            mask=np.array([v.mask for v in vs], dtype=np.int32),
            status=np.array([v.status for v in vs], dtype=np.int8),
            signal=np.array([v.signal for v in vs], dtype=bool),
            events=[e for _, e in evs],  # type: ignore[misc]
            event_index=[i for i, _ in evs],
        )

    @classmethod
    def concat(cls, parts: Sequence[Batch]) -> Batch:
        evs: list[EpisodeEvent] = []
        idx: list[int] = []
        off = 0
        for p in parts:
            evs.extend(p.events)
            idx.extend(i + off for i in p.event_index)
            off += len(p)
        cat = np.concatenate
        return cls(
            ts=cat([p.ts for p in parts]) if parts else np.zeros(0),
            value=cat([p.value for p in parts]) if parts else np.zeros(0),
            center=cat([p.center for p in parts]) if parts else np.zeros(0),
            sigma=cat([p.sigma for p in parts]) if parts else np.zeros(0),
            z=cat([p.z for p in parts]) if parts else np.zeros(0),
            mask=cat([p.mask for p in parts]) if parts else np.zeros(0, np.int32),
            status=cat([p.status for p in parts]) if parts else np.zeros(0, np.int8),
            signal=cat([p.signal for p in parts]) if parts else np.zeros(0, bool),
            events=evs, event_index=idx,
        )


def refused(ts: float, wm: float, lateness: float, done: float, held: list[tuple[float, int, float]]) -> int:
    """The front end's verdict on a sample at ``ts`` (shared by every detector): ``LATE`` when
    older than the lateness allows, ``DUPLICATE`` when this series already has a sample at
    ``ts`` (judged: ``ts <= done``, the newest judged timestamp; or held for lateness), else
    ``OK`` (take it). One sample per series and timestamp, the first one wins: a redelivered
    message, or the same sample in two messages, changes nothing (README, Delivery guarantees)."""
    if lateness == 0.0:
        return OK if ts > wm else (DUPLICATE if ts == wm else LATE)
    if ts < wm - lateness:
        return LATE
    if ts <= done or any(h[0] == ts for h in held):
        return DUPLICATE
    return OK


def _empty_batch(n: int) -> Batch:
    return Batch(
        ts=np.zeros(n), value=np.zeros(n), center=np.full(n, NAN), sigma=np.full(n, NAN),
        z=np.full(n, NAN), mask=np.zeros(n, np.int32), status=np.zeros(n, np.int8),
        signal=np.zeros(n, bool),
    )


class InOrderFront:
    """The front end every detector shares: samples in timestamp order, one per timestamp.

    A sample older than ``lateness`` behind the newest one is ``LATE``; a second sample at a
    timestamp already taken is a ``DUPLICATE`` (:func:`refused`); both are counted, never judged.
    With ``lateness`` > 0 samples wait in a heap until the newest is ``lateness`` ahead, then
    are judged in order (``flush`` releases the rest at the end of input). Subclasses judge
    (``_process``, ``_process_vec``) and say which verdict and batch types they return.
    """

    __slots__ = ("_done", "_heap", "_lateness", "_seq", "_wm", "n_duplicate", "n_late", "n_seen")

    _VERDICT: type[Verdict] = Verdict
    _BATCH: type[Batch] = Batch

    def __init__(self, lateness_seconds: float) -> None:
        self._lateness = float(lateness_seconds)
        self._wm = -math.inf
        self._done = -math.inf  # newest timestamp judged (with lateness: released from the heap)
        self._heap: list[tuple[float, int, float]] = []
        self._seq = 0
        self.n_seen = self.n_late = self.n_duplicate = 0

    def _process(self, ts: float, x: float) -> Verdict:
        raise NotImplementedError

    def _process_vec(self, t: np.ndarray, x: np.ndarray) -> Batch:
        raise NotImplementedError

    def update(self, ts: float, value: float) -> list[Verdict]:
        """Judge one sample; returns the verdicts it releases: one in the usual in-order case,
        none while a late-tolerant detector holds it, several when it releases a backlog."""
        self.n_seen += 1
        if self._lateness == 0.0:
            if ts <= self._wm:
                return [self._refuse(ts, value, DUPLICATE if ts == self._wm else LATE)]
            self._wm = ts
            return [self._process(ts, value)]
        status = refused(ts, self._wm, self._lateness, self._done, self._heap)
        if status != OK:
            return [self._refuse(ts, value, status)]
        heapq.heappush(self._heap, (ts, self._seq, value))
        self._seq += 1
        if ts > self._wm:
            self._wm = ts
        frontier = self._wm - self._lateness
        out = []
        heap = self._heap
        while heap and heap[0][0] <= frontier:
            t, _, v = heapq.heappop(heap)
            out.append(self._process(t, v))
            self._done = t
        return out

    def _refuse(self, ts: float, value: float, status: int) -> Verdict:
        if status == LATE:
            self.n_late += 1
        else:
            self.n_duplicate += 1
        return self._VERDICT(ts, value, NAN, NAN, NAN, 0, status, False, None)

    def flush(self) -> list[Verdict]:
        """Release every held sample (end of input); the lateness guarantee
        then restarts from the newest timestamp seen."""
        out = []
        while self._heap:
            t, _, v = heapq.heappop(self._heap)
            out.append(self._process(t, v))
            self._done = t
        return out

    def update_many(self, ts: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray) -> Batch:
        """Judge many samples of this series at once (backfill, replay).

        Identical to calling :meth:`update` for each sample in order and
        concatenating the verdicts.  Vectorised with numpy when the batch is in
        timestamp order and not older than what was seen; otherwise it falls
        back to the per-sample path (correct, slower).
        """
        t = np.ascontiguousarray(ts, dtype=np.float64)
        x = np.ascontiguousarray(values, dtype=np.float64)
        if t.shape != x.shape or t.ndim != 1:
            raise ValueError("ts and values must be 1-d arrays of the same length")
        n = t.shape[0]
        if n == 0:
            return self._process_vec(t, x)
        # Strictly increasing and newer than anything seen: no sample can be late or a repeat.
        in_order = bool(np.all(t[1:] > t[:-1])) and not self._heap and t[0] > self._wm
        if not in_order:
            out: list[Verdict] = []
            for a, b in zip(t.tolist(), x.tolist(), strict=True):
                out.extend(self.update(a, b))
            return self._BATCH.from_verdicts(out)
        self.n_seen += n
        self._wm = float(t[-1])
        if self._lateness > 0.0:
            cut = int(np.searchsorted(t, self._wm - self._lateness, side="right"))
            seq0 = self._seq
            for i, (a, b) in enumerate(zip(t[cut:].tolist(), x[cut:].tolist(), strict=True)):
                heapq.heappush(self._heap, (a, seq0 + cut + i, b))
            self._seq = seq0 + n
            t, x = t[:cut], x[:cut]
            if cut:
                self._done = float(t[-1])
        return self._process_vec(t, x)


class SeriesDetector(InOrderFront):
    """Statistical process control for one series (one key), pure and incremental.

    >>> det = SeriesDetector("db-1/CPUUtilization", DetectorConfig.infra())
    >>> for v in det.update(1_700_000_000.0, 41.7):
    ...     v.status_name
    'warmup'

    ``update(ts, value)`` returns the verdicts *released* by this sample: one
    in the usual in-order case, none while a late-tolerant detector holds it,
    several when it releases a backlog, and a ``late`` verdict for a sample
    older than the lateness allows (counted in ``n_late``, never merged).
    ``flush()`` releases what is held (end of a replay).
    """

    __slots__ = (
        "_b_end",
        "_bl",
        "_bs",
        "_cur",
        "_enabled",
        "_ep",
        "_excl",
        "_fixed",
        "_freeze_at",
        "_frozen",
        "_lims",
        "_pmax",
        "_prof",
        "_prun",
        "_rs",
        "_season",
        "_seasonal",
        "_side",
        "_tz",
        "config",
        "key",
        "n_excluded",
        "n_missing",
    )

    def __init__(self, key: str, config: DetectorConfig | None = None) -> None:
        cfg = config or DetectorConfig()
        self.key = key
        self.config = cfg
        self._bs = float(cfg.bucket_seconds)
        self._seasonal = cfg.seasonality is not None
        self._season = cfg.seasonality or ""
        self._tz = float(cfg.tz_offset_seconds)
        self._bl = RollingBaseline(cfg.window_buckets)
        self._prof = SlotProfile(cfg.n_slots, cfg.window_buckets) if self._seasonal else None
        self._enabled = rules_mask(cfg.rules)
        self._rs = RuleState(bool(self._enabled & CUSUM), cfg.cusum_k, cfg.cusum_h)
        self._side = {"both": 0, "lower": -1, "upper": 1}[cfg.cusum_side] if self._enabled & CUSUM else 0
        self._ep = EpisodeTracker(key, cfg.resolve_after, cfg.cooldown, cfg.budget_seconds, cfg.escalate_z)
        self._fixed = cfg.fixed_center is not None
        self._frozen = self._fixed
        self._freeze_at = cfg.freeze_at
        self._cur: int | None = None
        self._b_end = -math.inf
        self._prun = 0
        self._pmax = _BIG if cfg.protect_max_run is None else cfg.protect_max_run
        self._excl: list[tuple[float, float]] = sorted(cfg.exclusions)
        super().__init__(cfg.lateness_seconds)
        self.n_missing = self.n_excluded = 0
        self._lims: list[tuple] = []
        self._recompute_limits()

    # -- limits ----------------------------------------------------------------
    def _recompute_limits(self) -> None:
        """Cache per-slot (centre, sigma, 1σ, 2σ, 3σ, effect, protect, slot_ok, warm)."""
        cfg = self.config
        bl = self._bl
        if self._fixed:
            assert cfg.fixed_center is not None and cfg.fixed_sigma is not None
            raw = float(cfg.fixed_sigma)
            centers = [float(cfg.fixed_center)]
            slot_ok = [True]
            gwarm = True
        else:
            raw = bl.std if cfg.sigma == "std" else bl.mr_sigma
            gwarm = bl.n >= cfg.min_samples and (cfg.sigma == "std" or bl.mr_n >= 1)
            if self._prof is not None:
                centers = self._prof.centers
                slot_ok = [c >= cfg.min_slot_samples for c in self._prof.counts]
            else:
                centers = [bl.mean]
                slot_ok = [True]
        q1, q2, q3 = 1.0, 2.0, 3.0
        if cfg.prediction_limits and not self._fixed:
            q1, q2, q3 = zone_factors(bl.n - 1.0 if cfg.sigma == "std" else MR_DF_PER_RANGE * bl.mr_n)
        pz = math.inf if cfg.protect_z is None else cfg.protect_z
        lims = []
        for c, ok in zip(centers, slot_ok, strict=True):
            ac = abs(c)
            s0 = max(raw, cfg.sigma_floor_abs, cfg.sigma_floor_rel * ac)
            sig = s0 * q3 / 3.0 if q3 != 3.0 else s0  # reported sigma: centre ± 3 sigma is the WE1 line
            eff = max(cfg.min_effect_abs, cfg.min_effect_rel * ac)
            lims.append((c, sig, q1 * s0, q2 * s0, q3 * s0, eff, pz * sig, ok, ok and gwarm))
        self._lims = lims

    def _advance(self, ts: float) -> None:
        """Slow path when a point leaves the current bucket (or crosses freeze_at)."""
        b = int(ts // self._bs)
        if b != self._cur:
            self._cur = b
            if not self._frozen:
                self._bl.roll(b)
                if self._prof is not None:
                    self._prof.roll(b)
                self._recompute_limits()
            if self._excl and self._excl[0][1] <= ts:
                self._excl = [w for w in self._excl if w[1] > ts]
        self._b_end = (b + 1) * self._bs
        fa = self._freeze_at
        if fa is not None:
            if ts >= fa:
                self._freeze_at = None
                self.freeze()
            elif fa < self._b_end:
                self._b_end = fa

    def freeze(self) -> None:
        """Phase II: fix the limits at what has been learned so far (including
        the open bucket); the baseline stops learning until :meth:`unfreeze`."""
        if self._frozen:
            return
        self._bl.close()
        self._bl.recompute()
        if self._prof is not None:
            self._prof.close()
            self._prof.recompute()
        self._recompute_limits()
        self._frozen = True

    def unfreeze(self) -> None:
        if not self._frozen or self._fixed:
            return
        self._frozen = False
        if self._cur is not None and self._bl.cur != self._cur:
            self._bl.roll(self._cur)
            if self._prof is not None:
                self._prof.roll(self._cur)
            self._recompute_limits()

    @property
    def frozen(self) -> bool:
        return self._frozen

    def add_exclusion(self, start: float, end: float) -> None:
        """Exclude [start, end) from the baseline and the verdicts (kept in state)."""
        self._excl = sorted([*self._excl, (float(start), float(end))])

    def _excluded(self, ts: float) -> bool:
        for s, e in self._excl:
            if s <= ts < e:
                return True
        return False

    # -- reads ---------------------------------------------------------------------
    def limits(self, ts: float) -> tuple[float, float, bool]:
        """(centre, sigma, warm) that would judge a point at ``ts`` now (same bucket)."""
        slot = slot_of(ts, self._season, self._tz) if self._seasonal else 0
        lim = self._lims[slot]
        return lim[0], lim[1], lim[8]

    @property
    def firing(self) -> bool:
        return self._ep.firing

    @property
    def n_episodes(self) -> int:
        return self._ep.n_episodes

    @property
    def n_suppressed(self) -> int:
        return self._ep.n_suppressed

    # -- incremental -------------------------------------------------------------
    def _process(self, ts: float, x: float) -> Verdict:
        if ts >= self._b_end:
            self._advance(ts)
        if x - x:  # NaN or ±inf
            self.n_missing += 1
            return Verdict(ts, x, NAN, NAN, NAN, 0, MISSING, False, None)
        if self._excl and self._excluded(ts):
            self.n_excluded += 1
            return Verdict(ts, x, NAN, NAN, NAN, 0, EXCLUDED, False, None)
        seasonal = self._seasonal
        slot = slot_of(ts, self._season, self._tz) if seasonal else 0
        c, sig, t1, t2, t3, eff, pt, slot_ok, warm = self._lims[slot]
        if not warm:
            if not self._frozen:
                if seasonal:
                    prof = self._prof
                    assert prof is not None
                    if slot_ok:
                        self._bl.add(x - c)
                    else:
                        # No closed centre for the slot yet (the first day): the residual against
                        # the slot's running mean in the open bucket, so one closed day warms up.
                        om = prof.open_mean(slot)
                        if om is not None:
                            self._bl.add(x - om)
                    prof.add(slot, x)
                else:
                    self._bl.add(x)
            return Verdict(ts, x, NAN, NAN, NAN, 0, WARMUP, False, None)
        d = x - c
        m = self._rs.update(d, t1, t2, t3) & self._enabled
        if m & CUSUM and self._side and (d > 0) != (self._side > 0):
            m &= ~CUSUM  # the other side's CUSUM is not wanted (e.g. declines only)
        z = d / sig
        sgl = m != 0 and (d >= eff or d <= -eff)
        ep = self._ep
        ev = ep.step(ts, sgl, m, x, c, sig, z) if (sgl or ep.firing or ep.cool_left) else None
        if not self._frozen:
            if d > pt or d < -pt:
                self._prun += 1
                admit = self._prun > self._pmax
            else:
                self._prun = 0
                admit = True
            if admit:
                if seasonal:
                    self._prof.add(slot, x)  # type: ignore[union-attr]
                    self._bl.add(d)
                else:
                    self._bl.add(x)
        return Verdict(ts, x, c, sig, z, m, OK, sgl, ev)

    # -- vectorised ---------------------------------------------------------------
    def _process_vec(self, t: np.ndarray, x: np.ndarray) -> Batch:
        n = t.shape[0]
        res = _empty_batch(n)
        res.ts = t
        res.value = x
        if n == 0:
            return res
        status = res.status
        finite = np.isfinite(x)
        status[~finite] = MISSING
        self.n_missing += int(n - np.count_nonzero(finite))
        # segments: bucket changes, and the freeze_at crossing
        b = (t // self._bs).astype(np.int64)
        cuts = np.flatnonzero(b[1:] != b[:-1]) + 1
        bounds = [0, *cuts.tolist(), n]
        if self._freeze_at is not None:
            k = int(np.searchsorted(t, self._freeze_at, side="left"))
            if 0 < k < n and k not in bounds:
                bounds = sorted([*bounds, k])
        d_all = np.full(n, NAN)
        t1a = np.zeros(n)
        t2a = np.zeros(n)
        t3a = np.zeros(n)
        effa = np.zeros(n)
        evaluated = np.zeros(n, dtype=bool)
        seasonal = self._seasonal
        slots_all = slots_of(t, self._season, self._tz) if seasonal else None
        for i0, i1 in itertools.pairwise(bounds):
            ts0 = float(t[i0])
            if ts0 >= self._b_end:
                self._advance(ts0)
            xs = x[i0:i1]
            valid = finite[i0:i1].copy()
            if self._excl:
                ex = np.zeros(i1 - i0, dtype=bool)
                tt = t[i0:i1]
                for s, e in self._excl:
                    ex |= (tt >= s) & (tt < e)
                ex &= valid
                status[i0:i1][ex] = EXCLUDED
                self.n_excluded += int(np.count_nonzero(ex))
                valid &= ~ex
            lims = self._lims
            if seasonal:
                assert slots_all is not None
                sl = slots_all[i0:i1]
                cols = list(zip(*lims, strict=True))
                c = np.asarray(cols[0], dtype=np.float64)[sl]
                sig = np.asarray(cols[1], dtype=np.float64)[sl]
                t1 = np.asarray(cols[2], dtype=np.float64)[sl]
                t2 = np.asarray(cols[3], dtype=np.float64)[sl]
                t3 = np.asarray(cols[4], dtype=np.float64)[sl]
                eff = np.asarray(cols[5], dtype=np.float64)[sl]
                pt = np.asarray(cols[6], dtype=np.float64)[sl]
                sok = np.asarray(cols[7], dtype=bool)[sl]
                warm = np.asarray(cols[8], dtype=bool)[sl]
            else:
                c0, s0, a1, a2, a3, e0, p0, ok0, w0 = lims[0]
                m_ = i1 - i0
                c = np.full(m_, c0)
                sig = np.full(m_, s0)
                t1 = np.full(m_, a1)
                t2 = np.full(m_, a2)
                t3 = np.full(m_, a3)
                eff = np.full(m_, e0)
                pt = np.full(m_, p0)
                sok = np.full(m_, ok0)
                warm = np.full(m_, w0)
            wu = valid & ~warm
            ev = valid & warm
            status[i0:i1][wu] = WARMUP
            d = xs - c
            seg_d = d_all[i0:i1]
            seg_d[ev] = d[ev]
            res.center[i0:i1][ev] = c[ev]
            res.sigma[i0:i1][ev] = sig[ev]
            t1a[i0:i1] = t1
            t2a[i0:i1] = t2
            t3a[i0:i1] = t3
            effa[i0:i1] = eff
            evaluated[i0:i1] = ev
            if self._frozen:
                continue
            # protection (run of refused points carried across segments)
            admit = valid.copy()
            if np.any(ev):
                de = d[ev]
                pe = pt[ev]
                cand = (de > pe) | (de < -pe)
                if np.any(cand):
                    idx = np.arange(cand.shape[0])
                    lastf = np.maximum.accumulate(np.where(cand, -1, idx))
                    rl = np.where(lastf >= 0, idx - lastf, idx + 1 + self._prun)
                    self._prun = int(rl[-1])
                    adm_e = ~cand | (rl > self._pmax)
                    sub = admit[ev]
                    sub &= adm_e
                    admit[ev] = sub
                else:
                    self._prun = 0
            if seasonal:
                assert self._prof is not None and slots_all is not None
                xa = xs[admit]
                prior = self._prof.add_many(sl[admit], xa)
                soka = sok[admit]
                ra = np.where(soka, d[admit], xa - prior)  # see _process: first-day residuals
                self._bl.add_many(ra[soka | ~np.isnan(prior)])
            else:
                self._bl.add_many(xs[admit])
        # rules over the evaluated points, in order
        eidx = np.flatnonzero(evaluated)
        if eidx.shape[0]:
            de = d_all[eidx]
            masks, self._rs = rules_vec(de, t1a[eidx], t2a[eidx], t3a[eidx], self._rs)
            masks &= self._enabled
            if self._side:
                wrong = (de > 0) if self._side < 0 else (de < 0)
                masks[wrong] &= ~CUSUM
            res.mask[eidx] = masks
            zc = de / res.sigma[eidx]
            res.z[eidx] = zc
            ef = effa[eidx]
            sg = (masks != 0) & ((de >= ef) | (de <= -ef))
            res.signal[eidx] = sg
            status[eidx] = OK
            self._episodes_vec(res, eidx, sg)
        return res

    def _episodes_vec(self, res: Batch, eidx: np.ndarray, sg: np.ndarray) -> None:
        run_episodes(self._ep, res, eidx, sg)

    # -- state -----------------------------------------------------------------------
    def to_state(self) -> dict:
        """Compact JSON-serialisable state (dict of lists, numbers, short
        base64 strings for float arrays), versioned by ``"v"``."""
        cfg = self.config
        return {
            "v": STATE_VERSION,
            "key": self.key,
            "g": [cfg.window_buckets, int(cfg.bucket_seconds), cfg.seasonality or ""],
            "b": self._bl.to_state(),
            "p": self._prof.to_state() if self._prof is not None else None,
            "r": self._rs.to_list(),
            "e": self._ep.to_list(),
            "k": [self._cur, int(self._frozen), self._freeze_at, self._prun,
                  self._wm if self._wm > -math.inf else None],
            "x": [list(w) for w in self._excl if w not in cfg.exclusions] or None,
            # Sorted: a heap's layout depends on how it was filled; the state must not (a sorted
            # list is a heap, so loading it back needs nothing more).
            "q": [[a, b, c if math.isfinite(c) else None] for a, b, c in sorted(self._heap)] or None,
            "c": [self.n_seen, self.n_late, self.n_missing, self.n_excluded, self._seq],
            "dn": [self._done if self._done > -math.inf else None, self.n_duplicate],
        }

    @classmethod
    def from_state(cls, state: dict, config: DetectorConfig | None = None, key: str | None = None) -> SeriesDetector:
        """Restore a detector; continues exactly where :meth:`to_state` stopped.

        Raises :class:`StateError` if the state's version or its baseline
        geometry (window buckets, bucket size, seasonality) do not match
        ``config`` -- the caller then starts a fresh detector.
        """
        cfg = config or DetectorConfig()
        if state.get("v") != STATE_VERSION:
            raise StateError(f"unsupported state version {state.get('v')!r}")
        g = state["g"]
        if g != [cfg.window_buckets, int(cfg.bucket_seconds), cfg.seasonality or ""]:
            raise StateError(f"state geometry {g} does not match config")
        det = cls(key if key is not None else state["key"], cfg)
        det._bl = RollingBaseline.from_state(state["b"], cfg.window_buckets)
        if state["p"] is not None:
            det._prof = SlotProfile.from_state(state["p"], cfg.n_slots, cfg.window_buckets)
        det._rs = RuleState.from_list(state["r"], det._rs.cusum, cfg.cusum_k, cfg.cusum_h)
        det._ep.load_list(state["e"])
        cur, frozen, fa, prun, wm = state["k"]
        det._cur = cur
        det._frozen = bool(frozen)
        det._freeze_at = fa
        det._prun = int(prun)
        det._wm = -math.inf if wm is None else float(wm)
        if state["x"]:
            det._excl = sorted([*det._excl, *(tuple(map(float, w)) for w in state["x"])])
        if state["q"]:
            det._heap = [(float(a), int(b), NAN if c is None else float(c)) for a, b, c in state["q"]]
            heapq.heapify(det._heap)
        det.n_seen, det.n_late, det.n_missing, det.n_excluded, det._seq = state["c"]
        done, det.n_duplicate = state.get("dn") or (None, 0)  # absent in states written before 2026-12-03
        det._done = -math.inf if done is None else float(done)
        # a frozen detector's limits are those of its baseline at freeze time,
        # which is exactly the restored baseline (it stopped learning then)
        det._recompute_limits()
        if det._cur is not None:
            det._b_end = (det._cur + 1) * det._bs
            if det._freeze_at is not None and det._freeze_at < det._b_end:
                det._b_end = det._freeze_at
        return det
