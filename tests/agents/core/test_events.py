from __future__ import annotations

from datetime import date
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core.events import (
    DECODERS,
    InvalidEvent,
    decode_samples,
    parse_money_minor,
    parse_timestamp,
)

SAMPLE = {
    "ts": "2026-02-17T10:05:00Z", "source": "cloudwatch", "resource_type": "rds",
    "resource_id": "aws-luckyus-dbatest-rw", "metric": "CPUUtilization", "value": 41.7,
    "labels": {"region": "us-east-1"},
}


def raw(obj: object) -> bytes:
    return orjson.dumps(obj)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-02-17T10:05:00Z", 1771322700.0),
        ("2026-02-17T10:05:00", 1771322700.0),  # no offset means UTC
        ("2026-02-17T05:05:00-05:00", 1771322700.0),
        (1771322700, 1771322700.0),
        (1771322700000, 1771322700.0),  # above 1e11: milliseconds
        (1771322700.5, 1771322700.5),
    ],
)
def test_timestamps_normalise_to_epoch_seconds(value: object, expected: float) -> None:
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize("value", ["yesterday", True, None, [], -5, 5e15, "2026-13-01T00:00:00Z"])
def test_bad_timestamps_are_rejected(value: object) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_timestamp(value)
    assert info.value.reason == "invalid_timestamp"


def test_single_sample_decodes() -> None:
    result = decode_samples(raw(SAMPLE))
    assert result.errors == []
    (sample,) = result.events
    assert sample.ts == 1771322700.0
    assert sample.value == 41.7
    assert sample.labels == {"region": "us-east-1"}
    assert sample.series_key == 'aws-luckyus-dbatest-rw|CPUUtilization|{"region":"us-east-1"}'


def test_batch_keeps_good_samples_and_rejects_bad_ones_by_index() -> None:
    batch = {"samples": [SAMPLE, {**SAMPLE, "value": "NaN"}, {**SAMPLE, "ts": "soon"},
                         {**SAMPLE, "resource_id": 42}, {k: v for k, v in SAMPLE.items() if k != "metric"}]}
    result = decode_samples(raw(batch))
    assert [s.resource_id for s in result.events] == ["aws-luckyus-dbatest-rw", "42"]
    assert [(e.item_index, e.reason) for e in result.errors] == [
        (1, "invalid_number"), (2, "invalid_timestamp"), (4, "missing_field")]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"ts": 1771322700, "resource_id": "a", "metric": "m", "value": 1e999}', "invalid_json"),
        (raw({**SAMPLE, "value": "Infinity"}), "invalid_number"),
        (raw({**SAMPLE, "value": True}), "invalid_number"),
        (raw({**SAMPLE, "labels": {"a": {"b": 1}}}), "invalid_type"),
        (raw({"samples": "x"}), "invalid_type"),
    ],
)
def test_invalid_samples_carry_a_reason(payload: bytes, reason: str) -> None:
    result = decode_samples(payload)
    assert result.events == []
    assert [e.reason for e in result.errors] == [reason]


def test_order_normalises_ids_money_and_items() -> None:
    order = {"event_id": "e-1", "order_id": 1000231, "store_id": " US00001 ",
             "ts": "2026-02-17T08:12:09-05:00", "status": "PAID", "total": "12.40", "currency": "usd",
             "channel": "app", "items": [{"spu": "SPU0007", "name": "Iced Latte", "qty": 2,
                                          "unit_price": "4.95", "discount": "0.50", "unit_cost": "1.10"}]}
    (event,) = DECODERS["orders"](raw(order)).events
    assert event.order_id == "1000231"
    assert event.store_id == "US00001"
    assert event.status == "paid"
    assert event.total_minor == 1240
    assert event.currency == "USD"
    assert event.items[0].unit_price == Decimal("4.95")
    assert event.test is False


@pytest.mark.parametrize(
    ("obj", "currency", "minor"),
    [({"amount_minor": 1240}, "USD", 1240), ({"amount": "12.40"}, "USD", 1240), ({"amount": 12.4}, "USD", 1240),
     ({"amount": "1500"}, "JPY", 1500), ({"amount": "1.250"}, "KWD", 1250)],
)
def test_money_becomes_minor_units_of_its_currency(obj: dict, currency: str, minor: int) -> None:
    assert parse_money_minor(obj, "amount", currency) == minor


