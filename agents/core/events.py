"""Decode and validate the contract's input events.

One place turns raw Kafka bytes into typed, normalised events, so every agent
and the offline replay see the same thing and every rejection carries the same
small set of reasons (they become a Prometheus label, so they stay few):

``invalid_json``, ``not_an_object``, ``missing_field``, ``invalid_type``,
``invalid_timestamp``, ``invalid_number``, ``invalid_money``, ``invalid_value``,
``too_long``, ``out_of_range``.

The last two are the schema's limits, checked here so that no event that passes
validation can fail at the sink and stop a partition: an id, name or source
longer than its database column (:data:`MAX_LENGTHS`), labels whose JSON is over
:data:`MAX_LABELS_BYTES`, a number whose magnitude is over :data:`MAX_MAGNITUDE`
(its square, as variance statistics take, and sums of 10^8 of those stay finite),
a ``*_minor`` amount over :data:`MAX_MINOR` (sums of 9,000 fit a BIGINT column), and a
decimal (an item's price or cost) whose magnitude is over :data:`MAX_MINOR` as well.

Normalisation follows the contract: timestamps become epoch seconds (UTC);
integer ids become their decimal string and ids are trimmed; money in major
units or ``*_minor`` becomes integer minor units of its currency.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

REASONS = (
    "invalid_json",
    "not_an_object",
    "missing_field",
    "invalid_type",
    "invalid_timestamp",
    "invalid_number",
    "invalid_money",
    "invalid_value",
    "too_long",
    "out_of_range",
    "db_rejected",  # not validation's: a row the database refused (stream_app/runtime/app.py, quarantine)
    "poison_message",  # not validation's: a message that stopped the worker too often (stream_app/runtime/poison.py)
)

# The widest column each field is written to (sql/*.sql), in characters.
MAX_LENGTHS: dict[str, int] = {
    "source": 64, "resource_type": 64, "resource_id": 255, "metric": 255,
    "store_id": 64, "sku": 64, "order_id": 128,
}
MAX_ID_LENGTH = 255  # any other id (event_id, payment_id, spu, ...)
MAX_LABELS_BYTES = 8192
MAX_MAGNITUDE = 1e150
MAX_MINOR = 10**15

# ISO 4217 minor-unit exponents that differ from the usual 2.
_CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
                     "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}
_MS_THRESHOLD = 1e11  # contract: an epoch number above this is milliseconds
_MIN_TS = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
_MAX_TS = datetime(2100, 1, 1, tzinfo=UTC).timestamp()


class InvalidEvent(ValueError):
    """An event that cannot be used; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str, item_index: int | None = None) -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.item_index = item_index


def currency_exponent(currency: str) -> int:
    return _CURRENCY_EXPONENTS.get(currency, 2)


# --------------------------------------------------------------------------- fields


