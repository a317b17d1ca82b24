"""agents.recon: the Processor over decoded contract events, settings, replay, tables and views."""

from __future__ import annotations

import asyncio
import io
import math
import zlib
from collections import deque
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from agents.core.contract import Outputs
from agents.core.events import DECODERS
from agents.core.settings import ConfigError, Settings, load_env
from agents.recon import ReconProcessor, ReconSettings, from_settings
from agents.registry import PROCESSORS
from models.recon import ReconConfig
from stream_app.replay import run_replay
from stream_app.runtime import db
from stream_app.runtime.store import PartitionStore
from tests.agents.recon_data import T0, generate, generate_days

ORDER = {"event_id": "e-1", "order_id": "1000231", "store_id": "US00001", "ts": T0, "status": "paid",
         "total": "12.40", "currency": "USD", "items": []}
PAYMENT = {"event_id": "e-2", "payment_id": "pay-88", "order_id": "1000231", "ts": T0 + 5,
           "amount_minor": 1240, "currency": "USD", "status": "captured", "method": "card"}
LEDGER = {"event_id": "e-3", "entry_id": "je-77", "order_id": "1000231", "ts": T0 + 60,
          "amount": "12.40", "currency": "USD", "account": "4000-revenue", "kind": "revenue"}


def feed(proc: ReconProcessor, store: Any, items: list[tuple[str, dict[str, Any]]]) -> Outputs:
    """Decode each item with the worker's decoders and process it, as one message each."""
    out = Outputs()
    for topic, obj in items:
        decoded = DECODERS[topic](orjson.dumps(obj))
        assert not decoded.errors, decoded.errors
        out.merge(proc.process(store, topic, decoded.events))
    return out


def exceptions(out: Outputs) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["order_id"], r["category"]): r for r in out.rows.get("recon_exceptions", [])}


def test_registered_and_configured_from_the_environment() -> None:
    assert "recon" in PROCESSORS
    proc = from_settings(Settings(partitions=6))
    assert proc.topics == ("orders", "payments", "ledger") and proc.use_case == "recon"
    assert proc.internal_topics == ("spcwatch.recon.close", "spcwatch.recon.by-store")
    assert proc.partitions == 6  # the daily close waits for each of the worker's partitions
    s = load_env(ReconSettings, "SPCWATCH_RECON_", {"SPCWATCH_RECON_TEST_CURRENCIES": "nzd,aud",
                                                      "SPCWATCH_RECON_PAYMENTS_SCALE_EXPONENT": "-2",
                                                      "SPCWATCH_RECON_STORE_TIMEZONES": "JP1=Asia/Tokyo"})
    assert isinstance(s, ReconConfig)  # one dataclass: the settings are the model's config
    assert s.test_currencies == ("NZD", "AUD") and s.scale_exponents == (0, -2, 0)
    assert s.store_timezones == (("JP1", "Asia/Tokyo"),)


@pytest.mark.parametrize(("env", "message"), [
    ({"SPCWATCH_RECON_TIMEZONE": "Nowhere/Land"}, "unknown time zone"),
    ({"SPCWATCH_RECON_TOLERANCE_ABS_MINOR": "one"}, "SPCWATCH_RECON_TOLERANCE_ABS_MINOR must be an integer"),
    ({"SPCWATCH_RECON_STORE_TIMEZONES": "JP1"}, "STORE=Zone"),
    ({"SPCWATCH_RECON_ALERT_CATEGORIES": "missing_payment,bogus"}, "unknown alert categories"),
    ({"SPCWATCH_RECON_CLOSE_WAIT_SECONDS": "-1"}, "SPCWATCH_RECON_CLOSE_WAIT_SECONDS must be >= 0"),
    ({"SPCWATCH_RECON_LEDGER_SCALE_EXPONENT": "x"}, "SPCWATCH_RECON_LEDGER_SCALE_EXPONENT must be an integer"),
    ({"SPCWATCH_RECON_ORDERS_SCALE_EXPONENT": "9"}, "SPCWATCH_RECON_ORDERS_SCALE_EXPONENT, .* must be three integers"),
])
def test_bad_settings_are_one_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_env(ReconSettings, "SPCWATCH_RECON_", env)


