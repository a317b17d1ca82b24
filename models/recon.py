"""Three-way revenue reconciliation (UC-FN-02): orders ↔ payments ↔ ledger, per order.

Pure and incremental: no I/O, no Faust, event time only. One :class:`OrderRecon`
holds what each source has said about one order (compact, JSON-able state) and
turns it into exception records and an order outcome.

Why the exceptions are a *pure function of the events and a horizon*:
the three sources are three topics, consumed concurrently, so the order in
which a worker sees an order's events is not the order of their timestamps
(a payment may be processed before its order). An exception must not depend
on that interleaving, nor on when a timer happened to run. So:

* every record keeps its event timestamp; an order's **history** is computed
  by sweeping the timepoints (event timestamps and deadlines) in time order and
  asking at each one "what is wrong *as of* t, counting only events with
  ``ts <= t``";
* the sweep stops at the **horizon** ``H``: the event time up to which every
  source is known complete (the minimum over sources of the highest timestamp
  seen on the partition). Nothing is decided about a time no source has
  finished with, so a lagging topic delays exceptions but never invents them;
* deadlines are event times: ``first_seen + window`` per source, so an overdue
  order's exception has ``first_seen`` = its deadline, whenever the sweep runs.

A late arrival (timestamp after the deadline) resolves the exception at its own
timestamp; the record is one per (order, category), never a second one. An
event that arrives after the horizon already passed its timestamp (data late
beyond what the clocks promised) cannot rewrite what was published: an open
record the new history no longer contains is resolved at that arrival.

Categories (ids as in the contract's ``recon_exceptions``) are in
:data:`CATEGORIES`; outcomes of an order in :data:`OUTCOMES`.

The daily SPC on match rate and unmatched amount (:class:`CloseBook`,
:class:`DailySeries`, at the end) judges each business day as of its close, from
each order's :meth:`OrderRecon.contribution`, a pure function of the records
stamped up to the close.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

from .calendar import zone as time_zone
from .config import DetectorConfig
from .detector import SeriesDetector
from .episodes import EpisodeEvent

ORDERS, PAYMENTS, LEDGER = 0, 1, 2
SOURCES = ("orders", "payments", "ledger")

MATCHED = "matched"
MATCHED_WITHIN_TOLERANCE = "matched_within_tolerance"
PENDING = "pending"
EXCEPTION = "exception"
EXCLUDED = "excluded"
OUTCOMES = (MATCHED, MATCHED_WITHIN_TOLERANCE, PENDING, EXCEPTION, EXCLUDED)

MISSING_PAYMENT = "missing_payment"
MISSING_LEDGER = "missing_ledger"
ORPHAN_PAYMENT = "orphan_payment"
ORPHAN_LEDGER = "orphan_ledger"
AMOUNT_MISMATCH = "amount_mismatch"
PARTIAL_PAYMENT = "partial_payment"
OVERPAYMENT = "overpayment"
UNIT_SCALE_MISMATCH = "unit_scale_mismatch"
CURRENCY_MISMATCH = "currency_mismatch"
STATUS_MISMATCH = "status_mismatch"
REFUND_UNMATCHED = "refund_unmatched"
DUPLICATE = "duplicate"
EXCLUDED_TEST_DATA = "excluded_test_data"
CATEGORIES = (
    MISSING_PAYMENT, MISSING_LEDGER, ORPHAN_PAYMENT, ORPHAN_LEDGER, AMOUNT_MISMATCH, PARTIAL_PAYMENT,
    OVERPAYMENT, UNIT_SCALE_MISMATCH, CURRENCY_MISMATCH, STATUS_MISMATCH, REFUND_UNMATCHED, DUPLICATE,
    EXCLUDED_TEST_DATA,
)
UNKNOWN_STORE = "UNKNOWN"
STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class ReconConfig:
    """How orders are matched. Times in seconds of event time, money in minor units."""

    payment_window_seconds: float = 900.0
    """An order waits this long (from the first event seen for it) for its payments."""
    ledger_window_seconds: float = 6 * 3600.0
    """... and this long for its ledger entries."""
    order_window_seconds: float = 900.0
    """A payment or ledger entry waits this long for its order before it is an orphan."""
    tolerance_abs_minor: int = 1
    """Amounts within max(abs, rel * order total) of each other match (variance recorded)."""
    tolerance_rel: float = 0.0
    test_currencies: tuple[str, ...] = ("NZD",)
    """Events in these currencies (or flagged ``test``) are excluded from matching and counted."""
    scale_exponents: tuple[int, int, int] = (0, 0, 0)
    """Known unit scale per source (orders, payments, ledger): amounts are multiplied by 10**e
    before matching (e.g. -2 for a source known to send cents where units are expected)."""
    retention_seconds: float = 2 * 86400.0
    """A finished order (matched, resolved, excluded) leaves state this long after its last event."""
    open_retention_seconds: float = 30 * 86400.0
    """An order with open exceptions leaves state this long after its last event (rows stay)."""
    timezone: str = "America/New_York"
    """Business days are local dates in this zone (per store: ``store_timezones``)."""
    store_timezones: tuple[tuple[str, str], ...] = ()
    alert_min_amount_minor: int = -1
    """Per-order paging: an exception whose amount reaches this fires its own ``RECON_<CATEGORY>``
    alert (0: every one; -1, the default: none, the store-day thresholds below alert instead)."""
    alert_categories: tuple[str, ...] = tuple(c for c in CATEGORIES if c != EXCLUDED_TEST_DATA)
    alert_min_count: int = 3
    """Store-day alerts: a category fires ``RECON_<CATEGORY>`` for a store when, as of a business
    day's close, at least this many of the day's orders carry it ..."""
    alert_min_rate: float = 0.01
    """... and they are at least this share of the store's decided orders that day ..."""
    alert_min_day_amount_minor: int = 0
    """... and their amounts add up to at least this (0: no amount condition). The episode resolves
    on the first day that does not meet all three."""

    def __post_init__(self) -> None:
        for name in ("payment_window_seconds", "ledger_window_seconds", "order_window_seconds",
                     "retention_seconds", "open_retention_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0")
        if self.tolerance_abs_minor < 0 or not (0.0 <= self.tolerance_rel < 1.0):
            raise ValueError("tolerance_abs_minor must be >= 0 and tolerance_rel in [0, 1)")
        if len(self.scale_exponents) != 3 or any(not -6 <= e <= 6 for e in self.scale_exponents):
            raise ValueError("scale_exponents must be three integers in [-6, 6]")
        if self.alert_min_amount_minor < -1:
            raise ValueError("alert_min_amount_minor must be >= 0, or -1 for no per-order alerts")
        if self.alert_min_count < 1 or not (0.0 <= self.alert_min_rate <= 1.0) or self.alert_min_day_amount_minor < 0:
            raise ValueError("alert_min_count must be >= 1, alert_min_rate in [0, 1], "
                             "alert_min_day_amount_minor >= 0")
        unknown = set(self.alert_categories) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown alert categories: {sorted(unknown)}")
        for zone in (self.timezone, *(z for _, z in self.store_timezones)):
            time_zone(zone)  # raises on an unknown zone

    def tolerance(self, total: int) -> int:
        return max(self.tolerance_abs_minor, int(self.tolerance_rel * abs(total)))

    def business_day(self, store_id: str, ts: float) -> date:
        return datetime.fromtimestamp(ts, time_zone(self.zone_of(store_id))).date()

    def zone_of(self, store_id: str) -> str:
        return dict(self.store_timezones).get(store_id, self.timezone)

    def zones(self) -> tuple[str, ...]:
        """Every zone a business day can be in (the default and the per-store overrides)."""
        return tuple(sorted({self.timezone, *(z for _, z in self.store_timezones)}))

    def close_ts(self, zone: str, day: date) -> float:
        """When a business day of ``zone`` closes: its local midnight plus the ledger window, the
        latest deadline of an order of that day (refund checks aside), so every order is decided."""
        return _midnight(zone, day + timedelta(days=1)) + self.ledger_window_seconds

    def closed_through(self, zone: str, horizon: float) -> date | None:
        """The newest day of ``zone`` whose close is before ``horizon`` (None before any)."""
        if not math.isfinite(horizon):
            return None
        t = horizon - self.ledger_window_seconds
        d = datetime.fromtimestamp(t, time_zone(zone)).date()
        return d - timedelta(days=1 if _midnight(zone, d) < t else 2)


