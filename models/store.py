"""UC-OP-02: streaming store performance monitoring, as three pure, incremental stages.

Orders arrive keyed by ``order_id`` but a store's day, its SPC charts and the
comparison with its peers need other keys, so the logic is split by key:

1. **order** (key ``order_id``, :func:`apply_order`): remembers which store and
   local business day an order belongs to and its latest status, so a status
   update (paid -> refunded) lands on the order's own day, duplicates and stale
   updates are ignored, and events past the maximum lateness are rejected. It
   forwards the order's *absolute* contribution keyed by ``store_id`` (so
   re-delivery downstream is harmless: the store stage replaces, never adds).
2. **store** (key ``store_id``, :class:`StoreState`): keeps the contributions of
   its open and still-amendable days, closes a day by event time (local
   midnight + grace, also when the store is silent), computes the daily
   metrics, judges them with one :class:`~models.SeriesDetector` per metric,
   runs the intraday early warning, and forwards per-day *summaries* and
   intraday *checks* to the chain.
3. **chain** (one key, :class:`ChainState`): sees every store's summary for a
   day, compares each store with its peers (robust z from median and MAD),
   turns a chain-wide movement into one chain-level episode instead of N store
   alerts, and decides which alert transitions are published.

Late events amend a closed day until ``close + max_lateness``: the store
stage re-runs its detectors from a snapshot taken before the oldest amendable
day (days are few, so this is cheap), and the chain re-decides the days whose
summaries changed. Everything here is event-time driven; states are JSON-able.
With several order partitions the store and chain stages are driven by the low
watermark of the partitions' clocks (:class:`SourceClocks`), so a day closes
and is decided only once all its orders and stores are in.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from .calendar import BusinessCalendar, next_day
from .config import DAY, DetectorConfig
from .detector import SeriesDetector, StateError
from .pchart import PChart
from .rules import RULE_IDS, WESTERN_ELECTRIC

METRICS = ("net_revenue", "orders", "aov", "items_per_order", "discount_depth", "refund_rate", "cancel_rate")
# Rates of a few events a day: judged as p-charts (exact binomial tail, WE1 only), see models/pchart.py.
RATE_METRICS = ("refund_rate", "cancel_rate")
# Where a slow decline matters most: these also get the lower-side CUSUM (when "CUSUM" is in the rules).
CUSUM_METRICS = ("net_revenue", "orders")
DEFAULT_RULES = (*WESTERN_ELECTRIC, "CUSUM")
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
    cusum_h: float = 3.0  # decision interval of the lower CUSUM on revenue and orders, in sigmas
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

    def detector_config(self, metric: str) -> DetectorConfig:
        """The chart of one metric: WE rules on prediction limits (sigma estimated from at most
        28 days), plus the lower CUSUM for revenue and orders; WE1 only for the rates (p-charts)."""
        rel, absolute = next(((r, a) for m, r, a in self.effects if m == metric), (0.0, 0.0))
        if metric in RATE_METRICS:
            rules = tuple(r for r in self.rules if r == "WE1")
        elif metric in CUSUM_METRICS:
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


# =========================================================================== stage 1: orders


@dataclass(frozen=True, slots=True)
class OrderStep:
    entry: list | None  # the order's new state (None: unchanged)
    forward: dict | None  # contribution for the store stage
    outcome: str  # "new" | "update" | "duplicate" | "stale" | "too_late" | "test"


def apply_order(entry: list | None, order: Any, cal: Calendar, watermark: float) -> OrderStep:
    """One order event against the order's state ``[store, day, status, total, discount, qty, ts, event_id]``.

    ``order`` is a :class:`agents.core.events.Order` (duck-typed: no import).
    ``watermark`` is the highest event time seen (lateness is judged against it).
    """
    if order.test:
        return OrderStep(None, None, "test")
    code = STATUS_CODE[order.status]
    discount = round(sum(float(i.discount) * i.qty for i in order.items) * 100)
    qty = float(sum(i.qty for i in order.items))
    if entry is None:
        store, day, first_ts, outcome = order.store_id, cal.local_day(order.store_id, order.ts), order.ts, "new"
    else:
        store, day, first_ts = entry[0], entry[1], entry[6]
        if order.event_id == entry[7] or [code, order.total_minor, discount, qty] == entry[2:6]:
            return OrderStep(None, None, "duplicate")
        if _RANK[code] < _RANK[entry[2]]:
            return OrderStep(None, None, "stale")
        outcome = "update"
    if watermark > cal.final_ts(store, day):
        return OrderStep(None, None, "too_late")
    new = [store, day, code, order.total_minor, discount, qty, first_ts, order.event_id]
    # c: [status, total, discount, qty, time of the order's first event, time of this status]
    forward = {"t": "order", "store": store, "day": day, "id": order.order_id,
               "c": [code, order.total_minor, discount, qty, first_ts, order.ts], "ts": order.ts}
    return OrderStep(new, forward, outcome)


def order_expired(entry: list, cal: Calendar, watermark: float) -> bool:
    """Forget an order once its day is final plus a retention (late refunds are still recognised).

    Bounded from the order's own time (its day ends within a day of it, +1 h for DST), so no calendar work.
    """
    cfg = cal.cfg
    return watermark > entry[6] + DAY + 3600.0 + cfg.grace_seconds + cfg.max_lateness_seconds \
        + cfg.order_retention_days * DAY


class SourceClocks:
    """What one stage partition knows of its sources' clocks, and their low watermark.

    Each order partition (a *source*) stamps what it forwards with its clock, the
    newest order time it has processed. A source's messages reach a downstream
    partition in the order they were sent, so once a partition has seen clock
    ``T`` from a source it has every message that source sent for orders up to
    ``T``; the minimum over all ``n`` sources (the **low watermark**) is the event
    time up to which the partition's input is complete. A source never heard
    from holds it at ``-inf``.

    Idle sources: a source silent for ``idle_seconds`` of *wall-clock* time (no
    message at all; never heard from counts from when this object was made) no
    longer holds the others back; when every source is idle, the watermark is
    the newest clock (each has delivered all it had). A partition that is only
    *slow* keeps sending while it catches up, so it is never idle; one that was
    stalled that long (not idle) and then delivers older orders has them amend
    the closed days as late data. ``wall`` is passed in, so this stays a pure
    function of its inputs. Memory only: after a restart it is rebuilt from the
    next messages.
    """

    __slots__ = ("born", "clocks", "n", "seen")

    def __init__(self, wall: float = 0.0) -> None:
        self.clocks: dict[int, float] = {}
        self.seen: dict[int, float] = {}  # source -> wall time of its last message
        self.n = 1
        self.born = wall

    def see(self, src: int, n: int, wm: float, wall: float = 0.0) -> None:
        if wm > self.clocks.get(src, -math.inf):
            self.clocks[src] = wm
        self.seen[src] = wall
        if n > self.n:
            self.n = n

    def low(self, idle_seconds: float = 0.0, wall: float = 0.0) -> float:
        active = [self.clocks.get(i, -math.inf) for i in range(self.n)
                  if not (idle_seconds > 0 and wall - self.seen.get(i, self.born) >= idle_seconds)]
        if active:
            return min(active)
        return max(self.clocks.values(), default=-math.inf)


# =========================================================================== stage 2: store days


def day_metrics(orders: Iterable[list]) -> dict[str, float | None]:
    """Daily metrics from order contributions ``[status, total_minor, discount_minor, qty, ts]``.

    Revenue is in major units. Ratios with no denominator are None (a missing point).
    """
    paid = refunded = cancelled = 0
    revenue = discount = qty = 0.0
    for c in orders:
        if c[0] == PAID:
            paid += 1
            revenue += c[1]
            discount += c[2]
            qty += c[3]
        elif c[0] == REFUNDED:
            refunded += 1
        else:
            cancelled += 1
    placed = paid + refunded
    total = placed + cancelled
    return {
        "net_revenue": revenue / 100.0,
        "orders": float(placed),
        "aov": revenue / 100.0 / paid if paid else None,
        "items_per_order": qty / paid if paid else None,
        "discount_depth": discount / (discount + revenue) if discount + revenue > 0 else None,
        "refund_rate": refunded / placed if placed else None,
        "cancel_rate": cancelled / total if total else None,
    }


def rate_counts(orders: Iterable[list]) -> dict[str, tuple[int, int]]:
    """(events, trials) of the rate metrics: refunds of placed orders, cancellations of all orders."""
    n = [0, 0, 0]
    for c in orders:
        n[c[0]] += 1
    paid, refunded, cancelled = n
    return {"refund_rate": (refunded, paid + refunded), "cancel_rate": (cancelled, paid + refunded + cancelled)}


def _event_dict(ev: Any) -> dict | None:
    if ev is None:
        return None
    return {"kind": ev.kind, "id": ev.episode_id, "rule": ev.rule, "rules": list(ev.rules), "ts": ev.ts,
            "starts_at": ev.starts_at, "ends_at": ev.ends_at, "value": _f(ev.value), "center": _f(ev.center),
            "lower": _f(ev.lower), "upper": _f(ev.upper), "z": _f(ev.z), "peak_z": _f(ev.peak_z)}


def _verdict_dict(v: Any, det: SeriesDetector | PChart) -> dict:
    # "ep": the open episode after this point (same package: the tracker's id is ours to read)
    return {"st": v.status_name, "c": _f(v.center), "s": _f(v.sigma), "z": _f(v.z),
            "r": sorted(v.rules, key=_RULE_ORDER.__getitem__), "sig": bool(v.signal), "ev": _event_dict(v.event),
            "ep": det._ep.eid if det.firing else None}


@dataclass(slots=True)
class StoreOut:
    """What one store step produced: day summaries and intraday checks for the chain, in the order
    they happened (``chain``; the chain reads a day summary as "no more checks for that day"), the
    summaries alone (for the rows), and counters for the run log."""

    chain: list[dict] = field(default_factory=list)
    amended: int = 0
    rejected: int = 0

    @property
    def summaries(self) -> list[dict]:
        return [m for m in self.chain if m["t"] == "day"]

    @property
    def intraday(self) -> list[dict]:
        return [m for m in self.chain if m["t"] == "intraday"]

    def extend(self, other: StoreOut) -> None:
        self.chain.extend(other.chain)
        self.amended += other.amended
        self.rejected += other.rejected


class IntradayProfile:
    """Expected intraday trajectory per weekday: revenue share before each slot and
    orders per slot (EWMAs over finalised days), and the day's revenue level and spread."""

    def __init__(self, n_slots: int) -> None:
        self.n_slots = n_slots
        self.days: list[int] = [0] * 7
        self.share: list[list[float]] = [[0.0] * (n_slots + 1) for _ in range(7)]
        self.rate: list[list[float]] = [[0.0] * n_slots for _ in range(7)]
        self.mean: list[float] = [0.0] * 7
        self.var: list[float] = [0.0] * 7

    def learn(self, dt: int, slot_revenue: list[float], slot_orders: list[int], alpha: float) -> None:
        total = sum(slot_revenue)
        if total <= 0:
            return  # a closed or silent day teaches nothing about a normal one
        cum, shares = 0.0, [0.0]
        for r in slot_revenue:
            cum += r
            shares.append(cum / total)
        n = self.days[dt]
        a = 1.0 / (n + 1) if n < 1.0 / alpha else alpha  # plain mean until the EWMA has enough days
        self.share[dt] = [s + a * (x - s) for s, x in zip(self.share[dt], shares, strict=True)]
        self.rate[dt] = [s + a * (x - s) for s, x in zip(self.rate[dt], slot_orders, strict=True)]
        if n == 0:
            self.mean[dt], self.var[dt] = total, 0.0
        else:
            d = total - self.mean[dt]
            self.mean[dt] += a * d
            self.var[dt] = (1 - a) * (self.var[dt] + a * d * d)
        self.days[dt] = n + 1

    def to_state(self) -> dict:
        return {"d": self.days, "sh": self.share, "ra": self.rate, "m": self.mean, "v": self.var}

    @classmethod
    def from_state(cls, s: dict, n_slots: int) -> IntradayProfile:
        p = cls(n_slots)
        if len(s["sh"][0]) == n_slots + 1:
            p.days, p.share, p.rate, p.mean, p.var = list(s["d"]), s["sh"], s["ra"], list(s["m"]), list(s["v"])
        return p


