"""Western Electric and Nelson run rules, incremental and batch.

Both paths work on the *deviation* ``d = x - center`` and compare it with
``k * sigma`` (never ``d / sigma`` with ``k``), so they agree bit for bit and a
zero sigma needs no special case.

Conventions (the questions a reader asks, answered once):

* **Zone lines.** "Beyond kσ" is strict: ``|d| > k*sigma``.  A point exactly on
  the 3σ line does *not* fire WE1; "within 1σ" (N7) is the complement,
  ``|d| <= sigma``.
* **Centre line.** A point with ``d == 0`` is on neither side: it breaks the
  one-side runs (WE4, N2) and is not "beyond" anything.
* **Which point fires.** A rule is reported on the point that *completes* it:
  the window ending at that point satisfies the rule *and* the point itself is
  one of the qualifying points (for WE2/WE3 it must be beyond the zone line on
  the signalling side).  An in-control point is never blamed.
* **Sliding.** Windows slide; a signal does not reset any state.  Ten points in
  a row above the centre fire WE4 on points 8, 9 and 10, and N2 on 9 and 10.
* **k-of-n before n points exist.** k-of-n rules look at the last ``min(n,
  available)`` points, so WE2 can fire on the second evaluated point (2 of 2 is
  at least as unlikely as 2 of 3).  Run rules need their full run length.
* **Missing values.** NaN (and ±inf) are missing: they get no rules, occupy no
  window slot and do not break runs -- the rules see the neighbours as
  consecutive, as on a chart that skips a missing subgroup.
* **Trends (N3, N4)** are on the deviation ``d``, i.e. on the value for a fixed
  centre.  Equal consecutive deviations break both a trend and an alternation.
  N3 = 6 points strictly rising or strictly falling (5 steps); N4 = 14 points
  alternating up/down (13 steps).
* **N7** = 15 points in a row within 1σ (either side).  **N8** = 8 points in a
  row beyond 1σ with at least one on each side (Nelson's definition).
* **CUSUM** is the tabular (Page) CUSUM with reference ``k`` and decision
  interval ``h`` in sigmas, by default ``k = 0.5``, ``h = 4`` (Montgomery's
  standard design: in-control ARL ~340 points per side; ``h = 3`` gives ~118).
  It sums evidence, so a slow drift that no single zone rule sees is caught.
  It works in the deviation's units like the other rules:
  ``S+ = max(0, S+ + d - k·t1)``, ``S- = max(0, S- - d - k·t1)`` with ``t1`` the
  1σ line, and fires on a point beyond ``h·t1`` on the side the point itself
  lies (``S+ > h·t1 and d > 0``, or ``S- > h·t1 and d < 0``).  Like the
  other windows it does not reset on a signal.  The two sums are kept only when
  the rule is enabled (``RuleState(cusum=True)``): they are a sequential
  recursion, which the vectorised path runs as a plain loop.  ``k`` and ``h``
  are configuration (``DetectorConfig.cusum_k`` / ``cusum_h``), not state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

RULE_IDS: tuple[str, ...] = ("WE1", "WE2", "WE3", "WE4", "N2", "N3", "N4", "N7", "N8", "CUSUM")
RULE_BITS: dict[str, int] = {r: 1 << i for i, r in enumerate(RULE_IDS)}
WESTERN_ELECTRIC: tuple[str, ...] = ("WE1", "WE2", "WE3", "WE4")
ALL_RULES: tuple[str, ...] = RULE_IDS

WE1, WE2, WE3, WE4, N2, N3, N4, N7, N8, CUSUM = (RULE_BITS[r] for r in RULE_IDS)
CUSUM_K = 0.5  # default reference value, in sigmas (half the shift the chart is designed for)
CUSUM_H = 4.0  # default decision interval, in sigmas

# mask -> frozenset of ids, precomputed so reading a verdict never allocates.
_MASK_SETS: tuple[frozenset[str], ...] = tuple(
    frozenset(r for r in RULE_IDS if m & RULE_BITS[r]) for m in range(1 << len(RULE_IDS))
)


def rules_mask(rules: Iterable[str]) -> int:
    """Bit mask for rule ids; unknown ids raise (a typo must not disable a rule)."""
    m = 0
    for r in rules:
        try:
            m |= RULE_BITS[r]
        except KeyError:
            raise ValueError(f"unknown rule id {r!r}; known: {', '.join(RULE_IDS)}") from None
    return m


def mask_rules(mask: int) -> frozenset[str]:
    """Rule ids set in ``mask``."""
    return _MASK_SETS[mask]


def first_rule(mask: int) -> str | None:
    """The first rule in contract order (WE1 … N8, then CUSUM), used as an alert's ``rule``."""
    for r in RULE_IDS:
        if mask & RULE_BITS[r]:
            return r
    return None


