"""UC-SC-01: streaming demand-forecast accuracy, per store, pure and incremental.

One :class:`StoreForecast` holds a store's whole state (the contract keys both
``forecasts`` and ``demand`` by ``store_id``): the open business days (pairs
waiting for their partner), a compact per-SKU history of closed days for the
rolling windows, the alert episodes, and a :class:`~models.SeriesDetector` on
the store's daily WMAPE (drift).

Conventions (docs/forecast.md says the same for users):

* ``error = F - A`` (positive = over-forecast); ``APE = |F - A| / |A|``; an
  item with ``A == 0`` has no APE: it is excluded from MAPE and the accuracy
  rate and counted in ``n_zero_actual`` (never a division by zero).
* The forecast that counts for (store, SKU, date) is the one with the latest
  ``generated_at`` *before the day starts*; later revisions are recorded
  (``late_revisions``) but never replace it. Ties are broken by ``ts`` and
  quantity, so the choice does not depend on arrival order.
* A day closes when both input clocks of the store (highest forecast ``ts``,
  highest actual ``ts``) are past its deadline (end of day + grace), or, for a
  feed that stopped, when that topic's watermark over the partition's stores is
  ``stall_hours`` past it (:func:`advance_all`, the timer). An event whose
  ``ts`` is past its day's deadline, or whose day is closed, is late: counted,
  never applied. With each topic in event-time order per store this makes the
  result independent of how the two topics interleave (worker == replay).
* Re-applying an event (at-least-once redelivery) changes nothing but the
  late-event counters: revisions are distinct ``generated_at`` values and the
  chosen forecast/actual is a maximum, not a "last wins".

No I/O, no Faust, no wall clock: event timestamps are the only time.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .calendar import zone
from .config import DAY, DetectorConfig
from .detector import SeriesDetector, StateError
from .episodes import EpisodeEvent
from .rules import rules_mask

STATE_VERSION = 1
RULES = ("MAPE_WARNING", "MAPE_CRITICAL", "TRACKING_SIGNAL", "COVERAGE", "DRIFT")


# --------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class ForecastConfig:
    """Thresholds and windows; defaults are the batch system's (docs/forecast.md)."""

    windows: tuple[int, ...] = (7, 28)
    """Rolling windows in days (summary rows for each)."""
    tolerance: float = 0.20
    """Accuracy rate: share of items with APE <= tolerance."""
    timezone: str = "America/New_York"
    """Where business days start and end (``date`` is the store's local business date); the chain's
    zone by default, as for the store and recon use cases, so one unset variable cannot put the
    three use cases on different days (UTC closed each day at 19:00 New York, before its actuals)."""
    grace_hours: float = 6.0
    """Deadline for an actual = end of its day + grace."""
    stall_hours: float = 48.0
    """A day also closes when the watermark is this far past its deadline (a feed stopped)."""
    alert_window_days: int = 7
    """Window the store-level MAPE and coverage rules read."""
    min_items: int = 20
    """Store-level rules judge a window only with at least this many items."""
    mape_warning: float = 0.30
    mape_critical: float = 0.40
    mape_hysteresis: float = 0.02
    """A MAPE episode resolves when MAPE < threshold - hysteresis."""
    coverage_min: float = 0.95
    coverage_hysteresis: float = 0.02
    """A coverage episode resolves when coverage >= coverage_min + hysteresis."""
    ts_window_days: int = 14
    """Window of the reported tracking signal and bias, and of the rule's effect size and resolution."""
    ts_cusum_k: float = 0.5
    """Reference value of the bias CUSUM, in standard deviations of the SKU's relative error (F - A) / A: the
    CUSUM is tuned to detect a shift of 2k = 1 sigma (a 30 % bias at 45 % noise is ~0.7 sigma)."""
    ts_cusum_h: float = 7.0
    """Decision interval: TRACKING_SIGNAL fires when either one-sided CUSUM exceeds it. Chosen by
    simulation for <= 5 % of unbiased SKUs flagged in 60 days at 45 % forecast noise (docs/forecast.md)."""
    ts_cusum_clip: float = 3.0
    """Each day's standardised error is clipped to +-clip, so one wild day (a stock-out, a typo in the
    forecast) adds at most clip - k to the evidence."""
    ts_resolve: float = 2.0
    """A tracking-signal episode resolves when |TS| over ts_window_days < ts_resolve (the bias is gone)."""
    ts_min_items: int = 7
    """Items of the SKU's history before its CUSUM judges (they give the scale), and in the TS window."""
    ts_min_bias: float = 0.10
    """Minimum effect: |bias| over the TS window must also reach this when the CUSUM fires."""
    drift_rules: tuple[str, ...] = ("CUSUM",)
    """Rules on the store's daily log(WMAPE) chart. A CUSUM: accuracy drifts persistently (a new
    model, a broken feed); WE1-WE4 on 14-28 estimated points broke on most healthy stores in 60 days."""
    drift_window_days: int = 28
    drift_min_samples: int = 14
    drift_min_effect_rel: float = 0.10
    drift_resolve_after: int = 3
    drift_prediction_limits: bool = True
    """Widen the drift chart's zone lines for the error of a sigma estimated from 14-28 days (the
    engine's ``prediction_limits``): with the textbook lines a healthy store's daily WMAPE broke a
    rule within 60 days at most stores."""
    drift_cusum_h: float = 9.0
    """Decision interval of the drift chart's CUSUM, when ``CUSUM`` is among ``drift_rules``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "drift_rules", tuple(r.strip().upper() for r in self.drift_rules))

    def validate(self) -> None:
        """Raise ValueError naming the field; callers map it to their config error."""
        def need(ok: bool, name: str, msg: str) -> None:
            if not ok:
                raise ValueError(f"{name} {msg}")

        need(bool(self.windows) and all(1 <= w <= 366 for w in self.windows), "windows", "must be 1-366 days")
        need(0 < self.tolerance < 10, "tolerance", "must be > 0")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone is not a known IANA time zone: {self.timezone!r}") from None
        need(0 <= self.grace_hours <= 24 * 14, "grace_hours", "must be 0-336")
        need(0 <= self.stall_hours, "stall_hours", "must be >= 0")
        need(self.alert_window_days in self.windows, "alert_window_days", "must be one of windows")
        need(1 <= self.ts_window_days <= 366, "ts_window_days", "must be 1-366")
        need(self.min_items >= 1 and self.ts_min_items >= 2, "min_items", "must be >= 1 (ts_min_items >= 2)")
        need(0 < self.mape_warning <= self.mape_critical, "mape_warning", "must be > 0 and <= mape_critical")
        need(0 <= self.mape_hysteresis < self.mape_warning, "mape_hysteresis", "must be >= 0 and < mape_warning")
        need(0 < self.coverage_min <= 1, "coverage_min", "must be in (0, 1]")
        need(self.coverage_hysteresis >= 0, "coverage_hysteresis", "must be >= 0")
        need(self.ts_cusum_k >= 0, "ts_cusum_k", "must be >= 0")
        need(self.ts_cusum_h > 0, "ts_cusum_h", "must be > 0")
        need(self.ts_cusum_clip > self.ts_cusum_k, "ts_cusum_clip", "must be > ts_cusum_k")
        need(self.ts_resolve >= 0, "ts_resolve", "must be >= 0")
        need(self.ts_min_bias >= 0, "ts_min_bias", "must be >= 0")
        try:
            rules_mask(self.drift_rules)
        except Exception as exc:
            raise ValueError(f"drift_rules {exc}") from None
        need(self.drift_window_days >= 2 and self.drift_min_samples >= 2, "drift_window_days",
             "and drift_min_samples must be >= 2")
        need(self.drift_resolve_after >= 1, "drift_resolve_after", "must be >= 1")

    @property
    def keep_days(self) -> int:
        return max(*self.windows, self.ts_window_days)

    def drift_config(self) -> DetectorConfig:
        return DetectorConfig(
            window_seconds=self.drift_window_days * DAY, bucket_seconds=DAY, sigma="mr",
            min_samples=self.drift_min_samples, rules=self.drift_rules, protect_z=3.0, protect_max_run=7,
            resolve_after=self.drift_resolve_after,
            min_effect_abs=math.log1p(self.drift_min_effect_rel),  # the chart is on log(WMAPE)
            prediction_limits=self.drift_prediction_limits, cusum_h=self.drift_cusum_h,
            extra={"preset": "forecast-drift"})


@lru_cache(maxsize=4096)
def day_start(ordinal: int, timezone: str) -> float:
    """Epoch seconds of midnight starting the business day ``ordinal`` in ``timezone``."""
    return datetime.combine(date.fromordinal(ordinal), time(0), zone(timezone)).timestamp()


def day_end(ordinal: int, timezone: str) -> float:
    return day_start(ordinal + 1, timezone)


# --------------------------------------------------------------------------- metrics


def item_metrics(f: float, a: float, tolerance: float) -> tuple[float, float, float | None, bool | None]:
    """(error, |error|, APE or None when A == 0, within tolerance or None)."""
    err = f - a
    ae = abs(err)
    if a == 0:
        return err, ae, None, None
    ape = ae / abs(a)
    return err, ae, ape, ape <= tolerance


@dataclass(slots=True)
class WindowStats:
    """Sums over items of a window; every metric is a ratio of these (None when undefined)."""

    n_expected: int = 0        # items seen (a forecast, an actual, or both)
    n_forecast: int = 0        # items with a counting forecast
    n_paired: int = 0          # forecast and actual
    n_missing_actual: int = 0
    n_missing_forecast: int = 0
    n_zero_actual: int = 0     # paired with A == 0 (no APE)
    n_ape: int = 0
    sum_ape: float = 0.0
    n_within: int = 0
    sum_abs_error: float = 0.0
    sum_abs_actual: float = 0.0
    sum_error: float = 0.0
    sum_actual: float = 0.0
    sum_error_nz: float = 0.0      # over APE items (actual != 0): what the tracking-signal rule reads
    sum_abs_error_nz: float = 0.0

    def add(self, f: float | None, a: float | None, tolerance: float) -> None:
        self.n_expected += 1
        if f is None:
            self.n_missing_forecast += 1
            return
        self.n_forecast += 1
        if a is None:
            self.n_missing_actual += 1
            return
        self.n_paired += 1
        err, ae, ape, within = item_metrics(f, a, tolerance)
        self.sum_abs_error += ae
        self.sum_abs_actual += abs(a)
        self.sum_error += err
        self.sum_actual += a
        if ape is None:
            self.n_zero_actual += 1
        else:
            self.n_ape += 1
            self.sum_ape += ape
            self.sum_error_nz += err
            self.sum_abs_error_nz += ae
            self.n_within += bool(within)

    def merge(self, other: WindowStats) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def mape(self) -> float | None:
        return self.sum_ape / self.n_ape if self.n_ape else None

    @property
    def wmape(self) -> float | None:
        return self.sum_abs_error / self.sum_abs_actual if self.sum_abs_actual else None

    @property
    def bias(self) -> float | None:
        return self.sum_error / self.sum_actual if self.sum_actual else None

    @property
    def accuracy_rate(self) -> float | None:
        return self.n_within / self.n_ape if self.n_ape else None

    @property
    def coverage(self) -> float | None:
        return self.n_forecast / self.n_expected if self.n_expected else None

    @property
    def tracking_signal(self) -> float | None:
        """Σ error / mean |error| over the paired items; 0 when every error is 0."""
        if not self.n_paired:
            return None
        if self.sum_abs_error == 0:
            return 0.0
        return self.sum_error / (self.sum_abs_error / self.n_paired)


    @property
    def rule_tracking_signal(self) -> float | None:
        """The tracking signal over items with a non-zero actual (the alert rule's input)."""
        if not self.n_ape:
            return None
        if self.sum_abs_error_nz == 0:
            return 0.0
        return self.sum_error_nz / (self.sum_abs_error_nz / self.n_ape)

    @property
    def rule_bias(self) -> float | None:
        return self.sum_error_nz / self.sum_actual if self.sum_actual else None


def window_stats(items: Iterable[tuple[float | None, float | None]], tolerance: float = 0.20) -> WindowStats:
    """Batch reference: stats of (forecast, actual) items (None = missing)."""
    stats = WindowStats()
    for f, a in items:
        stats.add(f, a, tolerance)
    return stats


# --------------------------------------------------------------------------- results


@dataclass(slots=True)
class ItemResult:
    """One (store, SKU, day): its accuracy row."""

    store_id: str
    sku: str
    day: int  # date ordinal
    status: str  # paired | missing_actual | missing_forecast
    forecast_qty: float | None
    actual_qty: float | None
    generated_at: float | None
    revisions: int
    late_revisions: int
    recorded_at: float
    error: float | None = None
    abs_error: float | None = None
    ape: float | None = None
    within_tolerance: bool | None = None


@dataclass(slots=True)
class SummaryResult:
    """Rolling metrics of (store, SKU) or a store (``sku == ""``) over ``window_days`` ending ``day``."""

    store_id: str
    sku: str
    day: int
    window_days: int
    stats: WindowStats


@dataclass(slots=True)
class CloseResult:
    """A store's business day closed: the run-log row."""

    store_id: str
    day: int
    deadline: float
    closed_by: str  # watermark | stall
    stats: WindowStats
    revisions: int
    late_revisions: int
    late_events: int
    wmape: float | None
    alerts_fired: int = 0
    alerts_resolved: int = 0


@dataclass(slots=True)
class LateResult:
    """Late events counted for (store, day) so far."""

    store_id: str
    day: int
    late_events: int


@dataclass(slots=True)
class AlertResult:
    """A firing/resolved transition of one rule episode (agents turn it into an Alert)."""

    kind: str  # firing | resolved
    rule: str
    rules: tuple[str, ...]
    severity: str
    store_id: str
    sku: str | None
    starts_at: float
    ends_at: float | None
    event_ts: float
    value: float | None
    center: float | None
    lower: float | None
    upper: float | None
    zscore: float | None
    summary: str
    episode_id: str | None = None  # set for DRIFT (the detector's deterministic id)


@dataclass(slots=True)
class Step:
    """Everything one call produced."""

    items: list[ItemResult] = field(default_factory=list)
    summaries: list[SummaryResult] = field(default_factory=list)
    closes: list[CloseResult] = field(default_factory=list)
    late: list[LateResult] = field(default_factory=list)
    alerts: list[AlertResult] = field(default_factory=list)
    late_events: int = 0

    def __bool__(self) -> bool:
        return bool(self.items or self.summaries or self.closes or self.late or self.alerts)


# --------------------------------------------------------------------------- state

# open item: [forecast, generated_at, forecast ts, actual, actual ts, [distinct generated_at...], recorded_at]
_F, _G, _FTS, _A, _ATS, _GENS, _REC = range(7)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


class StoreForecast:
    """All forecast-accuracy state of one store (see module doc)."""

    __slots__ = ("closed_through", "cusum", "dclock", "drift", "eps", "fclock", "first_fday", "hist", "late",
                 "open", "store_id")

    def __init__(self, store_id: str) -> None:
        self.store_id = store_id
        self.fclock = 0.0  # highest forecast ts seen
        self.dclock = 0.0  # highest actual ts seen
        self.closed_through: int | None = None  # every day <= this is closed
        self.open: dict[int, dict[str, list]] = {}
        self.hist: dict[str, list[list]] = {}  # sku -> [[day, f, a], ...] closed days in the kept window
        self.eps: dict[str, list] = {}  # episode key -> [start_day, run, firing(0/1)]
        self.late: dict[int, int] = {}  # day -> late events
        self.drift: SeriesDetector | None = None
        self.cusum: dict[str, list[float]] = {}  # sku -> [upper, lower] one-sided bias CUSUMs
        self.first_fday: int | None = None  # earliest date a forecast of this store was for

    # -- input ---------------------------------------------------------------------
    def _late(self, day: int, ts: float, cfg: ForecastConfig, out: Step) -> bool:
        deadline = day_end(day, cfg.timezone) + cfg.grace_hours * 3600.0
        if ts > deadline or (self.closed_through is not None and day <= self.closed_through):
            n = self.late[day] = self.late.get(day, 0) + 1
            out.late.append(LateResult(self.store_id, day, n))
            out.late_events += 1
            return True
        return False

    def _item(self, day: int, sku: str) -> list:
        items = self.open.setdefault(day, {})
        item = items.get(sku)
        if item is None:
            item = items[sku] = [None, None, None, None, None, [], 0.0]
        return item

    def add_forecast(self, sku: str, day: date, qty: float, generated_at: float, ts: float,
                     cfg: ForecastConfig, out: Step | None = None) -> Step:
        out = out if out is not None else Step()
        self.fclock = max(self.fclock, ts)
        d = day.toordinal()
        if not self._late(d, ts, cfg, out):
            self.first_fday = d if self.first_fday is None else min(self.first_fday, d)
            item = self._item(d, sku)
            before = (item[_F], item[_G], len(item[_GENS]))
            if generated_at not in item[_GENS]:
                item[_GENS].append(generated_at)
                item[_GENS].sort()
            item[_REC] = max(item[_REC], ts)
            if generated_at < day_start(d, cfg.timezone):
                cand = (generated_at, ts, qty)
                if item[_F] is None or cand > (item[_G], item[_FTS], item[_F]):
                    item[_F], item[_G], item[_FTS] = qty, generated_at, ts
            if item[_A] is not None and (item[_F], item[_G], len(item[_GENS])) != before:
                out.items.append(self._item_result(d, sku, item, cfg))
        self.advance(cfg, out)
        return out

    def add_actual(self, sku: str, day: date, qty: float, ts: float,
                   cfg: ForecastConfig, out: Step | None = None) -> Step:
        out = out if out is not None else Step()
        self.dclock = max(self.dclock, ts)
        d = day.toordinal()
        if not self._late(d, ts, cfg, out):
            item = self._item(d, sku)
            item[_REC] = max(item[_REC], ts)
            if item[_A] is None or (ts, qty) > (item[_ATS], item[_A]):
                changed = item[_A] != qty
                item[_A], item[_ATS] = qty, ts
                if item[_F] is not None and changed:
                    out.items.append(self._item_result(d, sku, item, cfg))
        self.advance(cfg, out)
        return out

    # -- time ------------------------------------------------------------------------
    def advance(self, cfg: ForecastConfig, out: Step | None = None, *, forecast_wm: float | None = None,
                demand_wm: float | None = None) -> Step:
        """Close every open day whose deadline both feeds have passed.

        A feed has passed a deadline when this store's clock for it is beyond
        it, or (a stalled feed) when the topic's watermark over the partition's
        stores (``forecast_wm``/``demand_wm``, from :func:`advance_all`) is
        ``stall_hours`` beyond it. Per-topic watermarks, not their maximum, so a
        topic consumed faster than the other never closes a day early.
        """
        out = out if out is not None else Step()
        if not self.open:
            return out
        grace = cfg.grace_hours * 3600.0
        stall = cfg.stall_hours * 3600.0
        fstall = -math.inf if forecast_wm is None else forecast_wm - stall
        dstall = -math.inf if demand_wm is None else demand_wm - stall
        for d in sorted(self.open):
            deadline = day_end(d, cfg.timezone) + grace
            f_ok, d_ok = self.fclock > deadline, self.dclock > deadline
            if f_ok and d_ok:
                self._close(d, deadline, "watermark", cfg, out)
            elif (f_ok or fstall > deadline) and (d_ok or dstall > deadline):
                self._close(d, deadline, "stall", cfg, out)
            else:
                break
        return out

    # -- day close ----------------------------------------------------------------------
    def _item_result(self, d: int, sku: str, item: list, cfg: ForecastConfig) -> ItemResult:
        f, a = item[_F], item[_A]
        start = day_start(d, cfg.timezone)
        gens = item[_GENS]
        late_revs = sum(1 for g in gens if g >= start)
        status = "paired" if f is not None and a is not None else ("missing_forecast" if f is None
                                                                    else "missing_actual")
        res = ItemResult(self.store_id, sku, d, status, f, a, item[_G], len(gens) - late_revs, late_revs, item[_REC])
        if status == "paired":
            res.error, res.abs_error, res.ape, res.within_tolerance = item_metrics(f, a, cfg.tolerance)
        return res

    def _close(self, d: int, deadline: float, closed_by: str, cfg: ForecastConfig, out: Step) -> None:
        items = self.open.pop(d)
        self.closed_through = d if self.closed_through is None else max(self.closed_through, d)
        day_stats = WindowStats()
        revs = late_revs = 0
        for sku in sorted(items):
            item = items[sku]
            f, a = item[_F], item[_A]
            day_stats.add(f, a, cfg.tolerance)
            res = self._item_result(d, sku, item, cfg)
            revs += res.revisions
            late_revs += res.late_revisions
            if res.status != "paired":
                out.items.append(res)
            self.hist.setdefault(sku, []).append([d, f, a])
        n_alerts = len(out.alerts)
        self._roll(d, cfg, out)
        wmape = day_stats.wmape
        self._drift(d, wmape, deadline, cfg, out)
        fired = sum(1 for x in out.alerts[n_alerts:] if x.kind == "firing")
        close = CloseResult(self.store_id, d, deadline, closed_by, day_stats, revs, late_revs,
                            self.late.get(d, 0), wmape, fired, len(out.alerts) - n_alerts - fired)
        out.closes.append(close)
        oldest = d - cfg.keep_days
        for old in [k for k in self.late if k <= oldest]:
            del self.late[old]

    def _roll(self, d: int, cfg: ForecastConfig, out: Step) -> None:
        """Rolling summaries as of day ``d`` and the threshold rules."""
        keep_from = d - cfg.keep_days + 1
        windows = sorted(set(cfg.windows))
        store_stats = {w: WindowStats() for w in windows}
        # Coverage is judged from the first date the store's forecasts cover: actuals of earlier dates
        # (the feed started, or spcwatch did, mid-stream) are not missing forecasts. A store never sent
        # a forecast is judged on every day.
        cov_stats = WindowStats()
        fed_from = -1 if self.first_fday is None else self.first_fday
        tol = cfg.tolerance
        for sku in sorted(self.hist):
            entries = self.hist[sku]
            if entries[0][0] < keep_from:
                entries = self.hist[sku] = [e for e in entries if e[0] >= keep_from]
            if not entries:
                del self.hist[sku]
                self.cusum.pop(sku, None)
                self._rule(f"TRACKING_SIGNAL|{sku}", (False, True), None, d, cfg, out, sku=sku,
                           threshold=cfg.ts_cusum_h, text="no paired items left in the window")
                continue
            for w in windows:
                stats = window_stats(((f, a) for day, f, a in entries if day > d - w), tol)
                if stats.n_expected:
                    out.summaries.append(SummaryResult(self.store_id, sku, d, w, stats))
                    store_stats[w].merge(stats)
            ts_stats = window_stats(((f, a) for day, f, a in entries if day > d - cfg.ts_window_days), tol)
            self._tracking(sku, entries, ts_stats, d, cfg, out)
            cov_stats.merge(window_stats(((f, a) for day, f, a in entries
                                          if day > d - cfg.alert_window_days and day >= fed_from), tol))
        for w in windows:
            if store_stats[w].n_expected:
                out.summaries.append(SummaryResult(self.store_id, "", d, w, store_stats[w]))
        s = store_stats[cfg.alert_window_days]
        mape = s.mape if s.n_ape >= cfg.min_items else None
        for rule, thr in (("MAPE_WARNING", cfg.mape_warning), ("MAPE_CRITICAL", cfg.mape_critical)):
            cond = None if mape is None else (mape > thr, mape < thr - cfg.mape_hysteresis)
            self._rule(rule, cond, mape, d, cfg, out, threshold=thr,
                       text=f"MAPE {_fmt(mape)} over {cfg.alert_window_days} days > {thr:.0%}")
        cov = cov_stats.coverage if cov_stats.n_expected >= cfg.min_items else None
        cond = None if cov is None else (cov < cfg.coverage_min, cov >= cfg.coverage_min + cfg.coverage_hysteresis)
        self._rule("COVERAGE", cond, cov, d, cfg, out, threshold=cfg.coverage_min,
                   text=f"forecast coverage {_fmt(cov)} over {cfg.alert_window_days} days "
                        f"< {cfg.coverage_min:.0%}")

    def _tracking(self, sku: str, entries: list[list], s: WindowStats, d: int, cfg: ForecastConfig,
                  out: Step) -> None:
        """TRACKING_SIGNAL: a two-sided CUSUM of the SKU's standardised relative errors.

        A tracking signal summed over a fixed window is a random walk on an unbiased forecast (its
        standard deviation grows as 1.25 sqrt(n)); the CUSUM's reference value k drains it, so its
        in-control run length is set by (k, h) whatever the noise. Errors are relative (F - A) / A,
        standardised by the SKU's own mean absolute relative error (its MAPE) over the kept history
        before today, by their standard deviation: a bias present from the first day shifts every r
        alike and does not inflate the scale, as a mean |r| (the MAPE) would; moving ranges were tried
        and flagged more unbiased series at the same h. Zero-actual items have no relative error and
        are skipped.
        """
        key = f"TRACKING_SIGNAL|{sku}"
        cusum = self.cusum.get(sku)
        last = entries[-1]
        if last[0] == d and last[1] is not None and last[2]:
            past = [(f - a) / abs(a) for day, f, a in entries if day < d and f is not None and a]
            scale = statistics.stdev(past) if len(past) >= cfg.ts_min_items else 0.0
            if scale > 0:
                x = (last[1] - last[2]) / abs(last[2]) / scale
                x = max(-cfg.ts_cusum_clip, min(cfg.ts_cusum_clip, x))
                hi, lo = cusum or (0.0, 0.0)
                cusum = self.cusum[sku] = [max(0.0, hi + x - cfg.ts_cusum_k), max(0.0, lo - x - cfg.ts_cusum_k)]
        ts = s.rule_tracking_signal
        bias = s.rule_bias or 0.0
        stat = 0.0 if cusum is None else (cusum[0] if cusum[0] >= cusum[1] else -cusum[1])
        if ts is None or s.n_ape < cfg.ts_min_items:
            cond = None if s.n_paired else (False, True)  # no data at all resolves
        else:
            cond = (abs(stat) > cfg.ts_cusum_h and abs(bias) >= cfg.ts_min_bias, abs(ts) < cfg.ts_resolve)
        was_firing = bool(self.eps.get(key, (0, 0, 0))[2])
        direction = "over" if stat > 0 else "under"
        self._rule(key, cond, round(stat, 6), d, cfg, out, sku=sku, threshold=cfg.ts_cusum_h,
                   text=f"bias CUSUM {stat:+.1f} sigma (limit {cfg.ts_cusum_h:g}); bias {_fmt(s.rule_bias)} and "
                        f"tracking signal {ts if ts is None else round(ts, 2)} over {cfg.ts_window_days} days: "
                        f"persistent {direction}-forecast")
        if was_firing and key not in self.eps:
            self.cusum.pop(sku, None)  # resolved: the evidence starts again from zero

    def _rule(self, key: str, cond: tuple[bool, bool] | None, value: float | None, d: int,
              cfg: ForecastConfig, out: Step, *, sku: str | None = None, threshold: float | None = None,
              persist: int = 1, text: str = "") -> None:
        """Episode of a threshold rule: ``cond = (violates, back in control)``; None = not judged."""
        ep = self.eps.get(key)
        if cond is None:
            return
        violates, ok = cond
        rule = key.split("|", 1)[0]
        start_ts = day_start(d, cfg.timezone)
        event_ts = day_end(d, cfg.timezone) + cfg.grace_hours * 3600.0
        if ep is None:
            if not violates:
                return
            ep = self.eps[key] = [d, 0, 0]
        if not ep[2]:
            ep[1] = ep[1] + 1 if violates else 0
            if ep[1] == 1:
                ep[0] = d
            if ep[1] >= persist:
                ep[2] = 1
                out.alerts.append(self._alert("firing", rule, sku, day_start(ep[0], cfg.timezone), None,
                                              event_ts, value, threshold, text))
            elif ep[1] == 0:
                del self.eps[key]
        elif ok:
            del self.eps[key]
            out.alerts.append(self._alert("resolved", rule, sku, day_start(ep[0], cfg.timezone), start_ts,
                                          event_ts, value, threshold, text))

    def _alert(self, kind: str, rule: str, sku: str | None, starts_at: float, ends_at: float | None,
               event_ts: float, value: float | None, threshold: float | None, text: str) -> AlertResult:
        severity = "critical" if rule == "MAPE_CRITICAL" else "warning"
        where = f"store {self.store_id}" + (f" SKU {sku}" if sku else "")
        center = lower = upper = None
        if rule == "TRACKING_SIGNAL":
            center, lower, upper = 0.0, -(threshold or 0.0), threshold
        elif rule == "COVERAGE":
            center, lower = threshold, threshold
        else:
            center, upper = threshold, threshold
        prefix = "" if kind == "firing" else "resolved: "
        return AlertResult(kind, rule, (rule,), severity, self.store_id, sku, starts_at, ends_at, event_ts, value,
                           center, lower, upper, None, f"{prefix}{where}: {text}")

    def _drift(self, d: int, wmape: float | None, deadline: float, cfg: ForecastConfig, out: Step) -> None:
        # The chart runs on log(WMAPE): a day's WMAPE is a ratio with a long right tail (a few SKUs
        # badly missed), and limits on the raw value let healthy stores break WE1 every few weeks.
        if wmape is None or wmape <= 0:
            return
        if self.drift is None:
            self.drift = SeriesDetector(f"forecast|{self.store_id}|wmape", cfg.drift_config())
        for v in self.drift.update(day_start(d, cfg.timezone), math.log(wmape)):
            if v.event is not None:
                out.alerts.append(self._drift_alert(v.event, deadline, cfg))

    def _drift_alert(self, e: EpisodeEvent, deadline: float, cfg: ForecastConfig) -> AlertResult:
        e = replace(e, value=math.exp(e.value), center=math.exp(e.center), lower=math.exp(e.lower),
                    upper=math.exp(e.upper))  # back from the chart's log scale
        direction = "worse" if e.value > e.center else "better"
        limits = f"centre {e.center:.1%}, limits {e.lower:.1%}..{e.upper:.1%}"
        if e.kind == "firing":
            text = f"daily WMAPE {e.value:.1%} out of control ({', '.join(e.rules)}; {limits}; accuracy {direction})"
        else:
            text = f"daily WMAPE back in control at {e.value:.1%} ({limits})"
        prefix = "" if e.kind == "firing" else "resolved: "
        return AlertResult(e.kind, "DRIFT", tuple(e.rules), "warning", self.store_id, None, e.starts_at, e.ends_at,
                           deadline, e.value, e.center, e.lower, e.upper, e.z,
                           f"{prefix}store {self.store_id}: {text}", episode_id=e.episode_id)

    # -- state --------------------------------------------------------------------------
    def to_state(self) -> dict:
        """JSON-able, versioned; day keys are ordinals as strings."""
        return {
            "v": STATE_VERSION,
            "s": self.store_id,
            "c": [self.fclock, self.dclock, self.closed_through],
            "o": {str(d): items for d, items in self.open.items()},
            "h": self.hist,
            "e": self.eps,
            "l": {str(d): n for d, n in self.late.items()},
            "dl": None if self.drift is None else self.drift.to_state(),  # "d" held a raw-WMAPE chart
            "t": self.cusum,
            "ff": self.first_fday,
        }

    @classmethod
    def from_state(cls, state: dict, cfg: ForecastConfig) -> StoreForecast:
        if state.get("v") != STATE_VERSION:
            raise StateError(f"unsupported forecast state version {state.get('v')!r}")
        st = cls(state["s"])
        st.fclock, st.dclock, st.closed_through = state["c"]
        st.open = {int(d): items for d, items in state["o"].items()}
        st.hist = state["h"]
        st.eps = state["e"]
        st.late = {int(d): n for d, n in state["l"].items()}
        st.cusum = state.get("t", {})  # absent in states written before the CUSUM: start from zero
        st.first_fday = state.get("ff")  # None in older states: coverage judged on every day, as before
        if state.get("dl") is not None:  # a state with the old raw-WMAPE chart ("d") relearns on log(WMAPE)
            try:
                st.drift = SeriesDetector.from_state(state["dl"], cfg.drift_config())
            except StateError:  # drift window changed: relearn rather than fail
                st.drift = None
        return st


def advance_all(states: Iterable[StoreForecast], cfg: ForecastConfig,
                out: Step | None = None) -> tuple[Step, list[StoreForecast]]:
    """The timer: close stalled days of every store of a partition; returns the stores that changed.

    The per-topic watermarks are the highest clocks among these stores: within
    a topic partition events are consumed in order, so a store whose clock
    lags its topic's watermark by ``stall_hours`` has a stopped feed, not a
    slow consumer.
    """
    out = out if out is not None else Step()
    stores = list(states)
    fwm = max((s.fclock for s in stores), default=0.0)
    dwm = max((s.dclock for s in stores), default=0.0)
    changed = []
    for s in stores:
        before = len(out.closes)
        s.advance(cfg, out, forecast_wm=fwm, demand_wm=dwm)
        if len(out.closes) != before:
            changed.append(s)
    return out, changed


def finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def iso_day(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
