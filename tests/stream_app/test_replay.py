"""`spcwatch replay` reads one file of every domain (the simulator's --out) for any use case."""

from __future__ import annotations

import io

import orjson

from agents.forecast import ForecastProcessor
from agents.store import StoreProcessor
from stream_app.replay import ReplayReport, print_report, read_events

ORDER = {"event_id": "e-1", "order_id": "A1", "store_id": "US00001", "ts": "2026-02-17T15:00:00Z", "status": "paid",
         "currency": "USD", "total": "4.50",
         "items": [{"spu": "SPU0001", "name": "Latte", "qty": 1, "unit_price": "4.50"}]}
PAYMENT = {"event_id": "e-2", "payment_id": "P1", "order_id": "A1", "ts": "2026-02-17T15:00:01Z", "amount": "4.50",
           "currency": "USD", "status": "captured"}


def lines(*objs: dict) -> list[bytes]:
    return [orjson.dumps(o) for o in objs]


def test_lines_of_other_contract_topics_are_skipped_and_counted_not_invalid() -> None:
    report = ReplayReport()
    events = read_events(lines(dict(ORDER, topic="orders"), dict(PAYMENT, topic="payments"),
                               dict(PAYMENT, topic="payments", payment_id="P2"), dict(ORDER, topic="bogus"),
                               {"topic": "orders", "order_id": "A2"}),
                         StoreProcessor(), report)
    assert [e[2] for e in events] == ["orders"] and events[0][3].order_id == "A1"
    assert report.skipped == {"payments": 2}
    assert [(n, reason) for n, reason, _ in report.invalid] == [(4, "invalid_value"), (5, "missing_field")]
    out = io.StringIO()
    print_report(report, out)
    assert "2 of other topics skipped (payments 2)" in out.getvalue()
    assert "'topic' must be one of orders, got 'bogus'" in out.getvalue()


def test_a_multi_topic_use_case_still_needs_the_topic_of_each_line() -> None:
    report = ReplayReport()
    read_events(lines(ORDER, dict(ORDER, topic="orders")), ForecastProcessor(), report)
    assert report.skipped == {"orders": 1}
    assert [(n, reason) for n, reason, _ in report.invalid] == [(1, "invalid_value")]