@lru_cache(maxsize=4096)
def _midnight(zone: str, day: date) -> float:
    return datetime.combine(day, time(0), time_zone(zone)).timestamp()


@dataclass(frozen=True, slots=True)
class Record:
    """One source record, normalised. ``kind``: order status, payment status or ledger kind."""

    source: int
    ts: float
    id: str
    amount: int
    currency: str
    kind: str
    store: str = ""
    test: bool = False

    def content(self) -> tuple:
        """What must agree for a repeat of the same id to be the same record (not the timestamp:
        a producer retry may restamp it)."""
        return (self.amount, self.currency, self.kind, self.store)


@dataclass(slots=True)
class Finding:
    """What is wrong with an order at one moment, with the amounts seen per source."""

    amount: int
    order: int | None = None
    payments: int | None = None
    payments_refund: int | None = None
    ledger: int | None = None
    ledger_refund: int | None = None
    variance: int | None = None
    currency: str = ""
    detail: str = ""


@dataclass(slots=True)
class ExceptionRecord:
    """The published life of one (order, category): opened at ``first_seen``, maybe resolved."""

    category: str
    first_seen: float
    last_seen: float
    open: bool
    resolved_at: float | None
    finding: Finding
    peak: int = 0
    alerted: bool = False

    def to_list(self) -> list:
        f = self.finding
        return [self.category, self.first_seen, self.last_seen, int(self.open), self.resolved_at,
                f.amount, f.order, f.payments, f.payments_refund, f.ledger, f.ledger_refund, f.variance,
                f.currency, f.detail, self.peak, int(self.alerted)]

    @classmethod
    def from_list(cls, s: list) -> ExceptionRecord:
        (cat, first, last, is_open, resolved, amount, order, pay, pref, led, lref, var, cur, detail,
         peak, alerted) = s
        return cls(cat, float(first), float(last), bool(is_open), None if resolved is None else float(resolved),
                   Finding(amount, order, pay, pref, led, lref, var, cur, detail), int(peak), bool(alerted))

    def same(self, other: ExceptionRecord) -> bool:
        return self.to_list() == other.to_list()


@dataclass(slots=True)
class Change:
    """A record that changed (to upsert) and the alert transitions it causes."""

    record: ExceptionRecord
    fire: bool = False
    resolve: bool = False


@dataclass(slots=True)
class Step:
    """What one call to :meth:`OrderRecon.update` produced."""

    changes: list[Change] = field(default_factory=list)
    order_row: dict[str, Any] | None = None
    state_changed: bool = False


def _scale(amount: int, exponent: int) -> int:
    if exponent >= 0:
        return amount * 10**exponent
    q, r = divmod(amount, 10**-exponent)
    return q + (1 if 2 * r >= 10**-exponent else 0)  # round half up, integer arithmetic