def test_integer_and_padded_string_ids_are_one_order_and_money_forms_agree() -> None:
    proc, store = ReconProcessor(), {}
    out = feed(proc, store, [("orders", {**ORDER, "order_id": 1000231}),
                             ("payments", {**PAYMENT, "order_id": " 1000231 "}),
                             ("ledger", LEDGER)])
    assert list(store) == ["o:1000231"]
    assert proc.key("payments", DECODERS["payments"](orjson.dumps({**PAYMENT, "order_id": 1000231})).events[0]) \
        == "1000231"
    (row,) = out.rows["recon_orders"]
    assert (row["outcome"], row["order_minor"], row["payments_minor"], row["ledger_minor"]) == (
        "matched", 1240, 1240, 1240)


@pytest.mark.parametrize(("currency", "total", "minor"), [("JPY", "850", 850), ("KWD", "1.250", 1250)])
def test_currency_exponents(currency: str, total: str, minor: int) -> None:
    proc, store = ReconProcessor(), {}
    out = feed(proc, store, [("orders", {**ORDER, "currency": currency, "total": total}),
                             ("payments", {**PAYMENT, "currency": currency, "amount_minor": minor}),
                             ("ledger", {**LEDGER, "currency": currency, "amount": total})])
    (row,) = out.rows["recon_orders"]
    assert (row["outcome"], row["order_minor"], row["currency"]) == ("matched", minor, currency)


def test_deadlines_wait_for_every_source_clock_then_open_at_the_deadline() -> None:
    proc, store = ReconProcessor(), {}
    feed(proc, store, [("orders", ORDER), ("ledger", LEDGER)])
    # orders and ledger are far ahead, but payments have said nothing past T0: nothing is decided
    other = {**PAYMENT, "payment_id": "pay-x", "order_id": "2", "ts": T0}
    feed(proc, store, [("orders", {**ORDER, "order_id": "3", "event_id": "e-9", "ts": T0 + 5000}),
                       ("ledger", {**LEDGER, "order_id": "3", "entry_id": "je-9", "ts": T0 + 5000}),
                       ("payments", other)])
    assert not exceptions(proc.tick(store, T0 + 5000))
    # the payments clock passes the deadline: missing_payment opens, dated at the deadline
    out = feed(proc, store, [("payments", {**other, "payment_id": "pay-y", "ts": T0 + 1000})])
    out.merge(proc.tick(store, T0 + 5000))
    row = exceptions(out)[("1000231", "missing_payment")]
    assert row["status"] == "open" and row["first_seen"].timestamp() == T0 + 900
    assert row["store_id"] == "US00001" and str(row["business_day"]) == "2026-02-17"
    assert row["amount_minor"] == 1240 and row["age_seconds"] is None


def test_late_arrival_resolves_the_row_and_the_alert() -> None:
    proc, store = ReconProcessor(ReconSettings(alert_min_amount_minor=1000)), {}
    other = [(t, {**obj, "order_id": "9", "ts": T0 + 1000})
             for t, obj in (("orders", ORDER), ("payments", PAYMENT), ("ledger", LEDGER))]
    out = feed(proc, store, [("orders", ORDER), ("ledger", LEDGER), *other])
    out.merge(proc.tick(store, T0 + 1000))
    (firing,) = out.alerts
    assert (firing.rule, firing.status, firing.entity) == (
        "RECON_MISSING_PAYMENT", "firing", {"store_id": "US00001", "order_id": "1000231"})
    out = feed(proc, store, [("payments", {**PAYMENT, "ts": T0 + 1200})])
    assert not exceptions(out) and not out.alerts  # other sources have not reached T0+1200: undecided
    out = feed(proc, store, [(t, {**obj, "order_id": "8", "ts": T0 + 1300})
                             for t, obj in (("orders", ORDER), ("payments", PAYMENT), ("ledger", LEDGER))])
    out.merge(proc.tick(store, T0 + 1300))
    row = exceptions(out)[("1000231", "missing_payment")]
    assert (row["status"], row["resolved_at"].timestamp(), row["last_seen"].timestamp()) == (
        "resolved", T0 + 1200, T0 + 1200)
    assert row["age_seconds"] == 300
    (resolved,) = out.alerts
    assert resolved.alert_id == firing.alert_id and resolved.status == "resolved"


