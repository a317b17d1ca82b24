"""Stage 2 (key ``store_id``): a store's days, their metrics and charts, the intraday early warning."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..calendar import next_day
from ..detector import SeriesDetector, StateError
from ..pchart import PChart
from .config import _RULE_ORDER, CANCELLED, METRICS, PAID, RATE_METRICS, REFUNDED, Calendar, StoreConfig, _f, day_type


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