class OrderRecon:
    """Everything known about one order, and its reconciliation as a function of the horizon."""

    __slots__ = ("_loc", "_outcome", "_split", "contributed", "exceptions", "horizon", "order_id", "place", "records",
                 "row_sig", "tests")

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        self.records: list[Record] = []  # distinct real versions (same id + different content = duplicate)
        self.tests: list[Record] = []  # excluded test records, one per (source, id)
        self.exceptions: dict[str, ExceptionRecord] = {}  # as published
        self.horizon = -math.inf  # the highest horizon this order was evaluated at
        self.row_sig = ""  # signature of the last published order row
        self.place = ""  # "store|business day" the published exception rows carry
        self.contributed = False  # its share of its day was sent to the daily close (once, at the close)
        self._split: tuple[list[Record], list[Record]] | None = None  # cache of _canonical()
        self._outcome: str | None = None  # cache of the last order_row()'s outcome
        self._loc: tuple[str, date] | None = None  # cache of location()

    # -- input -----------------------------------------------------------------------
    def add(self, rec: Record, cfg: ReconConfig) -> bool:
        """Take one record; returns whether state changed (an exact repeat changes nothing)."""
        rec = Record(rec.source, float(rec.ts), rec.id, _scale(rec.amount, cfg.scale_exponents[rec.source]),
                     rec.currency, rec.kind, rec.store, rec.test or rec.currency in cfg.test_currencies)
        pool = self.tests if rec.test else self.records
        self._split = self._outcome = self._loc = None
        for i, old in enumerate(pool):
            if old.source == rec.source and old.id == rec.id:
                if rec.test or old.content() == rec.content():
                    if rec.ts < old.ts:  # the same record seen earlier elsewhere: keep the earliest
                        pool[i] = rec
                        return True
                    return False
        if rec.test:
            self.tests.append(rec)
        else:
            self.records.append(rec)
        return True

    # -- evaluation --------------------------------------------------------------------
    def _canonical(self) -> tuple[list[Record], list[Record]]:
        """Per (source, id): the earliest version is the record; later different ones are duplicates."""
        if self._split is None:
            self._split = self._compute_canonical()
        return self._split

    def _compute_canonical(self) -> tuple[list[Record], list[Record]]:
        best: dict[tuple[int, str], Record] = {}
        for rec in sorted(self.records, key=lambda r: (r.ts, r.content())):
            best.setdefault((rec.source, rec.id), rec)
        canon = set(map(id, best.values()))
        dups = [r for r in self.records if id(r) not in canon]
        return list(best.values()), dups

    def deadlines(self, cfg: ReconConfig) -> list[float]:
        """The times at which a finding can change without a new record (the order deadline only
        matters while no order had arrived by then: it only decides orphans)."""
        canon, _ = self._canonical()
        if not canon:
            return []
        first = min(r.ts for r in canon)
        out = [first + cfg.payment_window_seconds, first + cfg.ledger_window_seconds]
        order_due = first + cfg.order_window_seconds
        if not any(r.source == ORDERS and r.ts <= order_due for r in canon):
            out.append(order_due)
        refund = _first_refund(canon)
        if refund is not None:
            out += [refund + cfg.payment_window_seconds, refund + cfg.ledger_window_seconds]
        return out

    def timepoints(self, cfg: ReconConfig) -> list[float]:
        return sorted({r.ts for r in self.records} | set(self.deadlines(cfg)))

    def findings(self, t: float, cfg: ReconConfig,
                 split: tuple[list[Record], list[Record]] | None = None) -> dict[str, Finding]:
        """What is wrong as of event time ``t``, from the records with ``ts <= t``."""
        canon, dups = split or self._canonical()
        seen = [r for r in canon if r.ts <= t]
        out: dict[str, Finding] = {}
        if not seen:
            return out
        first = min(r.ts for r in seen)
        orders = [r for r in seen if r.source == ORDERS]
        pays = [r for r in seen if r.source == PAYMENTS]
        leds = [r for r in seen if r.source == LEDGER]
        late_dups = [r for r in dups if r.ts <= t]
        if late_dups:
            d = min(late_dups, key=lambda r: (r.ts, r.source, r.id, r.content()))
            out[DUPLICATE] = Finding(abs(d.amount), currency=d.currency,
                                     detail=f"{SOURCES[d.source]} {d.id} seen again with different content")
        if not orders:
            if t >= first + cfg.order_window_seconds:
                if pays:
                    amount = sum(r.amount for r in pays if r.kind == "captured")
                    out[ORPHAN_PAYMENT] = Finding(amount, payments=amount, currency=pays[0].currency,
                                                  detail=f"{len(pays)} payment(s), no order")
                if leds:
                    amount = sum(r.amount for r in leds if r.kind == "revenue")
                    out[ORPHAN_LEDGER] = Finding(amount, ledger=amount, currency=leds[0].currency,
                                                 detail=f"{len(leds)} ledger entr(ies), no order")
            return out
        order = max(orders, key=lambda r: (r.ts, r.id))
        total, cur, status = order.amount, order.currency, order.kind
        tol = cfg.tolerance(total)
        p_same = [r for r in pays if r.currency == cur]
        l_same = [r for r in leds if r.currency == cur]
        cap = sum(r.amount for r in p_same if r.kind == "captured")
        pref = sum(r.amount for r in p_same if r.kind == "refunded")
        rev = sum(r.amount for r in l_same if r.kind == "revenue")
        lref = sum(r.amount for r in l_same if r.kind == "refund")

        def finding(amount: int, variance: int | None = None, currency: str = cur, detail: str = "") -> Finding:
            return Finding(abs(amount), total, cap if pays else None, pref if pays else None,
                           rev if leds else None, lref if leds else None, variance, currency, detail)

        pay_due = t >= first + cfg.payment_window_seconds
        led_due = t >= first + cfg.ledger_window_seconds
        other = sorted({r.currency for r in pays + leds if r.currency != cur})
        if other and ((pay_due and any(r.currency != cur for r in pays))
                      or (led_due and any(r.currency != cur for r in leds))):
            out[CURRENCY_MISMATCH] = finding(total, detail=f"order in {cur}, other source(s) in {', '.join(other)}")
        if status in ("paid", "refunded"):
            if pay_due:
                if not any(r.kind == "captured" for r in pays):
                    out[MISSING_PAYMENT] = finding(total, detail="no captured payment")
                elif len(p_same) == len(pays):
                    _compare(out, cap, total, tol, "payments", finding, PARTIAL_PAYMENT, OVERPAYMENT)
            if led_due:
                if not any(r.kind == "revenue" for r in leds):
                    out[MISSING_LEDGER] = finding(total, detail="no revenue entry")
                elif len(l_same) == len(leds):
                    _compare(out, rev, total, tol, "ledger", finding, AMOUNT_MISMATCH, AMOUNT_MISMATCH)
        refund = _first_refund(seen)
        if status == "cancelled":
            charged, booked = cap - pref, rev - lref
            why = []
            if pay_due and charged > tol:
                why.append(f"charged {charged}")
            if led_due and booked > tol:
                why.append(f"booked {booked} as revenue")
            if why:
                out[STATUS_MISMATCH] = finding(max(charged, booked), detail="cancelled order " + " and ".join(why))
        elif refund is not None:
            pay_ref = any(r.kind == "refunded" for r in pays)
            led_ref = any(r.kind == "refund" for r in leds)
            ref_pay_due = t >= refund + cfg.payment_window_seconds
            ref_led_due = t >= refund + cfg.ledger_window_seconds
            if status == "refunded" and ref_pay_due and cap > 0 and not pay_ref:
                out[STATUS_MISMATCH] = finding(cap, detail="refunded order, captured payment not refunded")
            elif status == "paid" and pay_ref and led_ref and ref_pay_due:
                out[STATUS_MISMATCH] = finding(pref, detail="payment and ledger refunded, order still paid")
            elif pay_ref and not led_ref and ref_led_due:
                out[REFUND_UNMATCHED] = finding(pref, detail="payment refund without ledger refund")
            elif led_ref and not pay_ref and status == "paid" and ref_pay_due:
                out[REFUND_UNMATCHED] = finding(lref, detail="ledger refund without payment refund")
        return out

    def history(self, horizon: float, cfg: ReconConfig) -> dict[str, ExceptionRecord]:
        """The exception records implied by the records, swept up to ``horizon`` (pure)."""
        out: dict[str, ExceptionRecord] = {}
        split = self._canonical()
        for t in self.timepoints(cfg):
            if t >= horizon:  # the horizon is exclusive: a record stamped exactly at it may still come
                break
            now = self.findings(t, cfg, split)
            for cat, f in now.items():
                rec = out.get(cat)
                if rec is None:
                    out[cat] = ExceptionRecord(cat, t, t, True, None, f, f.amount)
                    continue
                if not rec.open:
                    rec.open, rec.last_seen, rec.resolved_at = True, t, None
                rec.finding = f
                rec.peak = max(rec.peak, f.amount)
            for cat, rec in out.items():
                if rec.open and cat not in now:
                    rec.open, rec.last_seen, rec.resolved_at = False, t, t
                    rec.finding = self._amounts_at(t, split, rec.finding)
        return out

    def _amounts_at(self, t: float, split: tuple[list[Record], list[Record]], f: Finding) -> Finding:
        """The finding with the amounts each source shows at ``t`` (what resolved it)."""
        seen = [r for r in split[0] if r.ts <= t]
        orders = [r for r in seen if r.source == ORDERS]
        order = max(orders, key=lambda r: (r.ts, r.id)) if orders else None
        cur = order.currency if order else f.currency
        pays = [r for r in seen if r.source == PAYMENTS and r.currency == cur]
        leds = [r for r in seen if r.source == LEDGER and r.currency == cur]

        def total(rs: list[Record], kind: str) -> int | None:
            return sum(r.amount for r in rs if r.kind == kind) if rs else None

        return Finding(f.amount, order.amount if order else None, total(pays, "captured"), total(pays, "refunded"),
                       total(leds, "revenue"), total(leds, "refund"), f.variance, f.currency, f.detail)

    def update(self, horizon: float, cfg: ReconConfig, arrival_ts: float | None = None) -> Step:
        """Re-evaluate at ``horizon`` (never below one already used); publishable changes."""
        step = Step()
        if horizon > self.horizon:
            self.horizon = horizon
            step.state_changed = True
        store, day = self.location(cfg)
        place = f"{store}|{day}"
        moved = place != self.place  # the order arrived after its payment: every row moves with it
        if moved:
            self.place = place
            step.state_changed = True
        fresh = self.history(self.horizon, cfg)
        if self.tests:
            fresh[EXCLUDED_TEST_DATA] = self._test_record()
        for cat in sorted(set(fresh) | set(self.exceptions), key=CATEGORIES.index):
            old = self.exceptions.get(cat)
            new = fresh.get(cat)
            if new is None:
                assert old is not None
                if not old.open:
                    if moved:
                        step.changes.append(Change(old))
                    continue
                # published open, but the records now say it never was: data later than the clocks
                # promised. What was published stands; the late arrival resolves it.
                at = max(old.first_seen, arrival_ts if arrival_ts is not None else self.horizon)
                new = ExceptionRecord(cat, old.first_seen, at, False, at, old.finding, old.peak, old.alerted)
            elif old is not None:
                new.first_seen = min(new.first_seen, old.first_seen)
                new.peak = max(new.peak, old.peak)
                new.alerted = old.alerted
            change = Change(new)
            if (not new.alerted and cat in cfg.alert_categories and cfg.alert_min_amount_minor >= 0
                    and new.peak >= cfg.alert_min_amount_minor):
                new.alerted = change.fire = True
            if new.alerted and not new.open and (old is None or old.open or change.fire):
                change.resolve = True
            if old is None or not old.same(new) or moved:
                self.exceptions[cat] = new
                step.changes.append(change)
                step.state_changed = True
        row = self.order_row(cfg)
        sig = _signature(row)
        if row["outcome"] != PENDING or self.row_sig:
            if sig != self.row_sig:
                self.row_sig = sig
                step.order_row = row
                step.state_changed = True
        return step

    # -- outcome -----------------------------------------------------------------------
    def order_row(self, cfg: ReconConfig) -> dict[str, Any]:
        """The order's outcome and amounts (the ``recon_orders`` row), from everything received."""
        canon, _ = self._canonical()
        open_cats = [c for c, e in self.exceptions.items() if e.open and c != EXCLUDED_TEST_DATA]
        j = _judge(canon, bool(open_cats), self.tests[0].currency if self.tests else "", cfg)
        store, day = self.location(cfg)
        all_ts = [r.ts for r in canon] or [r.ts for r in self.tests]
        test_minor = sum(r.amount for r in self.tests)
        self._outcome = j.outcome
        return {
            "order_id": self.order_id,
            "store_id": store,
            "business_day": day,
            "currency": j.currency,
            "outcome": j.outcome,
            "order_status": j.order.kind if j.order else None,
            "order_minor": j.order.amount if j.order else None,
            "payments_minor": j.payments,
            "payments_refund_minor": j.payments_refund,
            "ledger_minor": j.ledger,
            "ledger_refund_minor": j.ledger_refund,
            "payment_variance_minor": j.payment_variance,
            "ledger_variance_minor": j.ledger_variance,
            "open_categories": ",".join(sorted(open_cats, key=CATEGORIES.index)) or None,
            "test_events": len(self.tests),
            "test_minor": test_minor,
            "first_seen": min(all_ts),
            "last_event": max(all_ts),
        }

    def contribution(self, t: float, cfg: ReconConfig) -> Contribution | None:
        """The order's share of its store's day *as of event time* ``t`` (the day's close).

        Pure in the records with ``ts <= t``: whatever arrived later, and however the topics
        interleaved, the same records give the same share, so the daily SPC of a replay and of a
        worker with many partitions agree. None for an order with only test records by then.
        """
        canon, dups = self._canonical()
        seen = [r for r in canon if r.ts <= t]
        if not seen:
            return None
        found = self.findings(t, cfg, (canon, dups))
        j = _judge(seen, bool(found), "", cfg)
        decided = j.outcome in (MATCHED, MATCHED_WITHIN_TOLERANCE, EXCEPTION)
        matched = j.outcome in (MATCHED, MATCHED_WITHIN_TOLERANCE)
        unmatched = 0
        if j.outcome == EXCEPTION:  # as recon_daily.unmatched_minor: the order total, else what a source saw
            unmatched = next((x for x in (j.order.amount if j.order else None, j.payments, j.ledger)
                              if x is not None), 0)
        exceptions = tuple((c, abs(f.amount)) for c, f in sorted(found.items()) if c != EXCLUDED_TEST_DATA) \
            if j.outcome == EXCEPTION else ()
        return Contribution(j.currency, decided, matched, unmatched, exceptions)

    def close_due(self, cfg: ReconConfig) -> float:
        """When the order's business day closes, while its share of that day is still to be sent
        (never for orphans, whose store is unknown, nor for test-only orders)."""
        if self.contributed or not self._canonical()[0]:
            return math.inf
        store, day = self.location(cfg)
        if store == UNKNOWN_STORE:
            return math.inf
        return cfg.close_ts(cfg.zone_of(store), day)

    def location(self, cfg: ReconConfig) -> tuple[str, date]:
        """Store and business day: the first order event's, else the first event's with store UNKNOWN."""
        if self._loc is None:
            self._loc = self._compute_location(cfg)
        return self._loc

    def _compute_location(self, cfg: ReconConfig) -> tuple[str, date]:
        canon, _ = self._canonical()
        orders = [r for r in canon if r.source == ORDERS]
        if orders:
            anchor = min(orders, key=lambda r: (r.ts, r.id))
            store, ts = anchor.store or UNKNOWN_STORE, anchor.ts
        elif canon:
            store, ts = UNKNOWN_STORE, min(r.ts for r in canon)
        else:
            store = next((r.store for r in self.tests if r.store), UNKNOWN_STORE)
            ts = min(r.ts for r in self.tests)
        return store, cfg.business_day(store, ts)

    def _test_record(self) -> ExceptionRecord:
        first = min(r.ts for r in self.tests)
        last = max(r.ts for r in self.tests)
        by = [sum(r.amount for r in self.tests if r.source == s) if any(r.source == s for r in self.tests) else None
              for s in (ORDERS, PAYMENTS, LEDGER)]
        currencies = sorted({r.currency for r in self.tests})
        f = Finding(sum(r.amount for r in self.tests), by[0], by[1], None, by[2], None, None,
                    ",".join(currencies), f"{len(self.tests)} test record(s) excluded from matching")
        return ExceptionRecord(EXCLUDED_TEST_DATA, first, last, False, first, f, f.amount)

    # -- time --------------------------------------------------------------------------------
    def next_due(self, cfg: ReconConfig) -> float:
        """The earliest horizon at which this order needs looking at again (evaluation or expiry).

        A matched order whose records are all swept has nothing left to decide until a new
        record arrives (which re-evaluates it anyway): only its expiry and its day's close are due.
        """
        if self._outcome is None:
            self.order_row(cfg)
        close = self.close_due(cfg)
        if self._outcome in (MATCHED, MATCHED_WITHIN_TOLERANCE) and all(r.ts < self.horizon for r in self.records):
            return min(self.expires_at(cfg), close)
        later = [t for t in self.timepoints(cfg) if t >= self.horizon]
        due = min(later) if later else math.inf
        return min(due, self.expires_at(cfg), close)

    def expires_at(self, cfg: ReconConfig) -> float:
        every = self.records + self.tests
        if not every:
            return -math.inf
        last = max([r.ts for r in every] + self.deadlines(cfg))
        keep = cfg.open_retention_seconds if any(e.open for e in self.exceptions.values()) else cfg.retention_seconds
        close = self.close_due(cfg)  # never before its share of its day went to the daily close
        return last + keep if close == math.inf else max(last + keep, math.nextafter(close, math.inf))

    # -- state -------------------------------------------------------------------------------
    def to_state(self, cfg: ReconConfig) -> dict[str, Any]:
        """JSON-able state; ``n`` (next due horizon) lets a timer skip orders without decoding them."""
        return {
            "n": self.next_due(cfg),
            "v": STATE_VERSION,
            "r": [[r.source, r.ts, r.id, r.amount, r.currency, r.kind, r.store] for r in self.records],
            "t": [[r.source, r.ts, r.id, r.amount, r.currency, r.kind, r.store] for r in self.tests],
            "x": [e.to_list() for e in self.exceptions.values()],
            "h": None if self.horizon == -math.inf else self.horizon,
            "s": self.row_sig,
            "w": self.place,
            "c": int(self.contributed),
        }

    @classmethod
    def from_state(cls, order_id: str, state: dict[str, Any]) -> OrderRecon:
        if state.get("v") != STATE_VERSION:
            raise ValueError(f"unsupported recon state version {state.get('v')!r}")
        o = cls(order_id)
        o.records = [Record(int(s), float(ts), i, int(a), c, k, st) for s, ts, i, a, c, k, st in state["r"]]
        o.tests = [Record(int(s), float(ts), i, int(a), c, k, st, True) for s, ts, i, a, c, k, st in state["t"]]
        o.exceptions = {e[0]: ExceptionRecord.from_list(e) for e in state["x"]}
        o.horizon = -math.inf if state["h"] is None else float(state["h"])
        o.row_sig = state["s"]
        o.place = state["w"]
        o.contributed = bool(state.get("c", 0))
        return o