def test_partitions_keep_their_own_clocks_and_ticks_touch_only_their_keys() -> None:
    proc = ReconProcessor()
    table: dict[str, Any] = {}
    p0, p1 = PartitionStore(table, 0), PartitionStore(table, 1)
    feed(proc, p0, [("orders", ORDER)])
    far = [("orders", {**ORDER, "order_id": "5", "ts": T0 + 9e4}), ("payments", {**PAYMENT, "order_id": "5",
           "ts": T0 + 9e4}), ("ledger", {**LEDGER, "order_id": "5", "ts": T0 + 9e4})]
    feed(proc, p1, far)
    assert proc.horizon(p1) == T0 + 9e4 and proc.horizon(p0) == -math.inf
    assert not exceptions(proc.tick(p0, T0 + 9e4))  # partition 0's payments clock never moved
    assert table["o:1000231"]["p"] == 0


def test_expired_orders_leave_state_once_their_day_has_closed() -> None:
    proc, store = ReconProcessor(ReconSettings(retention_seconds=3600)), {}
    feed(proc, store, [("orders", ORDER), ("payments", PAYMENT), ("ledger", LEDGER)])
    close = T0 + 22 * 3600  # 2026-02-17 closes at 06:00 in New York the next morning
    for later, gone in ((T0 + 6 * 3600 + 3601, False), (close + 1, True)):
        feed(proc, store, [(t, {**obj, "order_id": f"x{later}", "ts": later})
                           for t, obj in (("orders", ORDER), ("payments", PAYMENT), ("ledger", LEDGER))])
        proc.tick(store, later)
        assert ("o:1000231" not in store) == gone and f"o:x{later}" in store


def _replay(tmp_path: Path, events: list[dict[str, Any]], name: str = "r") -> str:
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    url = f"sqlite+aiosqlite:///{tmp_path / (name + '.db')}"
    report = asyncio.run(run_replay(Settings(db_url=url), ReconProcessor(), path, io.StringIO()))
    assert not report.invalid
    return url


async def _query(url: str, sql: str) -> list[tuple]:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql))).all()]
    finally:
        await engine.dispose()


def test_replay_finds_every_injected_problem_and_nothing_else(tmp_path: Path) -> None:
    sc = generate(n_orders=600, seed=3)
    url = _replay(tmp_path, sc.events)
    rows = asyncio.run(_query(url, "SELECT order_id, category, status FROM recon_exceptions"))
    assert {(o, c): s for o, c, s in rows} == sc.expected
    # the same file again: the same rows, no more
    _replay(tmp_path, sc.events, "r")
    again = asyncio.run(_query(url, "SELECT order_id, category, status FROM recon_exceptions"))
    assert sorted(again) == sorted(rows)
    outcomes = dict(asyncio.run(_query(url, "SELECT order_id, outcome FROM recon_orders")))
    for oid, kind in sc.kinds.items():
        if kind in ("clean", "split", "refund", "retry", "intid"):
            assert outcomes[oid] == "matched", (oid, kind)
        elif kind == "tolerance":
            assert outcomes[oid] == "matched_within_tolerance"
        elif kind == "test":
            assert outcomes[oid] == "excluded"


