"""The one business-day calendar (models/calendar.py)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from models.calendar import BusinessCalendar, next_day, zone

NY = ZoneInfo("America/New_York")


def test_a_store_day_is_its_local_date_and_closes_after_the_grace() -> None:
    cal = BusinessCalendar("America/New_York", [("TOKYO1", "Asia/Tokyo")], grace_seconds=3600)
    ts = datetime(2026, 2, 17, 23, 30, tzinfo=NY).timestamp()
    assert cal.local_day("US00001", ts) == "2026-02-17"
    assert cal.local_day("TOKYO1", ts) == "2026-02-18"
    assert cal.day_start("US00001", "2026-02-17") == datetime(2026, 2, 17, tzinfo=NY).timestamp()
    assert cal.close_ts("US00001", "2026-02-17") == datetime(2026, 2, 18, 1, tzinfo=NY).timestamp()
    assert cal.close_ts("TOKYO1", "2026-02-17") == datetime(2026, 2, 18, 1, tzinfo=ZoneInfo("Asia/Tokyo")).timestamp()


@pytest.mark.parametrize(("day", "hours"), [("2026-03-08", 23), ("2026-11-01", 25), ("2026-06-01", 24)])
def test_dst_days_have_their_own_length(day: str, hours: int) -> None:
    cal = BusinessCalendar("America/New_York")
    assert cal.day_start("x", next_day(day)) - cal.day_start("x", day) == hours * 3600
    assert cal.close_ts("x", day) == cal.day_start("x", next_day(day))  # no grace


def test_next_day_and_unknown_zones() -> None:
    assert next_day("2026-12-31") == "2027-01-01" and next_day("2026-03-01", -1) == "2026-02-28"
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        zone("Mars/Olympus")
    with pytest.raises(ValueError, match="unknown time zone"):
        BusinessCalendar("UTC", [("A", "Nowhere/Land")])
