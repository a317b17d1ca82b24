"""UC-OP-02 store model: unit tests of the stages and the scenario tests of the issue.

The scenarios run the pure processor in memory (the same code as replay and,
hop by hop, the worker) over synthetic coffee-chain orders (tests/store_data.py).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import date, datetime, time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core.contract import Outputs
from agents.store import StoreProcessor
from models import SeriesDetector
from models.store import (
    CANCELLED,
    PAID,
    REFUNDED,
    STATUS_CODE,
    Calendar,
    ChainState,
    StoreConfig,
    StoreState,
    apply_order,
    day_metrics,
    poisson_cdf,
    rate_counts,
    robust_z,
)
from tests import store_data as sd

CLOSURE = ("US00005", 55, 10.0)  # stops trading at 10:00 on day 55
DIP_DAY = 36


def run(events: list, proc: StoreProcessor | None = None, store: dict | None = None, tick: float = 60.0,
        restart_at: int | None = None) -> tuple[Outputs, dict]:
    """Feed orders in the given order, ticking on event time like ``spcwatch replay``."""
    proc = proc or StoreProcessor()
    store = {} if store is None else store
    out = Outputs()
    wm = last = 0.0
    for i, e in enumerate(events):
        if restart_at is not None and i == restart_at:  # a restart: state through JSON, a new processor
            store = orjson.loads(orjson.dumps(store))
            proc = StoreProcessor()
        o = sd.to_order(e)
        out.merge(proc.process(store, "orders", [o]))
        wm = max(wm, o.ts)
        if wm - last >= tick:
            out.merge(proc.tick(store, wm))
            last = wm
    out.merge(proc.tick(store, wm))
    return out, store


def close_of(sc: sd.Scenario, index: int) -> float:
    """When day ``index`` closes (next local midnight + default grace)."""
    return datetime.combine(sc.day(index + 1), time(), sd.TZ).timestamp() + 3600


@pytest.fixture(scope="module")
def scenario() -> tuple[sd.Scenario, list, Outputs]:
    sc = sd.Scenario(days=70, chain_dip=(DIP_DAY, 0.7), closure=CLOSURE)
    events = sd.events(sc)
    out, _ = run(events)
    return sc, events, out


def firing(out: Outputs) -> list:
    return [a for a in out.alerts if a.status == "firing" and "withdrawn" not in a.summary]


# --------------------------------------------------------------------------- scenarios


def test_gradual_decline_is_flagged_within_8_business_days(scenario) -> None:  # type: ignore[no-untyped-def]
    sc, _, out = scenario
    start_close = close_of(sc, sc.decline_start)
    hits = sorted((a.starts_at, a.rule, a.rules, a.entity["metric"]) for a in firing(out)
                  if a.entity.get("store_id") == "US00001" and a.entity["metric"] in ("net_revenue", "orders")
                  and a.rule != "INTRADAY" and a.starts_at >= start_close - 86400)
    assert hits, "the decline at US00001 was never flagged"
    first_ts, rule, rules, metric = hits[0]
    days = round((first_ts - start_close) / 86400)  # 0: flagged at the close of the decline's first day
    print(f"US00001 decline flagged on day {days + 1} of the decline by {rule} ({'+'.join(rules)}) on {metric}")
    assert days + 1 <= 8


def test_abrupt_closure_fires_the_intraday_warning_within_two_hours(scenario) -> None:  # type: ignore[no-untyped-def]
    sc, _, out = scenario
    store, index, hour = CLOSURE
    stopped = datetime.combine(sc.day(index), time(), sd.TZ).timestamp() + hour * 3600
    alerts = [a for a in firing(out) if a.rule == "INTRADAY" and a.entity.get("store_id") == store
              and stopped <= a.starts_at < stopped + 86400]
    assert alerts, "no intraday warning for the closed store"
    assert alerts[0].starts_at - stopped <= 2 * 3600
    assert alerts[0].entity == {"store_id": store, "metric": "net_revenue"}


def test_intraday_judges_only_while_the_store_is_open(scenario) -> None:  # type: ignore[no-untyped-def]
    """The stores trade 06:00-21:00 with 3 % of the day's orders in the last hour: no INTRADAY after
    19:30, when less than INTRADAY_MIN_REMAINING (5 %) of the day is still to come (the close judges it)."""
    _, _, out = scenario
    intraday = [a for a in firing(out) if a.rule == "INTRADAY"]
    assert intraday, "the scenario's closure and decline raise INTRADAY warnings"
    late = [a for a in intraday if datetime.fromtimestamp(a.starts_at, sd.TZ).time() > time(19, 30)]
    assert late == [], [(a.entity, a.summary) for a in late]


def test_chain_wide_dip_is_one_chain_alert_not_ten(scenario) -> None:  # type: ignore[no-untyped-def]
    sc, _, out = scenario
    day_close = close_of(sc, DIP_DAY)
    chain = [a for a in firing(out) if "store_id" not in a.entity and abs(a.starts_at - day_close) < 86400]
    assert len({a.alert_id for a in chain}) == 1, chain  # intraday warning, then confirmed at close: one alert
    assert chain[-1].entity == {"metric": "net_revenue", "peer_group": "all"}
    assert "WE1" in chain[-1].rules
    store_alerts = [a for a in firing(out) if "store_id" in a.entity and a.entity["metric"] in ("net_revenue", "orders")
                    and abs(a.starts_at - day_close) < 3600]
    assert store_alerts == []
    dip_day = sc.day(DIP_DAY)
    intraday = [a for a in firing(out) if "store_id" in a.entity and a.rule == "INTRADAY"
                and datetime.fromtimestamp(a.starts_at, sd.TZ).date() == dip_day]
    assert intraday == []  # stores low only as their peers are: the chain alert covers them


def test_healthy_stores_raise_few_alert_episodes(scenario) -> None:  # type: ignore[no-untyped-def]
    sc, _, out = scenario
    closure_days = (sc.day(CLOSURE[1]), sc.day(CLOSURE[1] + 1))
    noise = [a for a in firing(out) if a.entity.get("store_id") not in (None, "US00001")
             and not (a.entity.get("store_id") == CLOSURE[0]
                      and datetime.fromtimestamp(a.starts_at, sd.TZ).date() in closure_days)]
    by_rule = Counter(a.rule for a in noise)
    by_metric = Counter(a.entity["metric"] for a in noise)
    print(f"healthy stores: {len(noise)} alert episodes over {sc.days} days: {dict(by_rule)} {dict(by_metric)}")
    # Documented in docs/store.md: 18 episodes for the nine healthy stores over 70 days (34 before the
    # p-charts, prediction limits, CUSUM and the peer check of intraday flags).
    assert len(noise) <= 24
    assert by_metric["refund_rate"] + by_metric["cancel_rate"] <= 3  # p-charts: 12 episodes before


def _daily_series(sc: sd.Scenario, store_index: int) -> list[tuple[dict, dict]]:
    """(metrics, rate counts) of each day of one store, from its final order statuses (no pipeline)."""
    out = []
    for index in range(sc.days):
        orders: dict[str, list] = {}
        for e in sorted(sd.store_day(sc, store_index, index), key=lambda e: e["ts"]):
            o = sd.to_order(e)
            orders[o.order_id] = [STATUS_CODE[o.status], o.total_minor, 0, float(sum(i.qty for i in o.items)), o.ts]
        out.append((day_metrics(orders.values()), rate_counts(orders.values())))
    return out


def _decline_flag_day(seed: int, ramp: int) -> tuple[int, str] | None:
    """Day of the decline (1 = its first day) and rule of the first revenue/orders episode that starts in it."""
    sc = sd.Scenario(days=70, decline_days=ramp, seed=seed, chain_dip=(DIP_DAY, 0.7))
    series = _daily_series(sc, 0)
    cfg = StoreConfig()
    first = None
    for metric in ("net_revenue", "orders"):
        det = SeriesDetector(f"US00001|{metric}", cfg.detector_config(metric))
        for index, (m, _) in enumerate(series):
            v = det.update(Calendar.model_ts(sc.day(index).isoformat()), m[metric])[0]
            if (v.event and v.event.kind == "firing" and index >= sc.decline_start and index != DIP_DAY
                    and (first is None or index < first[0])):
                first = (index, v.event.rule)
    return None if first is None else (first[0] - sc.decline_start + 1, first[1])


def test_decline_detection_day_across_seeds_and_ramp_lengths() -> None:
    """The -51 % decline spread over two, three and four weeks, on the first ten generator seeds (the same
    charts as the store stage, fed the days' metrics directly). Documented in docs/store.md with the 40
    held-out seeds of bench/store_detection.py: within 8 days 85 % / 68 % / 57 % of the time, at the budget of
    one false episode per store per quarter; daily noise of ~10 % puts the three-week ramp at the limit of what
    any rule can do at this false alarm rate."""
    days = {ramp: [_decline_flag_day(seed, ramp) for seed in range(1, 11)] for ramp in (14, 21, 28)}
    for ramp, flags in days.items():
        print(f"ramp {ramp} days: {flags}")
    within = {ramp: sum(1 for f in flags if f and f[0] <= 8) for ramp, flags in days.items()}
    assert within[14] == 10
    assert within[21] >= 6
    assert within[28] >= 5


def test_intraday_checks_see_each_order_as_it_was_at_the_check() -> None:
    """A refund recorded after the check's time does not change the check, however early it arrived."""
    cal = Calendar(StoreConfig())
    st = StoreState("US00001", cal)
    day = "2026-02-17"
    nine = datetime(2026, 2, 17, 9, 0, tzinfo=sd.TZ).timestamp()
    check = datetime(2026, 2, 17, 10, 0, tzinfo=sd.TZ).timestamp()
    paid = {"o1": [PAID, 1000, 0, 1.0, nine, nine]}
    refunded_later = {"o1": [REFUNDED, 1000, 0, 1.0, nine, check + 1800]}
    refunded_before = {"o1": [REFUNDED, 1000, 0, 1.0, nine, check - 60]}
    assert st._slots(day, refunded_later, upto=check) == st._slots(day, paid, upto=check)
    assert sum(st._slots(day, refunded_before, upto=check)[0]) == 0.0
    assert sum(st._slots(day, refunded_later)[0]) == 0.0  # the day itself counts the final status


def test_one_long_advance_does_what_many_short_ones_do() -> None:
    """A store stage released after a backlog advances over many days at once: it must produce the same
    checks and summaries, in the same order per day, as when it advanced minute by minute (the intraday
    profile learns each day when it becomes final, before later days are checked)."""
    sc = sd.Scenario(days=12, stores=sd.STORES[:1], decline_store=None, seed=4)
    cal = Calendar(StoreConfig(intraday_min_days=1))
    msgs, entries = [], {}
    for e in sd.events(sc):
        step = apply_order(entries.get(e["order_id"]), sd.to_order(e), cal, e["ts"])
        if step.forward:
            entries[e["order_id"]] = step.entry
            msgs.append(step.forward)
    end = msgs[-1]["ts"]
    stepwise, once = StoreState("US00001", cal), StoreState("US00001", cal)
    a, b = [], []
    for msg in msgs:
        a.extend(stepwise.apply(msg).chain)
        b.extend(once.apply(msg, clock=-math.inf).chain)
    a.extend(stepwise.advance(end).chain)
    b.extend(once.advance(end).chain)
    assert any(m["t"] == "intraday" and m.get("warm", True) for m in a)  # the profile did warm up
    assert sorted(map(orjson.dumps, a)) == sorted(map(orjson.dumps, b))
    closed = {m["day"] for m in a if m["t"] == "day"}
    assert len(closed) == sc.days - 1
    for day in closed:
        assert [m for m in a if m["day"] == day][-1]["t"] == "day"  # a day's summary after its checks
        assert [m for m in b if m["day"] == day][-1]["t"] == "day"


def test_chain_waits_for_every_store_of_the_roster_except_those_without_checks_that_day() -> None:
    """An intraday slot is decided once every store has reported it; a store that sends no checks for the day
    says so once, and the chain no longer waits for it; a day waits for the order sources' horizon."""
    cal = Calendar(StoreConfig())
    day = "2026-02-17"
    t = cal.slot_ts("A", day, 40)
    flagged = {"t": "intraday", "store": "A", "group": "all", "day": day, "k": 40, "ts": t, "flag": True,
               "cum": 100.0, "expected": 400.0, "projected": 150.0, "center": 900.0, "lower": 600.0, "recent": 0,
               "recent_expected": 12.0}
    chain = ChainState(cal)
    for store in ("A", "B"):
        chain.apply({"t": "join", "store": store, "day": day})
    assert chain.apply(flagged).alerts == []  # B has not reported slot 40 yet
    out = chain.apply({"t": "intraday", "store": "B", "group": "all", "day": day, "k": 0, "ts": t, "flag": False,
                       "warm": False})
    assert [(a["rule"], a["entity"]) for a in out.alerts] == [("INTRADAY", {"store_id": "A", "metric": "net_revenue"})]
    # days: every store reported, but an order partition is behind the close: not decided yet
    late = ChainState(cal)
    summary = {"t": "day", "group": "all", "day": day, "ts": cal.close_ts("A", day), "closed": False,
               "retired": False, "m": {}, "v": {}}
    for store in ("A", "B"):
        late.apply(dict(summary, store=store), horizon=cal.close_ts("A", day) - 1)
    assert day not in late.decided
    late.apply({"t": "clock", "src": 0, "n": 1, "wm": cal.close_ts("A", day)}, horizon=cal.close_ts("A", day))
    assert day in late.decided


@pytest.fixture(scope="module")
def small() -> tuple[list, Outputs]:
    """Five stores, 45 days, a chain dip and a decline: enough for alerts, quick to run three times."""
    sc = sd.Scenario(days=45, stores=sd.STORES[:5], decline_start=30, chain_dip=(38, 0.7), seed=5)
    events = sd.events(sc)
    return events, run(events)[0]


def test_late_and_duplicate_events_do_not_change_the_result(small) -> None:  # type: ignore[no-untyped-def]
    events, clean = small
    rng = random.Random(3)
    shuffled = []
    for e in events:
        ts = e["ts"]
        r = rng.random()
        arrival = ts + (rng.uniform(0, 600) if r < 0.3 else 0.0)  # jitter inside the grace period
        if r > 0.998:
            arrival = ts + 6 * 3600  # late: lands after its day closed (amends it)
        shuffled.append((arrival, e))
        if rng.random() < 0.01:
            shuffled.append((arrival + rng.uniform(0, 3600), e))  # duplicate
    shuffled.sort(key=lambda x: x[0])
    messy, _ = run([e for _, e in shuffled])
    assert sum(a.rule != "INTRADAY" for a in clean.alerts) > 0
    assert _final(messy, "store_daily_metrics") == _final(clean, "store_daily_metrics")
    assert _daily_alerts(messy) == _daily_alerts(clean)


def test_a_restart_mid_stream_does_not_change_the_result(small) -> None:  # type: ignore[no-untyped-def]
    events, clean = small
    restarted, _ = run(events, restart_at=len(events) // 2)
    assert [a.to_event() for a in restarted.alerts] == [a.to_event() for a in clean.alerts]
    assert _final(restarted, "store_anomaly_flags") == _final(clean, "store_anomaly_flags")


def _final(out: Outputs, table: str) -> dict:
    keys = ("store_id", "business_date", "metric")
    return {tuple(r.get(k) for k in keys): r for r in out.rows[table]}


def _daily_alerts(out: Outputs) -> dict:
    """Final state of each daily (not intraday) alert that was not withdrawn."""
    final = {}
    for a in out.alerts:
        if a.rule != "INTRADAY" and "INTRADAY" not in a.rules:
            final[a.alert_id] = (a.status, a.rule, tuple(sorted(a.entity.items())))
    withdrawn = {a.alert_id for a in out.alerts if "withdrawn" in a.summary}
    return {k: v for k, v in final.items() if k not in withdrawn}


# --------------------------------------------------------------------------- units


def test_day_metrics_by_hand() -> None:
    orders = [[PAID, 1000, 50, 2.0, 0], [PAID, 500, 0, 1.0, 0], [REFUNDED, 700, 0, 1.0, 0], [CANCELLED, 300, 0, 1, 0]]
    m = day_metrics(orders)
    assert m["net_revenue"] == 15.0
    assert m["orders"] == 3.0
    assert m["aov"] == 7.5
    assert m["items_per_order"] == 1.5
    assert m["discount_depth"] == pytest.approx(50 / 1550)
    assert m["refund_rate"] == pytest.approx(1 / 3)
    assert m["cancel_rate"] == 0.25
    empty = day_metrics([])
    assert empty["net_revenue"] == 0.0 and empty["aov"] is None and empty["cancel_rate"] is None


def _order(status: str = "paid", event_id: str = "e1", ts: float | None = None, total: int = 1240):  # type: ignore[no-untyped-def]
    e = {"event_id": event_id, "order_id": "o1", "store_id": "US00001", "total": f"{total / 100:.2f}",
         "currency": "USD", "channel": "app", "status": status,
         "ts": ts if ts is not None else datetime(2026, 2, 17, 8, 0, tzinfo=sd.TZ).timestamp(),
         "items": [{"spu": "S", "name": "Latte", "qty": 2, "unit_price": "6.20", "discount": "0.50",
                    "unit_cost": "1"}]}
    return sd.to_order(e)


def test_order_stage_routes_updates_to_the_orders_day_and_ignores_duplicates_and_stale_ones() -> None:
    cal = Calendar(StoreConfig())
    paid = _order()
    first = apply_order(None, paid, cal, paid.ts)
    assert first.outcome == "new" and first.forward["day"] == "2026-02-17"
    assert first.forward["c"] == [PAID, 1240, 100, 2.0, paid.ts, paid.ts]
    assert apply_order(first.entry, paid, cal, paid.ts).outcome == "duplicate"
    # refunded the next morning: still the 17th
    refund = _order("refunded", "e2", ts=datetime(2026, 2, 18, 9, 0, tzinfo=sd.TZ).timestamp())
    upd = apply_order(first.entry, refund, cal, refund.ts)
    assert upd.outcome == "update" and upd.forward["day"] == "2026-02-17" and upd.forward["c"][0] == REFUNDED
    assert apply_order(upd.entry, _order("paid", "e3"), cal, refund.ts).outcome == "stale"
    # beyond close (01:00 on the 18th) + max lateness (24 h): rejected
    late_wm = datetime(2026, 2, 19, 2, 0, tzinfo=sd.TZ).timestamp()
    assert apply_order(None, paid, cal, late_wm).outcome == "too_late"


def test_local_business_day_and_close_follow_the_store_time_zone() -> None:
    cal = Calendar(StoreConfig(store_timezones=(("TOKYO1", "Asia/Tokyo"),)))
    ts = datetime(2026, 2, 17, 23, 30, tzinfo=sd.TZ).timestamp()  # 04:30Z on the 18th
    assert cal.local_day("US00001", ts) == "2026-02-17"
    assert cal.local_day("TOKYO1", ts) == "2026-02-18"
    assert cal.close_ts("US00001", "2026-02-17") == datetime(2026, 2, 18, 1, 0, tzinfo=sd.TZ).timestamp()
    # DST: 8 March 2026 has 23 hours in New York; the 10:00 slot is still slot 40
    ten = datetime(2026, 3, 8, 10, 0, tzinfo=sd.TZ).timestamp()
    assert cal.wall_slot("US00001", "2026-03-08", ten) == 40.0
    assert cal.slot_ts("US00001", "2026-03-08", 40) == ten


def test_silent_store_day_still_closes_and_marked_closed_days_stay_out_of_baselines() -> None:
    sc = sd.Scenario(days=4, stores=sd.STORES[:3], decline_store=None)
    events = [e for e in sd.events(sc) if not (e["store_id"] == "US00002" and e["ts"] >= _day_ts(sc, 2))]
    proc = StoreProcessor()
    proc.cal = Calendar(StoreConfig(closed_days=(("US00003", sc.day(1).isoformat()),)))
    out, _store = run(events, proc)
    rows = _final(out, "store_daily_metrics")
    assert rows[("US00002", date.fromisoformat(sc.day(2).isoformat()), None)]["orders"] == 0.0
    assert rows[("US00003", date.fromisoformat(sc.day(1).isoformat()), None)]["closed_day"] is True
    limits = [r for r in out.rows["store_control_limits"] if r["store_id"] == "US00003"
              and r["business_date"] == sc.day(1)]
    assert limits == []  # a closed day is not judged


def _day_ts(sc: sd.Scenario, index: int) -> float:
    return datetime.combine(sc.day(index), time(), sd.TZ).timestamp()


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 40), st.floats(0.1, 40.0))
def test_poisson_cdf_matches_the_sum_of_the_pmf(k: int, lam: float) -> None:
    pmf = sum(math.exp(-lam + i * math.log(lam) - math.lgamma(i + 1)) for i in range(k + 1))
    assert poisson_cdf(k, lam) == pytest.approx(min(1.0, pmf), rel=1e-9, abs=1e-300)


def test_robust_z_uses_median_and_mad() -> None:
    assert robust_z(10.0, [1.0, 2.0, 3.0], 1e-9) == pytest.approx((10 - 2) / 1.4826)
    assert robust_z(1.0, [1.0], 1e-9) is None
    assert robust_z(5.0, [1.0, 1.0, 1.0], 0.5) == pytest.approx(8.0)  # MAD 0: the floor