def test_daily_views_sum_the_orders(tmp_path: Path) -> None:
    sc = generate(n_orders=300, seed=5)
    url = _replay(tmp_path, sc.events)
    daily = asyncio.run(_query(url, "SELECT store_id, business_day, currency, orders, matched, exceptions, "
                                    "match_rate, test_events FROM recon_daily"))
    by_hand = asyncio.run(_query(url, "SELECT store_id, COUNT(*) FROM recon_orders WHERE outcome "
                                      "IN ('matched', 'matched_within_tolerance') GROUP BY store_id"))
    matched = {s: n for s, _d, c, _o, n, _e, _r, _t in daily if c == "USD"}
    for store, n in by_hand:
        if store != "TEST1":
            assert matched[store] == n
    for _store, _day, cur, _orders, m, e, rate, _t in daily:
        if cur == "USD" and m + e:
            assert rate == pytest.approx(m / (m + e))
    tests = [row for row in daily if row[0] == "TEST1"]
    assert sum(r[7] for r in tests) == 16 * 3
    cats = asyncio.run(_query(url, "SELECT category, SUM(exceptions) FROM recon_daily_exceptions "
                                   "GROUP BY category"))
    expected: dict[str, int] = {}
    for (_oid, cat) in sc.expected:
        expected[cat] = expected.get(cat, 0) + 1
    assert dict(cats) == expected


def _spc(alerts: list[dict[str, Any]]) -> list[tuple]:
    """Daily SPC alerts (entity with a metric), as (store, metric, rule, status, start, alert id)."""
    return sorted((a["entity"]["store_id"], a["entity"]["metric"], a["rule"], a["status"], a["starts_at"][:10],
                   a["alert_id"]) for a in alerts if "metric" in a["entity"])


def test_replay_publishes_the_daily_spc_alerts_as_the_days_close(tmp_path: Path, monkeypatch, capfd) -> None:  # type: ignore[no-untyped-def]
    from stream_app.cli import main

    monkeypatch.setenv("SPCWATCH_DB_URL", f"sqlite+aiosqlite:///{tmp_path / 'spc.db'}")
    for name, drop in (("steady", None), ("drop", ("US00001", 16))):
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in generate_days(drop=drop).events))
        assert main(["replay", "recon", "--input", str(path), "--output", str(tmp_path / f"{name}.out")]) == 0
    assert _spc([orjson.loads(x) for x in (tmp_path / "steady.out").read_text().splitlines()]) == []
    alerts = [orjson.loads(x) for x in (tmp_path / "drop.out").read_text().splitlines()]
    firing = [a[:5] for a in _spc(alerts) if a[3] == "firing"]
    # day 16 is 2026-03-05: the store and the chain, on both charts, and nothing else
    assert firing == [(store, metric, "WE1", "firing", "2026-03-05") for store in ("ALL", "US00001")
                      for metric in ("match_rate", "unmatched_minor")]
    spc = [a for a in alerts if "metric" in a["entity"]]
    assert all(a["use_case"] == "recon" and a["entity"]["currency"] == "USD" for a in spc)
    assert [a["status"] for a in spc if a["entity"]["metric"] == "match_rate"
            and a["entity"]["store_id"] == "US00001"] == ["firing", "resolved"]  # back in control later
    last = {a["alert_id"]: a["status"] for a in spc}  # the alerts table keeps each episode's last state
    url = f"sqlite+aiosqlite:///{tmp_path / 'spc.db'}"
    stored = asyncio.run(_query(url, "SELECT alert_id, status FROM alerts WHERE entity_key LIKE '%metric=%'"))
    assert dict(stored) == last and "resolved" in last.values()


def _partition(key: str, n: int) -> int:
    return zlib.crc32(key.encode()) % n


