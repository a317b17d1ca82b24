"""What the store use case can be told, and its calendar of stores' business days."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from ..calendar import BusinessCalendar, next_day
from ..config import DAY, DetectorConfig
from ..rules import RULE_IDS

METRICS = ("net_revenue", "orders", "aov", "items_per_order", "discount_depth", "refund_rate", "cancel_rate")
# Rates of a few events a day: judged as p-charts (exact binomial tail, WE1 only), see models/pchart.py.
RATE_METRICS = ("refund_rate", "cancel_rate")
# Where a slow decline matters most: these also get the lower-side CUSUM (when "CUSUM" is in the rules).
# The defaults are chosen to a false-alarm budget (<= 1 false episode per store per quarter over all its
# charts) by bench/store_detection.py on half of its seeds and reported on the other half (bench/README.md):
# WE2-WE4 doubled the false episodes for no earlier flag, and a CUSUM on orders beside revenue counts the
# same evidence twice.
CUSUM_METRICS = ("net_revenue",)
DEFAULT_RULES = ("WE1", "CUSUM")
PAID, REFUNDED, CANCELLED = 0, 1, 2
STATUS_CODE = {"paid": PAID, "refunded": REFUNDED, "cancelled": CANCELLED}
_RANK = (0, 1, 1)  # a paid order may become refunded or cancelled, never back
_EPOCH = date(1970, 1, 1)
_RULE_ORDER = {r: i for i, r in enumerate(RULE_IDS)}
MEDIAN_SE = math.sqrt(math.pi / 2)  # standard error of a median of n standard normals: 1.2533 / sqrt(n)

# Minimum effect for a signal, per metric: (relative to the centre, absolute).
# Rates are counts of a few events a day, so they need an absolute floor.
DEFAULT_EFFECTS: dict[str, tuple[float, float]] = {
    "net_revenue": (0.05, 0.0),
    "orders": (0.05, 0.0),
    "aov": (0.03, 0.0),
    "items_per_order": (0.03, 0.0),
    "discount_depth": (0.0, 0.02),
    "refund_rate": (0.0, 0.03),
    "cancel_rate": (0.0, 0.03),
}


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Everything the store use case can be told (``SPCWATCH_STORE_*``, see docs/store.md)."""

    timezone: str = "America/New_York"
    store_timezones: tuple[tuple[str, str], ...] = ()
    grace_seconds: float = 3600.0
    max_lateness_seconds: float = 86400.0
    order_retention_days: int = 7
    window_days: int = 28
    seasonality: str | None = "day_of_week"
    rules: tuple[str, ...] = DEFAULT_RULES
    min_samples: int = 10
    resolve_after: int = 3
    cooldown: int = 0
    protect_z: float = 3.0
    cusum_h: float = 2.5  # decision interval of the lower CUSUM (k = 0.5), in sigmas
    cusum_metrics: tuple[str, ...] = CUSUM_METRICS
    """The metrics that also get the lower CUSUM (when ``CUSUM`` is among the rules)."""
    closed_days: tuple[tuple[str, str], ...] = ()  # (store_id or "*", "YYYY-MM-DD")
    peer_groups: tuple[tuple[str, str], ...] = ()  # (store_id, group); others are in "all"
    peer_z: float = 3.5
    peer_days: int = 2
    peer_metrics: tuple[str, ...] = ("net_revenue", "orders", "aov", "items_per_order")
    chain_fraction: float = 0.5
    chain_z: float = 3.0  # standard errors of the group's median z (WE1 of the chain)
    chain_min_stores: int = 3
    intraday_slot_minutes: int = 15
    intraday_window_minutes: int = 60
    intraday_min_expected: float = 5.0
    intraday_p: float = 1e-5
    intraday_min_days: int = 3
    intraday_alpha: float = 0.25
    intraday_sigma_floor_rel: float = 0.08
    intraday_min_remaining: float = 0.05
    """INTRADAY judges only while the store is open by its own profile: while at least this share of
    the weekday's revenue is still expected after the check (learnt from its orders). Later in the
    day the projection is the day's total itself, which the day close judges an hour later; a check
    at 21:00 reading "0 orders in the last hour (expected 0.0)" paged for a store that had closed."""
    retire_days: int = 14
    decision_retention_days: int = 60
    effects: tuple[tuple[str, float, float], ...] = tuple((m, r, a) for m, (r, a) in DEFAULT_EFFECTS.items())
    test_currencies: tuple[str, ...] = ("NZD",)
    """Orders in these currencies (or flagged ``test``) are test data: not a store's business (as recon's and
    menu's default)."""

    def detector_config(self, metric: str) -> DetectorConfig:
        """The chart of one metric: WE rules on prediction limits (sigma estimated from at most
        28 days), plus the lower CUSUM for revenue and orders; WE1 only for the rates (p-charts)."""
        rel, absolute = next(((r, a) for m, r, a in self.effects if m == metric), (0.0, 0.0))
        if metric in RATE_METRICS:
            rules = tuple(r for r in self.rules if r == "WE1")
        elif metric in self.cusum_metrics:
            rules = self.rules
        else:
            rules = tuple(r for r in self.rules if r != "CUSUM")
        return DetectorConfig.store(
            window_seconds=self.window_days * DAY, seasonality=self.seasonality, rules=rules,
            min_samples=self.min_samples, min_slot_samples=3, resolve_after=self.resolve_after,
            cooldown=self.cooldown, min_effect_rel=rel, min_effect_abs=absolute,
            sigma_floor_rel=0.005, protect_z=self.protect_z, prediction_limits=True, cusum_side="lower",
            cusum_h=self.cusum_h,
        )


