"""Business days: local dates in a store's time zone, closing at the next local midnight plus a grace.

One calendar for the use cases that judge whole days of stores (store, menu, reconciliation): a
day is its ISO date (``"YYYY-MM-DD"``) in the store's zone (a default and per-store overrides),
it starts at local midnight (DST days have 23 or 25 hours) and *closes* ``grace_seconds`` after
the next local midnight, so late events of the day (refunds, a ledger entry) are still its own.
Event time only: nothing here reads the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

_CACHE_MAX = 100_000  # (store, day) entries: the day timers ask for the same few days all the time


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` of an IANA name; ``ValueError`` naming it when unknown."""
    try:
        return ZoneInfo(name)
    except Exception:
        raise ValueError(f"unknown time zone {name!r}") from None


def next_day(day: str, n: int = 1) -> str:
    """The ISO day ``n`` days after ``day`` (before it for negative ``n``)."""
    return (date.fromisoformat(day) + timedelta(days=n)).isoformat()


class BusinessCalendar:
    """Local business days of stores: their zones, the start and the close of each day."""

    def __init__(self, timezone: str, store_timezones: Iterable[tuple[str, str]] = (),
                 grace_seconds: float = 0.0) -> None:
        self.grace_seconds = grace_seconds
        self._default = zone(timezone)
        self._tz = {store: zone(name) for store, name in store_timezones}
        self._starts: dict[tuple[str, str], float] = {}
        self._closes: dict[tuple[str, str], float] = {}

    def tz(self, store: str) -> ZoneInfo:
        return self._tz.get(store, self._default)

    def local_day(self, store: str, ts: float) -> str:
        return datetime.fromtimestamp(ts, self.tz(store)).date().isoformat()

    def day_start(self, store: str, day: str) -> float:
        """Local midnight at the start of ``day`` (cached)."""
        key = (store, day)
        ts = self._starts.get(key)
        if ts is None:
            if len(self._starts) > _CACHE_MAX:
                self._starts.clear()
            ts = self._starts[key] = datetime.combine(date.fromisoformat(day), time(), self.tz(store)).timestamp()
        return ts

    def close_ts(self, store: str, day: str) -> float:
        """When ``day`` closes: the next local midnight plus the grace period (cached: timers ask often)."""
        key = (store, day)
        ts = self._closes.get(key)
        if ts is None:
            if len(self._closes) > _CACHE_MAX:
                self._closes.clear()
            ts = self._closes[key] = self.day_start(store, next_day(day)) + self.grace_seconds
        return ts