@dataclass(slots=True)
class _Judged:
    outcome: str
    order: Record | None
    currency: str
    payments: int | None
    payments_refund: int | None
    ledger: int | None
    ledger_refund: int | None
    payment_variance: int | None = None
    ledger_variance: int | None = None


def _judge(canon: list[Record], has_open: bool, test_currency: str, cfg: ReconConfig) -> _Judged:
    """An order's outcome from its canonical records and whether an exception is open."""
    orders = [r for r in canon if r.source == ORDERS]
    order = max(orders, key=lambda r: (r.ts, r.id)) if orders else None
    pays = [r for r in canon if r.source == PAYMENTS]
    leds = [r for r in canon if r.source == LEDGER]
    cur = order.currency if order else (canon[0].currency if canon else test_currency)
    cap = sum(r.amount for r in pays if r.kind == "captured" and r.currency == cur)
    pref = sum(r.amount for r in pays if r.kind == "refunded" and r.currency == cur)
    rev = sum(r.amount for r in leds if r.kind == "revenue" and r.currency == cur)
    lref = sum(r.amount for r in leds if r.kind == "refund" and r.currency == cur)
    j = _Judged(PENDING, order, cur, cap if pays else None, pref if pays else None, rev if leds else None,
                lref if leds else None)
    if not canon:
        j.outcome = EXCLUDED
    elif has_open:
        j.outcome = EXCEPTION
    elif order is not None:
        total, tol = order.amount, cfg.tolerance(order.amount)
        same = all(r.currency == cur for r in pays + leds)
        if order.kind == "cancelled":
            if same and cap - pref <= tol and rev - lref <= tol:
                j.outcome = MATCHED
        elif same and any(r.kind == "captured" for r in pays) and any(r.kind == "revenue" for r in leds):
            pay_var, led_var = cap - total, rev - total
            j.payment_variance, j.ledger_variance = pay_var, led_var
            pay_ref = any(r.kind == "refunded" for r in pays)
            led_ref = any(r.kind == "refund" for r in leds)
            refunds_agree = pay_ref == led_ref == (order.kind == "refunded")
            if abs(pay_var) <= tol and abs(led_var) <= tol and refunds_agree:
                j.outcome = MATCHED_WITHIN_TOLERANCE if (pay_var or led_var) else MATCHED
    return j


