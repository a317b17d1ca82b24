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