@pytest.mark.parametrize(
    ("obj", "reason"),
    [({"amount": "12.405"}, "invalid_money"), ({"amount_minor": 12.5}, "invalid_money"),
     ({"amount": "twelve"}, "invalid_money"), ({}, "missing_field")],
)
def test_bad_money_is_rejected(obj: dict, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_money_minor(obj, "amount", "USD")
    assert info.value.reason == reason


def test_payment_ledger_forecast_demand_decode() -> None:
    payment = DECODERS["payments"](raw({"event_id": "e-2", "payment_id": "pay-88", "order_id": "1000231",
                                        "ts": 1771322700, "amount_minor": 1240, "currency": "USD",
                                        "status": "captured", "method": "card"})).events[0]
    assert (payment.amount_minor, payment.status) == (1240, "captured")
    ledger = DECODERS["ledger"](raw({"event_id": "e-3", "entry_id": "je-77", "order_id": "1000231",
                                     "ts": 1771322700, "amount": "12.40", "currency": "USD",
                                     "account": "4000-revenue", "kind": "revenue"})).events[0]
    assert ledger.amount_minor == 1240
    forecast = DECODERS["forecasts"](raw({"store_id": "US00001", "sku": "GS0012", "date": "2026-02-17",
                                          "forecast_qty": 120.0,
                                          "generated_at": "2026-02-16T06:00:00Z"})).events[0]
    assert forecast.date == date(2026, 2, 17)
    assert forecast.ts == forecast.generated_at == parse_timestamp("2026-02-16T06:00:00Z")
    demand = DECODERS["demand"](raw({"store_id": "US00001", "sku": "GS0012", "date": "2026-02-17",
                                     "actual_qty": 97.0})).events[0]
    assert demand.ts == parse_timestamp("2026-02-18T00:00:00Z")  # default: end of the date


@pytest.mark.parametrize(
    ("topic", "obj", "reason"),
    [
        ("orders", {"order_id": "1", "event_id": "e", "store_id": "s", "ts": 1771322700, "status": "lost",
                    "total": "1.00", "currency": "USD"}, "invalid_value"),
        ("payments", {"event_id": "e", "payment_id": "p", "order_id": "1", "ts": 1771322700,
                      "amount": "1.00", "currency": "US", "status": "captured"}, "invalid_value"),
        ("ledger", {"event_id": "e", "entry_id": "j", "ts": 1771322700, "amount": "1.00", "currency": "USD",
                    "kind": "revenue"}, "missing_field"),
        ("forecasts", {"store_id": "s", "sku": "k", "date": "17/02/2026", "forecast_qty": 1,
                       "generated_at": 1771322700}, "invalid_timestamp"),
        ("demand", {"store_id": "s", "sku": "k", "date": "2026-02-17", "actual_qty": None}, "missing_field"),
    ],
)
def test_each_topic_rejects_with_a_reason(topic: str, obj: dict, reason: str) -> None:
    result = DECODERS[topic](raw(obj))
    assert result.events == []
    assert [e.reason for e in result.errors] == [reason]


EXAMPLES: dict[str, dict] = {
    "metrics.samples": {"samples": [SAMPLE, {**SAMPLE, "metric": "FreeableMemory", "value": 7}]},
    "orders": {"event_id": "e-1", "order_id": 7, "store_id": "US00001", "ts": 1771322700,
               "status": "refunded", "total": "12.40", "currency": "USD", "channel": "app", "test": True,
               "items": [{"spu": "SPU1", "qty": 2, "unit_price": "4.955", "discount": "0.5"}]},
    "payments": {"event_id": "e-2", "payment_id": "p", "order_id": "7", "ts": 1771322700,
                 "amount": "1240", "currency": "JPY", "status": "captured"},
    "ledger": {"event_id": "e-3", "entry_id": "j", "order_id": "7", "ts": 1771322700, "amount": "1.250",
               "currency": "KWD", "kind": "refund"},
    "forecasts": {"store_id": "s", "sku": "k", "date": "2026-02-17", "forecast_qty": 1.5,
                  "generated_at": 1771322700},
    "demand": {"store_id": "s", "sku": "k", "date": "2026-02-17", "actual_qty": 0},
}


@pytest.mark.parametrize("topic", sorted(DECODERS))
def test_encode_events_round_trips_every_topic(topic: str) -> None:
    from stream_app.runtime.codecs import encode_events

    first = DECODERS[topic](raw(EXAMPLES[topic]))
    assert first.errors == [] and first.events
    again = DECODERS[topic](encode_events(topic, first.events))
    assert again.errors == []
    assert again.events == first.events


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 5 * 10**12),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                     st.sampled_from([" r1 ", "", "  ", "1771322700", "2026-02-17T10:05:00Z", 1771322700.5]))
_sample_objects = st.dictionaries(
    st.sampled_from(["ts", "value", "resource_id", "metric", "source", "resource_type", "labels", "other"]),
    _scalars, max_size=8)