class RuleState:
    """O(1) incremental state of all rules for one series.

    ``update(d, t1, t2, t3)`` takes the deviation from the centre and the 1σ,
    2σ, 3σ distances and returns the bit mask of rules this point completes
    (all of them; the caller masks out disabled ones).  The state is a few
    small numbers: bit histories of the last 8 points beyond ±1σ and the last 3
    beyond ±2σ, run lengths, and the two CUSUM sums (kept only with
    ``cusum=True``, else they stay 0 and CUSUM never fires).
    """

    __slots__ = (
        "alt_len",
        "alt_sg",
        "cu_h",
        "cu_hi",
        "cu_k",
        "cu_lo",
        "cusum",
        "h1d",
        "h1u",
        "h2d",
        "h2u",
        "has_prev",
        "in_len",
        "out_len",
        "prev",
        "side",
        "side_len",
        "tr_len",
        "tr_sg",
    )

    def __init__(self, cusum: bool = False, k: float = CUSUM_K, h: float = CUSUM_H) -> None:
        self.cusum = cusum
        self.cu_k = k
        self.cu_h = h
        self.cu_hi = self.cu_lo = 0.0
        self.h1u = self.h1d = self.h2u = self.h2d = 0
        self.side = self.side_len = 0
        self.prev = 0.0
        self.has_prev = False
        self.tr_sg = self.alt_sg = 0
        self.tr_len = self.alt_len = 0
        self.in_len = self.out_len = 0

    def update(self, d: float, t1: float, t2: float, t3: float) -> int:
        a1 = d > t1
        b1 = d < -t1
        a2 = d > t2
        b2 = d < -t2
        h1u = ((self.h1u << 1) | a1) & 255
        h1d = ((self.h1d << 1) | b1) & 255
        h2u = ((self.h2u << 1) | a2) & 7
        h2d = ((self.h2d << 1) | b2) & 7
        self.h1u = h1u
        self.h1d = h1d
        self.h2u = h2u
        self.h2d = h2d
        m = 0
        if d > t3 or d < -t3:
            m = WE1
        if (a2 and h2u.bit_count() >= 2) or (b2 and h2d.bit_count() >= 2):
            m |= WE2
        if (a1 and (h1u & 31).bit_count() >= 4) or (b1 and (h1d & 31).bit_count() >= 4):
            m |= WE3
        # one-side runs
        side = (d > 0) - (d < 0)
        if side and side == self.side:
            n = self.side_len + 1
        else:
            n = 1 if side else 0
        self.side = side
        self.side_len = n
        if n >= 8:
            m |= WE4
            if n >= 9:
                m |= N2
        # trend and alternation on consecutive deviations
        if self.has_prev:
            sg = (d > self.prev) - (d < self.prev)
            if sg == 0:
                tr = alt = 1
            else:
                tr = self.tr_len + 1 if sg == self.tr_sg else 2
                alt = self.alt_len + 1 if sg == -self.alt_sg else 2
            self.tr_sg = self.alt_sg = sg
            self.tr_len = tr
            self.alt_len = alt
            if tr >= 6:
                m |= N3
            if alt >= 14:
                m |= N4
        else:
            self.has_prev = True
            self.tr_len = self.alt_len = 1
        self.prev = d
        # within / beyond 1 sigma runs
        if a1 or b1:
            self.in_len = 0
            o = self.out_len = self.out_len + 1
            if o >= 8 and h1u and h1d:
                m |= N8
        else:
            self.out_len = 0
            i = self.in_len = self.in_len + 1
            if i >= 15:
                m |= N7
        if self.cusum:
            kk = self.cu_k * t1
            hi = self.cu_hi + d - kk
            lo = self.cu_lo - d - kk
            hi = self.cu_hi = hi if hi > 0.0 else 0.0
            lo = self.cu_lo = lo if lo > 0.0 else 0.0
            hh = self.cu_h * t1
            if (hi > hh and d > 0) or (lo > hh and d < 0):
                m |= CUSUM
        return m

    # -- state ---------------------------------------------------------------
    def to_list(self) -> list[float | int]:
        return [
            self.h1u, self.h1d, self.h2u, self.h2d, self.side, self.side_len,
            self.prev, int(self.has_prev), self.tr_sg, self.tr_len, self.alt_sg,
            self.alt_len, self.in_len, self.out_len, self.cu_hi, self.cu_lo,
        ]

    @classmethod
    def from_list(cls, s: Sequence[float | int], cusum: bool = False, k: float = CUSUM_K,
                  h: float = CUSUM_H) -> RuleState:
        """Restore; a 14-number list (saved before CUSUM existed) starts the CUSUM sums at 0."""
        r = cls(cusum, k, h)
        (r.h1u, r.h1d, r.h2u, r.h2d, r.side, r.side_len, prev, hp, r.tr_sg, r.tr_len,
         r.alt_sg, r.alt_len, r.in_len, r.out_len) = s[:14]
        if len(s) > 14:
            r.cu_hi, r.cu_lo = float(s[14]), float(s[15])
        r.prev = float(prev)
        r.has_prev = bool(hp)
        return r