def test_staged_hops_with_a_partition_days_behind_give_the_replay_alerts() -> None:
    """Two order partitions, one consumed entirely before the other (a worst-case backlog), every
    internal message delivered twice (at-least-once) and the table kept as JSON: the daily close
    waits for the slow partition, so the daily SPC alerts are the one-partition replay's."""
    sc = generate_days()
    decoded = []
    for e in sc.events:
        body = {k: v for k, v in e.items() if k != "topic"}
        decoded += [(e["topic"], ev) for ev in DECODERS[e["topic"]](orjson.dumps(body)).events]
    inline, store = ReconProcessor(), {}
    want = Outputs()
    for i, (topic, ev) in enumerate(decoded):
        want.merge(inline.process(store, topic, [ev]))
        if i % 50 == 0:
            want.merge(inline.tick(store, ev.ts))
    want.merge(inline.tick(store, decoded[-1][1].ts))
    expected = _spc([a.to_event() for a in want.alerts])
    assert len(expected) >= 6

    n = 2
    proc = ReconProcessor(partitions=n)
    table: dict[str, Any] = {}
    got: list[Any] = []

    def deliver(forward: list[tuple[str, str, dict]]) -> None:
        queue = deque(forward)
        while queue:
            topic, key, value = queue.popleft()
            part = PartitionStore(table, _partition(key, n))
            for _ in range(2):  # at least once: a redelivery changes nothing
                hop = proc.step(part, topic, [orjson.loads(orjson.dumps(value))], 0.0)
                got.extend(hop.alerts)
                queue.extend(hop.forward)

    for p in range(n):  # partition 0 to the end first, then partition 1
        part = PartitionStore(table, p)
        mine = [(t, ev) for t, ev in decoded if _partition(ev.order_id, n) == p]
        for i, (topic, ev) in enumerate(mine):
            deliver(proc.step(part, topic, [ev], ev.ts).forward)
            if i % 50 == 0 or i == len(mine) - 1:
                deliver(proc.step_tick(part, ev.ts).forward)
                fresh = orjson.loads(orjson.dumps(table))  # what the changelog keeps is JSON
                table.clear()
                table.update(fresh)
    firing = [a for a in _spc([a.to_event() for a in got]) if a[3] == "firing"]
    assert sorted(set(_spc([a.to_event() for a in got]))) == expected and len(firing) == 4
    assert all(len(orjson.dumps(v)) < 20_000 for k, v in table.items() if not k.startswith("o:"))


def test_replay_command_line(tmp_path: Path, monkeypatch, capfd) -> None:  # type: ignore[no-untyped-def]
    from stream_app.cli import main

    later = {**ORDER, "order_id": "T1", "event_id": "t-1", "ts": T0 + 2000, "currency": "NZD"}
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"topic": t, **obj}) + b"\n"
                              for t, obj in (("orders", ORDER), ("ledger", LEDGER), ("orders", later))))
    monkeypatch.setenv("SPCWATCH_DB_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("SPCWATCH_RECON_IDLE_SOURCE_SECONDS", "60")  # no payments at all: let deadlines pass
    monkeypatch.setenv("SPCWATCH_RECON_ALERT_MIN_AMOUNT_MINOR", "0")
    assert main(["replay", "recon", "--input", str(path)]) == 0
    out, _ = capfd.readouterr()
    alerts = [orjson.loads(line) for line in out.splitlines()]
    assert [(a["rule"], a["status"]) for a in alerts] == [("RECON_MISSING_PAYMENT", "firing")]


def test_a_new_store_object_for_a_partition_starts_with_fresh_clocks() -> None:
    """After a rebalance the runner makes a new store for the partition and redelivers the events
    since the last checkpoint: clocks kept from the old store would run ahead of the state."""
    from stream_app.runtime.store import CachedStore, PartitionStore

    proc = ReconProcessor()
    table: dict = {}
    before = CachedStore(PartitionStore(table, 0), proc)
    for topic in ("orders", "payments", "ledger"):
        proc._clocks(before)[["orders", "payments", "ledger"].index(topic)] = 1_771_300_000.0
    assert proc.horizon(before) == 1_771_300_000.0
    after = CachedStore(PartitionStore(table, 0), proc)  # same partition, new store (as after forget())
    assert proc.horizon(after) == float("-inf")
    assert proc.horizon(before) == 1_771_300_000.0
