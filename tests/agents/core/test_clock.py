"""The clock rule (agents.core.events.bound_to_clock): events too far ahead of the wall clock are invalid."""

from __future__ import annotations

import orjson

from agents.core.events import DECODERS, bound_to_clock
from agents.core.settings import Settings

NOW = 1_780_000_000.0


def _sample(ts: float, rid: str = "db-1") -> dict:
    return {"ts": ts, "resource_id": rid, "metric": "cpu", "value": 1.0}


def test_the_default_bound_is_five_minutes_and_zero_turns_it_off() -> None:
    assert Settings().max_clock_skew_seconds == 300.0
    assert Settings.from_env({"SPCWATCH_MAX_CLOCK_SKEW_SECONDS": "0"}).max_clock_skew_seconds == 0.0


def test_an_event_beyond_the_skew_is_invalid_in_the_future_and_the_rest_of_its_batch_stays() -> None:
    raw = orjson.dumps({"samples": [_sample(NOW - 60), _sample(NOW + 300), _sample(NOW + 86400, "db-2"),
                                    _sample(NOW - 30 * 86400)]})
    decoded = bound_to_clock(DECODERS["metrics.samples"](raw), NOW, 300.0)
    assert [e.ts - NOW for e in decoded.events] == [-60, 300, -30 * 86400]  # the past is late, not invalid
    [error] = decoded.errors
    assert error.reason == "invalid_timestamp"
    assert "86400 s in the future" in error.detail and "db-2 cpu" in error.detail and "300 s" in error.detail
    off = bound_to_clock(DECODERS["metrics.samples"](raw), NOW, 0.0)
    assert len(off.events) == 4 and not off.errors


def test_every_topic_is_judged_by_its_ts() -> None:
    order = {"event_id": "e", "order_id": "o-1", "store_id": "S1", "ts": NOW + 3600, "status": "paid",
             "total": "1.00", "currency": "USD"}
    decoded = bound_to_clock(DECODERS["orders"](orjson.dumps(order)), NOW, 300.0)
    assert not decoded.events and "o-1" in decoded.errors[0].detail
    forecast = {"store_id": "S1", "sku": "K", "date": "2026-06-01", "forecast_qty": 1.0, "generated_at": NOW}
    assert bound_to_clock(DECODERS["forecasts"](orjson.dumps(forecast)), NOW, 300.0).events  # a future date is fine