def _first_refund(records: list[Record]) -> float | None:
    times = [r.ts for r in records if (r.source == ORDERS and r.kind == "refunded")
             or (r.source == PAYMENTS and r.kind == "refunded") or (r.source == LEDGER and r.kind == "refund")]
    return min(times) if times else None


def _compare(out: dict[str, Finding], seen: int, total: int, tol: int, what: str, finding: Any,
             below: str, above: str) -> None:
    """Amount of one source against the order total: tolerance, cents/dollars, short, long."""
    diff = seen - total
    if abs(diff) <= tol:
        return
    if total and (abs(seen - 100 * total) <= 100 * tol or abs(100 * seen - total) <= 100 * tol):
        ratio = "x100" if abs(seen) > abs(total) else "/100"
        out[UNIT_SCALE_MISMATCH] = finding(total, diff, detail=f"{what} {seen} is the order total {total} {ratio}")
        return
    category = below if diff < 0 else above
    out[category] = finding(diff, diff, detail=f"{what} {seen} vs order total {total}")


def _signature(row: dict[str, Any]) -> str:
    return hashlib.blake2b(repr(tuple(row.values())).encode(), digest_size=8).hexdigest()


def ts_datetime(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


# --------------------------------------------------------------------------- daily close and SPC
#
# The daily match rate and unmatched amount of a store need every order of its day, but orders
# are spread over every partition by order id. So the day is closed in stages (agents/recon.py
# wires them): each order partition, once its horizon passes a day's close, sends one *summary*
# of its orders of that day (absolute sums per store and currency, each order's share taken as
# of the close) to one place, the :class:`CloseBook`; that closes the day once every partition
# has reported past it, and hands each store's day to the store's :class:`DailySeries` (its
# detectors) and the chain's day to its own.

DAILY_METRICS = ("match_rate", "unmatched_minor")
CHAIN = "ALL"
CLOSE_STATE_VERSION = 1
DaySums = dict[str, list[int]]
"""A store's (or the chain's) day: currency -> [matched orders, decided orders, unmatched_minor], and
``"!" + category`` -> [orders with that exception as of the close, their amount_minor, 0]."""
CATEGORY_KEY = "!"


@dataclass(frozen=True, slots=True)
class Contribution:
    """One order's share of its store's day, as of the day's close."""

    currency: str
    decided: bool  # matched, matched within tolerance, or exception (pending and excluded are not)
    matched: bool
    unmatched_minor: int  # the order's amount when it is an exception
    exceptions: tuple[tuple[str, int], ...] = ()  # (category, amount_minor) open as of the close

    def add_to(self, sums: DaySums) -> None:
        acc = sums.setdefault(self.currency, [0, 0, 0])
        acc[0] += self.matched
        acc[1] += self.decided
        acc[2] += self.unmatched_minor
        for category, amount in self.exceptions:
            cat = sums.setdefault(CATEGORY_KEY + category, [0, 0, 0])
            cat[0] += 1
            cat[1] += amount


@dataclass(frozen=True, slots=True)
class CategoryEvent:
    """A store-day category episode starting (``firing``) or ending (``resolved``)."""

    kind: str
    category: str
    start_day: str
    start_ts: float
    day: str
    count: int
    rate: float
    amount_minor: int


class CategoryAlerts:
    """Per store: which exception categories are over their store-day thresholds (count, rate,
    optional amount; :class:`ReconConfig`). One episode per (store, category) while consecutive
    business days stay over; days come in order and a day judged already is ignored."""

    __slots__ = ("last", "open")

    def __init__(self) -> None:
        self.last = ""
        self.open: dict[str, list] = {}  # category -> [start day, start ts]

    def judge(self, day: str, sums: DaySums, close_ts: float, cfg: ReconConfig) -> list[CategoryEvent]:
        if day <= self.last:
            return []
        self.last = day
        decided = sum(v[1] for k, v in sums.items() if not k.startswith(CATEGORY_KEY))
        events = []
        over: dict[str, tuple[int, float, int]] = {}
        for key, (count, amount, _) in sorted(sums.items()):
            if not key.startswith(CATEGORY_KEY):
                continue
            category = key[len(CATEGORY_KEY):]
            rate = count / decided if decided else 1.0
            if (category in cfg.alert_categories and count >= cfg.alert_min_count and rate >= cfg.alert_min_rate
                    and amount >= cfg.alert_min_day_amount_minor):
                over[category] = (count, rate, amount)
        for category in sorted(set(over) | set(self.open)):
            count, rate, amount = over.get(category, (0, 0.0, 0))
            if category in self.open and category not in over:
                start_day, start_ts = self.open.pop(category)
                ex = sums.get(CATEGORY_KEY + category, [0, 0, 0])
                events.append(CategoryEvent("resolved", category, start_day, start_ts, day, ex[0],
                                            ex[0] / decided if decided else 0.0, ex[1]))
            elif category not in self.open:
                self.open[category] = [day, close_ts]
                events.append(CategoryEvent("firing", category, day, close_ts, day, count, rate, amount))
        return events

    def to_state(self) -> dict[str, Any]:
        return {"l": self.last, "o": self.open}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CategoryAlerts:
        c = cls()
        c.last, c.open = state["l"], state["o"]
        return c


def daily_detector_config(metric: str) -> DetectorConfig:
    """WE1-WE4 on a 28-day daily baseline (the store preset), with a minimum effect so that a
    perfectly steady series (match rate 1.0 every day) does not alarm on noise-sized changes:
    1 point of match rate, or half the usual unmatched amount (at least 10.00)."""
    if metric == "match_rate":
        return DetectorConfig.store(min_effect_abs=0.01, extra={"preset": "recon_match_rate"})
    return DetectorConfig.store(min_effect_abs=1000.0, min_effect_rel=0.5, sigma_floor_rel=0.05,
                                extra={"preset": "recon_unmatched"})


def _day_ts(day: str) -> float:
    """A day's point on the chart: its UTC midnight (the same for every zone, so ids are stable)."""
    d = date.fromisoformat(day)
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


class DailySeries:
    """The daily charts of one store (or of the chain, ``ALL``): WE1-WE4 on the match rate and the
    unmatched amount, per currency. Days must come in order; a day already judged is ignored
    (a re-sent day after a restart), so judging is idempotent. State: one detector per chart."""

    __slots__ = ("dets", "entity", "last")

    def __init__(self, entity: str) -> None:
        self.entity = entity
        self.last: dict[str, str] = {}  # currency -> newest day judged
        self.dets: dict[str, dict[str, dict]] = {}  # currency -> metric -> detector state

    def judge(self, day: str, sums: DaySums) -> tuple[list[tuple[str, str, EpisodeEvent]], int]:
        """One closed day; returns ``(currency, metric, episode event)`` and how many currencies
        were ignored because that day was judged already."""
        events: list[tuple[str, str, EpisodeEvent]] = []
        repeated = 0
        for cur in sorted(k for k in sums if not k.startswith(CATEGORY_KEY)):
            if day <= self.last.get(cur, ""):
                repeated += 1
                continue
            self.last[cur] = day
            matched, decided, unmatched = sums[cur]
            states = self.dets.setdefault(cur, {})
            for metric in DAILY_METRICS:
                cfg = daily_detector_config(metric)
                key = f"recon|{self.entity}|{cur}|{metric}"
                det = SeriesDetector.from_state(states[metric], cfg, key) if metric in states \
                    else SeriesDetector(key, cfg)
                value = (matched / decided if decided else math.nan) if metric == "match_rate" else float(unmatched)
                for verdict in det.update(_day_ts(day), value):
                    if verdict.event is not None:
                        events.append((cur, metric, verdict.event))
                states[metric] = det.to_state()
        return events, repeated

    def to_state(self) -> dict[str, Any]:
        return {"v": CLOSE_STATE_VERSION, "e": self.entity, "l": self.last, "d": self.dets}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DailySeries:
        if state.get("v") != CLOSE_STATE_VERSION:
            raise ValueError(f"unsupported recon daily state version {state.get('v')!r}")
        s = cls(state["e"])
        s.last, s.dets = state["l"], state["d"]
        return s


@dataclass(slots=True)
class CloseOut:
    """What one summary closed: each store's day ``(store, day, sums, close ts)`` for its
    :class:`DailySeries`, the chain's episode events ``(currency, metric, event, close ts)``,
    and how many summaries were ignored (see :meth:`CloseBook.apply`)."""

    days: list[tuple[str, str, DaySums, float]] = field(default_factory=list)
    chain: list[tuple[str, str, EpisodeEvent, float]] = field(default_factory=list)
    ignored: list[tuple[str, str, str]] = field(default_factory=list)  # (zone, day, source)


class CloseBook:
    """The daily close of the whole chain (one key): collects the partitions' day summaries and
    closes a (zone, day) once every one of ``sources`` partitions has reported that day or a
    later one (a partition reports in day order, and its summary of a day holds all its orders
    of that day). Like the horizon, which waits for every source, the close waits for every
    partition: while a worker catches up a backlog one partition can be days ahead of another.
    Opt-in, ``wait_seconds`` > 0 closes a day anyway once some partition is that far past its
    close (for a deployment that knowingly has partitions without data).

    Bounded: only days not closed yet keep per-store sums; a closed day keeps its date only.
    Summaries are absolute per (partition, zone, day): the first counts, a repeat (re-sent after
    a restart) or a later one for a closed day (orders that reached their partition after it had
    closed the day) is ignored and reported in :attr:`CloseOut.ignored`.
    """

    __slots__ = ("chain", "done", "hi", "open", "series")

    def __init__(self) -> None:
        self.hi: dict[str, dict[str, list]] = {}  # zone -> source -> [newest day reported, newest horizon]
        self.done: dict[str, str] = {}  # zone -> newest day closed
        self.open: dict[str, dict[str, dict[str, Any]]] = {}  # zone -> day -> {"src": [...], "s": {store: sums}}
        self.chain: dict[str, DaySums] = {}  # closed in some zones, not yet in all
        self.series = DailySeries(CHAIN)

    def apply(self, msg: dict[str, Any], cfg: ReconConfig, sources: int, wait_seconds: float) -> CloseOut:
        """One partition's summary ``{"src", "zone", "day", "h", "s": {store: sums}}``."""
        out = CloseOut()
        zone, day, src, h = msg["zone"], msg["day"], str(msg["src"]), float(msg["h"])
        entry = None if day <= self.done.get(zone, "") else self.open.setdefault(zone, {}).setdefault(
            day, {"src": [], "s": {}})
        if entry is None or src in entry["src"]:
            if msg["s"]:
                out.ignored.append((zone, day, src))
        else:
            entry["src"].append(src)
            for store, sums in msg["s"].items():
                acc = entry["s"].setdefault(store, {})
                for cur, values in sums.items():
                    tot = acc.setdefault(cur, [0, 0, 0])
                    for i in range(3):
                        tot[i] += values[i]
        seen = self.hi.setdefault(zone, {})
        old = seen.get(src)
        seen[src] = [max(old[0], day), max(old[1], h)] if old else [day, h]
        self._close(zone, cfg, sources, wait_seconds, out)
        return out

    def _close(self, zone: str, cfg: ReconConfig, sources: int, wait_seconds: float, out: CloseOut) -> None:
        seen = self.hi.get(zone, {})
        through = min(d for d, _ in seen.values()) if len(seen) >= sources else ""
        newest = max((h for _, h in seen.values()), default=-math.inf)
        days = self.open.get(zone, {})
        for day in sorted(days):
            close = cfg.close_ts(zone, date.fromisoformat(day))
            if not (day <= through or (wait_seconds > 0 and newest >= close + wait_seconds)):
                break
            entry = days.pop(day)
            self.done[zone] = max(self.done.get(zone, ""), day)
            for store, sums in sorted(entry["s"].items()):
                out.days.append((store, day, sums, close))
                chain = self.chain.setdefault(day, {})
                for cur, values in sums.items():
                    tot = chain.setdefault(cur, [0, 0, 0])
                    for i in range(3):
                        tot[i] += values[i]
        # the chain's day is complete once every zone has closed it
        zones = cfg.zones()
        for day in sorted(self.chain):
            if any(self.done.get(z, "") < day for z in zones):
                break
            close = max(cfg.close_ts(z, date.fromisoformat(day)) for z in zones)
            events, _ = self.series.judge(day, self.chain.pop(day))
            out.chain.extend((cur, metric, e, close) for cur, metric, e in events)

    def to_state(self) -> dict[str, Any]:
        return {"v": CLOSE_STATE_VERSION, "hi": self.hi, "done": self.done, "open": self.open,
                "chain": self.chain, "spc": self.series.to_state()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CloseBook:
        if state.get("v") != CLOSE_STATE_VERSION:
            raise ValueError(f"unsupported recon close state version {state.get('v')!r}")
        b = cls()
        b.hi, b.done, b.open, b.chain = state["hi"], state["done"], state["open"], state["chain"]
        b.series = DailySeries.from_state(state["spc"])
        return b