# ---------------------------------------------------------------------------
# vectorised evaluation (same conventions, same arithmetic)
# ---------------------------------------------------------------------------

def _run_lengths(start: np.ndarray, zero: np.ndarray, carry: int) -> np.ndarray:
    """Length of the run ending at each index.

    ``start[i]``: a new run begins at i; ``zero[i]``: length is 0 at i.  A run
    that began before index 0 continues the carried length ``carry``.
    """
    n = start.shape[0]
    idx = np.arange(n, dtype=np.int64)
    last = np.maximum.accumulate(np.where(start, idx, -1))
    rl = np.where(last >= 0, idx - last + 1, idx + 1 + carry)
    rl[zero] = 0
    return rl


def _cond_runs(cond: np.ndarray, carry: int) -> np.ndarray:
    """Length of the run of True ending at each index (0 where False)."""
    n = cond.shape[0]
    idx = np.arange(n, dtype=np.int64)
    lastf = np.maximum.accumulate(np.where(cond, -1, idx))
    return np.where(lastf >= 0, idx - lastf, idx + 1 + carry)


def _same_value_runs(v: np.ndarray, prev: int, carry: int) -> np.ndarray:
    """Run length of equal non-zero values of ``v`` (int array in {-1,0,1})."""
    before = np.empty_like(v)
    before[0] = prev
    before[1:] = v[:-1]
    zero = v == 0
    start = (v != before) & ~zero
    if carry == 0 or prev == 0:
        carry = 0
    return _run_lengths(start, zero, carry)


def _window_count(bits: np.ndarray, hist: int, n: int) -> np.ndarray:
    """Number of set bits among the last ``n`` points (incl. the current one);
    ``hist`` holds earlier points' bits, most recent in bit 0."""
    pre = np.array([(hist >> k) & 1 for k in range(n - 2, -1, -1)], dtype=np.int64)
    ext = np.concatenate((pre, bits.astype(np.int64)))
    cs = np.concatenate(([0], np.cumsum(ext)))
    return cs[n:] - cs[:-n]


def _tail_bits(bits: np.ndarray, hist: int, width: int) -> int:
    """The bit history after appending ``bits`` (most recent in bit 0)."""
    tail = bits[-width:]
    h = hist
    for b in tail.tolist():
        h = ((h << 1) | int(b)) & ((1 << width) - 1)
    return h


