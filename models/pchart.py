"""PChart: a p-chart for a daily rate of a few events (refunds, cancellations), incremental.

Why not the individuals chart of :class:`~models.SeriesDetector`: a store
refunds one or two orders a day, so its refund rate is a count of a handful of
events over the day's orders. Its spread is binomial and depends on the day's
order count; a moving-range sigma over such counts is noisy and its normal
3-sigma line is crossed several times more often than 0.135 % of days (one
extra refund can be "3 sigma"). Here each day is judged by the *exact* tail
probability of its count:

* baseline: the events ``x`` and trials ``n`` of the admitted days of the last
  ``window`` buckets (the point's own bucket excluded, as in the detector);
* the day's count is compared with the **beta-binomial predictive**
  distribution of a count out of ``n`` given that baseline (Jeffreys prior on
  the rate): the binomial with the uncertainty of the estimated rate included,
  so a short baseline does not make the chart over-eager;
* **WE1** fires when the tail beyond the count is below ``1 - Φ(3)`` (0.135 %,
  the probability of a normal point beyond 3 sigma) on either side; the zone
  and run rules (WE2-WE4) are not used: on counts of 0-5 "beyond 1 sigma" and
  "above the centre" are coarse steps whose probabilities are far from the
  normal ones those rules are calibrated for;
* ``z`` is the normal score of that tail probability (so ``|z| > 3`` is WE1),
  the reported sigma puts the centre + 3 sigma line halfway between the largest
  in-control count and the smallest signalling one (for dashboards; the
  decision is the exact tail);
* a minimum effect (absolute and relative to the rate), baseline protection
  (a signalling day is not learned unless ``protect_max_run`` in a row are) and
  episodes behave as in the detector, with the same deterministic episode ids.

Takes a :class:`~models.DetectorConfig` for the shared fields (window, bucket,
``min_samples`` = days, effects, protection, episodes); its sigma and
seasonality settings do not apply.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from .config import DetectorConfig
from .detector import LATE, MISSING, NAN, OK, WARMUP, StateError, Verdict
from .episodes import EpisodeTracker
from .rules import WE1, rules_mask

TAIL = 1.0 - NormalDist().cdf(3.0)  # 0.00135: the WE1 probability of a normal point, per side
STATE_VERSION = 1
_N = NormalDist()


def beta_binomial_pmf(n: int, a: float, b: float) -> list[float]:
    """P(Y = k), k = 0..n, for Y ~ BetaBinomial(n, a, b) (ratio recurrence from k = 0, in logs)."""
    lp = math.lgamma(n + b) + math.lgamma(a + b) - math.lgamma(b) - math.lgamma(n + a + b)
    out = [math.exp(lp)]
    for k in range(n):
        lp += math.log((n - k) * (k + a) / ((k + 1) * (n - k - 1 + b)))
        out.append(math.exp(lp))
    return out


def tails(x: int, n: int, events: float, trials: float) -> tuple[float, float, int]:
    """(P(Y >= x), P(Y <= x), smallest count whose upper tail is below TAIL) for a count out of ``n``
    given a baseline of ``events`` out of ``trials`` (Jeffreys prior: a = events + ½, b = failures + ½)."""
    pmf = beta_binomial_pmf(n, events + 0.5, trials - events + 0.5)
    upper = sum(pmf[x:])
    lower = sum(pmf[: x + 1])
    tail, ucl = 0.0, n + 1
    for k in range(n, -1, -1):
        tail += pmf[k]
        if tail >= TAIL:
            ucl = k + 1
            break
    return min(1.0, upper), min(1.0, lower), ucl


class PChart:
    """Daily rate judged against its binomial baseline; see the module docstring.

    ``update(ts, x, n)`` judges ``x`` events out of ``n`` at ``ts`` (in time order;
    an older ``ts`` is rejected as late) and returns one :class:`~models.Verdict`
    whose ``value`` is the rate ``x / n``. ``n == 0`` is a missing point.
    """

    __slots__ = ("_enabled", "_ep", "_prun", "_win", "_wm", "config", "key", "n_late", "n_missing", "n_seen")

    def __init__(self, key: str, config: DetectorConfig) -> None:
        self.key = key
        self.config = config
        self._enabled = rules_mask(config.rules) & WE1
        self._ep = EpisodeTracker(key, config.resolve_after, config.cooldown)
        self._win: list[list[int]] = []  # [bucket, events, trials] of admitted points, oldest first
        self._prun = 0
        self._wm = -math.inf
        self.n_seen = self.n_late = self.n_missing = 0

    @property
    def firing(self) -> bool:
        return self._ep.firing

    def update(self, ts: float, x: int, n: int) -> list[Verdict]:
        cfg = self.config
        self.n_seen += 1
        if ts < self._wm:
            self.n_late += 1
            return [Verdict(ts, NAN, NAN, NAN, NAN, 0, LATE, False, None)]
        self._wm = ts
        b = int(ts // cfg.bucket_seconds)
        lo = b - cfg.window_buckets
        self._win = [w for w in self._win if w[0] >= lo]
        if n <= 0:
            self.n_missing += 1
            return [Verdict(ts, NAN, NAN, NAN, NAN, 0, MISSING, False, None)]
        rate = x / n
        base = [w for w in self._win if w[0] < b]
        if len(base) < cfg.min_samples:
            self._win.append([b, x, n])
            return [Verdict(ts, rate, NAN, NAN, NAN, 0, WARMUP, False, None)]
        events = float(sum(w[1] for w in base))
        trials = float(sum(w[2] for w in base))
        center = events / trials
        upper, lower, ucl = tails(x, n, events, trials)
        if rate >= center:  # tails of 1/2 or more are no evidence either way: z 0
            z = -_N.inv_cdf(min(max(upper, 1e-300), 0.5))
        else:
            z = _N.inv_cdf(min(max(lower, 1e-300), 0.5))
        sigma = max(((ucl - 0.5) / n - center) / 3.0, 1e-12)
        beyond = upper < TAIL or lower < TAIL
        mask = WE1 & self._enabled if beyond else 0
        d = rate - center
        eff = max(cfg.min_effect_abs, cfg.min_effect_rel * center)
        signal = bool(mask) and (d >= eff or d <= -eff)
        ep = self._ep
        ev = ep.step(ts, signal, mask, rate, center, sigma, z) if (signal or ep.firing or ep.cool_left) else None
        if beyond and cfg.protect_z is not None:
            self._prun += 1
            admit = cfg.protect_max_run is not None and self._prun > cfg.protect_max_run
        else:
            self._prun = 0
            admit = True
        if admit:
            self._win.append([b, x, n])
        return [Verdict(ts, rate, center, sigma, z, mask, OK, signal, ev)]

    # -- state ----------------------------------------------------------------------
    def to_state(self) -> dict:
        """JSON-able state: the window's (bucket, events, trials), episode, counters."""
        cfg = self.config
        return {"v": STATE_VERSION, "key": self.key, "kind": "p", "g": [cfg.window_buckets, int(cfg.bucket_seconds)],
                "w": self._win, "e": self._ep.to_list(),
                "k": [self._prun, self._wm if self._wm > -math.inf else None],
                "c": [self.n_seen, self.n_late, self.n_missing]}

    @classmethod
    def from_state(cls, state: dict, config: DetectorConfig, key: str | None = None) -> PChart:
        """Restore; :class:`~models.StateError` if the state is of another kind, version or window."""
        if state.get("kind") != "p" or state.get("v") != STATE_VERSION:
            raise StateError("not a p-chart state of this version")
        if state["g"] != [config.window_buckets, int(config.bucket_seconds)]:
            raise StateError(f"state geometry {state['g']} does not match config")
        pc = cls(key if key is not None else state["key"], config)
        pc._win = [list(w) for w in state["w"]]
        pc._ep.load_list(state["e"])
        pc._prun, wm = state["k"]
        pc._wm = -math.inf if wm is None else float(wm)
        pc.n_seen, pc.n_late, pc.n_missing = state["c"]
        return pc
