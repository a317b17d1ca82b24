"""Malformed messages for every input topic, drawn by hypothesis from the contract's event shapes.

Each strategy starts from a valid event of its topic (CONTRACT.md, "Input events") and breaks
it in one of the ways real producers do: cut short, not UTF-8, not JSON, ``NaN`` literals,
numbers past what a double or the statistics hold, a field of the wrong type or missing, a
string longer than its column (up to 1 MB), nesting past any parser's depth, an empty message
or a tombstone, garbage and out-of-range timestamps, and batches with some bad items among
good ones. ``Fuzzed.bad_items`` is how many dead letters the message must produce.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson
from hypothesis import strategies as st

TS = "2026-02-17T10:05:00Z"
TS_PLACEHOLDER = "@ts@"  # a valid batch item's time, set by the test (each series' times must increase)
SAMPLE = {"ts": TS, "source": "cloudwatch", "resource_type": "rds", "resource_id": "fz-1",
          "metric": "CPUUtilization", "value": 41.7}
ORDER = {"event_id": "e-1", "order_id": "o-1", "store_id": "US00001", "ts": TS, "status": "paid",
         "total": "12.40", "currency": "USD", "channel": "app",
         "items": [{"spu": "SPU0007", "name": "Iced Latte", "qty": 2, "unit_price": "6.20",
                    "unit_cost": "1.10"}]}
PAYMENT = {"event_id": "e-2", "payment_id": "pay-1", "order_id": "o-1", "ts": TS, "amount_minor": 1240,
           "currency": "USD", "status": "captured", "method": "card"}
LEDGER = {"event_id": "e-3", "entry_id": "je-1", "order_id": "o-1", "ts": TS, "amount": "12.40",
          "currency": "USD", "account": "4000-revenue", "kind": "revenue"}
FORECAST = {"store_id": "US00001", "sku": "SKU1", "date": "2026-02-18", "forecast_qty": 12.0,
            "generated_at": TS}
DEMAND = {"store_id": "US00001", "sku": "SKU1", "date": "2026-02-17", "actual_qty": 11.0}

VALID: dict[str, dict[str, Any]] = {
    "metrics.samples": SAMPLE, "orders": ORDER, "payments": PAYMENT, "ledger": LEDGER,
    "forecasts": FORECAST, "demand": DEMAND,
}
# Required fields per topic, and what each must be (for wrong-type values).
REQUIRED: dict[str, dict[str, str]] = {
    "metrics.samples": {"ts": "ts", "resource_id": "id", "metric": "str", "value": "number"},
    "orders": {"event_id": "id", "order_id": "id", "store_id": "id", "ts": "ts", "status": "enum",
               "currency": "currency", "total": "money"},
    "payments": {"event_id": "id", "payment_id": "id", "order_id": "id", "ts": "ts", "status": "enum",
                 "currency": "currency", "amount_minor": "minor"},
    "ledger": {"event_id": "id", "entry_id": "id", "order_id": "id", "ts": "ts", "kind": "enum",
               "currency": "currency", "amount": "money"},
    "forecasts": {"store_id": "id", "sku": "id", "date": "date", "forecast_qty": "number",
                  "generated_at": "ts"},
    "demand": {"store_id": "id", "sku": "id", "date": "date", "actual_qty": "number"},
}
# String fields written to a column, and the column's width (sql/*.sql).
COLUMNS: dict[str, dict[str, int]] = {
    "metrics.samples": {"source": 64, "resource_type": 64, "resource_id": 255, "metric": 255},
    "orders": {"event_id": 255, "order_id": 128, "store_id": 64},
    "payments": {"event_id": 255, "payment_id": 255, "order_id": 128},
    "ledger": {"event_id": 255, "entry_id": 255, "order_id": 128},
    "forecasts": {"store_id": 64, "sku": 64},
    "demand": {"store_id": 64, "sku": 64},
}
ITEM_COLUMNS = {"spu": 255, "name": 255, "category": 255}
MAX_MESSAGE = 1_000_000  # the broker's default limit is 1 MiB (message.max.bytes)


@dataclass(frozen=True)
class Fuzzed:
    """One message on ``topic``: its bytes (None: a tombstone) and the dead letters it must produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    bad_items: int
    kind: str