def parse_json(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("invalid_json", str(exc)) from None


def _require(obj: dict[str, Any], name: str) -> Any:
    value = obj.get(name)
    if value is None:
        raise InvalidEvent("missing_field", f"{name!r} is required")
    return value


def parse_timestamp(value: Any, name: str = "ts") -> float:
    """RFC 3339 string (no offset means UTC) or epoch seconds/milliseconds."""
    if isinstance(value, bool):
        raise InvalidEvent("invalid_timestamp", f"{name!r} must be RFC 3339 or epoch, got a boolean")
    if isinstance(value, int | float):
        seconds = float(value) / 1000.0 if value > _MS_THRESHOLD else float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidEvent("invalid_timestamp", f"{name!r} is not RFC 3339: {value[:40]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = parsed.timestamp()
    else:
        raise InvalidEvent("invalid_timestamp", f"{name!r} must be RFC 3339 or epoch, got {type(value).__name__}")
    if not (_MIN_TS <= seconds < _MAX_TS):
        raise InvalidEvent("invalid_timestamp", f"{name!r} is outside 2000-2100: {value!r}")
    return seconds


def parse_date(value: Any, name: str = "date") -> date:
    if not isinstance(value, str):
        raise InvalidEvent("invalid_timestamp", f"{name!r} must be a YYYY-MM-DD string")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidEvent("invalid_timestamp", f"{name!r} is not a YYYY-MM-DD date: {value[:40]!r}") from None


def parse_id(value: Any, name: str) -> str:
    """IDs are strings; an integer id is its decimal string; whitespace is trimmed."""
    if value is None:
        raise InvalidEvent("missing_field", f"{name!r} is required")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidEvent("invalid_type", f"{name!r} must be a string or integer id")
    text = str(value).strip()
    if not text:
        raise InvalidEvent("missing_field", f"{name!r} is empty")
    return _within_length(text, name)


def _within_length(text: str, name: str) -> str:
    limit = MAX_LENGTHS.get(name, MAX_ID_LENGTH)
    if len(text) > limit:
        raise InvalidEvent("too_long", f"{name!r} has {len(text)} characters, the limit is {limit}")
    return text


def parse_str(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent("invalid_type" if value is not None else "missing_field",
                           f"{name!r} must be a non-empty string")
    return _within_length(value.strip(), name)


def parse_number(value: Any, name: str) -> float:
    """A finite number; numeric strings are accepted (some exporters send them)."""
    if isinstance(value, bool):
        raise InvalidEvent("invalid_number", f"{name!r} must be a number, got a boolean")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise InvalidEvent("invalid_number", f"{name!r} is not a number: {value[:40]!r}") from None
    else:
        raise InvalidEvent("invalid_number", f"{name!r} must be a number, got {type(value).__name__}")
    if not math.isfinite(number):
        raise InvalidEvent("invalid_number", f"{name!r} must be finite, got {value!r}")
    if abs(number) > MAX_MAGNITUDE:
        raise InvalidEvent("out_of_range", f"{name!r} is beyond ±{MAX_MAGNITUDE:g}: {number:g}")
    return number


def parse_decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidEvent("invalid_money", f"{name!r} must be a decimal string or number")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidEvent("invalid_money", f"{name!r} is not a decimal: {str(value)[:40]!r}") from None
    if not amount.is_finite():
        raise InvalidEvent("invalid_money", f"{name!r} must be finite")
    if abs(amount) > MAX_MINOR:  # a price past this overflows the DOUBLE columns it is summed into
        raise InvalidEvent("out_of_range", f"{name!r} is beyond ±{MAX_MINOR}: {str(value)[:40]!r}")
    return amount


def parse_currency(value: Any, name: str = "currency") -> str:
    if not isinstance(value, str) or len(value.strip()) != 3 or not value.strip().isalpha():
        raise InvalidEvent("invalid_value", f"{name!r} must be a 3-letter ISO 4217 code")
    return value.strip().upper()


def parse_money_minor(obj: dict[str, Any], major: str, currency: str) -> int:
    """Integer minor units from ``<major>_minor`` (integer) or ``<major>`` (major units)."""
    minor_name = f"{major}_minor"
    if obj.get(minor_name) is not None:
        value = obj[minor_name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidEvent("invalid_money", f"{minor_name!r} must be an integer")
        return _minor_in_range(value, minor_name)
    if obj.get(major) is None:
        raise InvalidEvent("missing_field", f"{major!r} or {minor_name!r} is required")
    amount = parse_decimal(obj[major], major)
    scaled = amount.scaleb(currency_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise InvalidEvent("invalid_money",
                           f"{major!r}={obj[major]!r} has more decimals than {currency} allows")
    return _minor_in_range(int(scaled), major)


def _minor_in_range(minor: int, name: str) -> int:
    if abs(minor) > MAX_MINOR:
        raise InvalidEvent("out_of_range", f"{name!r} is beyond ±{MAX_MINOR} minor units")
    return minor


def parse_enum(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        if value is None:
            raise InvalidEvent("missing_field", f"{name!r} is required")
        raise InvalidEvent("invalid_value", f"{name!r} must be one of {', '.join(allowed)}, got {value!r}")
    return value.strip().lower()


def parse_labels(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent("invalid_type", "'labels' must be an object of strings")
    labels: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, dict | list) or item is None:
            raise InvalidEvent("invalid_type", f"label {key!r} must be a scalar")
        labels[str(key)] = item if isinstance(item, str) else orjson.dumps(item).decode()
    size = len(orjson.dumps(labels))
    if size > MAX_LABELS_BYTES:
        raise InvalidEvent("too_long", f"'labels' JSON is {size} bytes, the limit is {MAX_LABELS_BYTES}")
    return labels


# --------------------------------------------------------------------------- events


@dataclass(slots=True, frozen=True)
class MetricSample:
    ts: float
    source: str
    resource_type: str
    resource_id: str
    metric: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)
    history: bool = False  # from a backfill batch ({"samples": [...], "history": true}): see agents/history.py

    @property
    def series_key(self) -> str:
        """Stable identity of the series: (resource_id, metric, labels)."""
        if not self.labels:
            return f"{self.resource_id}|{self.metric}"
        return f"{self.resource_id}|{self.metric}|" + orjson.dumps(
            self.labels, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(slots=True, frozen=True)
class OrderItem:
    spu: str
    name: str
    qty: float
    unit_price: Decimal
    discount: Decimal
    unit_cost: Decimal | None
    category: str | None = None  # menu category (UC-PR-01); None: "uncategorised"


@dataclass(slots=True, frozen=True)
class Order:
    event_id: str
    order_id: str
    store_id: str
    ts: float
    status: str
    total_minor: int
    currency: str
    channel: str
    items: tuple[OrderItem, ...]
    test: bool


@dataclass(slots=True, frozen=True)
class Payment:
    event_id: str
    payment_id: str
    order_id: str
    ts: float
    amount_minor: int
    currency: str
    status: str
    method: str
    test: bool


@dataclass(slots=True, frozen=True)
class LedgerEntry:
    event_id: str
    entry_id: str
    order_id: str
    ts: float
    amount_minor: int
    currency: str
    account: str
    kind: str
    test: bool


@dataclass(slots=True, frozen=True)
class Forecast:
    store_id: str
    sku: str
    date: date
    forecast_qty: float
    generated_at: float
    ts: float


@dataclass(slots=True, frozen=True)
class Demand:
    store_id: str
    sku: str
    date: date
    actual_qty: float
    ts: float


Event = MetricSample | Order | Payment | LedgerEntry | Forecast | Demand


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {type(value).__name__}")
    return value


def _test_flag(obj: dict[str, Any]) -> bool:
    flag = obj.get("test", False)
    if not isinstance(flag, bool):
        raise InvalidEvent("invalid_type", "'test' must be a boolean")
    return flag


_NUMBER = (int, float)
_SAMPLE_FIELDS = frozenset({"ts", "value", "resource_id", "metric", "source", "resource_type", "labels"})


def sample_from_obj(obj: Any, history: bool = False) -> MetricSample:
    """A validated sample; the common, well-formed shape takes a fast path with the same result."""
    labels = obj.get("labels") if type(obj) is dict else None
    if type(obj) is dict and obj.keys() <= _SAMPLE_FIELDS and (
            labels is None or (type(labels) is dict and all(type(v) is str for v in labels.values()))):
        ts, value = obj.get("ts"), obj.get("value")
        rid, metric = obj.get("resource_id"), obj.get("metric")
        source, rtype = obj.get("source", "unknown"), obj.get("resource_type", "unknown")
        if (type(ts) in _NUMBER and type(value) in _NUMBER and type(rid) is str and type(metric) is str
                and type(source) is str and type(rtype) is str):
            seconds = ts / 1000.0 if ts > _MS_THRESHOLD else float(ts)
            rid, metric, source, rtype = rid.strip(), metric.strip(), source.strip(), rtype.strip()
            if (_MIN_TS <= seconds < _MAX_TS and math.isfinite(value) and abs(value) <= MAX_MAGNITUDE
                    and 0 < len(rid) <= 255 and 0 < len(metric) <= 255 and 0 < len(source) <= 64
                    and 0 < len(rtype) <= 64 and (not labels or len(orjson.dumps(labels)) <= MAX_LABELS_BYTES)):
                return MetricSample(seconds, source, rtype, rid, metric, float(value), labels or {}, history)
    return _sample_from_obj_checked(obj, history)


def _sample_from_obj_checked(obj: Any, history: bool = False) -> MetricSample:
    """Field by field, with the reason of the first problem."""
    obj = _object(obj)
    return MetricSample(
        ts=parse_timestamp(_require(obj, "ts")),
        source=parse_str(obj.get("source", "unknown"), "source"),
        resource_type=parse_str(obj.get("resource_type", "unknown"), "resource_type"),
        resource_id=parse_id(obj.get("resource_id"), "resource_id"),
        metric=parse_str(obj.get("metric"), "metric"),
        value=parse_number(_require(obj, "value"), "value"),
        labels=parse_labels(obj.get("labels")),
        history=history,
    )


def _item_from_obj(obj: Any, index: int) -> OrderItem:
    obj = _object(obj)
    qty = parse_number(_require(obj, "qty"), f"items[{index}].qty")
    unit_cost = obj.get("unit_cost")
    return OrderItem(
        spu=parse_id(obj.get("spu"), f"items[{index}].spu"),
        name=_within_length(str(obj.get("name", "")), f"items[{index}].name"),
        qty=qty,
        unit_price=parse_decimal(_require(obj, "unit_price"), f"items[{index}].unit_price"),
        discount=parse_decimal(obj.get("discount", "0"), f"items[{index}].discount"),
        unit_cost=None if unit_cost is None else parse_decimal(unit_cost, f"items[{index}].unit_cost"),
        category=None if obj.get("category") is None else parse_str(obj["category"], f"items[{index}].category"),
    )


def order_from_obj(obj: Any) -> Order:
    obj = _object(obj)
    currency = parse_currency(_require(obj, "currency"))
    items = obj.get("items", [])
    if not isinstance(items, list):
        raise InvalidEvent("invalid_type", "'items' must be a list")
    return Order(
        event_id=parse_id(obj.get("event_id"), "event_id"),
        order_id=parse_id(obj.get("order_id"), "order_id"),
        store_id=parse_id(obj.get("store_id"), "store_id"),
        ts=parse_timestamp(_require(obj, "ts")),
        status=parse_enum(obj.get("status"), "status", ("paid", "refunded", "cancelled")),
        total_minor=parse_money_minor(obj, "total", currency),
        currency=currency,
        channel=str(obj.get("channel", "")),
        items=tuple(_item_from_obj(item, i) for i, item in enumerate(items)),
        test=_test_flag(obj),
    )


def payment_from_obj(obj: Any) -> Payment:
    obj = _object(obj)
    currency = parse_currency(_require(obj, "currency"))
    return Payment(
        event_id=parse_id(obj.get("event_id"), "event_id"),
        payment_id=parse_id(obj.get("payment_id"), "payment_id"),
        order_id=parse_id(obj.get("order_id"), "order_id"),
        ts=parse_timestamp(_require(obj, "ts")),
        amount_minor=parse_money_minor(obj, "amount", currency),
        currency=currency,
        status=parse_enum(obj.get("status"), "status", ("captured", "refunded", "failed")),
        method=str(obj.get("method", "")),
        test=_test_flag(obj),
    )


def ledger_from_obj(obj: Any) -> LedgerEntry:
    obj = _object(obj)
    currency = parse_currency(_require(obj, "currency"))
    return LedgerEntry(
        event_id=parse_id(obj.get("event_id"), "event_id"),
        entry_id=parse_id(obj.get("entry_id"), "entry_id"),
        order_id=parse_id(obj.get("order_id"), "order_id"),
        ts=parse_timestamp(_require(obj, "ts")),
        amount_minor=parse_money_minor(obj, "amount", currency),
        currency=currency,
        account=str(obj.get("account", "")),
        kind=parse_enum(obj.get("kind"), "kind", ("revenue", "refund")),
        test=_test_flag(obj),
    )


def _end_of_day(day: date) -> float:
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC).timestamp()


def forecast_from_obj(obj: Any) -> Forecast:
    obj = _object(obj)
    generated_at = parse_timestamp(_require(obj, "generated_at"), "generated_at")
    return Forecast(
        store_id=parse_id(obj.get("store_id"), "store_id"),
        sku=parse_id(obj.get("sku"), "sku"),
        date=parse_date(_require(obj, "date")),
        forecast_qty=parse_number(_require(obj, "forecast_qty"), "forecast_qty"),
        generated_at=generated_at,
        ts=parse_timestamp(obj["ts"]) if obj.get("ts") is not None else generated_at,
    )


def demand_from_obj(obj: Any) -> Demand:
    obj = _object(obj)
    day = parse_date(_require(obj, "date"))
    return Demand(
        store_id=parse_id(obj.get("store_id"), "store_id"),
        sku=parse_id(obj.get("sku"), "sku"),
        date=day,
        actual_qty=parse_number(_require(obj, "actual_qty"), "actual_qty"),
        ts=parse_timestamp(obj["ts"]) if obj.get("ts") is not None else _end_of_day(day),
    )


# --------------------------------------------------------------------------- messages


@dataclass(slots=True)
class Decoded:
    """The valid events of one message and the errors of the rest."""

    events: list[Any] = field(default_factory=list)
    errors: list[InvalidEvent] = field(default_factory=list)


def _single(parse: Callable[[Any], Any]) -> Callable[[bytes], Decoded]:
    def decode(raw: bytes) -> Decoded:
        try:
            return Decoded(events=[parse(parse_json(raw))])
        except InvalidEvent as exc:
            return Decoded(errors=[exc])

    decode.__doc__ = f"One event per message, validated by ``{parse.__name__}``."
    return decode


def decode_samples(raw: bytes) -> Decoded:
    """A sample, or ``{"samples": [...]}``; bad items are rejected one by one."""
    result = Decoded()
    try:
        obj = _object(parse_json(raw))
    except InvalidEvent as exc:
        result.errors.append(exc)
        return result
    if "samples" not in obj:
        try:
            result.events.append(sample_from_obj(obj))
        except InvalidEvent as exc:
            result.errors.append(exc)
        return result
    items = obj["samples"]
    if not isinstance(items, list):
        result.errors.append(InvalidEvent("invalid_type", "'samples' must be a list"))
        return result
    history = obj.get("history") is True  # a backfill's batch (spcwatch backfill)
    for index, item in enumerate(items):
        try:
            result.events.append(sample_from_obj(item, history))
        except InvalidEvent as exc:
            exc.item_index = index
            result.errors.append(exc)
    return result


def bound_to_clock(decoded: Decoded, now: float, max_skew: float) -> Decoded:
    """The clock rule (README, Delivery guarantees): an event whose ``ts`` is more than
    ``max_skew`` seconds ahead of the wall clock ``now`` moves to the errors as
    ``invalid_timestamp`` ("in the future"), so it is dead-lettered, never applied, and no
    event-time clock built from ``ts`` (a partition's watermark, absence, day closes,
    deadlines) can be moved far by a producer with a wrong clock. ``max_skew`` 0: no bound.

    The worker and ``spcwatch replay`` both call this, right after decoding."""
    if max_skew <= 0 or not decoded.events:
        return decoded
    not_after = now + max_skew
    kept = [event for event in decoded.events if event.ts <= not_after]
    if len(kept) == len(decoded.events):
        return decoded  # the hot path: nothing ahead
    errors = list(decoded.errors)
    for event in decoded.events:
        if event.ts > not_after:
            errors.append(InvalidEvent("invalid_timestamp", future_detail(event, now, max_skew)))
    return Decoded(events=kept, errors=errors)


def future_detail(event: Any, now: float, max_skew: float) -> str:
    """Why ``event`` is refused: its time, whose it is, and how far ahead of the wall clock."""
    when = datetime.fromtimestamp(event.ts, UTC).isoformat().replace("+00:00", "Z")
    what = getattr(event, "resource_id", None) or getattr(event, "order_id", None) or getattr(event, "store_id", "")
    metric = getattr(event, "metric", None)
    if metric:
        what = f"{what} {metric}"
    return (f"'ts' {when} ({what}) is {event.ts - now:.0f} s in the future, beyond the allowed clock "
            f"skew of {max_skew:g} s (SPCWATCH_MAX_CLOCK_SKEW_SECONDS)")


DECODERS: dict[str, Callable[[bytes], Decoded]] = {
    "metrics.samples": decode_samples,
    "orders": _single(order_from_obj),
    "payments": _single(payment_from_obj),
    "ledger": _single(ledger_from_obj),
    "forecasts": _single(forecast_from_obj),
    "demand": _single(demand_from_obj),
}
INPUT_TOPICS = tuple(DECODERS)
