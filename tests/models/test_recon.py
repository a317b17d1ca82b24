"""models.recon: one scenario per category, time semantics, state, and arrival-order independence."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.recon import (
    EXCLUDED_TEST_DATA,
    LEDGER,
    ORDERS,
    PAYMENTS,
    OrderRecon,
    ReconConfig,
    Record,
)

T0 = 1_771_322_400.0  # 2026-02-17T10:00:00Z (05:00 in New York)
CFG = ReconConfig(alert_min_amount_minor=1000)
END = T0 + 3 * 86400  # a horizon past every deadline
PW, LW = CFG.payment_window_seconds, CFG.ledger_window_seconds


def order(ts: float = T0, amount: int = 1240, status: str = "paid", cur: str = "USD", eid: str = "e-1",
          store: str = "US00001", test: bool = False) -> Record:
    return Record(ORDERS, ts, eid, amount, cur, status, store, test)


def pay(ts: float = T0 + 10, amount: int = 1240, status: str = "captured", cur: str = "USD",
        pid: str = "pay-1", test: bool = False) -> Record:
    return Record(PAYMENTS, ts, pid, amount, cur, status, "", test)


def led(ts: float = T0 + 3600, amount: int = 1240, kind: str = "revenue", cur: str = "USD",
        eid: str = "je-1", test: bool = False) -> Record:
    return Record(LEDGER, ts, eid, amount, cur, kind, "", test)


def run(*records: Record, horizon: float = END, cfg: ReconConfig = CFG) -> OrderRecon:
    o = OrderRecon("1000231")
    for r in records:
        o.add(r, cfg)
    o.update(horizon, cfg)
    return o


def cats(o: OrderRecon) -> dict[str, tuple[str, float, int]]:
    return {c: ("open" if e.open else "resolved", e.first_seen, e.finding.amount) for c, e in o.exceptions.items()}


# --------------------------------------------------------------------------- categories


def test_matched_exactly() -> None:
    o = run(order(), pay(), led())
    assert o.exceptions == {}
    row = o.order_row(CFG)
    assert row["outcome"] == "matched"
    assert (row["order_minor"], row["payments_minor"], row["ledger_minor"]) == (1240, 1240, 1240)
    assert row["payment_variance_minor"] == 0 and row["ledger_variance_minor"] == 0


def test_matched_within_tolerance_records_the_variance() -> None:
    cfg = ReconConfig(tolerance_abs_minor=5)
    o = run(order(), pay(amount=1237), led(amount=1242), cfg=cfg)
    assert o.exceptions == {}
    row = o.order_row(cfg)
    assert row["outcome"] == "matched_within_tolerance"
    assert (row["payment_variance_minor"], row["ledger_variance_minor"]) == (-3, 2)


def test_relative_tolerance() -> None:
    cfg = ReconConfig(tolerance_abs_minor=0, tolerance_rel=0.01)  # 1 % of 10000 = 100
    assert run(order(amount=10000), pay(amount=9901), led(amount=10000), cfg=cfg).exceptions == {}
    assert "partial_payment" in run(order(amount=10000), pay(amount=9899), led(amount=10000), cfg=cfg).exceptions


def test_missing_payment_opens_at_the_payment_deadline() -> None:
    o = run(order(), led())
    assert cats(o) == {"missing_payment": ("open", T0 + PW, 1240)}
    e = o.exceptions["missing_payment"]
    assert e.finding.order == 1240 and e.finding.payments is None and e.finding.ledger == 1240
    assert o.order_row(CFG)["outcome"] == "exception"


def test_missing_ledger_opens_at_the_ledger_deadline() -> None:
    o = run(order(), pay())
    assert cats(o) == {"missing_ledger": ("open", T0 + LW, 1240)}


def test_orphan_payment_and_orphan_ledger() -> None:
    o = run(pay(ts=T0), led(ts=T0 + 60, amount=1240))
    ow = CFG.order_window_seconds
    assert cats(o) == {"orphan_payment": ("open", T0 + ow, 1240), "orphan_ledger": ("open", T0 + ow, 1240)}
    row = o.order_row(CFG)
    assert row["store_id"] == "UNKNOWN" and row["order_status"] is None


def test_amount_mismatch_between_ledger_and_order() -> None:
    o = run(order(), pay(), led(amount=1200))
    assert cats(o) == {"amount_mismatch": ("open", T0 + LW, 40)}
    assert o.exceptions["amount_mismatch"].finding.variance == -40


@pytest.mark.parametrize("amount", [124000, 12])
def test_unit_scale_mismatch_is_its_own_category(amount: int) -> None:
    o = run(order(), pay(amount=amount), led())
    assert cats(o) == {"unit_scale_mismatch": ("open", T0 + PW, 1240)}
    assert o.exceptions["unit_scale_mismatch"].finding.payments == amount


def test_a_declared_source_scale_is_applied_before_matching() -> None:
    cfg = ReconConfig(scale_exponents=(0, -2, 0))  # payments known to send cents x 100
    o = run(order(), pay(amount=124000), led(), cfg=cfg)
    assert o.exceptions == {} and o.order_row(cfg)["payments_minor"] == 1240


def test_currency_mismatch() -> None:
    o = run(order(), pay(cur="EUR"), led())
    assert cats(o) == {"currency_mismatch": ("open", T0 + PW, 1240)}


def test_refunded_order_with_captured_payment_and_no_refund_is_a_status_mismatch() -> None:
    refunded_at = T0 + 3600
    o = run(order(), order(ts=refunded_at, status="refunded", eid="e-2"), pay(), led(),
            led(ts=refunded_at + 60, kind="refund", eid="je-2"))
    assert cats(o) == {"status_mismatch": ("open", refunded_at + PW, 1240)}


def test_cancelled_order_that_was_charged_is_a_status_mismatch() -> None:
    o = run(order(status="cancelled"), pay())
    assert cats(o) == {"status_mismatch": ("open", T0 + PW, 1240)}


def test_cancelled_order_with_nothing_charged_is_matched() -> None:
    o = run(order(status="cancelled"))
    assert o.exceptions == {} and o.order_row(CFG)["outcome"] == "matched"


def test_refund_flow_matched_on_all_three_sources() -> None:
    r = T0 + 3600
    o = run(order(), pay(), led(), order(ts=r, status="refunded", eid="e-2"),
            pay(ts=r + 5, status="refunded", pid="pay-2"), led(ts=r + 600, kind="refund", eid="je-2"))
    assert o.exceptions == {}
    assert o.order_row(CFG)["outcome"] == "matched"


def test_partial_payment_and_overpayment() -> None:
    o = run(order(), pay(amount=1000), led())
    assert cats(o) == {"partial_payment": ("open", T0 + PW, 240)}
    o = run(order(), pay(amount=1240), pay(amount=100, pid="pay-2"), led())
    assert cats(o) == {"overpayment": ("open", T0 + PW, 100)}


def test_split_tender_matches() -> None:
    o = run(order(), pay(amount=1000), pay(ts=T0 + 20, amount=240, pid="pay-2"), led())
    assert o.exceptions == {} and o.order_row(CFG)["payments_minor"] == 1240


def test_payment_refund_without_ledger_refund() -> None:
    r = T0 + 3600
    o = run(order(), pay(), led(), order(ts=r, status="refunded", eid="e-2"),
            pay(ts=r + 5, status="refunded", pid="pay-2"))
    assert cats(o) == {"refund_unmatched": ("open", r + LW, 1240)}


def test_ledger_refund_without_payment_refund_on_a_paid_order() -> None:
    o = run(order(), pay(), led(), led(ts=T0 + 7200, kind="refund", eid="je-2", amount=500))
    assert cats(o) == {"refund_unmatched": ("open", T0 + 7200 + PW, 500)}


def test_duplicate_with_different_content_is_reported_and_counted_once() -> None:
    o = run(order(), pay(), pay(ts=T0 + 30, amount=1300), led())
    assert cats(o) == {"duplicate": ("open", T0 + 30, 1300)}
    assert o.order_row(CFG)["payments_minor"] == 1240  # the first version is the one matched


def test_exact_repeat_counts_once_and_is_not_a_duplicate() -> None:
    o = OrderRecon("1")
    assert o.add(pay(), CFG) is True
    assert o.add(pay(), CFG) is False
    assert o.add(pay(ts=T0 + 99), CFG) is False  # restamped retry: same content
    o.add(order(), CFG)
    o.add(led(), CFG)
    o.update(END, CFG)
    assert o.exceptions == {} and len(o.records) == 3


def test_test_currency_and_test_flag_are_excluded_and_counted() -> None:
    o = run(order(cur="NZD", amount=500), pay(cur="NZD", amount=500), led(amount=500, test=True))
    assert list(o.exceptions) == [EXCLUDED_TEST_DATA]
    e = o.exceptions[EXCLUDED_TEST_DATA]
    assert (e.open, e.finding.amount, e.finding.order, e.finding.payments, e.finding.ledger) == (
        False, 1500, 500, 500, 500)
    row = o.order_row(CFG)
    assert (row["outcome"], row["test_events"], row["test_minor"]) == ("excluded", 3, 1500)


def test_pending_inside_the_arrival_window() -> None:
    o = OrderRecon("1")
    o.add(order(), CFG)
    step = o.update(T0 + PW - 1, CFG)
    assert o.exceptions == {} and step.order_row is None  # pending rows are not published
    assert o.order_row(CFG)["outcome"] == "pending"


# --------------------------------------------------------------------------- time


def test_late_arrival_resolves_its_exception_with_both_timestamps() -> None:
    o = OrderRecon("1")
    o.add(order(), CFG)
    o.add(led(), CFG)
    step = o.update(T0 + 1000, CFG)
    assert [c.record.category for c in step.changes] == ["missing_payment"]
    o.add(pay(ts=T0 + 1200), CFG)
    assert not o.update(T0 + 1200, CFG, arrival_ts=T0 + 1200).changes  # the horizon is exclusive
    step = o.update(T0 + 1201, CFG, arrival_ts=T0 + 1200)
    (change,) = step.changes
    e = change.record
    assert (e.category, e.open, e.first_seen, e.last_seen, e.resolved_at) == (
        "missing_payment", False, T0 + PW, T0 + 1200, T0 + 1200)
    assert e.finding.payments == 1240  # the amounts that resolved it
    assert list(o.exceptions) == ["missing_payment"]  # one record, never a second one
    assert step.order_row is not None and step.order_row["outcome"] == "matched"


def test_ticks_do_not_change_what_is_decided() -> None:
    records = [order(), led(), pay(ts=T0 + 1200)]
    once = run(*records)
    o = OrderRecon("1000231")
    for h in (T0, T0 + 100, T0 + 899, T0 + 900, T0 + 1000, T0 + 1200, T0 + 5000, END):
        for r in records:
            if r.ts <= h:
                o.add(r, CFG)
        o.update(h, CFG)
    assert cats(o) == cats(once) == {"missing_payment": ("resolved", T0 + PW, 1240)}


@pytest.mark.parametrize("arrival", [
    ["ledger", "order", "payment"], ["payment", "order", "ledger"], ["ledger", "payment", "order"]])
def test_out_of_order_arrival_gives_the_in_order_result(arrival: list[str]) -> None:
    by = {"order": order(), "payment": pay(ts=T0 + 1300, amount=1000), "ledger": led()}
    in_order = run(by["order"], by["payment"], by["ledger"])
    o = OrderRecon("1000231")
    seen: dict[int, float] = {}
    for name in arrival:
        r = by[name]
        o.add(r, CFG)
        seen[r.source] = r.ts
        o.update(min(seen.values()) if len(seen) == 3 else -math.inf, CFG, arrival_ts=r.ts)
    o.update(END, CFG)
    assert cats(o) == cats(in_order) == {"missing_payment": ("resolved", T0 + PW, 1240),
                                         "partial_payment": ("open", T0 + 1300, 240)}


def test_data_later_than_the_clock_resolves_what_was_published() -> None:
    o = OrderRecon("1")
    o.add(order(), CFG)
    o.add(led(), CFG)
    o.update(T0 + 1000, CFG)  # horizon promised every payment up to T0+1000 was seen
    o.add(pay(ts=T0 + 100), CFG)  # ... but one from T0+100 arrives now
    step = o.update(T0 + 1100, CFG, arrival_ts=T0 + 100)
    e = step.changes[0].record
    assert (e.category, e.open, e.first_seen, e.resolved_at) == ("missing_payment", False, T0 + PW, T0 + PW)


def test_the_horizon_never_goes_back() -> None:
    o = run(order(), led(), horizon=T0 + 1000)
    o.update(T0, CFG)
    assert o.exceptions["missing_payment"].open


def test_expiry_and_next_due() -> None:
    o = OrderRecon("1")
    o.add(order(), CFG)
    o.update(T0, CFG)
    assert o.next_due(CFG) == T0  # the order's own timestamp is not swept yet (exclusive horizon)
    o.update(T0 + 1, CFG)
    assert o.next_due(CFG) == T0 + PW
    for r in (pay(), led()):
        o.add(r, CFG)
    o.update(T0 + 3600, CFG)
    assert o.expires_at(CFG) == T0 + LW + CFG.retention_seconds
    o2 = run(order(), horizon=T0 + LW)
    assert o2.expires_at(CFG) == T0 + LW + CFG.open_retention_seconds  # open exceptions stay longer


# --------------------------------------------------------------------------- alerts


def test_alert_fires_at_the_threshold_and_resolves_with_the_exception() -> None:
    o = OrderRecon("1")
    o.add(order(), CFG)
    o.add(led(), CFG)
    (c,) = o.update(T0 + 1000, CFG).changes
    assert c.fire and not c.resolve
    o.add(pay(ts=T0 + 1200), CFG)
    (c,) = o.update(T0 + 1201, CFG).changes
    assert c.resolve and not c.fire


def test_small_exceptions_do_not_alert_and_open_and_resolve_at_once_gives_both() -> None:
    o = OrderRecon("1")
    for r in (order(amount=500), led(amount=500)):
        o.add(r, CFG)
    (c,) = o.update(END, CFG).changes
    assert not c.fire and not c.record.alerted  # 500 < 1000
    o = OrderRecon("1")
    for r in (order(), led(), pay(ts=T0 + 1200)):
        o.add(r, CFG)
    (c,) = o.update(END, CFG).changes
    assert c.fire and c.resolve  # the replay sees the whole episode at once: same alerts as streaming


# --------------------------------------------------------------------------- state


def test_state_round_trips_through_json_mid_stream() -> None:
    records = [order(), pay(amount=1000), led(ts=T0 + 50), pay(ts=T0 + 60, amount=1300, pid="pay-1"),
               order(ts=T0 + 70, cur="NZD", eid="e-9")]
    straight = OrderRecon("1")
    cut = OrderRecon("1")
    for i, r in enumerate(records):
        straight.add(r, CFG)
        straight.update(r.ts, CFG)
        cut.add(r, CFG)
        cut.update(r.ts, CFG)
        cut = OrderRecon.from_state("1", json.loads(json.dumps(cut.to_state(CFG))))
        assert cut.to_state(CFG) == straight.to_state(CFG), i
    a, b = straight.update(END, CFG), cut.update(END, CFG)
    assert [x.record.to_list() for x in a.changes] == [x.record.to_list() for x in b.changes]


def test_state_is_small() -> None:
    o = run(order(), pay(), horizon=T0 + 60)
    assert len(json.dumps(o.to_state(CFG))) < 400


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="time zone"):
        ReconConfig(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="alert categories"):
        ReconConfig(alert_categories=("nope",))
    with pytest.raises(ValueError, match="scale_exponents"):
        ReconConfig(scale_exponents=(0, 9, 0))


def test_business_day_is_local_to_the_store() -> None:
    cfg = ReconConfig(store_timezones=(("JP001", "Asia/Tokyo"),))
    late_evening = T0 + 14 * 3600  # 2026-02-18T00:00Z: still the 17th in New York, the 18th in Tokyo
    assert str(cfg.business_day("US00001", late_evening)) == "2026-02-17"
    assert str(cfg.business_day("JP001", late_evening)) == "2026-02-18"


# --------------------------------------------------------------------------- property


def _records() -> st.SearchStrategy[list[Record]]:
    times = st.integers(0, 30_000).map(lambda s: T0 + s)
    amounts = st.sampled_from([1240, 1000, 240, 124000, 1239])
    rec = st.one_of(
        st.builds(order, ts=times, amount=amounts, status=st.sampled_from(["paid", "paid", "refunded", "cancelled"]),
                  cur=st.sampled_from(["USD", "USD", "EUR", "NZD"]), eid=st.sampled_from(["e-1", "e-2"])),
        st.builds(pay, ts=times, amount=amounts, status=st.sampled_from(["captured", "captured", "refunded"]),
                  pid=st.sampled_from(["p-1", "p-2", "p-3"])),
        st.builds(led, ts=times, amount=amounts, kind=st.sampled_from(["revenue", "revenue", "refund"]),
                  eid=st.sampled_from(["l-1", "l-2"])),
    )
    return st.lists(rec, min_size=1, max_size=7)


@settings(max_examples=300, deadline=None)
@given(records=_records(), interleave=st.randoms(use_true_random=False))
def test_any_interleaving_of_the_sources_gives_the_batch_result(records: list[Record], interleave) -> None:  # type: ignore[no-untyped-def]
    """Each source arrives in time order (Kafka per partition), the sources interleave at random,
    the horizon is the lowest per-source clock: the result equals the all-at-once evaluation."""
    batch = run(*records)
    queues = [sorted((r for r in records if r.source == s), key=lambda r: r.ts) for s in (ORDERS, PAYMENTS, LEDGER)]
    clocks = [-math.inf] * 3
    o = OrderRecon("1000231")
    while any(queues):
        s = interleave.choice([i for i, q in enumerate(queues) if q])
        r = queues[s].pop(0)
        clocks[s] = max(clocks[s], r.ts)
        o.add(r, CFG)
        o.update(min(clocks), CFG, arrival_ts=r.ts)
        o = OrderRecon.from_state(o.order_id, json.loads(json.dumps(o.to_state(CFG))))
    o.update(END, CFG)
    assert {c: e.to_list() for c, e in o.exceptions.items()} == {c: e.to_list() for c, e in batch.exceptions.items()}
    assert o.order_row(CFG) == batch.order_row(CFG)
    # once everything is swept, the share the daily close would take agrees with the recon_orders row
    row, share = batch.order_row(CFG), batch.contribution(END, CFG)
    assert (share is None) == (row["outcome"] == "excluded")  # test records only: part of no day
    if share is None:
        return
    assert share.currency == row["currency"]
    assert (share.matched, share.decided) == (row["outcome"] in ("matched", "matched_within_tolerance"),
                                              row["outcome"] in ("matched", "matched_within_tolerance", "exception"))
    assert share.unmatched_minor == (next((x for x in (row["order_minor"], row["payments_minor"], row["ledger_minor"])
                                           if x is not None), 0) if row["outcome"] == "exception" else 0)


# --------------------------------------------------------------------------- daily close and SPC

NY_MIDNIGHT = 1_771_390_800.0  # 2026-02-18T05:00:00Z: the end of 2026-02-17 in New York
CLOSE = NY_MIDNIGHT + LW  # when the orders of 2026-02-17 (T0 is 05:00 that day in New York) are all decided


def test_a_day_closes_at_local_midnight_plus_the_ledger_window() -> None:
    from datetime import date

    assert CFG.close_ts("America/New_York", date(2026, 2, 17)) == CLOSE
    assert CFG.closed_through("America/New_York", CLOSE) == date(2026, 2, 16)  # exclusive: not yet
    assert CFG.closed_through("America/New_York", CLOSE + 0.001) == date(2026, 2, 17)
    # spring forward (2026-03-08 has 23 hours in New York): the close follows the local midnight
    assert CFG.close_ts("America/New_York", date(2026, 3, 8)) == 1_773_028_800.0 + LW  # 03-09 04:00Z
    cfg = ReconConfig(timezone="America/New_York", store_timezones=(("JP1", "Asia/Tokyo"),))
    assert cfg.zones() == ("America/New_York", "Asia/Tokyo") and cfg.zone_of("JP1") == "Asia/Tokyo"


def test_an_order_shares_its_day_as_of_the_close_whatever_comes_later() -> None:
    o = run(order(), pay(), horizon=CLOSE + 1)  # no ledger entry by the close: an exception
    assert o.close_due(CFG) == CLOSE
    share = o.contribution(CLOSE, CFG)
    assert (share.currency, share.decided, share.matched, share.unmatched_minor) == ("USD", True, False, 1240)
    o.add(led(ts=CLOSE + 3600), CFG)  # a late ledger entry resolves it after the close ...
    o.update(END, CFG)
    assert o.order_row(CFG)["outcome"] == "matched"  # ... recon_orders and recon_daily follow,
    assert o.contribution(CLOSE, CFG) == share  # the day's share as of its close does not
    before = run(order(), pay(), led(ts=CLOSE - 60))  # in before the close: matched that day
    assert before.contribution(CLOSE, CFG).matched


def test_shares_of_pending_orphan_and_test_orders() -> None:
    # refunded shortly before the close, the ledger refund is not due yet: pending, not decided
    o = run(order(), pay(), led(), order(ts=CLOSE - 600, status="refunded", eid="e-2"),
            pay(ts=CLOSE - 500, status="refunded", pid="pay-2"))
    share = o.contribution(CLOSE, CFG)
    assert share is not None and not share.decided and not share.matched
    orphan = run(pay())
    assert orphan.close_due(CFG) == math.inf  # store unknown: no store's day
    assert run(order(test=True)).close_due(CFG) == math.inf  # test data only
    assert run(order(cur="NZD")).contribution(CLOSE, CFG) is None


def test_the_close_is_due_until_the_share_is_sent_and_the_order_stays_until_then() -> None:
    cfg = ReconConfig(retention_seconds=0)
    o = run(order(), pay(), led(), horizon=T0 + LW + 1, cfg=cfg)
    assert o.next_due(cfg) == CLOSE  # matched and swept: only the close is left
    assert o.expires_at(cfg) > CLOSE  # a tiny retention must not drop it before
    o.contributed = True
    o = OrderRecon.from_state(o.order_id, json.loads(json.dumps(o.to_state(cfg))))
    assert o.contributed and o.close_due(cfg) == math.inf and o.next_due(cfg) < CLOSE


def _series(days: int, drop_on: int | None = None) -> list[tuple[str, dict[str, list[int]]]]:
    from datetime import date, timedelta

    out = []
    for i in range(days):
        matched = 95 + (i * 7) % 4  # 95..98 of 100, steady
        if i == drop_on:
            matched = 60
        out.append(((date(2026, 1, 1) + timedelta(days=i)).isoformat(),
                    {"USD": [matched, 100, (100 - matched) * 1500]}))
    return out


def test_daily_series_fires_on_a_match_rate_drop_after_its_warm_up() -> None:
    from models.recon import DailySeries

    steady = DailySeries("US00001")
    assert [e for day, sums in _series(30) for e in steady.judge(day, sums)[0]] == []
    s = DailySeries("US00001")
    events = [e for day, sums in _series(30, drop_on=25) for e in s.judge(day, sums)[0]]
    firing = {metric: e for _cur, metric, e in events if e.kind == "firing"}
    assert set(firing) == {"match_rate", "unmatched_minor"}
    e = firing["match_rate"]
    assert e.rule == "WE1" and e.value == pytest.approx(0.60) and e.value < e.lower
    assert e.starts_at == 1_769_385_600.0  # 2026-01-26 00:00 UTC, the day of the drop
    assert e.key == "recon|US00001|USD|match_rate"  # ids as the batch command gave them
    early = DailySeries("US00001")  # 9 days of history < the 14 the store preset needs
    assert [e for day, sums in _series(10, drop_on=9) for e in early.judge(day, sums)[0]] == []


def test_daily_series_ignores_a_day_sent_again_and_round_trips_through_json() -> None:
    from models.recon import DailySeries

    days = _series(30, drop_on=25)
    straight = DailySeries("US00001")
    want = [e for day, sums in days for e in straight.judge(day, sums)[0]]
    s, got = DailySeries("US00001"), []
    for i, (day, sums) in enumerate(days):
        s = DailySeries.from_state(json.loads(json.dumps(s.to_state())))
        found, repeated = s.judge(day, sums)
        got += found
        assert repeated == 0
        if i % 5 == 0:  # the same day re-sent (a redelivery): nothing changes
            assert s.judge(day, sums) == ([], 1)
            assert s.judge(day, {"USD": [0, 100, 10**6]}) == ([], 1)
    assert got == want and len(json.dumps(s.to_state())) < 5000


def _summary(src: int, day: str, stores: dict | None = None, h: float = 0.0,
             zone: str = "America/New_York") -> dict:
    return {"t": "sum", "src": src, "zone": zone, "day": day, "h": h, "ts": h, "s": stores or {}}


def test_close_book_waits_for_every_partition_then_hands_each_store_its_day() -> None:
    from models.recon import CloseBook

    book = CloseBook()
    fast = book.apply(_summary(0, "2026-02-17", {"US1": {"USD": [9, 10, 500]}}, CLOSE + 1), CFG, 2, 0)
    assert fast.days == []  # partition 1 has said nothing yet
    # partition 0 is days ahead (a backlog): still nothing, partition 1 may hold orders of the 17th
    assert book.apply(_summary(0, "2026-02-19", {"US1": {"USD": [1, 1, 0]}}, CLOSE + 20 * 86400), CFG, 2,
                      0).days == []
    out = book.apply(_summary(1, "2026-02-17", {"US1": {"USD": [5, 5, 0]}, "US2": {"USD": [3, 4, 700]}},
                              CLOSE + 5), CFG, 2, 0)
    assert out.days == [("US1", "2026-02-17", {"USD": [14, 15, 500]}, CLOSE),
                        ("US2", "2026-02-17", {"USD": [3, 4, 700]}, CLOSE)]
    assert "2026-02-17" not in book.open["America/New_York"]  # bounded: a closed day keeps no sums
    # a repeat (re-sent after a restart) and orders that came after the close change nothing
    again = book.apply(_summary(1, "2026-02-17", {"US1": {"USD": [5, 5, 0]}}, CLOSE + 5), CFG, 2, 0)
    assert again.days == [] and again.ignored == [("America/New_York", "2026-02-17", "1")]
    out = book.apply(_summary(1, "2026-02-19", {}, CLOSE + 2 * 86400 + 9), CFG, 2, 0)
    assert out.days == [("US1", "2026-02-19", {"USD": [1, 1, 0]}, CLOSE + 2 * 86400)]


def test_close_book_stops_waiting_for_a_silent_partition_only_when_told_to() -> None:
    from models.recon import CloseBook

    patient = CloseBook()
    patient.apply(_summary(0, "2026-02-17", {"US1": {"USD": [9, 10, 500]}}, CLOSE + 1), CFG, 2, 0)
    assert patient.apply(_summary(0, "2026-03-30", {}, CLOSE + 40 * 86400), CFG, 2, 0).days == []
    book = CloseBook()
    book.apply(_summary(0, "2026-02-17", {"US1": {"USD": [9, 10, 500]}}, CLOSE + 1), CFG, 2, 3600)
    assert book.apply(_summary(0, "2026-02-17", {}, CLOSE + 3599), CFG, 2, 3600).days == []
    out = book.apply(_summary(0, "2026-02-18", {}, CLOSE + 3600), CFG, 2, 3600)
    assert out.days == [("US1", "2026-02-17", {"USD": [9, 10, 500]}, CLOSE)]
    late = book.apply(_summary(1, "2026-02-17", {"US1": {"USD": [1, 1, 0]}}, CLOSE + 7200), CFG, 2, 3600)
    assert late.days == [] and late.ignored == [("America/New_York", "2026-02-17", "1")]


def test_close_book_judges_the_chain_once_every_zone_closed_the_day() -> None:
    from datetime import date, timedelta

    from models.recon import CloseBook

    cfg = ReconConfig(store_timezones=(("JP1", "Asia/Tokyo"),))
    book, fired = CloseBook(), []
    for i, (day, sums) in enumerate(_series(30, drop_on=25)):
        d = date.fromisoformat(day)
        tokyo = cfg.close_ts("Asia/Tokyo", d) + 1
        ny = cfg.close_ts("America/New_York", d) + 1
        a = book.apply(_summary(0, day, {"JP1": {"USD": [0, 0, 0]}}, tokyo, "Asia/Tokyo"), cfg, 1, 86400)
        assert a.chain == []  # New York has not closed the day yet
        b = book.apply(_summary(0, day, {"US1": sums}, ny), cfg, 1, 86400)
        assert [s for s, *_ in a.days + b.days] == ["JP1", "US1"]
        fired += [(cur, metric, e.kind, e.rule, close) for cur, metric, e, close in b.chain]
        book = CloseBook.from_state(json.loads(json.dumps(book.to_state())))
        if i == 24:
            assert fired == []
    drop_close = cfg.close_ts("America/New_York", date(2026, 1, 1) + timedelta(days=25))
    assert ("USD", "match_rate", "firing", "WE1", drop_close) in fired
    assert book.open == {"America/New_York": {}, "Asia/Tokyo": {}} and book.chain == {}
