"""Detector configuration: one frozen dataclass, with per-use-case presets.

Units: everything about the *baseline* is in seconds of event time (a 30-day
window is 30 days whether samples arrive every minute or every hour); everything
about *episodes* (resolution, cooldown) and warm-up is in points, because those
are about how much evidence has been seen.  See models/README.md for why.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from .baseline import SEASONALITY_SLOTS
from .rules import CUSUM_H, CUSUM_K, WESTERN_ELECTRIC, rules_mask

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """How one series is judged.  Defaults are the plain textbook chart;
    use :meth:`infra`, :meth:`store` or :meth:`naive` for presets."""

    # baseline -------------------------------------------------------------
    window_seconds: float = 30 * DAY
    """Rolling baseline length (event time)."""
    bucket_seconds: float = DAY
    """Baseline resolution; limits are recomputed when a bucket closes.  A
    whole number of seconds that divides into the window."""
    sigma: str = "mr"
    """``"mr"``: mean moving range / 1.128 (individuals chart default);
    ``"std"``: sample standard deviation over the window."""
    sigma_floor_abs: float = 1e-9
    """Sigma never goes below this (a flat series must not give infinite z)."""
    sigma_floor_rel: float = 0.0
    """... nor below this fraction of |centre|."""
    seasonality: str | None = None
    """``None``, ``"hour_of_day"``, ``"hour_of_week"`` or ``"day_of_week"``:
    the centre is the mean of the point's slot; sigma is pooled from the
    residuals around the slot centres."""
    tz_offset_seconds: float = 0.0
    """Added to timestamps before computing seasonal slots (local time)."""
    min_samples: int = 30
    """Warm-up: no verdicts until the baseline's closed buckets hold this many
    admitted points (residuals, with seasonality)."""
    min_slot_samples: int = 3
    """Warm-up per seasonal slot."""
    # protection -------------------------------------------------------------
    protect_z: float | None = None
    """Points with |x - centre| > protect_z * sigma do not update the baseline."""
    protect_max_run: int | None = None
    """... unless more than this many in a row were refused: then the level is
    taken as the new normal and learned (a level shift must not alarm forever)."""
    exclusions: tuple[tuple[float, float], ...] = ()
    """[start, end) windows (maintenance, known outages): never in the
    baseline, no verdicts."""
    freeze_at: float | None = None
    """Phase I/II: learn until this timestamp, then freeze the limits."""
    fixed_center: float | None = None
    fixed_sigma: float | None = None
    """Known limits (Phase II from an external study): no baseline at all."""
    prediction_limits: bool = False
    """Widen the zone lines for the estimation error of sigma: the kσ line
    becomes the Student-t quantile of the same tail probability, with the
    degrees of freedom of the estimate (``std``: n - 1; ``mr``: 0.62 per moving
    range, Nelson's approximation).  A sigma estimated from 10-28 points is
    often low, and with the textbook lines the false alarm rate is then
    several times the nominal one.  Reported sigma is the 3σ line / 3 (so
    centre ± 3·sigma is the WE1 line and ``z`` is against it); protection uses
    the widened line too."""
    # rules -------------------------------------------------------------------
    rules: tuple[str, ...] = WESTERN_ELECTRIC
    cusum_side: str = "both"
    """Which CUSUM side may signal: ``"both"``, ``"lower"`` (declines only) or
    ``"upper"``.  Only matters when ``"CUSUM"`` is among ``rules``."""
    cusum_k: float = CUSUM_K
    cusum_h: float = CUSUM_H
    """CUSUM reference value and decision interval, in sigmas (see models/rules.py)."""
    # time ---------------------------------------------------------------------
    lateness_seconds: float = 0.0
    """Out-of-order samples up to this much older than the newest one are
    re-ordered (verdicts are delayed by this much); older ones are rejected."""
    # episodes ------------------------------------------------------------------
    resolve_after: int = 1
    """Consecutive in-control evaluated points that resolve an episode."""
    cooldown: int = 0
    """Evaluated points after a resolution during which no episode opens."""
    min_effect_abs: float = 0.0
    min_effect_rel: float = 0.0
    """A violation only signals if |x - centre| >= max(abs, rel * |centre|)."""
    budget_seconds: float = 0.0
    """At most one new episode per this much event time (0: no budget), unless it escalates."""
    escalate_z: float = math.inf
    """... i.e. its |z| reaches this while the previous episode's peak did not."""
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    """Free-form notes (e.g. the preset's name); ignored by the engine."""

    def __post_init__(self) -> None:
        rules_mask(self.rules)  # validates the ids
        if self.bucket_seconds < 1 or self.bucket_seconds != int(self.bucket_seconds):
            raise ValueError("bucket_seconds must be a whole number of seconds >= 1")
        if self.window_seconds < self.bucket_seconds:
            raise ValueError("window_seconds must be at least one bucket")
        if self.sigma not in ("mr", "std"):
            raise ValueError("sigma must be 'mr' or 'std'")
        if self.seasonality is not None and self.seasonality not in SEASONALITY_SLOTS:
            raise ValueError(f"seasonality must be one of {sorted(SEASONALITY_SLOTS)}")
        if (self.fixed_center is None) != (self.fixed_sigma is None):
            raise ValueError("fixed_center and fixed_sigma go together")
        if self.fixed_center is not None and self.seasonality is not None:
            raise ValueError("fixed limits and seasonality are exclusive")
        if self.resolve_after < 1 or self.cooldown < 0 or self.min_samples < 1:
            raise ValueError("resolve_after and min_samples must be >= 1, cooldown >= 0")
        if self.lateness_seconds < 0 or not math.isfinite(self.lateness_seconds):
            raise ValueError("lateness_seconds must be finite and >= 0")
        if self.cusum_side not in ("both", "lower", "upper"):
            raise ValueError("cusum_side must be 'both', 'lower' or 'upper'")
        if not self.budget_seconds >= 0:
            raise ValueError("budget_seconds must be >= 0")
        if not (self.cusum_k >= 0 and self.cusum_h > 0):
            raise ValueError("cusum_k must be >= 0 and cusum_h > 0")

    @property
    def window_buckets(self) -> int:
        return max(1, round(self.window_seconds / self.bucket_seconds))

    @property
    def n_slots(self) -> int:
        return SEASONALITY_SLOTS[self.seasonality] if self.seasonality else 1

    def with_(self, **changes: object) -> DetectorConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        return asdict(self)

    # -- presets -------------------------------------------------------------
    @classmethod
    def naive(cls, **changes: object) -> DetectorConfig:
        """Plain rolling z-score chart: WE1-WE4 on a 30-day window, sample
        standard deviation, no seasonality, no protection, every violation an
        alert.  The baseline that the defaults are measured against."""
        return cls(sigma="std", min_samples=30, extra={"preset": "naive"}).with_(**changes)

    @classmethod
    def infra(cls, **changes: object) -> DetectorConfig:
        """UC-IT-01 default (minute or hourly infrastructure metrics).

        Chosen once, for all series, on the labelled cloud-monitoring data
        (bench/detection_quality.py; reasons in models/README.md): hour-of-day
        seasonal centre with a pooled moving-range sigma, only the 3-sigma
        rule, an alert only when the value is off by at least the size of the
        usual level (x2 or ~0), and episodes that need 5 quiet points to
        resolve plus a 10-point cooldown so noise cannot flap.
        """
        return cls(
            window_seconds=30 * DAY,
            bucket_seconds=DAY,
            sigma="mr",
            sigma_floor_rel=0.01,
            seasonality="hour_of_day",
            min_samples=48,
            min_slot_samples=2,
            rules=("WE1",),
            resolve_after=5,
            cooldown=10,
            min_effect_rel=1.0,
            extra={"preset": "infra"},
        ).with_(**changes)

    @classmethod
    def store(cls, **changes: object) -> DetectorConfig:
        """UC-OP-02: daily store metrics, 28-day window, day-of-week centres."""
        return cls(
            window_seconds=28 * DAY,
            bucket_seconds=DAY,
            sigma="mr",
            seasonality=None,
            min_samples=14,
            rules=WESTERN_ELECTRIC,
            protect_z=3.0,
            protect_max_run=7,
            resolve_after=3,
            extra={"preset": "store"},
        ).with_(**changes)


ROBUST_SEASONALITY = ("hour_of_day", "hour_of_week")


@dataclass(frozen=True, slots=True)
class RobustConfig:
    """How :class:`~models.robust.RobustDetector` judges one series (the infra default).

    Robust centre and scale per seasonal slot, learned once per (local) day from
    integer histograms of the day's standardised residuals; each side's alert limit
    at the series' own tail: the point-wise probability ``tail_probability`` under an
    exponential tail fitted beyond 3 scales to the last ``memory_days`` of residuals;
    a confirmed level shift re-baselines; episodes carry a time budget. Why each: see
    models/README.md ("The infrastructure default, and why").
    """

    seasonality: str | None = "hour_of_day"
    """``"hour_of_day"`` (24 centres), ``"hour_of_week"`` (168, each shrunk towards its hour of
    day until it has evidence of its own) or ``None``."""
    tz_offset_seconds: float = 0.0
    """Added to timestamps for the slots and the days (local time)."""
    min_samples: int = 12
    """Warm-up: the first closed day must hold this many samples (else the next one too)."""
    centre_days: float = 7.0
    """Memory (in days with data) of the centres and scales."""
    memory_days: float = 30.0
    """Memory of the residual tail that sets the limits."""
    tail_probability: float = 1e-4
    """Per point and side: how rare a residual must be, under the series' own fitted tail."""
    tail_prior_points: float = 1000.0
    tail_prior_share: float = 0.005
    tail_prior_excess: float = 0.5
    tail_prior_exceedances: float = 10.0
    """Prior of the tail beyond 3 scales (what a new series is assumed to look like): weight in
    points, share beyond 3, mean excess beyond 3 (in scales), weight in exceedances."""
    min_limit: float = 4.0
    max_limit: float = 1e3
    """Each side's limit in scales is kept within these."""
    local_points: int = 5
    """The local level is the median of this many previous residuals (odd): the point chart
    judges the step away from it."""
    avg_points: int = 6
    """The short average: the mean of the last this many residuals (each winsorised at 16 scales)
    has limits of its own, set the same way from its own tail (0: off). It catches what no single
    point shows: an outage of a noisy count, a sustained moderate shift."""
    avg_prior_share: float = 0.02
    avg_prior_excess: float = 0.25
    avg_min_limit: float = 1.5
    """The short average's tail is fitted beyond 1 scale; prior share beyond 1 and mean excess."""
    scale_floor_rel: float = 0.005
    scale_floor_abs: float = 1e-9
    """Scale never below max(abs, rel * |centre|)."""
    centre_step: float = 4.0
    """A day moves a centre towards its median by at most this many scales (times its share)."""
    centre_uncertainty: float = 1.0
    """Scales are widened by sqrt(1 + this / evidence) while a slot's centre rests on few samples
    (an hourly series' slot has one a day)."""
    week_shrink: float = 3.0
    """hour_of_week: pseudo-samples of the hour-of-day centre in each weekly slot's centre."""
    shift_points: int = 12
    shift_seconds: float = 3 * 3600.0
    """Re-baseline (a level shift) after a run of at least ``shift_points`` judged samples lasting
    at least ``shift_seconds``, all with the short average beyond its limit on the same side."""
    min_effect_rel: float = 0.5
    min_effect_abs: float = 0.0
    min_effect_level: float = 0.25
    """A point only signals if |x - centre| >= max(abs, rel * max(|centre|, level * the series'
    mean level)): the level term keeps slots whose centre is ~0 (night, zero runs) from paging
    on any small value."""
    resolve_after: int = 5
    cooldown: int = 10
    budget_seconds: float = 6 * 3600.0
    escalate_z: float = 6.0
    """Episodes: resolve after this many quiet points; then a cooldown in points; at most one new
    episode per ``budget_seconds`` unless |z| reaches ``escalate_z`` (z is 3 at the limit)."""
    lateness_seconds: float = 0.0
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.seasonality is not None and self.seasonality not in ROBUST_SEASONALITY:
            raise ValueError(f"seasonality must be one of {list(ROBUST_SEASONALITY)} or None")
        if self.local_points < 1 or self.local_points % 2 == 0:
            raise ValueError("local_points must be odd and >= 1")
        if self.avg_points < 0 or self.avg_points == 1:
            raise ValueError("avg_points must be 0 (off) or >= 2")
        if self.min_samples < 1 or self.resolve_after < 1 or self.cooldown < 0 or self.shift_points < 1:
            raise ValueError("min_samples, resolve_after and shift_points must be >= 1, cooldown >= 0")
        if not (0.0 < self.tail_probability < 0.01):
            raise ValueError("tail_probability must be in (0, 0.01)")
        if not (self.centre_days >= 1 and self.memory_days >= 1):
            raise ValueError("centre_days and memory_days must be >= 1")
        if self.lateness_seconds < 0 or not math.isfinite(self.lateness_seconds):
            raise ValueError("lateness_seconds must be finite and >= 0")
        if self.budget_seconds < 0 or self.min_effect_rel < 0 or self.min_effect_abs < 0:
            raise ValueError("budget_seconds and the minimum effects must be >= 0")

    def with_(self, **changes: object) -> RobustConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def infra(cls, **changes: object) -> RobustConfig:
        """UC-IT-01 default: chosen on the even half of the labelled series and the synthetic
        corpus, reported on the odd half (bench/detection_quality.py)."""
        return cls(extra={"preset": "infra"}).with_(**changes)