@given(st.one_of(_sample_objects, st.builds(lambda o: {**SAMPLE, **o, "labels": None}, _sample_objects)))
@settings(max_examples=500)
def test_the_fast_sample_path_agrees_with_field_by_field_validation(obj: dict) -> None:
    from agents.core.events import _sample_from_obj_checked, sample_from_obj

    def outcome(parse):
        try:
            return parse(obj)
        except InvalidEvent as exc:
            return exc.reason, exc.detail

    assert outcome(sample_from_obj) == outcome(_sample_from_obj_checked)


@pytest.mark.parametrize(("field", "limit"), [("source", 64), ("resource_type", 64),
                                              ("resource_id", 255), ("metric", 255)])
def test_sample_fields_longer_than_their_column_are_too_long(field: str, limit: int) -> None:
    assert decode_samples(raw({**SAMPLE, field: "x" * limit})).errors == []
    for obj in ({**SAMPLE, field: "x" * (limit + 1)},
                {**SAMPLE, field: "x" * (limit + 1), "labels": {"a": "b"}}):
        [error] = decode_samples(raw(obj)).errors
        assert error.reason == "too_long" and field in error.detail


def test_labels_over_their_json_bound_are_too_long() -> None:
    from agents.core.events import MAX_LABELS_BYTES

    assert decode_samples(raw({**SAMPLE, "labels": {"k": "v" * 100}})).errors == []
    [error] = decode_samples(raw({**SAMPLE, "labels": {"k": "v" * MAX_LABELS_BYTES}})).errors
    assert error.reason == "too_long" and "labels" in error.detail


@pytest.mark.parametrize("value", [1.7e308, -1.7e308, 1e151, "1e200"])
def test_values_that_would_overflow_statistics_are_out_of_range(value: object) -> None:
    [error] = decode_samples(raw({**SAMPLE, "value": value})).errors
    assert error.reason == "out_of_range"
    assert decode_samples(raw({**SAMPLE, "value": 1e150})).errors == []


@pytest.mark.parametrize(("topic", "obj"), [
    ("orders", {"order_id": "o" * 129}), ("orders", {"store_id": "s" * 65}),
    ("orders", {"total_minor": 10**15 + 1}), ("orders", {"total": "1e20"}),
    ("payments", {"order_id": "o" * 129}), ("ledger", {"order_id": "o" * 129}),
    ("forecasts", {"sku": "k" * 65}), ("forecasts", {"forecast_qty": 1e300}),
    ("demand", {"store_id": "s" * 65}), ("demand", {"actual_qty": -1e300}),
])
def test_other_topics_enforce_column_limits(topic: str, obj: dict) -> None:
    base = EXAMPLES[topic]
    assert DECODERS[topic](raw(base)).errors == []
    if "total" in obj:
        base = {k: v for k, v in base.items() if k not in ("total", "total_minor")}
    [error] = DECODERS[topic](raw({**base, **obj})).errors
    assert error.reason in ("too_long", "out_of_range")