def poisson_cdf(k: int, lam: float) -> float:
    """P(X <= k) for X ~ Poisson(lam)."""
    term = total = math.exp(-lam)
    for i in range(1, k + 1):
        term *= lam / i
        total += term
    return min(1.0, total)


class StoreState:
    """One store's days, detectors (as a snapshot plus the amendable days) and intraday profile."""

    def __init__(self, store: str, cal: Calendar) -> None:
        self.store = store
        self.cal = cal
        self.days: dict[str, dict[str, list]] = {}  # every not-yet-final day: order_id -> contribution
        self.closed: list[str] = []  # closed, still amendable days (sorted)
        self.next_close: str | None = None  # oldest day not closed yet
        self.last_final: str | None = None  # newest day that can no longer change
        self.snap: dict[str, dict] = {}  # metric -> detector state after the final days
        self.reported: dict[str, str] = {}  # day -> digest of the summary sent
        self.profile = IntradayProfile(cal.n_slots)
        self.checked: list = [None, -1]  # [day, last intraday slot checked]
        self.empty_run = 0  # consecutive closed days without orders
        self.retired = False
        self.wm = 0.0  # newest event time this store has seen
        self.dirty = False
        self.counts = {"amended": 0, "rejected": 0}
        self.due = 0.0  # event time of the next timer work (ticks skip the store until then)

    # -- state ------------------------------------------------------------------
    def to_state(self) -> dict:
        return {"store": self.store, "days": self.days, "closed": self.closed, "next": self.next_close,
                "final": self.last_final, "snap": self.snap, "rep": self.reported,
                "prof": self.profile.to_state(), "chk": self.checked, "empty": self.empty_run,
                "ret": self.retired, "wm": self.wm, "dirty": self.dirty, "n": self.counts,
                "due": self.due if math.isfinite(self.due) else None}

    @classmethod
    def from_state(cls, s: dict, cal: Calendar) -> StoreState:
        st = cls(s["store"], cal)
        st.days, st.closed, st.next_close, st.last_final = s["days"], s["closed"], s["next"], s["final"]
        st.snap, st.reported, st.checked = s["snap"], s["rep"], s["chk"]
        st.profile = IntradayProfile.from_state(s["prof"], cal.n_slots)
        st.empty_run, st.retired, st.wm, st.dirty, st.counts = s["empty"], s["ret"], s["wm"], s["dirty"], s["n"]
        st.due = math.inf if s["due"] is None else s["due"]
        return st

    # -- input ------------------------------------------------------------------
    def apply(self, msg: dict, clock: float | None = None) -> StoreOut:
        """An order's absolute contribution to its day (idempotent), then the timer work up to ``clock``.

        ``clock`` is the stage's low watermark (every order source is complete up to it); without
        one, the store's own newest order time (a single source in time order)."""
        out = StoreOut()
        day = msg["day"]
        started = bool(self.closed) or self.last_final is not None  # has closed a day already
        if day not in self.days and ((self.last_final is not None and day <= self.last_final)
                                     or (started and self.next_close is not None and day < self.next_close)):
            self.counts["rejected"] += 1
            out.rejected = 1
        else:
            orders = self.days.setdefault(day, {})
            if orders.get(msg["id"]) != msg["c"]:
                orders[msg["id"]] = msg["c"]
                if day in self.closed:
                    self.dirty = True
                    self.counts["amended"] += 1
                    out.amended = 1
            if self.retired or self.next_close is None or (not started and day < self.next_close):
                self.retired, self.empty_run = False, 0
                self.next_close = day
        self.wm = max(self.wm, msg["ts"])
        out.extend(self.advance(self.wm if clock is None else clock))
        return out

    # -- timer ------------------------------------------------------------------
    def advance(self, now: float) -> StoreOut:
        """Everything due at event time ``now``: intraday checks, day closes, re-evaluation, finalisation."""
        out = StoreOut()
        if not math.isfinite(now):
            return out  # no clock yet (e.g. just after a restart): nothing can be due
        cal = self.cal
        # In event-time order, so that one call over a long span (a clock released after a backlog) does what
        # many small ones would: a day finalised before another day's intraday checks has taught the profile.
        while True:
            t_final = cal.final_ts(self.store, self.closed[0]) if self.closed else math.inf
            t_close = t_slot = math.inf
            day = self.next_close if not self.retired else None
            if day is not None:
                t_close = cal.close_ts(self.store, day)
                k_next = (self.checked[1] if self.checked[0] == day else 0) + 1
                if k_next <= cal.n_slots:
                    t_slot = cal.slot_ts(self.store, day, k_next)
            t_next = min(t_final, t_close, t_slot)
            if t_next > now:
                break
            if t_final == t_next:
                self._evaluate(t_final, out)  # finalises the oldest closed day (and reports the others)
            elif t_slot == t_next and t_slot < t_close:
                assert day is not None  # the slots before the next finalisation or close, up to now
                limit = min(now, t_final - 1e-6, t_close - 1e-6)
                k = max(k_next, min(int(cal.wall_slot(self.store, day, limit)), cal.n_slots))
                self._intraday_until(day, k, out)
            else:
                assert day is not None
                self._intraday_until(day, cal.n_slots, out)
                self.days.setdefault(day, {})
                self.closed.append(day)
                self.dirty = True
                self.empty_run = 0 if self.days[day] else self.empty_run + 1
                self.next_close = next_day(day)
                if self.empty_run >= self.cfg.retire_days:
                    self.retired = True  # a store gone for good stops producing empty days
        if self.dirty:
            self._evaluate(now, out)
        self.due = self._next_due(now)
        return out

    def _next_due(self, now: float) -> float:
        """Event time of the next timer work (an intraday slot, a close, a finalisation)."""
        cal = self.cal
        due = math.inf
        if self.closed:
            due = cal.final_ts(self.store, self.closed[0])
        if self.next_close is not None and not self.retired:
            start = cal.day_start(self.store, self.next_close)
            k = int((now - start) // cal.slot_seconds) + 1
            due = min(due, cal.close_ts(self.store, self.next_close), start + k * cal.slot_seconds)
        return due

    @property
    def cfg(self) -> StoreConfig:
        return self.cal.cfg

    def _detectors(self) -> dict[str, SeriesDetector | PChart]:
        dets: dict[str, SeriesDetector | PChart] = {}
        for m in METRICS:
            key, cfg = f"{self.store}|{m}", self.cal.det_config(m)
            kind = PChart if m in RATE_METRICS else SeriesDetector
            try:
                dets[m] = kind.from_state(self.snap[m], cfg, key) if m in self.snap else kind(key, cfg)
            except StateError:  # another version, window or chart kind: start afresh
                dets[m] = kind(key, cfg)
        return dets

    def _evaluate(self, now: float, out: StoreOut) -> None:
        """Judge the closed days from the snapshot; fold the final ones into it; report changes."""
        cal = self.cal
        dets = self._detectors()
        for day in list(self.closed):
            orders = self.days[day]
            metrics = day_metrics(orders.values())
            closed_day = cal.is_closed_day(self.store, day)
            verdicts: dict[str, dict] = {}
            if not closed_day:
                ts = cal.model_ts(day)
                counts = rate_counts(orders.values())
                for m in METRICS:
                    det = dets[m]
                    if isinstance(det, PChart):
                        v = det.update(ts, *counts[m])[0]
                    else:
                        x = metrics[m]
                        v = det.update(ts, math.nan if x is None else x)[0]
                    verdicts[m] = _verdict_dict(v, det)
            summary = {"t": "day", "store": self.store, "group": cal.group(self.store), "day": day,
                       "ts": cal.close_ts(self.store, day), "closed": closed_day, "retired": self.retired,
                       "m": {m: _f(x) for m, x in metrics.items()}, "v": verdicts}
            digest = repr((summary["m"], verdicts, closed_day))
            if self.reported.get(day) != digest:
                self.reported[day] = digest
                out.chain.append(summary)
            if day == self.closed[0] and cal.final_ts(self.store, day) <= now:
                self.snap = {m: d.to_state() for m, d in dets.items()}
                if not closed_day:
                    self._learn(day, orders)
                del self.days[day]
                self.closed.pop(0)
                self.reported.pop(day, None)
                self.last_final = day
        self.dirty = False

    # -- intraday ---------------------------------------------------------------
    def _slots(self, day: str, orders: dict[str, list], upto: float | None = None) -> tuple[list[float], list[int]]:
        cal = self.cal
        rev = [0.0] * cal.n_slots
        cnt = [0] * cal.n_slots
        for c in orders.values():
            code = c[0]
            if upto is not None:
                if c[4] >= upto:
                    continue
                if len(c) > 5 and c[5] >= upto:
                    code = PAID  # refunded or cancelled only later: as of ``upto`` it was paid
            k = min(cal.n_slots - 1, max(0, int(cal.wall_slot(self.store, day, c[4]))))
            if code == PAID:
                rev[k] += c[1] / 100.0
            if code != CANCELLED:
                cnt[k] += 1
        return rev, cnt

    def _expected_orders(self, dt: int, day: str, start: float, end: float) -> float:
        """Expected orders between two instants of ``day`` (slot rates, pro rata at the edges)."""
        cal = self.cal
        a, b = cal.wall_slot(self.store, day, start), cal.wall_slot(self.store, day, end)
        total = 0.0
        for k in range(max(0, int(a)), min(cal.n_slots, math.ceil(b))):
            overlap = min(b, k + 1) - max(a, k)
            if overlap > 0:
                total += overlap * self.profile.rate[dt][k]
        return total

    def _learn(self, day: str, orders: dict[str, list]) -> None:
        rev, cnt = self._slots(day, orders)
        self.profile.learn(day_type(day), rev, cnt, self.cfg.intraday_alpha)

    def _intraday_until(self, day: str, k_max: int, out: StoreOut) -> None:
        """Checks at the start of each slot ``k <= k_max`` of ``day`` not yet checked.

        A store without a trusted trajectory for the day (too few days of that weekday, or a closed day)
        sends one ``warm: false`` message instead, so the chain knows not to wait for its checks."""
        cal, cfg = self.cal, self.cfg
        last = self.checked[1] if self.checked[0] == day else 0
        if k_max <= last:
            return
        dt = day_type(day)
        p = self.profile
        if last == 0 or len(self.checked) < 3:  # the day's first check decides (kept for the day)
            warm = p.days[dt] >= cfg.intraday_min_days and not cal.is_closed_day(self.store, day)
            if not warm and last == 0:
                out.chain.append({"t": "intraday", "store": self.store, "group": cal.group(self.store),
                                     "day": day, "k": 0, "ts": cal.slot_ts(self.store, day, 0), "flag": False,
                                     "warm": False})
        else:
            warm = bool(self.checked[2])
        self.checked = [day, k_max, warm]
        if not warm:
            return
        orders = self.days.get(day, {})
        win = max(1, int(cfg.intraday_window_minutes * 60 // cal.slot_seconds))
        sigma = max(math.sqrt(p.var[dt]), cfg.intraday_sigma_floor_rel * p.mean[dt])
        lower = p.mean[dt] - 3.0 * sigma
        for k in range(last + 1, k_max + 1):
            t = cal.slot_ts(self.store, day, k)
            rev, cnt = self._slots(day, orders, upto=t)
            cum = sum(rev)
            expected = p.mean[dt] * p.share[dt][k]
            lam = sum(p.rate[dt][max(0, k - win):k])
            seen = sum(cnt[max(0, k - win):k])
            # The rest of the day is projected at the recent order rate only when that rate is
            # significantly low (Poisson tail below intraday_p): a window with too few orders, or
            # no order at all since the last one (a store that stopped trading). Otherwise the
            # rest of the day is assumed normal, so noise alone cannot flag a day.
            ratio = 1.0
            if lam >= cfg.intraday_min_expected and poisson_cdf(seen, lam) < cfg.intraday_p:
                ratio = seen / lam
            last_ts = max((c[4] for c in orders.values() if c[4] < t), default=None)
            gap_from = max(last_ts if last_ts is not None else -math.inf, cal.slot_ts(self.store, day, 0))
            gap_lam = self._expected_orders(dt, day, gap_from, t)
            if gap_lam >= cfg.intraday_min_expected and math.exp(-gap_lam) < cfg.intraday_p:
                ratio = 0.0
            projected = cum + ratio * p.mean[dt] * (1.0 - p.share[dt][k])
            out.chain.append({
                "t": "intraday", "store": self.store, "group": cal.group(self.store), "day": day, "k": k,
                "ts": t, "flag": projected < lower and 1.0 - p.share[dt][k] >= cfg.intraday_min_remaining,
                "cum": round(cum, 2), "expected": round(expected, 2),
                "projected": round(projected, 2), "center": round(p.mean[dt], 2), "lower": round(lower, 2),
                "recent": seen, "recent_expected": round(lam, 2), "gap_expected": round(gap_lam, 2),
            })


# =========================================================================== stage 3: chain


def robust_z(x: float, others: list[float], floor: float) -> float | None:
    """(x - median) / (1.4826 MAD) against the peers' same-day values."""
    if len(others) < 2:
        return None
    med = statistics.median(others)
    mad = statistics.median(abs(o - med) for o in others) * 1.4826
    return (x - med) / max(mad, floor)


@dataclass(slots=True)
class ChainOut:
    """Alert transitions (plain dicts, see :func:`ChainState._alert`) and table rows."""

    alerts: list[dict] = field(default_factory=list)
    peer_rows: list[dict] = field(default_factory=list)
    flag_rows: list[dict] = field(default_factory=list)


class ChainState:
    """All stores' day summaries and intraday checks; peer comparison and chain-level alerts.

    A day is *decided* when the order sources' low watermark (``horizon``, from
    the order stage) has passed the day's close, so no store unknown so far can
    still appear in it, and every store on the roster has reported it (or has
    reported a later day: it skipped this one, e.g. after losing its state).
    There is no time-out: how unevenly the stage partitions progress changes
    when a day is decided, never what. A decision depends only on that day's
    summaries and the previous day's decision, so when a summary changes (late
    data) the day and the decided days after it are re-decided and only the
    differences are published; an alert that no longer holds is resolved as
    withdrawn.
    """

    def __init__(self, cal: Calendar) -> None:
        self.cal = cal
        self.roster: dict[str, list] = {}  # store -> [first day, retired from day or None]
        self.sums: dict[str, dict[str, dict]] = {}  # day -> store -> summary
        self.decided: dict[str, dict] = {}  # day -> decision
        self.intra: dict[str, dict[str, dict[str, dict]]] = {}  # day -> slot -> store -> check
        self.intra_done: dict[str, int] = {}  # day -> last decided slot
        self.intra_fired: dict[str, dict[str, dict]] = {}  # day -> entity -> alert (firing)
        self.intra_active: dict[str, list[str]] = {}  # day -> stores sending intraday checks
        self.intra_cold: dict[str, list[str]] = {}  # day -> stores that said they send none
        self.last_day: dict[str, str] = {}  # store -> newest day it has reported
        self.horizon = math.inf  # order sources' low watermark (memory, set by the caller per message)
        self._closes: dict[str, float] = {}

    def to_state(self) -> dict:
        return {"roster": self.roster, "sums": self.sums, "dec": self.decided, "intra": self.intra,
                "idone": self.intra_done, "ifired": self.intra_fired, "iact": self.intra_active,
                "icold": self.intra_cold, "last": self.last_day}

    @classmethod
    def from_state(cls, s: dict, cal: Calendar) -> ChainState:
        c = cls(cal)
        c.roster, c.sums, c.decided = s["roster"], s["sums"], s["dec"]
        c.intra, c.intra_done, c.intra_fired, c.intra_active = s["intra"], s["idone"], s["ifired"], s["iact"]
        c.intra_cold = s.get("icold", {})
        c.last_day = s.get("last", {})
        return c

    def _close_all(self, day: str) -> float:
        """The latest close of ``day`` over every configured time zone (any store's day is over)."""
        ts = self._closes.get(day)
        if ts is None:
            if len(self._closes) > 1000:
                self._closes.clear()
            stores = ["", *(st for st, _ in self.cfg.store_timezones)]
            ts = self._closes[day] = max(self.cal.close_ts(st, day) for st in stores)
        return ts

    # -- roster -------------------------------------------------------------------
    def _join(self, store: str, day: str) -> None:
        entry = self.roster.get(store)
        if entry is None:
            self.roster[store] = [day, None]
        elif day < entry[0]:
            entry[0] = day

    def _expected(self, day: str) -> list[str]:
        return sorted(s for s, (first, gone) in self.roster.items() if first <= day and (gone is None or day < gone))

    # -- input ------------------------------------------------------------------
    def apply(self, msg: dict, horizon: float = math.inf) -> ChainOut:
        """One message: a day summary, an intraday check, a store joining, or an order-source clock.

        ``horizon``: event time up to which every order source has been seen (joins included), so no
        store unknown so far can have orders before it; ``inf`` when the caller has a single source
        in time order (then a summary cannot overtake its store's join)."""
        out = ChainOut()
        self.horizon = horizon
        if msg["t"] == "day":
            self._day_summary(msg, out)
        elif msg["t"] == "join":
            self._join(msg["store"], msg["day"])
            self._decide_ready(out)
        elif msg["t"] == "clock":
            self._decide_intraday(out)
            self._decide_ready(out)
        else:
            self._intraday(msg, out)
        return out

    def _day_summary(self, msg: dict, out: ChainOut) -> None:
        store, day = msg["store"], msg["day"]
        self._join(store, day)
        if msg["retired"]:
            self.roster[store][1] = next_day(day)
        elif self.roster[store][1] is not None and day >= self.roster[store][1]:
            self.roster[store][1] = None
        if day > self.last_day.get(store, ""):
            self.last_day[store] = day
        if self._too_old(day):
            return
        self.sums.setdefault(day, {})[store] = msg
        self._decide_intraday(out)  # a store that closed the day sends no more checks for it
        self._decide_ready(out, changed=day)

    def _too_old(self, day: str) -> bool:
        """Decided and its summaries already forgotten: it can no longer be re-decided."""
        return day in self.decided and day not in self.sums

    def _ready(self, day: str) -> bool:
        if self.horizon < self._close_all(day):
            return False  # an order partition has not passed the close: a store may still join
        got = self.sums.get(day, {})
        need = self._expected(day)
        return bool(need) and all(s in got or self._moved_past(s, day) for s in need)

    def _moved_past(self, store: str, day: str) -> bool:
        """The store reported a later day without this one: it will never report it (days close in order)."""
        return self.last_day.get(store, "") > day

    @property
    def cfg(self) -> StoreConfig:
        return self.cal.cfg

    def _decide_ready(self, out: ChainOut, changed: str | None = None) -> None:
        """Decide every ready day in order; re-decide from ``changed`` if it was decided."""
        days = sorted(self.sums)
        start = None
        if changed is not None and changed in self.decided:
            start = changed
        for day in days:
            if day in self.decided and (start is None or day < start):
                continue
            if day not in self.decided and not self._ready(day):
                break
            self._decide(day, out)
        self._expire()

    def _previous(self, day: str) -> dict | None:
        prev = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
        return self.decided.get(prev)

    def _decide(self, day: str, out: ChainOut) -> None:
        cfg = self.cfg
        prev = self._previous(day) or {}
        sums = self.sums.get(day, {})
        by_group: dict[str, list[dict]] = {}
        for s in sums.values():
            if not s["closed"]:
                by_group.setdefault(s["group"], []).append(s)
        alerts: dict[str, dict] = {}
        peer_flags: dict[str, dict] = {}  # "store|metric" -> {"start": day}
        chain_eps: dict[str, dict] = {}  # group -> {"start": day, "metrics": [...]}
        suppressed: list[str] = list(prev.get("supp", []))
        for group, members in sorted(by_group.items()):
            chain_metrics: dict[str, int] = {}
            for m in METRICS:
                judged = [s for s in members if s["v"].get(m, {}).get("st") == "ok"]
                if len(judged) < cfg.chain_min_stores:
                    continue
                # the typical store's z in standard errors of a median of n in-control z-scores
                typical = (statistics.median(s["v"][m]["z"] or 0.0 for s in judged)
                           * math.sqrt(len(judged)) / MEDIAN_SE)
                for sign in (1, -1):
                    hits = [s for s in judged if s["v"][m]["sig"] and (s["v"][m]["z"] or 0) * sign > 0]
                    # chain-wide: many stores signal, or the typical store is off the same way by chain_z
                    # standard errors (then every store signalling that way is part of it, even if the others
                    # stayed inside their own limits: a -30 % day is 2.6 sigma at each store, 8 at the chain)
                    many = len(hits) >= max(cfg.chain_min_stores, cfg.chain_fraction * len(judged))
                    if hits and (many or typical * sign >= cfg.chain_z):
                        chain_metrics[m] = sign
            for s in sorted(members, key=lambda s: s["store"]):
                self._peer(day, s, members, chain_metrics, prev, peer_flags, alerts, out)
                self._store_alerts(s, chain_metrics, suppressed, alerts)
            pe = prev.get("chain", {}).get(group)
            if chain_metrics:
                metrics = sorted(chain_metrics, key=METRICS.index)
                chain_eps[group] = {"start": pe["start"] if pe else day, "metrics": metrics}
                if not pe:  # one alert per chain episode: published when it starts
                    self._chain_alert(group, day, day, metrics, members, alerts, firing=True)
            elif pe:
                self._chain_alert(group, pe["start"], day, pe["metrics"], members, alerts, firing=False)
        # groups that vanished entirely resolve their chain episodes
        for group, pe in prev.get("chain", {}).items():
            if group not in by_group:
                self._chain_alert(group, pe["start"], day, pe["metrics"], [], alerts, firing=False)
        # intraday alerts of this day end when the day is decided
        for key, a in self.intra_fired.get(day, {}).items():
            if key.startswith("chain|"):
                eps = chain_eps.get(key[6:])
                if eps and eps["start"] == day:
                    continue  # merged into the day's chain episode (same id), which carries on
            ends = self.cal.close_ts(a["store"] or "", day)
            alerts[f"{a['id']}|resolved"] = dict(a, status="resolved", ends_at=ends, event_ts=ends, ts=ends,
                                                 summary=a["summary"] + " [day closed]")
        decision = {"chain": chain_eps, "peer": peer_flags, "supp": suppressed[-500:],
                    "alerts": alerts}
        old = self.decided.get(day)
        self._publish(old["alerts"] if old else {}, alerts, day, out)
        self.decided[day] = decision

    def _store_alerts(self, s: dict, chain_metrics: dict[str, int], suppressed: list[str],
                      alerts: dict[str, dict]) -> None:
        for m in METRICS:
            v = s["v"].get(m)
            if not v:
                continue
            if not v["ev"] and v.get("ep") in suppressed and v["sig"] and not (
                    m in chain_metrics and (v["z"] or 0) * chain_metrics[m] > 0):
                # an episode that began in a chain-wide movement but goes on without it: the store's own alert
                suppressed.remove(v["ep"])
                v = dict(v, ev={"kind": "firing", "id": v["ep"], "rule": v["r"][0] if v["r"] else "WE1",
                                "rules": v["r"], "ts": 0.0, "starts_at": Calendar.model_ts(s["day"]), "ends_at": None,
                                "value": s["m"].get(m), "center": v["c"],
                                "lower": None if v["c"] is None else v["c"] - 3 * v["s"],
                                "upper": None if v["c"] is None else v["c"] + 3 * v["s"], "z": v["z"]})
            if not v["ev"]:
                continue
            ev = v["ev"]
            aid = ev["id"]
            if ev["kind"] == "firing" and m in chain_metrics and (v["z"] or 0) * chain_metrics[m] > 0:
                suppressed.append(aid)  # part of a chain-wide movement: the chain alert covers it
                continue
            if aid in suppressed:
                if ev["kind"] == "resolved":
                    suppressed.remove(aid)
                continue
            alerts[f"{aid}|{ev['kind']}"] = self._alert(
                aid, ev["kind"], ev["rule"], {"store_id": s["store"], "metric": m}, self._real_start(s, ev),
                ev.get("value"), ev.get("center"),
                ev.get("lower"), ev.get("upper"), ev.get("z"), rules=ev["rules"],
                ends_at=s["ts"] if ev["kind"] == "resolved" else None, event_ts=s["ts"],
                summary=(f"{s['store']} {m} {'out of control' if ev['kind'] == 'firing' else 'back in control'} "
                         f"({'+'.join(ev['rules'])}) on {s['day']}: {_num(ev.get('value'))} vs centre "
                         f"{_num(ev.get('center'))}"),
                severity="critical" if ev["rule"] == "WE1" else "warning", store=s["store"], day=s["day"])

    def _real_start(self, s: dict, ev: dict) -> float:
        """Episode start on the real clock: the close of the day the detector's episode started."""
        start_day = (_EPOCH + timedelta(days=int(ev["starts_at"] // DAY))).isoformat()
        return self.cal.close_ts(s["store"], start_day)

    def _peer(self, day: str, s: dict, members: list[dict], chain_metrics: dict[str, int], prev: dict,
              peer_flags: dict[str, dict], alerts: dict[str, dict], out: ChainOut) -> None:
        cfg = self.cfg
        others = [o for o in members if o["store"] != s["store"]]
        for m in METRICS:
            x = s["m"].get(m)
            v = s["v"].get(m, {})
            vals = [o["m"][m] for o in others if o["m"].get(m) is not None]
            z_raw = robust_z(x, vals, 1e-9 + 0.01 * abs(statistics.median(vals))) if x is not None and vals else None
            change = _change(x, v)
            changes = [c for c in (_change(o["m"].get(m), o["v"].get(m, {})) for o in others) if c is not None]
            z_chg = robust_z(change, changes, 0.01) if change is not None else None
            own_normal = v.get("st") == "ok" and not v.get("sig") and not v.get("ep")
            flag = bool(z_chg is not None and abs(z_chg) >= cfg.peer_z and own_normal and m not in chain_metrics
                        and m in cfg.peer_metrics)
            key = f"{s['store']}|{m}"
            before = prev.get("peer", {}).get(key)
            out.peer_rows.append({"store_id": s["store"], "business_date": day, "metric": m, "peer_group": s["group"],
                                  "value": _f(x), "peer_median": _f(statistics.median(vals)) if vals else None,
                                  "peer_z": _f(z_raw), "change_ratio": _f(change), "peer_z_change": _f(z_chg),
                                  "own_signal": bool(v.get("sig")), "peer_flag": flag, "n_peers": len(vals)})
            if flag:
                run = before["run"] + 1 if before else 1
                start = before["start"] if before else day
                opened = bool(before and before["open"]) or run >= cfg.peer_days
                peer_flags[key] = {"run": run, "start": start, "open": opened}
                if opened and not (before and before["open"]):
                    aid = _aid("PEER", s["store"], m, start)
                    alerts[f"{aid}|firing"] = self._alert(
                        aid, "firing", "PEER", {"store_id": s["store"], "metric": m}, s["ts"], x,
                        _f(statistics.median(vals)) if vals else None, None, None, z_chg, event_ts=s["ts"],
                        summary=(f"{s['store']} {m} departs from its peers ({s['group']}) since {start} while its "
                                 f"own chart is in control: change {_pct(change)} against its usual level, "
                                 f"robust z {_num(z_chg)} against the peers' changes"),
                        severity="warning", store=s["store"], day=day)
            elif before and before["open"]:
                aid = _aid("PEER", s["store"], m, before["start"])
                alerts[f"{aid}|resolved"] = self._alert(
                    aid, "resolved", "PEER", {"store_id": s["store"], "metric": m},
                    self.cal.close_ts(s["store"], before["start"]), x, None, None, None, z_chg, ends_at=s["ts"],
                    event_ts=s["ts"], summary=f"{s['store']} {m} back in line with its peers on {day}",
                    severity="warning", store=s["store"], day=day)
            out.flag_rows.append({"store_id": s["store"], "business_date": day, "metric": m,
                                  "status": v.get("st", "closed"), "rules": v.get("r", []),
                                  "own_signal": bool(v.get("sig")), "peer_flag": flag,
                                  "chain_flag": m in chain_metrics and bool(v.get("sig")),
                                  "zscore": _f(v.get("z")), "episode_id": (v.get("ev") or {}).get("id")})

    def _chain_alert(self, group: str, start: str, day: str, metrics: list[str], members: list[dict],
                     alerts: dict[str, dict], firing: bool) -> None:
        aid = _aid("CHAIN", group, start)
        ts = max((s["ts"] for s in members), default=self.cal.close_ts("", day))
        m0 = metrics[0]
        rules: set[str] = set()
        values = []
        zs = []
        for s in members:
            v = s["v"].get(m0, {})
            if v.get("sig"):
                rules.update(v["r"])
            if s["m"].get(m0) is not None and v.get("c"):
                values.append(s["m"][m0] / v["c"] - 1.0)
            if v.get("st") == "ok" and v.get("z") is not None:
                zs.append(v["z"])
        if firing and len(zs) >= 2 and abs(statistics.median(zs)) * math.sqrt(len(zs)) / MEDIAN_SE > 3.0:
            # WE1 of the chain itself: the typical store's z is beyond 3 standard errors of a median of
            # n in-control z-scores (1.2533/sqrt(n)), even when no single store crossed its own line
            rules.add("WE1")
        intraday = self.intra_fired.get(start, {}).get(f"chain|{group}")
        rule_list = (["INTRADAY"] if intraday else []) + sorted(rules, key=lambda r: _RULE_ORDER.get(r, 99))
        rule = rule_list[0] if rule_list else "WE1"
        median_change = statistics.median(values) if values else None
        starts = intraday["starts_at"] if intraday else self.cal.close_ts(members[0]["store"] if members else "",
                                                                             start)
        if firing:
            summary = (f"chain-wide movement in peer group {group} on {day}: {', '.join(metrics)} "
                       f"(median change {_pct(median_change)} across {len(members)} stores); "
                       f"store alerts for these metrics are folded into this one")
        else:
            summary = f"chain-wide movement in peer group {group} is over on {day}"
        alerts[f"{aid}|{'firing' if firing else 'resolved'}"] = self._alert(
            aid, "firing" if firing else "resolved", rule, {"metric": m0, "peer_group": group}, starts,
            median_change, 0.0, None, None, None, rules=rule_list or [rule], ends_at=None if firing else ts,
            event_ts=ts, summary=summary, severity="warning", store=None, day=day)

    @staticmethod
    def _alert(aid: str, status: str, rule: str, entity: dict, starts_at: float, value: float | None,
               center: float | None, lower: float | None, upper: float | None, z: float | None, *,
               rules: list[str] | None = None, ends_at: float | None = None, event_ts: float | None = None,
               summary: str = "", severity: str = "warning", store: str | None = None,
               day: str | None = None) -> dict:
        return {"id": aid, "status": status, "rule": rule, "rules": list(rules or [rule]), "entity": entity,
                "starts_at": starts_at, "ends_at": ends_at, "value": _f(value), "center": _f(center),
                "lower": _f(lower), "upper": _f(upper), "z": _f(z), "summary": summary, "severity": severity,
                "event_ts": event_ts, "store": store, "day": day, "ts": event_ts or starts_at}

    def _publish(self, old: dict[str, dict], new: dict[str, dict], day: str, out: ChainOut) -> None:
        for key, a in new.items():
            if old.get(key) != a:
                out.alerts.append(a)
        for key, a in old.items():
            if key not in new and a["status"] == "firing":
                out.alerts.append(dict(a, status="resolved", ends_at=a["ts"],
                                       summary=a["summary"] + " [withdrawn: late data amended the day]"))

    # -- intraday ---------------------------------------------------------------
    def _intraday(self, msg: dict, out: ChainOut) -> None:
        day, k = msg["day"], msg["k"]
        if self._too_old(day) or day in self.decided:
            return
        self._join(msg["store"], day)
        if not msg.get("warm", True):  # the store sends no checks for this day: do not wait for it
            cold = self.intra_cold.setdefault(day, [])
            if msg["store"] not in cold:
                cold.append(msg["store"])
        elif k > self.intra_done.get(day, 0):
            self.intra.setdefault(day, {}).setdefault(str(k), {})[msg["store"]] = msg
            active = self.intra_active.setdefault(day, [])
            if msg["store"] not in active:
                active.append(msg["store"])
        self._decide_intraday(out)

    def _decide_intraday(self, out: ChainOut) -> None:
        """Decide, in order, every intraday slot all its stores have reported."""
        for d in sorted(self.intra):
            slots = self.intra[d]
            for ks in sorted(slots, key=int):
                kk = int(ks)
                if kk <= self.intra_done.get(d, 0):
                    continue
                got = slots[ks]
                # wait for every store of the roster (stage partitions progress unevenly in the worker, and
                # deciding without a store would lose its flag), unless it said it sends no checks for this
                # day, or it has closed the day (it sent all its checks first) or a later one
                closed = self.sums.get(d, {})
                cold = self.intra_cold.get(d, ())
                missing = [s for s in self._expected(d) if s not in cold and s not in got and s not in closed
                           and not self._moved_past(s, d)]
                if missing:
                    break
                self._decide_slot(d, kk, got, out)
                self.intra_done[d] = kk
        for d in list(self.intra):
            for ks in list(self.intra[d]):
                if int(ks) <= self.intra_done.get(d, 0):
                    del self.intra[d][ks]

    def _decide_slot(self, day: str, k: int, checks: dict[str, dict], out: ChainOut) -> None:
        cfg = self.cfg
        fired = self.intra_fired.setdefault(day, {})
        by_group: dict[str, list[dict]] = {}
        for c in checks.values():
            by_group.setdefault(c["group"], []).append(c)
        for group, cs in sorted(by_group.items()):
            flagged = sorted((c for c in cs if c["flag"]), key=lambda c: c["store"])
            ckey = f"chain|{group}"
            if len(flagged) >= max(cfg.chain_min_stores, cfg.chain_fraction * len(cs)):
                if ckey not in fired:
                    aid = _aid("CHAIN", group, day)
                    a = self._alert(aid, "firing", "INTRADAY", {"metric": "net_revenue", "peer_group": group},
                                    flagged[0]["ts"], None, None, None, None, None, event_ts=flagged[0]["ts"],
                                    summary=(f"chain-wide: {len(flagged)} of {len(cs)} stores in {group} are heading "
                                             f"for a revenue miss on {day}"),
                                    severity="warning", store=None, day=day)
                    fired[ckey] = a
                    out.alerts.append(a)
                continue
            if ckey in fired:
                continue  # the chain alert already covers this group's day
            for c in flagged:
                if c["store"] in fired or self._low_with_its_peers(c, cs):
                    continue
                aid = _aid("INTRADAY", c["store"], day)
                a = self._alert(aid, "firing", "INTRADAY", {"store_id": c["store"], "metric": "net_revenue"},
                                c["ts"], c["projected"], c["center"], c["lower"], None, None, event_ts=c["ts"],
                                summary=(f"{c['store']} heading for a revenue miss on {day}: {c['cum']:.2f} so far, "
                                         f"{c['recent']} orders in the last hour (expected {c['recent_expected']}), "
                                         f"projected {c['projected']:.2f} < lower limit {c['lower']:.2f}"),
                                severity="critical", store=c["store"], day=day)
                fired[c["store"]] = a
                out.alerts.append(a)

    def _low_with_its_peers(self, check: dict, group: list[dict]) -> bool:
        """Is a flagged store's recent order rate low only as much as its peers' are?

        In a chain-wide dip the first stores to look significantly low are flagged
        before the group reaches ``chain_fraction``; judged against the peers' recent
        rate (median of seen / expected, the store left out) instead of its own
        history, such a store is in line, and the chain alert covers the day. A store
        that stopped trading is low against any peer rate."""
        cfg = self.cfg
        peers = [c["recent"] / c["recent_expected"] for c in group
                 if c is not check and c.get("recent_expected", 0) > 0]
        if len(peers) < cfg.chain_min_stores - 1:
            return False
        rate = min(1.0, statistics.median(peers))
        lam, gap = check["recent_expected"] * rate, check.get("gap_expected", 0.0) * rate
        # the store's own two tests (_intraday_until), at the peers' rate instead of its usual one
        low_window = lam >= cfg.intraday_min_expected and poisson_cdf(check["recent"], lam) < cfg.intraday_p
        silent = gap >= cfg.intraday_min_expected and math.exp(-gap) < cfg.intraday_p
        return not (low_window or silent)

    # -- housekeeping -------------------------------------------------------------
    def _expire(self) -> None:
        if not self.decided:
            return
        newest = max(self.decided)
        keep_from = (date.fromisoformat(newest) - timedelta(days=self.cfg.decision_retention_days)).isoformat()
        amend_days = math.ceil((self.cfg.grace_seconds + self.cfg.max_lateness_seconds) / DAY) + 2
        sums_from = (date.fromisoformat(newest) - timedelta(days=amend_days)).isoformat()
        for d in [d for d in self.decided if d < keep_from]:
            del self.decided[d]
        for d in [d for d in self.sums if d < sums_from and d in self.decided]:
            del self.sums[d]
        for d in [d for d in self.intra_fired if d < sums_from]:
            del self.intra_fired[d]
        for d in [d for d in self.intra if d < sums_from]:
            del self.intra[d]
            self.intra_done.pop(d, None)
        for d in [d for d in self.intra_done if d < sums_from]:
            del self.intra_done[d]
        for d in [d for d in self.intra_active if d < sums_from]:
            del self.intra_active[d]
        for d in [d for d in self.intra_cold if d < sums_from]:
            del self.intra_cold[d]


def _change(x: float | None, v: dict) -> float | None:
    """Relative change against the store's own expected level (comparable across store sizes)."""
    c = v.get("c") if v else None
    if x is None or c is None or abs(c) < 1e-9:
        return None
    return x / c - 1.0


def _aid(*parts: Any) -> str:
    from hashlib import blake2b

    return blake2b(repr(("store", *parts)).encode(), digest_size=12).hexdigest()


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f}%"