def _dumps(obj: Any) -> bytes:
    """As another producer would write it (the standard library's encoder: integers of any size)."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False).encode()


_wrong_for = {
    "ts": st.one_of(st.booleans(), st.lists(st.integers(), max_size=2), st.just({}),
                    st.sampled_from(["yesterday", "2026-13-45T00:00:00Z", "", "now", "1e400"]),
                    st.sampled_from([-1, 0, 946_684_799, 4_102_444_800, 4_102_444_800_000]),
                    # a wrong clock: valid timestamps too far ahead of the wall clock (the clock rule)
                    st.sampled_from(["2099-01-01T00:00:00Z", "2030-06-01T12:00:00+02:00", 4_000_000_000,
                                     4_000_000_000_000])),
    "id": st.one_of(st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.just([]),
                    st.just({}), st.sampled_from(["", "   "])),
    "str": st.one_of(st.booleans(), st.integers(), st.just([]), st.just({}), st.sampled_from(["", "  "])),
    "number": st.one_of(st.booleans(), st.just([]), st.just({}),
                        st.text(alphabet="abcxyz-", min_size=1, max_size=8),
                        st.floats(min_value=1e151, max_value=1e308), st.floats(min_value=-1e308, max_value=-1e151)),
    "enum": st.one_of(st.booleans(), st.integers(), st.sampled_from(["PAID?", "unknown", "", "captured!"])),
    "currency": st.one_of(st.integers(), st.sampled_from(["US", "USDX", "12$", ""])),
    "money": st.one_of(st.booleans(), st.just([]), st.sampled_from(["12.4.0", "abc", "NaN", "Infinity", "1.001",
                                                                    "1e20"])),
    "minor": st.one_of(st.booleans(), st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda f: f != int(f)), st.just("1240"), st.integers(min_value=10**15 + 1, max_value=10**18)),
    "date": st.one_of(st.integers(), st.sampled_from(["2026-02-30", "tomorrow", "17/02/2026", ""])),
}


@st.composite
def wrong_type(draw: st.DrawFn, topic: str) -> dict[str, Any]:
    """A required field of the wrong type, or a value the contract rejects."""
    name, kind = draw(st.sampled_from(sorted(REQUIRED[topic].items())))
    obj = dict(VALID[topic])
    if topic == "payments" and name == "amount_minor":
        obj.pop("amount", None)
    obj[name] = draw(_wrong_for[kind])
    return obj


@st.composite
def bad_item(draw: st.DrawFn) -> dict[str, Any]:
    """An order whose line item is wrong: a price past any column, a quantity of the wrong type, no spu."""
    item = dict(ORDER["items"][0])
    name, value = draw(st.sampled_from([
        ("unit_price", "1e400"), ("unit_price", "-1e30"), ("unit_cost", "9" * 40), ("unit_price", "abc"),
        ("qty", "two"), ("qty", 1e200), ("qty", None), ("spu", None), ("spu", ["x"]), ("discount", True)]))
    item[name] = value
    return {**ORDER, "items": [dict(ORDER["items"][0]), item] if draw(st.booleans()) else [item]}


@st.composite
def missing_field(draw: st.DrawFn, topic: str) -> dict[str, Any]:
    name = draw(st.sampled_from(sorted(REQUIRED[topic])))
    return {k: v for k, v in VALID[topic].items() if k != name}


@st.composite
def too_long(draw: st.DrawFn, topic: str) -> dict[str, Any]:
    """A string one character to ~64 KiB over its column (1 MB strings come from ``huge``)."""
    obj = dict(VALID[topic])
    if topic == "orders" and draw(st.booleans()):
        name, width = draw(st.sampled_from(sorted(ITEM_COLUMNS.items())))
        item = {**ORDER["items"][0], name: "n" * (width + draw(st.integers(1, 65_536)))}
        obj["items"] = [item]
        return obj
    name, width = draw(st.sampled_from(sorted(COLUMNS[topic].items())))
    obj[name] = draw(st.sampled_from("xé中")) * (width + draw(st.integers(1, 65_536)))
    return obj


@st.composite
def deep(draw: st.DrawFn, topic: str) -> bytes:
    """Nesting in a required field: shallow is the wrong type, past 1024 levels the parser refuses it."""
    depth = draw(st.one_of(st.integers(1, 20), st.integers(1025, 5000)))
    name = draw(st.sampled_from(sorted(REQUIRED[topic])))
    obj = dict(VALID[topic])
    obj[name] = "@@@"
    left, _, right = _dumps(obj).partition(b'"@@@"')
    return left + b"[" * depth + b"]" * depth + right


@st.composite
def broken_bytes(draw: st.DrawFn, topic: str) -> bytes:
    """Bytes that are not one JSON object: cut short, not UTF-8, NaN literals, numbers past a double."""
    raw = _dumps(VALID[topic])
    how = draw(st.sampled_from(["truncated", "not_utf8", "nan", "huge_number", "garbage", "scalar"]))
    if how == "truncated":
        return raw[:draw(st.integers(0, len(raw) - 1))]
    if how == "not_utf8":
        at = raw.index(b'"', 2) + 1  # inside the first string value's key
        return raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"])) + raw[at:]
    if how == "nan":  # JSON has no NaN or Infinity; some encoders write them anyway
        literal = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"nan"]))
        return b'{"value":' + literal + b"," + raw[1:]
    if how == "huge_number":  # past a double: 1e400, or an integer of hundreds of digits
        digits = str(draw(st.integers(310, 2000))).encode()
        number = b"1e" + digits if draw(st.booleans()) else b"1" + b"0" * int(digits)
        return b'{"value":' + number + b"," + raw[1:]
    if how == "scalar":
        return draw(st.sampled_from([b"1", b"null", b'"text"', b"[]", b"[1,2]", b"true", b"  "]))
    junk = draw(st.binary(min_size=1, max_size=200))
    try:
        if isinstance(orjson.loads(junk), dict):
            junk = b"{" + junk
    except orjson.JSONDecodeError:
        pass
    return junk


@st.composite
def bad_batch(draw: st.DrawFn) -> tuple[bytes, int]:
    """``{"samples": [...]}`` with some bad items among good ones (the good ones are counted: every
    one must be processed). Returns the bytes and how many items are bad."""
    items: list[Any] = []
    bad = 0
    for index in range(draw(st.integers(2, 8))):
        if draw(st.booleans()):
            items.append(draw(st.one_of(wrong_type("metrics.samples"), missing_field("metrics.samples"),
                                        st.just(17), st.just(None))))
            bad += 1
        else:
            items.append({**SAMPLE, "ts": TS_PLACEHOLDER, "resource_id": "fz-batch", "metric": f"m{index}",
                          "value": float(index)})
    if bad == 0:
        items.append({**SAMPLE, "value": None})
        bad = 1
    return _dumps({"samples": items}), bad


TOPICS = sorted(VALID)


@st.composite
def malformed(draw: st.DrawFn) -> Fuzzed:
    """One malformed message on some topic, and how many dead letters it must produce."""
    topic = draw(st.sampled_from(TOPICS))
    kind = draw(st.sampled_from(["wrong_type", "missing_field", "too_long", "deep", "bytes", "empty",
                                 "batch"]))
    key = draw(st.one_of(st.none(), st.just(b""), st.binary(max_size=16), st.just(b"fz-1")))
    bad = 1
    if kind == "wrong_type":
        value: bytes | None = _dumps(draw(wrong_type(topic) if topic != "orders" or draw(st.booleans())
                                          else bad_item()))
    elif kind == "missing_field":
        value = _dumps(draw(missing_field(topic)))
    elif kind == "too_long":
        value = _dumps(draw(too_long(topic)))
    elif kind == "deep":
        value = draw(deep(topic))
    elif kind == "bytes":
        value = draw(broken_bytes(topic))
    elif kind == "empty":
        value = draw(st.sampled_from([b"", None, b"{}"]))
    else:
        topic = "metrics.samples"
        value, bad = draw(bad_batch())
    if value is None and key is None:
        key = b"tombstone"  # a tombstone has a key (Kafka needs one of the two)
    return Fuzzed(topic, key, value, bad, kind)


def stamped(message: Fuzzed, next_ts: Callable[[], float]) -> tuple[Fuzzed, int]:
    """The message with each valid batch item's time set (each series' times must increase for
    every sample to count), and how many valid items it holds."""
    value, placeholder, valid = message.value, orjson.dumps(TS_PLACEHOLDER), 0
    while value is not None and placeholder in value:
        value = value.replace(placeholder, str(next_ts()).encode(), 1)
        valid += 1
    return replace(message, value=value), valid


def huge(topic: str, size: int = MAX_MESSAGE - 2048) -> Fuzzed:
    """A message of about 1 MB: one id that long (its dead letter must still fit the broker)."""
    obj = dict(VALID[topic])
    name = sorted(COLUMNS[topic])[0]
    obj[name] = "h" * size
    return Fuzzed(topic, b"huge", _dumps(obj), 1, "huge")