def rules_vec(
    d: np.ndarray,
    t1: np.ndarray | float,
    t2: np.ndarray | float,
    t3: np.ndarray | float,
    state: RuleState | None = None,
) -> tuple[np.ndarray, RuleState]:
    """Masks of all rules over consecutive evaluated points.

    ``d`` must not contain NaN (missing points are removed by the caller).
    Starts from ``state`` (a fresh one if None) and returns the state after the
    last point, so a stream can be cut anywhere.  CUSUM is evaluated only if
    ``state.cusum`` (a sequential loop, same arithmetic as ``update``).
    """
    st = RuleState() if state is None else state
    n = d.shape[0]
    out = RuleState.from_list(st.to_list(), st.cusum, st.cu_k, st.cu_h)
    if n == 0:
        return np.zeros(0, dtype=np.int32), out
    a1 = d > t1
    b1 = d < -t1
    a2 = d > t2
    b2 = d < -t2
    m = np.where((d > t3) | (d < -t3), WE1, 0).astype(np.int32)
    c2u = _window_count(a2, st.h2u, 3)
    c2d = _window_count(b2, st.h2d, 3)
    m |= np.where((a2 & (c2u >= 2)) | (b2 & (c2d >= 2)), WE2, 0).astype(np.int32)
    c1u = _window_count(a1, st.h1u, 5)
    c1d = _window_count(b1, st.h1d, 5)
    m |= np.where((a1 & (c1u >= 4)) | (b1 & (c1d >= 4)), WE3, 0).astype(np.int32)
    # one side runs
    side = (d > 0).astype(np.int64) - (d < 0).astype(np.int64)
    sl = _same_value_runs(side, st.side, st.side_len)
    m |= np.where(sl >= 8, WE4, 0).astype(np.int32)
    m |= np.where(sl >= 9, N2, 0).astype(np.int32)
    # trends: sign of consecutive differences
    prevs = np.empty(n)
    prevs[1:] = d[:-1]
    prevs[0] = st.prev
    sg = (d > prevs).astype(np.int64) - (d < prevs).astype(np.int64)
    if not st.has_prev:
        sg[0] = 0  # first point ever: no step
    tr_carry = st.tr_len - 1 if st.has_prev else 0
    tr = _same_value_runs(sg, st.tr_sg, tr_carry) + 1
    # alternation: u = sg * (-1)^i is constant along an alternating run
    par = np.ones(n, dtype=np.int64)
    par[1::2] = -1
    u = sg * par
    alt_carry = st.alt_len - 1 if st.has_prev else 0
    alt = _same_value_runs(u, -st.alt_sg, alt_carry) + 1
    m |= np.where(tr >= 6, N3, 0).astype(np.int32)
    m |= np.where(alt >= 14, N4, 0).astype(np.int32)
    # within / beyond 1 sigma
    beyond = a1 | b1
    inside = ~beyond
    in_len = _cond_runs(inside, st.in_len)
    out_len = _cond_runs(beyond, st.out_len)
    m |= np.where(in_len >= 15, N7, 0).astype(np.int32)
    c8u = _window_count(a1, st.h1u, 8)
    c8d = _window_count(b1, st.h1d, 8)
    m |= np.where((out_len >= 8) & (c8u > 0) & (c8d > 0), N8, 0).astype(np.int32)
    # final state
    out.h1u = _tail_bits(a1, st.h1u, 8)
    out.h1d = _tail_bits(b1, st.h1d, 8)
    out.h2u = _tail_bits(a2, st.h2u, 3)
    out.h2d = _tail_bits(b2, st.h2d, 3)
    out.side = int(side[-1])
    out.side_len = int(sl[-1])
    out.prev = float(d[-1])
    out.has_prev = True
    out.tr_sg = out.alt_sg = int(sg[-1])
    out.tr_len = int(tr[-1])
    out.alt_len = int(alt[-1])
    out.in_len = int(in_len[-1])
    out.out_len = int(out_len[-1])
    if st.cusum:
        m |= _cusum_loop(d, np.broadcast_to(np.asarray(t1, dtype=np.float64), d.shape), out)
    return m, out


def _cusum_loop(d: np.ndarray, t1: np.ndarray, st: RuleState) -> np.ndarray:
    """CUSUM masks over ``d``, continuing and updating ``st``'s sums (the recursion of ``update``)."""
    hi, lo, k, h_ = st.cu_hi, st.cu_lo, st.cu_k, st.cu_h
    out = np.zeros(d.shape[0], dtype=np.int32)
    for i, (x, s1) in enumerate(zip(d.tolist(), t1.tolist(), strict=True)):
        kk = k * s1
        h = hi + x - kk
        lw = lo - x - kk
        hi = h if h > 0.0 else 0.0
        lo = lw if lw > 0.0 else 0.0
        hh = h_ * s1
        if (hi > hh and x > 0) or (lo > hh and x < 0):
            out[i] = CUSUM
    st.cu_hi, st.cu_lo = hi, lo
    return out


def evaluate_rules(
    values: Sequence[float] | np.ndarray,
    center: float | Sequence[float] | np.ndarray,
    sigma: float | Sequence[float] | np.ndarray,
    rules: Iterable[str] = WESTERN_ELECTRIC,
) -> list[set[str]]:
    """Rules each point completes, for a fixed (or per-point) centre and sigma.

    The batch twin of the incremental engine: same conventions (see the module
    docstring), same results.  NaN/inf values are missing and get an empty set.
    ``center``/``sigma`` may be scalars or arrays of the same length.  CUSUM
    sums are kept only when it is among ``rules``.
    """
    x = np.asarray(values, dtype=np.float64)
    c = np.broadcast_to(np.asarray(center, dtype=np.float64), x.shape)
    s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), x.shape)
    enabled = rules_mask(rules)
    ok = np.isfinite(x)
    d = x[ok] - c[ok]
    sg = s[ok]
    masks, _ = rules_vec(d, sg, 2.0 * sg, 3.0 * sg, RuleState(cusum=bool(enabled & CUSUM)))
    full = np.zeros(x.shape[0], dtype=np.int32)
    full[ok] = masks & enabled
    return [set(_MASK_SETS[v]) for v in full.tolist()]


def zone_thresholds(sigma: float) -> tuple[float, float, float]:
    """(1σ, 2σ, 3σ) distances, computed exactly as both paths compute them."""
    return sigma, 2.0 * sigma, 3.0 * sigma


__all__ = [
    "ALL_RULES",
    "CUSUM_H",
    "CUSUM_K",
    "RULE_BITS",
    "RULE_IDS",
    "WESTERN_ELECTRIC",
    "RuleState",
    "evaluate_rules",
    "first_rule",
    "mask_rules",
    "rules_mask",
    "rules_vec",
    "zone_thresholds",
]