class Calendar(BusinessCalendar):
    """The stores' business days (:class:`models.calendar.BusinessCalendar`) and what the store
    use case adds to them: closed days, peer groups, intraday slots, each metric's chart."""

    def __init__(self, cfg: StoreConfig) -> None:
        super().__init__(cfg.timezone, cfg.store_timezones, cfg.grace_seconds)
        self.cfg = cfg
        self._closed = {(s, d) for s, d in cfg.closed_days}
        self._groups = dict(cfg.peer_groups)
        self.slot_seconds = cfg.intraday_slot_minutes * 60.0
        self.n_slots = int(DAY // self.slot_seconds)
        self._dets = {m: cfg.detector_config(m) for m in METRICS}

    def det_config(self, metric: str) -> DetectorConfig:
        return self._dets[metric]

    def final_ts(self, store: str, day: str) -> float:
        """After this, ``day`` can no longer be amended: later events for it are rejected."""
        return self.close_ts(store, day) + self.cfg.max_lateness_seconds

    def slot_ts(self, store: str, day: str, k: int) -> float:
        """Start of intraday slot ``k`` (wall clock, so DST days keep their slots)."""
        start = datetime.combine(date.fromisoformat(day), time(), self.tz(store))
        return (start + timedelta(seconds=k * self.slot_seconds)).timestamp()

    def wall_slot(self, store: str, day: str, ts: float) -> float:
        """Fractional intraday slot of ``ts`` on the local wall clock (DST days have 23 or 25 hours)."""
        start = self.day_start(store, day)
        if self.day_start(store, next_day(day)) - start == DAY:
            return (ts - start) / self.slot_seconds
        local = datetime.fromtimestamp(ts, self.tz(store))
        if local.date().isoformat() != day:
            return 0.0 if ts < start else float(self.n_slots)
        return (local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6) / self.slot_seconds

    def is_closed_day(self, store: str, day: str) -> bool:
        return (store, day) in self._closed or ("*", day) in self._closed

    def group(self, store: str) -> str:
        return self._groups.get(store, "all")

    @staticmethod
    def model_ts(day: str) -> float:
        """The day on the detectors' time axis: one point per 1-day bucket, weekday-aligned."""
        return (date.fromisoformat(day) - _EPOCH).days * DAY



def day_type(day: str) -> int:
    return date.fromisoformat(day).weekday()


def _f(x: float | None) -> float | None:
    """JSON-safe float: NaN/inf become None."""
    return None if x is None or not math.isfinite(x) else float(x)
